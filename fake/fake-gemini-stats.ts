/** What the fake Gemini counts and logs of the requests it receives (FakeGemini.stats). */

export interface RecordedRequest {
  method: string;
  path: string;
  search: string;
  headers: Record<string, string>;
  apiKey: string | null;
  body: unknown;
}

export interface FakeGeminiStats {
  requests: number;
  byKey: Map<string, number>;
  byStatus: Map<number, number>;
  rateLimited: number;
  /** 403 PERMISSION_DENIED answers for another project's resource (a file, batch, operation, ...). */
  permissionDenied: number;
  log: RecordedRequest[];
}

const LOG_SIZE = 1000;

/** Keeps the stats; the log holds the last LOG_SIZE requests (trimmed in batches, not per push). */
export class FakeStatsRecorder {
  readonly stats: FakeGeminiStats;
  #log: RecordedRequest[] = [];

  constructor() {
    const recorder = this;
    this.stats = {
      requests: 0,
      byKey: new Map(),
      byStatus: new Map(),
      rateLimited: 0,
      permissionDenied: 0,
      get log(): RecordedRequest[] {
        const log = recorder.#log;
        if (log.length > LOG_SIZE) log.splice(0, log.length - LOG_SIZE);
        return log;
      },
    };
  }

  /** Counts a request (per key too) and logs it. */
  record(request: RecordedRequest): void {
    const { stats } = this;
    stats.requests++;
    if (request.apiKey !== null) stats.byKey.set(request.apiKey, (stats.byKey.get(request.apiKey) ?? 0) + 1);
    this.#log.push(request);
    if (this.#log.length >= 2 * LOG_SIZE) this.#log.splice(0, this.#log.length - LOG_SIZE);
  }

  countStatus(status: number): void {
    this.stats.byStatus.set(status, (this.stats.byStatus.get(status) ?? 0) + 1);
  }

  reset(): void {
    const { stats } = this;
    stats.requests = 0;
    stats.byKey.clear();
    stats.byStatus.clear();
    stats.rateLimited = 0;
    stats.permissionDenied = 0;
    this.#log = [];
  }
}
