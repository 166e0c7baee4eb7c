import type { Dispatcher } from 'undici';
import { type Abortable, onAbort } from '../util/cancel.ts';

/** An upstream answer read whole: status, content type and body bytes. */
export interface WholeAnswer {
  statusCode: number;
  contentType: string | undefined;
  body: Buffer;
}

/** A transfer that failed; `afterHeaders` tells a broken body from a failed request. */
export class TransferError extends Error {
  readonly afterHeaders: boolean;
  constructor(cause: unknown, afterHeaders: boolean) {
    super('upstream transfer failed', { cause });
    this.afterHeaders = afterHeaders;
  }
}

/**
 * Sends a request and gathers its whole answer through undici's dispatch API. `agent.request`
 * builds a response stream and its consumer for every call, work the hot path pays on every
 * call for answers that are read whole anyway. Aborted by `signal` like `agent.request`.
 */
export function requestWhole(
  dispatcher: Dispatcher,
  options: Dispatcher.DispatchOptions,
  signal?: Abortable,
): Promise<WholeAnswer> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new TransferError(signal.reason, false));
      return;
    }
    dispatcher.dispatch(options, new WholeHandler(resolve, reject, signal));
  });
}

const CONTENT_TYPE = 'content-type';

/** undici's handler interface (onConnect … onComplete), gathering the body's chunks. */
class WholeHandler implements Dispatcher.DispatchHandler {
  private readonly chunks: Buffer[] = [];
  private statusCode = 0;
  private contentType: string | undefined;
  private headersSeen = false;
  private abortTransfer: ((err?: Error) => void) | null = null;
  private readonly resolve: (answer: WholeAnswer) => void;
  private readonly reject: (err: Error) => void;
  private readonly signal: Abortable | undefined;
  private readonly unsubscribe: (() => void) | undefined;

  constructor(resolve: (answer: WholeAnswer) => void, reject: (err: Error) => void, signal?: Abortable) {
    this.resolve = resolve;
    this.reject = reject;
    this.signal = signal;
    if (signal) this.unsubscribe = onAbort(signal, (reason) => this.abortTransfer?.(reason as Error));
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.signal?.aborted) abort(this.signal.reason as Error);
    else this.abortTransfer = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[]): boolean {
    if (statusCode < 200) return true; // 1xx: the answer is still to come
    this.statusCode = statusCode;
    this.headersSeen = true;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!;
      if (name.length === CONTENT_TYPE.length && name.toString('latin1').toLowerCase() === CONTENT_TYPE) {
        this.contentType = rawHeaders[i + 1]!.toString('latin1');
        break;
      }
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    return true;
  }

  onComplete(): void {
    this.release();
    const chunks = this.chunks;
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    this.resolve({ statusCode: this.statusCode, contentType: this.contentType, body });
  }

  onError(err: Error): void {
    this.release();
    this.reject(new TransferError(err, this.headersSeen));
  }

  private release(): void {
    this.unsubscribe?.();
    this.abortTransfer = null;
  }
}
