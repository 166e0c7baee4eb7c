import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { KeyConfig } from '../config/keys.ts';
import { computeCapacity, type ModelCapacity } from '../pool/capacity.ts';
import type { BudgetState, KeyState } from '../store/types.ts';
import type { AttemptObserver } from '../upstream/forwarder.ts';
import { CountOf, HotMetric } from './hot-metric.ts';
import { requestContext } from './logger.ts';

/** Cache counters as the response cache reports them (src/cache ResponseCache.stats()). */
export interface CacheCounters {
  hits: number;
  misses: number;
  bypasses?: number;
  errors?: number;
  entries?: number;
  bytes?: number;
}

export interface KeySnapshot {
  configs: readonly KeyConfig[];
  states: readonly KeyState[];
}

/** Per-key latency seen by this process (for the admin key list). */
export interface KeyLatency {
  lastMs: number;
  avgMs: number;
  samples: number;
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const OVERHEAD_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
/** Distinct model label values kept before further ones are counted as "other" (models come from clients). */
const MAX_MODELS = 100;
const KEY_STATES = ['available', 'resting', 'disabled', 'circuit_open'] as const;
/**
 * Per (project, model) budget series: every model named in some key's modelLimits (the tier table
 * included), plus at most this many models seen only in traffic (the most requested today first).
 * So each gateway_budget_* metric has at most projects × (configured models + 20) label sets
 * (× 3 windows), and each gateway_capacity_* metric models × 3.
 */
const MAX_TRAFFIC_MODELS = 20;
/** Gauges of one scrape share one read of the store and the cache. */
const SNAPSHOT_TTL_MS = 250;
/**
 * A pool above this many keys: reading every key's and project's state takes too long to do
 * within a scrape, so the store-derived gauges are read again every LARGE_POOL_REFRESH_MS in the
 * background while scrapes come, and a scrape shows the latest reading (see Memo).
 */
export const LARGE_POOL_KEYS = 1000;
export const LARGE_POOL_REFRESH_MS = 5000;
/** How long after the last scrape a large pool's readings are still kept fresh. */
const KEEP_WARM_MS = 5 * 60_000;
/** METRICS_PER_KEY=auto: per-key series while the pool has at most this many keys. */
export const PER_KEY_AUTO_MAX_KEYS = 100;

/** What a scrape shows about single keys and projects (METRICS_PER_KEY, METRICS_MAX_PROJECTS). */
export interface MetricsOptions {
  /** Series per pool key: always, never, or while the pool has at most PER_KEY_AUTO_MAX_KEYS keys. */
  perKey?: 'auto' | 'true' | 'false';
  /** Projects that get (project, model) budget series, the most used first; 0 = all. */
  maxProjects?: number;
  /** The pool's size now (for perKey auto). */
  poolSize?: () => number;
}

/**
 * Every metric of one gateway, in its own registry (two gateways in one process do not mix).
 * Gauges about keys and the cache are computed when Prometheus scrapes, from the sources set
 * in the composition root.
 */
export class GatewayMetrics implements AttemptObserver {
  readonly registry = new Registry();
  readonly httpDuration: HotMetric;
  readonly upstreamRequests: HotMetric;
  readonly upstreamDuration: HotMetric;
  readonly rateLimited: Counter<'scope'>;
  readonly queueWait: HotMetric;
  readonly overhead: HotMetric;
  readonly reloads: Counter<'source' | 'result'>;
  private readonly models = new Set<string>();
  private readonly latency = new Map<string, KeyLatency>();
  private keySource: (() => Promise<KeySnapshot>) | null = null;
  private queueSource: (() => number) | null = null;
  private cacheSource: (() => Promise<CacheCounters>) | null = null;
  private readonly keyRead = new Memo<KeySnapshot | null>();
  private budgetSource: (() => Promise<readonly BudgetState[]>) | null = null;
  private readonly budgetRead = new Memo<BudgetSnapshot | null>();
  private readonly cacheRead = new Memo<CacheCounters | null>();
  private renderer: (() => Promise<string>) | null = null;
  private rendering: Promise<string> | null = null;
  private readonly perKey: 'auto' | 'true' | 'false';
  private readonly maxProjects: number;
  private readonly poolSize: () => number;

