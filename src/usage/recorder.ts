import type { Logger } from 'pino';
import { PacificCalendar } from '../util/pacific.ts';
import { addCounts, addUsage, type Counts, SHOWN_FIELDS, usageTokens, zeroCounts } from './counts.ts';
import { costOf, type ModelPrice, type PriceTable, priceOf, roundUsd } from './prices.ts';
import { readUsage, type TokenUsage } from './read.ts';
import { dayRange, HOUR_MS, type UsageBatch, type UsageEntry, type UsageStore } from './store.ts';

/**
 * What the forwarder reports about every call that had a model (src/upstream/forwarder.ts): the
 * answer's usage as upstream reported it, and whether the call failed.
 */
export interface UsageObserver {
  /** A whole answer (any status). `body`: the answer's bytes, read for usageMetadata on a 2xx. */
  answered(client: string | undefined, model: string, status: number, body: Buffer): void;
  /** A stream ended: `usage` is its last cumulative usage; `failed`: it broke or carried an error event. */
  streamed(client: string | undefined, model: string, usage: TokenUsage | undefined, failed: boolean): void;
  /** No answer came: the gateway refused or failed the call (pool exhausted, store down, deadline...). */
  failed(client: string | undefined, model: string, status: number): void;
}

/** One usage row as the API shows it. */
export interface UsageRowView {
  client: string;
  model: string;
  requests: number;
  prompt_tokens: number;
  output_tokens: number;
  cached_tokens: number;
  thought_tokens: number;
  errors: number;
  /** null: the price table has no price for the model. */
  cost_usd: number | null;
}
export type DailyRowView = { day: string } & UsageRowView;
export type HourlyRowView = { hour: string } & UsageRowView;

/** Process totals per (client, model) label pair, for Prometheus. */
export interface MetricTotals {
  client: string;
  model: string;
  counts: Counts;
  costUsd: number;
}

export interface UsageRecorderOptions {
  store: UsageStore;
  prices: PriceTable;
  logger?: Logger;
  /** How often aggregates go to the store. */
  flushMs?: number;
  now?: () => number;
  /** Distinct clients and models that get their own Prometheus labels; the rest count as "other". */
  maxMetricClients?: number;
  maxMetricModels?: number;
}

/** The client name of calls that carry none (a route without client auth). */
export const NO_CLIENT = '(none)';
export const OTHER_LABEL = 'other';
const TOTALS_REFRESH_MS = 5000;

/** The aggregate of one (client, model) and the entries the hot path adds to. */
interface Row {
  client: string;
  model: string;
  price: ModelPrice | undefined;
  /** Its Prometheus labels: its own, or "other" past the caps. */
  labels: { client: string; model: string };
  /** What this process counted for it since start (Prometheus). */
  totals: Counts;
  /** The pending entry of `hour` in pending generation `gen`. */
  gen: number;
  hour: number;
  entry: UsageEntry | null;
}

/**
 * Exact usage accounting per client, model and Pacific day (and UTC hour, for the 24-hour view).
 *
 * Hot path (`record`): a few additions to an in-memory aggregate, nothing else. Every `flushMs`
 * (1 s) the aggregate is handed to the store as one batch (one Redis script call, or one SQLite
 * transaction); a batch that fails is kept as it is and sent again, with its own sequence number,
 * before anything newer, so a retried batch is never counted twice (see RedisUsageStore) and
 * nothing is lost while the store is away. Reads (`daily`, `hourly`) flush first, so what this
 * instance counted is in them.
 */
export class UsageRecorder implements UsageObserver {
  readonly store: UsageStore;
  readonly prices: PriceTable;
  /**
   * Told the tokens (prompt + output + thinking) of every answer, as it is counted: for client
   * budgets kept elsewhere (ClientBudget.recordTokens). Must not throw or block.
   */
  onTokens?: (client: string, tokens: number) => void;
  private readonly logger?: Logger;
  private readonly now: () => number;
  private readonly flushMs: number;
  private readonly calendar = new PacificCalendar();
  private readonly maxClients: number;
  private readonly maxModels: number;

