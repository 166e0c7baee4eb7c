/**
 * How the fake Gemini answers: every reply waits the configured latency first, and its status
 * is counted when it is sent. The timers are kept so close() can cancel the replies still due.
 */
import type { ServerResponse } from 'node:http';
import type { ErrorReply } from './fake-gemini-errors.ts';

export const JSON_TYPE = 'application/json; charset=UTF-8';

export class FakeReplier {
  latencyMs: number;
  readonly #countStatus: (status: number) => void;
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(latencyMs: number, countStatus: (status: number) => void) {
    this.latencyMs = latencyMs;
    this.#countStatus = countStatus;
  }

  /** Runs `fn` after `ms`, the configured latency by default (immediately when 0). */
  later(fn: () => void, ms = this.latencyMs): void {
    if (ms <= 0) {
      fn();
      return;
    }
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
  }

  /** Counts the status of an answer being sent now. */
  countStatus(status: number): void {
    this.#countStatus(status);
  }

  send(res: ServerResponse, status: number, body: Buffer | string): void {
    this.later(() => {
      if (res.destroyed) return;
      this.#countStatus(status);
      res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  }

  sendError(res: ServerResponse, err: ErrorReply): void {
    this.send(res, err.status, err.body);
  }

  /** Raw bytes with their content type (downloads). */
  sendBytes(res: ServerResponse, status: number, contentType: string, body: Buffer): void {
    this.later(() => {
      if (res.destroyed) return;
      this.#countStatus(status);
      res.writeHead(status, { 'content-type': contentType, 'content-length': body.length });
      res.end(body);
    });
  }

  /** Cancels every reply still waiting (the server is closing). */
  cancelAll(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }
}
