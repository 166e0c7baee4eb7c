import { isKnownError, toProblem } from '../../src/http/errors.ts';
import type { HttpProblem } from '../../src/http/problem.ts';

/**
 * The problem the HTTP layer would answer for what fn throws (a domain error or an HttpProblem;
 * any other error is rethrown; no error fails the test).
 */
export function problemOf(fn: () => unknown): HttpProblem {
  try {
    fn();
  } catch (err) {
    if (isKnownError(err)) return toProblem(err);
    throw err;
  }
  throw new Error('expected an HttpProblem');
}

/** problemOf for a promise: the problem its rejection is answered with. */
export async function problemOfRejection(promise: Promise<unknown>): Promise<HttpProblem> {
  try {
    await promise;
  } catch (err) {
    if (isKnownError(err)) return toProblem(err);
    throw err;
  }
  throw new Error('expected a rejection');
}