  private readonly rows = new Map<string, Map<string, Row>>();
  private pending = new Map<string, UsageEntry>();
  private pendingGen = 0;
  private retry: UsageBatch | null = null;
  private seq = 0;
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private failing = false;
  private closed = false;
  private lastTrim = 0;

  /** The hour and day of the last record (a Pacific day is whole UTC hours). */
  private hour = -1;
  private day = '';
  /** Today's tokens per client: confirmed by the store, and counted here but not yet confirmed. */
  private todayDay = '';
  private confirmed = new Map<string, number>();
  private unconfirmed = new Map<string, number>();
  private totalsReadAt = 0;

  private readonly metricClients = new Set<string>();
  private readonly metricModels = new Set<string>();

  constructor(options: UsageRecorderOptions) {
    this.store = options.store;
    this.prices = options.prices;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
    this.flushMs = options.flushMs ?? 1000;
    this.maxClients = options.maxMetricClients ?? 50;
    this.maxModels = options.maxMetricModels ?? 20;
  }

  /** Reads today's totals from the store, trims old history and starts the flush timer. */
  async start(): Promise<void> {
    const now = this.now();
    this.rollDay(now);
    try {
      this.confirmed = await this.store.tokensByClient(this.todayDay);
      this.totalsReadAt = now;
      await this.store.trim(now);
      this.lastTrim = now;
    } catch (err) {
      this.logger?.warn(
        { err: errText(err) },
        'usage: the store could not be read at start; retrying in the background',
      );
    }
    this.timer = setInterval(() => void this.tick(), this.flushMs);
    this.timer.unref();
  }

  // ---- the forwarder's reports (UsageObserver) ----

  answered(client: string | undefined, model: string, status: number, body: Buffer): void {
    const ok = status >= 200 && status < 300;
    this.record(client, model, ok ? readUsage(body) : undefined, !ok && status !== 499);
  }

  streamed(client: string | undefined, model: string, usage: TokenUsage | undefined, failed: boolean): void {
    this.record(client, model, usage, failed);
  }

  failed(client: string | undefined, model: string, status: number): void {
    this.record(client, model, undefined, status !== 499);
  }

  /** Counts one call: its usage as upstream reported it (undefined: none) and whether it failed. */
  record(client: string | undefined, model: string, usage: TokenUsage | undefined, error: boolean): void {
    if (model === '' || this.closed) return;
    const now = this.now();
    const hour = Math.floor(now / HOUR_MS);
    if (hour !== this.hour) {
      this.hour = hour;
      this.day = this.calendar.at(now).day;
      this.rollDay(now);
    }
    const row = this.rowOf(client ?? NO_CLIENT, model);
    if (row.entry === null || row.gen !== this.pendingGen || row.hour !== hour) {
      const key = `${hour}\t${row.client}\t${row.model}`;
      let entry = this.pending.get(key);
      if (!entry) {
        entry = { hour, day: this.day, client: row.client, model: row.model, counts: zeroCounts() };
        this.pending.set(key, entry);
      }
      row.entry = entry;
      row.gen = this.pendingGen;
      row.hour = hour;
    }
    const threshold = this.prices.longThreshold;
    addUsage(row.entry.counts, usage, error, threshold);
    addUsage(row.totals, usage, error, threshold);
    const tokens = usageTokens(usage);
    if (tokens > 0) {
      this.unconfirmed.set(row.client, (this.unconfirmed.get(row.client) ?? 0) + tokens);
      this.onTokens?.(row.client, tokens);
    }
  }

  /**
   * Tokens (prompt + output + thinking) a client spent today (the Pacific day), for its
   * `tokens_per_day` limit: what the store confirmed plus what this instance counted since. In
   * Redis mode, other instances' spending shows up within about TOTALS_REFRESH_MS plus their flush.
   */
  tokensToday(client: string): number {
    this.rollDay(this.now());
    return (this.confirmed.get(client) ?? 0) + (this.unconfirmed.get(client) ?? 0);
  }

  // ---- reads ----

