/**
 * Messages between the primary process and its workers (WORKERS > 1), besides the state
 * store's (src/store/ipc-protocol.ts) and prom-client's own metric requests. Each has a `type`
 * of its own, so the channel's other users ignore it.
 */

/** Worker → primary: listening, serving. */
export const WORKER_READY = 'gg:worker-ready';
/** Worker → primary: a /metrics scrape wants the whole group's metrics. */
export const METRICS_REQUEST = 'gg:metrics-request';
/** Primary → worker: the group's metrics (text exposition) or why not. */
export const METRICS_ANSWER = 'gg:metrics-answer';
/** Worker → primary: an admin asked this worker to reload; primary → worker: reload too. */
export const RELOAD = 'gg:reload';

export interface MetricsRequest {
  type: typeof METRICS_REQUEST;
  id: number;
}

export interface MetricsAnswer {
  type: typeof METRICS_ANSWER;
  id: number;
  text?: string;
  error?: string;
}

/** The worker's number (1..WORKERS) in the environment the primary starts it with. */
export const WORKER_ENV = 'GATEWAY_WORKER';

export function messageType(message: unknown): string | undefined {
  const t = (message as { type?: unknown } | null)?.type;
  return typeof t === 'string' ? t : undefined;
}
