/** Thrown by within() when the time is up. */
export class TimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what} did not answer within ${ms} ms`);
  }
}

/**
 * The promise's outcome, or a TimeoutError after `ms`: for callers that must answer in bounded
 * time whatever the promise does (the promise itself runs on; its late outcome is ignored).
 */
export function within<T>(promise: Promise<T>, ms: number, what = 'the call'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what, ms)), ms);
  });
  promise.catch(() => {}); // a late rejection is not unhandled
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