  constructor(options: MetricsOptions = {}) {
    this.perKey = options.perKey ?? 'auto';
    this.maxProjects = options.maxProjects ?? 100;
    this.poolSize = options.poolSize ?? (() => 0);
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    // The metrics every request touches are HotMetrics (src/observability/hot-metric.ts).
    this.httpDuration = new HotMetric(this.registry, {
      name: 'http_request_duration_seconds',
      help: 'Time from request start to the last byte of the response, by method, route and status.',
      labelNames: ['method', 'route', 'status'],
      buckets: LATENCY_BUCKETS,
    });
    // The histogram's counts, shown as a counter of their own.
    new CountOf(this.registry, this.httpDuration, {
      name: 'http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status code.',
    });
    this.upstreamRequests = new HotMetric(this.registry, {
      name: 'gateway_upstream_requests_total',
      help: 'Attempts sent to the Gemini API, by pool key id (empty unless per-key series are on: METRICS_PER_KEY), model and outcome.',
      labelNames: ['key_id', 'model', 'outcome'],
    });
    this.upstreamDuration = new HotMetric(this.registry, {
      name: 'gateway_upstream_request_duration_seconds',
      help: 'Duration of upstream attempts (whole stream for streams), by model and outcome.',
      labelNames: ['model', 'outcome'],
      buckets: LATENCY_BUCKETS,
    });
    this.rateLimited = new Counter({
      name: 'gateway_rate_limit_refusals_total',
      help: 'Requests refused by the caller rate limits (429), by scope: ip_burst, ip_minute, client.',
      labelNames: ['scope'],
      registers,
    });
    this.queueWait = new HotMetric(this.registry, {
      name: 'gateway_queue_wait_seconds',
      help: 'Time a request waited in line for a pool key (per key reservation).',
      buckets: [0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    });
    this.overhead = new HotMetric(this.registry, {
      name: 'gateway_overhead_seconds',
      help: 'Gateway time of a request: total duration minus time spent waiting on the upstream (unary answers).',
      labelNames: ['route'],
      buckets: OVERHEAD_BUCKETS,
    });
    this.reloads = new Counter({
      name: 'gateway_config_reloads_total',
      help: 'Configuration reloads, by source (keys_file, config_file, admin) and result (applied, rejected).',
      labelNames: ['source', 'result'],
      registers,
    });

    const self = this;
    new Gauge({
      name: 'gateway_queue_length',
      help: 'Requests waiting in line for a pool key in this process.',
      registers,
      collect() {
        this.set(self.queueSource?.() ?? 0);
      },
    });
    // Gauges collected on scrape. Prometheus' registry collects metrics concurrently, so each
    // gauge awaits one shared read of the store (memoized briefly) instead of another's collect.
    new Gauge({
      name: 'gateway_key_state',
      // The state store's view, the same from every worker (WORKERS > 1): shown once.
      aggregator: 'first',
      help: 'State of each pool key: 1 for its current state (available, resting, disabled, circuit_open), 0 otherwise.',
      labelNames: ['key_id', 'state'],
      registers,
      async collect() {
        this.reset();
        const snap = await self.keySnapshot();
        if (!snap || !self.perKeySeries(snap.configs.length)) return;
        const now = Date.now();
        for (const s of snap.states) {
          const current = stateOf(s, now);
          for (const state of KEY_STATES) this.set({ key_id: s.id, state }, state === current ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: 'gateway_key_remaining',
      // The state store's view, the same from every worker (WORKERS > 1): shown once.
      aggregator: 'first',
      help: 'Budget left per pool key (shared by the keys of one project), by window: requests_minute, requests_day, tokens_minute.',
      labelNames: ['key_id', 'window'],
      registers,
      async collect() {
        this.reset();
        const snap = await self.keySnapshot();
        if (!snap || !self.perKeySeries(snap.configs.length)) return;
        const limits = new Map(snap.configs.map((k) => [k.id, k.limits]));
        for (const s of snap.states) {
          const l = limits.get(s.id);
          if (!l) continue;
          this.set(
            { key_id: s.id, window: 'requests_minute' },
            Math.max(0, l.requestsPerMinute - s.requestsThisMinute),
          );
          this.set({ key_id: s.id, window: 'requests_day' }, Math.max(0, l.requestsPerDay - s.requestsToday));
          this.set(
            { key_id: s.id, window: 'tokens_minute' },
            Math.max(0, l.tokensPerMinute - s.tokensThisMinute),
          );
        }
      },
    });
    new Gauge({
      name: 'gateway_keys',
      help: 'Pool keys by state (available, resting, disabled, circuit_open): the per-key gateway_key_state summed, shown at any pool size.',
      // The state store's view, the same from every worker (WORKERS > 1): shown once.
      aggregator: 'first',
      labelNames: ['state'],
      registers,
      async collect() {
        this.reset();
        const snap = await self.keySnapshot();
        if (!snap) return;
        const now = Date.now();
        const counts = new Map<string, number>(KEY_STATES.map((state) => [state, 0]));
        for (const s of snap.states) {
          const state = stateOf(s, now);
          counts.set(state, counts.get(state)! + 1);
        }
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'gateway_key_states_up',
      aggregator: 'min',
      help: '1 when the key states could be read from the state store at this scrape, else 0.',
      registers,
      async collect() {
        this.set((await self.keySnapshot()) ? 1 : 0);
      },
    });
    // Budgets per (project, model), as Google counts quota, and the pool's capacity per model.
    new Gauge({
      name: 'gateway_budget_limit',
      // The state store's view, the same from every worker (WORKERS > 1): shown once.
      aggregator: 'first',
      help: 'Limit of each (project, model) budget, by window: requests_minute, requests_day, tokens_minute. Model "none": requests for no model (model listing).',
      labelNames: ['project', 'model', 'window'],
      registers,
      async collect() {
        this.reset();
        for (const b of (await self.budgetSnapshot())?.budgets ?? []) {
          const labels = { project: b.project, model: budgetModelLabel(b.model) };
          this.set({ ...labels, window: 'requests_minute' }, b.rpm);
          this.set({ ...labels, window: 'requests_day' }, b.rpd);
          this.set({ ...labels, window: 'tokens_minute' }, b.tpm);
        }
      },
    });
    new Gauge({
      name: 'gateway_budget_used',
      // The state store's view, the same from every worker (WORKERS > 1): shown once.
      aggregator: 'first',
      help: 'Use of each (project, model) budget, by window: requests_minute (last 60 s), requests_day (this Pacific day), tokens_minute (input tokens, last 60 s).',
      labelNames: ['project', 'model', 'window'],
      registers,
      async collect() {
        this.reset();
        for (const b of (await self.budgetSnapshot())?.budgets ?? []) {
          const labels = { project: b.project, model: budgetModelLabel(b.model) };
          this.set({ ...labels, window: 'requests_minute' }, b.requestsThisMinute);
          this.set({ ...labels, window: 'requests_day' }, b.requestsToday);
          this.set({ ...labels, window: 'tokens_minute' }, b.tokensThisMinute);
        }
      },
    });
    new Gauge({
      name: 'gateway_budget_resting',
      // The state store's view, the same from every worker (WORKERS > 1): shown once.
      aggregator: 'first',
      help: '1 while a (project, model) budget rests after a quota answer from Google (no key of the project serves the model), else 0.',
      labelNames: ['project', 'model'],
      registers,
      async collect() {
        this.reset();
        const snap = await self.budgetSnapshot();
        if (!snap) return;
        for (const b of snap.budgets) {
          const resting = b.restUntilMs !== null && b.restUntilMs > snap.nowMs;
          this.set({ project: b.project, model: budgetModelLabel(b.model) }, resting ? 1 : 0);
        }
      },
    });
    const capacityGauge = (name: string, help: string, pick: (c: ModelCapacity) => CapacityWindows) =>
      new Gauge({
        name,
        help,
        aggregator: 'first',
        labelNames: ['model', 'window'],
        registers,
        async collect() {
          this.reset();
          for (const c of (await self.budgetSnapshot())?.capacity ?? []) {
            const [rpm, rpd, tpm] = pick(c);
            this.set({ model: c.model, window: 'requests_minute' }, rpm);
            this.set({ model: c.model, window: 'requests_day' }, rpd);
            this.set({ model: c.model, window: 'tokens_minute' }, tpm);
          }
        },
      });
    capacityGauge(
      'gateway_capacity_total',
      "The pool's capacity per model and window: the sum of the limits of the projects with a usable key for the model (each project once).",
      (c) => [c.total.rpm, c.total.rpd, c.total.tpm],
    );
    capacityGauge(
      'gateway_capacity_used',
      'Use of the pool capacity per model and window (the same projects).',
      (c) => [c.used.requestsThisMinute, c.used.requestsToday, c.used.tokensThisMinute],
    );
    capacityGauge(
      'gateway_capacity_left',
      'Capacity left per model and window: the sum over projects of max(0, limit - used), rests or not.',
      (c) => [c.left.requestsThisMinute, c.left.requestsToday, c.left.tokensThisMinute],
    );
    capacityGauge(
      'gateway_capacity_available',
      'Capacity left per model and window in the projects not resting on the model now.',
      (c) => [c.available.requestsThisMinute, c.available.requestsToday, c.available.tokensThisMinute],
    );
    new Gauge({
      name: 'gateway_budget_states_up',
      aggregator: 'min',
      help: '1 when the (project, model) budget states could be read from the state store at this scrape, else 0.',
      registers,
      async collect() {
        this.set((await self.budgetSnapshot()) ? 1 : 0);
      },
    });
    new Counter({
      name: 'gateway_cache_lookups_total',
      help: 'Response cache lookups of this process, by result: hit, miss, bypass, error.',
      labelNames: ['result'],
      registers,
      async collect() {
        this.reset();
        const c = await self.cacheCounters();
        if (!c) return;
        this.inc({ result: 'hit' }, c.hits);
        this.inc({ result: 'miss' }, c.misses);
        this.inc({ result: 'bypass' }, c.bypasses ?? 0);
        this.inc({ result: 'error' }, c.errors ?? 0);
      },
    });
    new Gauge({
      name: 'gateway_cache_entries',
      help: 'Entries in the response cache backend.',
      registers,
      async collect() {
        this.set((await self.cacheCounters())?.entries ?? 0);
      },
    });
    new Gauge({
      name: 'gateway_cache_bytes',
      help: 'Bytes held by the response cache backend.',
      registers,
      async collect() {
        this.set((await self.cacheCounters())?.bytes ?? 0);
      },
    });
  }

  /** Key configuration and runtime states, read on every scrape. */
  setKeySource(source: () => Promise<KeySnapshot>): void {
    this.keySource = source;
  }

  /** The store's (project, model) budget states (store.budgetStates), read on every scrape. */
  setBudgetSource(source: () => Promise<readonly BudgetState[]>): void {
    this.budgetSource = source;
  }

  setQueueSource(source: () => number): void {
    this.queueSource = source;
  }

  /** Hook for the response cache (src/cache): hits, misses and size, read on every scrape. */
  setCacheSource(source: () => Promise<CacheCounters>): void {
    this.cacheSource = source;
  }

  /** One answered HTTP request. */
  request(method: string, route: string, status: number, durationMs: number): void {
    this.httpDuration.series(method, route, String(status)).observe(durationMs / 1000);
  }

  /** How long a request waited in line for its pool key. */
  observeQueueWait(ms: number): void {
    this.queueWait.series().observe(ms / 1000);
  }

  /** Time the gateway itself added to an answer (total minus upstream and queue time). */
  observeOverhead(route: string, ms: number): void {
    this.overhead.series(route).observe(ms / 1000);
  }

  /** AttemptObserver: one event per upstream attempt, from the forwarder. */
  attempt(keyId: string, model: string, outcome: string, durationMs: number): void {
    const m = this.modelLabel(model);
    // Without per-key series the key_id label stays empty (Prometheus reads it as absent).
    this.upstreamRequests.series(this.perKeySeries() ? keyId : '', m, outcome).inc();
    this.upstreamDuration.series(m, outcome).observe(durationMs / 1000);
    if (outcome !== 'client_gone') this.noteLatency(keyId, durationMs);
    // Attribute the upstream time to the request being served (application routes).
    const ctx = requestContext.getStore();
    if (ctx) {
      ctx.upstreamMs += durationMs;
      ctx.upstreamAttempts += 1;
      ctx.keyId = keyId;
    }
  }

  /** One read of the key states shared by the gauges of a scrape; null when the store fails. */
  private keySnapshot(): Promise<KeySnapshot | null> {
    return this.keyRead.get(() => {
      const source = this.keySource;
      return source ? source().catch(() => null) : Promise.resolve(null);
    }, this.largePool());
  }

  private largePool(): boolean {
    return this.poolSize() > LARGE_POOL_KEYS;
  }

  /**
   * One read of the budget states per scrape, with the capacity computed from them and the key
   * snapshot; budgets limited to the models that get series (MAX_TRAFFIC_MODELS). Null when the
   * store fails or no source is set.
   */
  private budgetSnapshot(): Promise<BudgetSnapshot | null> {
    return this.budgetRead.get(() => {
      const source = this.budgetSource;
      if (!source) return Promise.resolve(null);
      const now = Date.now();
      return Promise.all([source(), this.keySnapshot()]).then(
        ([budgets, keys]) => budgetSeries(budgets, keys, now, this.perKey === 'true' ? 0 : this.maxProjects),
        () => null,
      );
    }, this.largePool());
  }

  private cacheCounters(): Promise<CacheCounters | null> {
    return this.cacheRead.get(() => {
      const source = this.cacheSource;
      return source ? source().catch(() => null) : Promise.resolve(null);
    }, false);
  }

  keyLatency(keyId: string): KeyLatency | undefined {
    return this.latency.get(keyId);
  }

  /** The exposition text; scrapes that arrive while one is being rendered share it. */
  render(): Promise<string> {
    if (this.rendering) return this.rendering;
    const rendering = this.renderer ? this.renderer() : this.registry.metrics();
    this.rendering = rendering;
    const clear = () => {
      if (this.rendering === rendering) this.rendering = null;
    };
    rendering.then(clear, clear);
    return rendering;
  }

  /** Whether series per key are shown for a pool of `keys` keys (METRICS_PER_KEY). */
  perKeySeries(keys = this.poolSize()): boolean {
    if (this.perKey === 'auto') return keys <= PER_KEY_AUTO_MAX_KEYS;
    return this.perKey === 'true';
  }

  /** What a scrape shows instead of this registry alone (a worker: its whole group's metrics). */
  setRenderer(renderer: () => Promise<string>): void {
    this.renderer = renderer;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private noteLatency(keyId: string, ms: number): void {
    const l = this.latency.get(keyId);
    if (!l) {
      this.latency.set(keyId, { lastMs: ms, avgMs: ms, samples: 1 });
      return;
    }
    l.lastMs = ms;
    l.samples += 1;
    // Exponential moving average: recent attempts weigh most.
    l.avgMs = l.avgMs + (ms - l.avgMs) * 0.2;
  }

  private modelLabel(model: string): string {
    if (model === '') return 'none';
    if (this.models.has(model)) return model;
    if (this.models.size >= MAX_MODELS) return 'other';
    this.models.add(model);
    return model;
  }
}

/**
 * A reading shared by the gauges of a scrape (they collect concurrently), kept SNAPSHOT_TTL_MS.
 * For a large pool a reading is made again every LARGE_POOL_REFRESH_MS in the background, for as
 * long as scrapes keep coming (KEEP_WARM_MS after the last), and a scrape shows the latest one
 * without waiting: however often anyone scrapes, the store is read at most once per
 * LARGE_POOL_REFRESH_MS, and a scrape costs only its rendering. Only a scrape that finds no
 * reading younger than two periods (the first, or the first after a quiet spell) waits for one.
 * `read` never rejects.
 */
class Memo<T> {
  private current: { at: number; value: Promise<T> } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastUsed = 0;

  get(read: () => Promise<T>, large: boolean): Promise<T> {
    const now = Date.now();
    const current = this.current;
    if (!large) {
      this.stop();
      if (current && now - current.at < SNAPSHOT_TTL_MS) return current.value;
    } else {
      this.lastUsed = now;
      this.keepWarm(read);
      if (current && now - current.at < 2 * LARGE_POOL_REFRESH_MS) return current.value;
    }
    const value = read();
    this.current = { at: now, value };
    return value;
  }

  private keepWarm(read: () => Promise<T>): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (Date.now() - this.lastUsed > KEEP_WARM_MS) {
        this.stop();
        return;
      }
      const value = read();
      void value.then(() => {
        this.current = { at: Date.now(), value };
      });
    }, LARGE_POOL_REFRESH_MS);
    this.timer.unref();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

interface BudgetSnapshot {
  nowMs: number;
  budgets: readonly BudgetState[];
  capacity: readonly ModelCapacity[];
}

type CapacityWindows = [requestsMinute: number, requestsDay: number, tokensMinute: number];

const budgetModelLabel = (model: string) => (model === '' ? 'none' : model);

/**
 * The budgets and capacities that get series: models named in some key's modelLimits, and the
 * MAX_TRAFFIC_MODELS most requested (today, then this minute) of the models seen only in traffic.
 */
function budgetSeries(
  budgets: readonly BudgetState[],
  keys: KeySnapshot | null,
  nowMs: number,
  maxProjects: number,
): BudgetSnapshot {
  const configs = keys?.configs ?? [];
  const configured = new Set<string>();
  for (const k of configs) for (const m of Object.keys(k.modelLimits)) configured.add(m);
  const traffic = new Map<string, { today: number; minute: number }>();
  for (const b of budgets) {
    if (configured.has(b.model)) continue;
    const t = traffic.get(b.model) ?? { today: 0, minute: 0 };
    t.today += b.requestsToday;
    t.minute += b.requestsThisMinute;
    traffic.set(b.model, t);
  }
  const allowed = new Set(configured);
  if (traffic.size <= MAX_TRAFFIC_MODELS) for (const m of traffic.keys()) allowed.add(m);
  else {
    const ranked = [...traffic].sort(
      ([ma, a], [mb, b]) => b.today - a.today || b.minute - a.minute || (ma < mb ? -1 : ma > mb ? 1 : 0),
    );
    for (const [m] of ranked.slice(0, MAX_TRAFFIC_MODELS)) allowed.add(m);
  }
  const kept = budgets.filter((b) => allowed.has(b.model));
  const capacity = computeCapacity({ configs, keyStates: keys?.states ?? [], budgets: kept, nowMs });
  return { nowMs, budgets: shownProjects(kept, maxProjects, nowMs), capacity };
}

/**
 * The budgets of at most `maxProjects` projects (0: all): those resting on some model first,
 * then the most requested today, then this minute, then by name. The per-model capacity series
 * still count every project.
 */
function shownProjects(
  budgets: readonly BudgetState[],
  maxProjects: number,
  nowMs: number,
): readonly BudgetState[] {
  if (maxProjects === 0) return budgets;
  const use = new Map<string, { resting: boolean; today: number; minute: number }>();
  for (const b of budgets) {
    const u = use.get(b.project) ?? { resting: false, today: 0, minute: 0 };
    if (b.restUntilMs !== null && b.restUntilMs > nowMs) u.resting = true;
    u.today += b.requestsToday;
    u.minute += b.requestsThisMinute;
    use.set(b.project, u);
  }
  if (use.size <= maxProjects) return budgets;
  const ranked = [...use].sort(
    ([pa, a], [pb, b]) =>
      Number(b.resting) - Number(a.resting) ||
      b.today - a.today ||
      b.minute - a.minute ||
      (pa < pb ? -1 : pa > pb ? 1 : 0),
  );
  const shown = new Set(ranked.slice(0, maxProjects).map(([p]) => p));
  return budgets.filter((b) => shown.has(b.project));
}

export type KeyStateName = 'available' | 'resting' | 'disabled' | 'circuit_open';

export function stateOf(s: KeyState, nowMs = Date.now()): KeyStateName {
  if (!s.enabled) return 'disabled';
  if (s.circuit === 'open') return 'circuit_open';
  if (s.restUntilMs !== null && s.restUntilMs > nowMs) return 'resting';
  return 'available';
}
