import { HttpProblem } from '../../src/http/problem.ts';

/** The HttpProblem fn throws (any other error is rethrown; no error fails the test). */
export function problemOf(fn: () => unknown): HttpProblem {
  try {
    fn();
  } catch (err) {
    if (err instanceof HttpProblem) return err;
    throw err;
  }
  throw new Error('expected an HttpProblem');
}
