type AbortCallback = (reason: unknown) => void;

/**
 * A request's cancellation (its deadline passed, or its client went away), for the upstream
 * calls made on its behalf. A real AbortSignal is made only when something asks for one (fetch,
 * undici's request API); the proxy's own path subscribes through `onAbort`, a plain callback
 * list. An EventTarget listener added and removed for every request takes every request through
 * the event-target machinery (allocation, caches), a cost that shows at saturation (`npm run
 * bench:saturate`) far more than in a profile.
 */
export class Cancellation {
  private isAborted = false;
  private abortReason: unknown;
  private controller: AbortController | null = null;
  private callbacks: AbortCallback[] | null = null;

  get aborted(): boolean {
    return this.isAborted;
  }

  get reason(): unknown {
    return this.abortReason;
  }

  /** An AbortSignal that follows this cancellation (made on first use, aborted already if it is). */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.isAborted) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** Calls `callback` once when this is aborted; returns the unsubscribe. Not called if aborted already. */
  onAbort(callback: AbortCallback): () => void {
    if (this.isAborted) return noop;
    if (this.callbacks) this.callbacks.push(callback);
    else this.callbacks = [callback];
    return () => {
      const list = this.callbacks;
      const at = list ? list.indexOf(callback) : -1;
      if (at >= 0) list!.splice(at, 1);
    };
  }

  abort(reason: unknown): void {
    if (this.isAborted) return;
    this.isAborted = true;
    this.abortReason = reason;
    this.controller?.abort(reason);
    const list = this.callbacks;
    this.callbacks = null;
    if (list) for (const callback of list) callback(reason);
  }
}

function noop(): void {}

/** What an upstream call can be cancelled by: a request's Cancellation or any AbortSignal. */
export type Abortable = Cancellation | AbortSignal;

/** Subscribes to either kind once; returns the unsubscribe. Not called if aborted already. */
export function onAbort(source: Abortable, callback: AbortCallback): () => void {
  if (source instanceof Cancellation) return source.onAbort(callback);
  if (source.aborted) return noop;
  const listener = () => callback(source.reason);
  source.addEventListener('abort', listener, { once: true });
  return () => source.removeEventListener('abort', listener);
}

/** The AbortSignal of either kind (for APIs that take only a signal). */
export function signalOf(source: Abortable | undefined): AbortSignal | undefined {
  return source instanceof Cancellation ? source.signal : source;
}