  /** Rows per day, client and model for Pacific days `from`..`to`, with their cost. */
  async daily(from: string, to: string, filter: RowFilter = {}): Promise<DailyRowView[]> {
    await this.flush();
    const rows = await this.store.days(dayRange(from, to));
    return rows
      .filter((r) => matches(r, filter))
      .map((r) => ({ day: r.day, ...this.view(r.client, r.model, r.counts) }));
  }

  /** Rows per UTC hour, client and model for the last `hours` hours (the current one included). */
  async hourly(hours: number, filter: RowFilter = {}): Promise<HourlyRowView[]> {
    await this.flush();
    const last = Math.floor(this.now() / HOUR_MS);
    const list = Array.from({ length: hours }, (_, i) => last - hours + 1 + i);
    const rows = await this.store.hours(list);
    return rows
      .filter((r) => matches(r, filter))
      .map((r) => ({
        hour: new Date(r.hour * HOUR_MS).toISOString(),
        ...this.view(r.client, r.model, r.counts),
      }));
  }

  /**
   * This process's totals per label pair since start (Prometheus), cost included. At most
   * (maxMetricClients + 1) × (maxMetricModels + 1) pairs: clients and models past the caps count
   * as "other" (labels are given on first sight, so a series never changes its meaning).
   */
  metrics(): MetricTotals[] {
    const out = new Map<string, MetricTotals>();
    for (const byModel of this.rows.values()) {
      for (const row of byModel.values()) {
        const key = `${row.labels.client}\t${row.labels.model}`;
        let t = out.get(key);
        if (!t) {
          t = { ...row.labels, counts: zeroCounts(), costUsd: 0 };
          out.set(key, t);
        }
        addCounts(t.counts, row.totals);
        t.costUsd += costOf(row.price, row.totals) ?? 0;
      }
    }
    return [...out.values()];
  }

  /** The Pacific day of `ms` (YYYY-MM-DD). */
  dayOf(ms: number): string {
    return this.calendar.at(ms).day;
  }

  // ---- flushing ----

  /**
   * Writes everything counted so far to the store; throws when the store fails (what was counted
   * stays, and goes with a later flush).
   */
  async flush(): Promise<void> {
    for (let i = 0; i < 4; i++) {
      if (this.running) await this.running;
      if (this.retry === null && this.pending.size === 0) return;
      await this.tick();
      if (this.retry !== null) throw new Error(`the usage store (${this.store.kind}) is unavailable`);
    }
  }

