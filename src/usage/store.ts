import type { Counts } from './counts.ts';

/** Counted usage of one (hour, client, model): `day` is the Pacific day the hour belongs to. */
export interface UsageEntry {
  /** UTC hour: Math.floor(epoch ms / 3,600,000). A Pacific day is made of whole UTC hours. */
  hour: number;
  day: string;
  client: string;
  model: string;
  counts: Counts;
}

/** What one flush writes. `seq` grows by one per batch of a recorder; a retried batch keeps its own. */
export interface UsageBatch {
  seq: number;
  entries: UsageEntry[];
}

export interface DayRow {
  day: string;
  client: string;
  model: string;
  counts: Counts;
}

export interface HourRow {
  hour: number;
  client: string;
  model: string;
  counts: Counts;
}

/** Where usage is kept: Redis (shared by instances) or an embedded database (one instance). */
export interface UsageStore {
  readonly kind: 'redis' | 'sqlite';
  /** True when other instances write to it too (today's totals must be read back). */
  readonly shared: boolean;
  /**
   * Adds a batch, exactly once: a batch written again after a failure whose outcome is unknown
   * (a timeout) is not added twice. Returns the per-client tokens of `today` after the write when
   * the store can tell them in the same step, else null.
   */
  write(batch: UsageBatch, today: string): Promise<Map<string, number> | null>;
  /** Tokens (prompt + output + thinking) per client on a Pacific day. */
  tokensByClient(day: string): Promise<Map<string, number>>;
  /** Rows of the given Pacific days. */
  days(days: readonly string[]): Promise<DayRow[]>;
  /** Rows of the given UTC hours. */
  hours(hours: readonly number[]): Promise<HourRow[]>;
  /** Drops what is older than the retention. */
  trim(nowMs: number): Promise<void>;
  close(): Promise<void>;
}

export const HOUR_MS = 3_600_000;
/** Hourly rows (the dashboard's 24-hour view) are kept this long. */
export const HOURLY_RETENTION_HOURS = 8 * 24;

/** `day` plus `n` days (YYYY-MM-DD, calendar arithmetic). */
export function addDays(day: string, n: number): string {
  const [y, m, d] = day.split('-').map(Number) as [number, number, number];
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

/** Every day from `from` to `to`, both included. */
export function dayRange(from: string, to: string): string[] {
  const out: string[] = [];
  for (let d = from; d <= to; d = addDays(d, 1)) out.push(d);
  return out;
}