  /** Stops the timer and writes what is left (best effort: a failure is logged). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    try {
      await this.flush();
    } catch (err) {
      this.logger?.error(
        { err: errText(err), pendingEntries: this.pending.size + (this.retry?.entries.length ?? 0) },
        'usage: could not write the last counts at shutdown; they are lost',
      );
    }
    this.closed = true;
    await this.store.close();
  }

  /** One step of the flush loop; steps never overlap. */
  private tick(): Promise<void> {
    this.running ??= this.step().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async step(): Promise<void> {
    const now = this.now();
    this.rollDay(now);
    if (this.retry === null && this.pending.size === 0) {
      await this.idle(now);
      return;
    }
    const batch = this.retry ?? this.take();
    try {
      const totals = await this.store.write(batch, this.todayDay);
      this.retry = null;
      this.confirm(batch, totals);
      if (this.failing) {
        this.failing = false;
        this.logger?.info({ store: this.store.kind }, 'usage: the store is writable again; counts caught up');
      }
    } catch (err) {
      this.retry = batch;
      if (!this.failing) {
        this.failing = true;
        this.logger?.warn(
          { store: this.store.kind, err: errText(err) },
          'usage: counts could not be written; they are kept in memory and written when the store answers',
        );
      }
    }
  }

  /** Nothing to write: refresh today's totals from a shared store, trim once an hour. */
  private async idle(now: number): Promise<void> {
    try {
      if (this.store.shared && now - this.totalsReadAt >= TOTALS_REFRESH_MS) {
        const day = this.todayDay;
        const totals = await this.store.tokensByClient(day);
        // Nothing was written meanwhile (steps do not overlap): counts recorded since are unconfirmed.
        if (day === this.todayDay) this.confirmed = totals;
        this.totalsReadAt = now;
      }
      if (now - this.lastTrim >= HOUR_MS) {
        await this.store.trim(now);
        this.lastTrim = now;
      }
    } catch {
      // The next write or read says so.
    }
  }

  private take(): UsageBatch {
    const entries = [...this.pending.values()];
    this.pending = new Map();
    this.pendingGen++;
    this.seq += 1;
    return { seq: this.seq, entries };
  }

  private confirm(batch: UsageBatch, totals: Map<string, number> | null): void {
    for (const e of batch.entries) {
      if (e.day !== this.todayDay) continue;
      const t = e.counts.prompt_tokens + e.counts.output_tokens + e.counts.thought_tokens;
      if (t === 0) continue;
      this.unconfirmed.set(e.client, Math.max(0, (this.unconfirmed.get(e.client) ?? 0) - t));
      if (totals === null) this.confirmed.set(e.client, (this.confirmed.get(e.client) ?? 0) + t);
    }
    if (totals !== null) {
      this.confirmed = totals;
      this.totalsReadAt = this.now();
    }
  }

  private rollDay(now: number): void {
    const day = this.calendar.at(now).day;
    if (day === this.todayDay) return;
    this.todayDay = day;
    this.confirmed = new Map();
    this.unconfirmed = new Map();
    this.totalsReadAt = 0;
  }

  private rowOf(client: string, model: string): Row {
    let byModel = this.rows.get(client);
    if (!byModel) {
      byModel = new Map();
      this.rows.set(client, byModel);
    }
    let row = byModel.get(model);
    if (!row) {
      const cleanModel = model.replaceAll('\t', ' ');
      row = {
        client,
        model: cleanModel,
        price: priceOf(this.prices, cleanModel),
        labels: this.labelsFor(client, cleanModel),
        totals: zeroCounts(),
        gen: -1,
        hour: -1,
        entry: null,
      };
      byModel.set(model, row);
    }
    return row;
  }

  /** The Prometheus labels of a (client, model): its own, or "other" past the caps. */
  private labelsFor(client: string, model: string): { client: string; model: string } {
    return {
      client: capped(this.metricClients, client, this.maxClients),
      model: capped(this.metricModels, model, this.maxModels),
    };
  }

  private view(client: string, model: string, counts: Counts): UsageRowView {
    const out: UsageRowView = {
      client,
      model,
      requests: 0,
      prompt_tokens: 0,
      output_tokens: 0,
      cached_tokens: 0,
      thought_tokens: 0,
      errors: 0,
      cost_usd: costOf(priceOf(this.prices, model), counts),
    };
    for (const f of SHOWN_FIELDS) out[f] = counts[f];
    return out;
  }
}

export interface RowFilter {
  client?: string;
  model?: string;
}

function matches(r: { client: string; model: string }, f: RowFilter): boolean {
  return (f.client === undefined || r.client === f.client) && (f.model === undefined || r.model === f.model);
}

/** Sums of rows (e.g. a client's total over days), cost included. */
export function sumRows<T extends UsageRowView>(rows: readonly T[]): Omit<UsageRowView, 'client' | 'model'> {
  const total = {
    requests: 0,
    prompt_tokens: 0,
    output_tokens: 0,
    cached_tokens: 0,
    thought_tokens: 0,
    errors: 0,
  };
  let cost: number | null = null;
  for (const r of rows) {
    for (const f of SHOWN_FIELDS) total[f] += r[f];
    if (r.cost_usd !== null) cost = (cost ?? 0) + r.cost_usd;
  }
  return { ...total, cost_usd: cost === null ? null : roundUsd(cost) };
}

/** `value` as a label: its own while fewer than `max` values have one, else "other". */
function capped(seen: Set<string>, value: string, max: number): string {
  if (seen.has(value)) return value;
  if (seen.size >= max) return OTHER_LABEL;
  seen.add(value);
  return value;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
