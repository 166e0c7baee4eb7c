import {
  type AcquireRequest,
  type AcquireResult,
  type BudgetLimits,
  type BudgetState,
  type CircuitSettings,
  type HitResult,
  type KeyHealth,
  type KeyState,
  type Outcome,
  type OwnedResource,
  type PoolKeyRecord,
  type Reservation,
  type ResourceOwner,
  resourceKind,
  type StateStore,
  settledTokens,
} from './types.ts';

const MINUTE_MS = 60_000;
const WINDOW_S = 60;
/** Budgets held before the first sweep of idle ones (and the least count a sweep waits for). */
const MIN_BUDGET_SWEEP = 1024;

interface KeyRuntime {
  /** Not verified yet: carries one request at a time (the probe lease), like a half-open circuit. */
  unverified: boolean;
  disabledReason: string | null;
  disabledAtMs: number | null;
  failures: number;
  openUntilMs: number;
  probeUntilMs: number;
  lastError: string | null;
  lastErrorAtMs: number | null;
}

/** One (project, model) budget's use and rest. */
interface BudgetRuntime {
  /** Timestamps of admitted requests in the last minute, oldest first (at most rpm entries). */
  requestLog: number[];
  day: string;
  dayCount: number;
  tokens: TokenWindow;
  restUntilMs: number;
  restReason: string | null;
}

/** The embedded state store: the same semantics as RedisStore's Lua scripts, for one process. */
export class MemoryStore implements StateStore {
  readonly kind = 'memory' as const;
  private keys: PoolKeyRecord[] = [];
  private readonly runtime = new Map<string, KeyRuntime>();
  /** project -> model -> budget: two lookups, no key string built per acquire. */
  private readonly budgets = new Map<string, Map<string, BudgetRuntime>>();
  /** Budgets held, and the count at which the idle ones are next dropped (see sweepBudgets). */
  private budgetCount = 0;
  private sweepBudgetsAt = MIN_BUDGET_SWEEP;
  private roundRobin = 0;
  private globalBackoffUntilMs = 0;
  /** Fixed-window counters (hit), each with its own window: a sweep judges each by its own. */
  private readonly counters = new Map<string, { windowStart: number; windowMs: number; count: number }>();
  /** Admin-made clients (putClient): name → record, and their version. */
  private readonly clients = new Map<string, string>();
  private clientsVer = 0;
  /** addToCounter's counters: name → value and expiry. */
  private readonly expiring = new Map<string, { value: number; expiresAtMs: number }>();
  private readonly resources = new Map<string, OwnedResource>();
  /** Concurrency slots: scope → holder → lease end (epoch ms). */
  private readonly slots = new Map<string, Map<string, number>>();

  async syncKeys(keys: readonly PoolKeyRecord[], options: { unverified?: boolean } = {}): Promise<void> {
    this.keys = keys.map((k) => ({ ...k, models: [...k.models], modelLimits: { ...k.modelLimits } }));
    const ids = new Set(this.keys.map((k) => k.id));
    for (const id of this.runtime.keys()) if (!ids.has(id)) this.runtime.delete(id);
    for (const k of this.keys)
      if (!this.runtime.has(k.id)) this.runtime.set(k.id, newKeyRuntime(options.unverified === true));
  }

  async markVerified(keyId: string): Promise<void> {
    const rt = this.runtime.get(keyId);
    if (rt?.unverified) {
      rt.unverified = false;
      if (rt.openUntilMs === 0) rt.probeUntilMs = 0;
    }
  }

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    const now = req.nowMs;
    if (this.budgetCount >= this.sweepBudgetsAt) this.sweepBudgets(now, req.day);
    if (this.globalBackoffUntilMs > now)
      return { ok: false, retryAtMs: this.globalBackoffUntilMs, globalBackoff: true };
    const n = this.keys.length;
    if (n === 0) return { ok: false, retryAtMs: null, globalBackoff: false };
    this.roundRobin += 1;
    const start = this.roundRobin % n;
    let earliest = Number.POSITIVE_INFINITY;
    const nowSec = Math.floor(now / 1000);

    for (let i = 0; i < n; i++) {
      const key = this.keys[(start + i) % n]!;
      if (!key.enabled || req.exclude.includes(key.id)) continue;
      if (req.pin && ('keyId' in req.pin ? key.id !== req.pin.keyId : key.project !== req.pin.project))
        continue;
      if (req.model !== '' && key.models.length > 0 && !key.models.includes(req.model)) continue;
      const rt = this.runtime.get(key.id)!;
      if (rt.disabledReason !== null) continue;

      let probe = false;
      if (rt.openUntilMs > now) {
        earliest = Math.min(earliest, rt.openUntilMs);
        continue;
      }
      if (rt.openUntilMs > 0 || rt.unverified) {
        // Half-open: one probe at a time.
        if (rt.probeUntilMs > now) {
          earliest = Math.min(earliest, rt.probeUntilMs);
          continue;
        }
        probe = true;
      }

      const p = this.budget(key.project, req.model);
      if (p.restUntilMs > now) {
        earliest = Math.min(earliest, p.restUntilMs);
        continue;
      }
      const limits: BudgetLimits = key.modelLimits[req.model] ?? key;
      while (p.requestLog.length > 0 && p.requestLog[0]! <= now - MINUTE_MS) p.requestLog.shift();
      if (p.requestLog.length >= limits.rpm) {
        earliest = Math.min(earliest, p.requestLog[p.requestLog.length - limits.rpm]! + MINUTE_MS);
        continue;
      }
      // The newest day seen is counted: a request dated the day before (a clock still before
      // midnight, on Redis another instance's) counts into it instead of restarting the old one.
      if (req.day > p.day) {
        p.day = req.day;
        p.dayCount = 0;
      }
      if (p.dayCount >= limits.rpd) {
        earliest = Math.min(earliest, req.nextDayMs);
        continue;
      }
      const tokenWait = p.tokens.admission(nowSec, req.estimatedTokens, limits.tpm);
      if (tokenWait !== 0) {
        earliest = Math.min(earliest, tokenWait);
        continue;
      }

      // Admit: reserve every budget at once.
      p.requestLog.push(now);
      if (p.requestLog.length > limits.rpm) p.requestLog.splice(0, p.requestLog.length - limits.rpm);
      p.dayCount += 1;
      p.tokens.book(nowSec, req.estimatedTokens);
      if (probe) rt.probeUntilMs = now + req.circuitProbeLeaseMs;
      return {
        ok: true,
        reservation: {
          keyId: key.id,
          project: key.project,
          model: req.model,
          tokenSlot: nowSec,
          tokens: req.estimatedTokens,
          probe,
          clean: !probe && rt.failures === 0,
          atMs: now,
          day: req.day,
        },
      };
    }
    return { ok: false, retryAtMs: Number.isFinite(earliest) ? earliest : null, globalBackoff: false };
  }

  async settleTokens(res: Reservation, actualTokens: number): Promise<void> {
    this.budget(res.project, res.model).tokens.settle(res.tokenSlot, actualTokens - res.tokens);
  }

  async report(res: Reservation, outcome: Outcome, nowMs: number, circuit: CircuitSettings): Promise<void> {
    const rt = this.runtime.get(res.keyId);
    const p = this.budget(res.project, res.model);
    const actual = settledTokens(outcome);
    if (actual !== undefined) await this.settleTokens(res, actual);
    if (outcome.kind === 'unused') {
      // Never sent upstream: its request-log entry and its day count are given back too.
      const i = p.requestLog.lastIndexOf(res.atMs);
      if (i >= 0) p.requestLog.splice(i, 1);
      if (p.day === res.day && p.dayCount > 0) p.dayCount -= 1;
      // Left empty (a made-up model name Google refused): forgotten, as in Redis.
      if (isIdle(p, nowMs, res.day)) this.forgetBudget(res.project, res.model);
    }
    if (!rt) return; // removed meanwhile
    switch (outcome.kind) {
      case 'success':
        rt.failures = 0;
        rt.openUntilMs = 0;
        rt.probeUntilMs = 0;
        rt.unverified = false;
        break;
      case 'rest':
        rest(p, outcome.untilMs, outcome.reason);
        if (outcome.model !== undefined && outcome.model !== res.model)
          rest(this.budget(res.project, outcome.model), outcome.untilMs, outcome.reason);
        rt.probeUntilMs = 0;
        noteError(rt, outcome.reason, nowMs);
        break;
      case 'disable':
        rt.disabledReason = outcome.reason;
        rt.disabledAtMs = nowMs;
        noteError(rt, outcome.reason, nowMs);
        break;
      case 'failure':
        rt.failures += 1;
        if (res.probe || rt.failures >= circuit.failureThreshold) rt.openUntilMs = nowMs + circuit.cooldownMs;
        rt.probeUntilMs = 0;
        noteError(rt, outcome.reason, nowMs);
        break;
      case 'neutral':
        rt.probeUntilMs = 0;
        if (outcome.reason) noteError(rt, outcome.reason, nowMs);
        break;
      case 'unused':
        rt.probeUntilMs = 0;
        break;
    }
  }

  async setGlobalBackoff(untilMs: number, _nowMs: number): Promise<void> {
    this.globalBackoffUntilMs = Math.max(this.globalBackoffUntilMs, untilMs);
  }

  async setKeyEnabled(keyId: string, enabled: boolean, reason: string | null, nowMs: number): Promise<void> {
    const rt = this.runtime.get(keyId);
    if (!rt) return;
    rt.disabledReason = enabled ? null : (reason ?? 'disabled by admin');
    rt.disabledAtMs = enabled ? null : nowMs;
  }

  async resetKey(keyId: string): Promise<void> {
    const rt = this.runtime.get(keyId);
    const key = this.keys.find((k) => k.id === keyId);
    if (!rt || !key) return;
    rt.failures = 0;
    rt.openUntilMs = 0;
    rt.probeUntilMs = 0;
    for (const p of this.budgets.get(key.project)?.values() ?? []) {
      p.restUntilMs = 0;
      p.restReason = null;
    }
  }

  async keyStates(nowMs: number, day: string): Promise<KeyState[]> {
    const use = useByProject(await this.budgetStates(nowMs, day));
    return this.keys.map((k) => {
      const rt = this.runtime.get(k.id)!;
      return {
        id: k.id,
        project: k.project,
        ...(use.get(k.project) ?? NO_USE),
        enabled: k.enabled && rt.disabledReason === null,
        // The reason given at run time (an admin's, a verdict's) says more than the configuration's flag.
        disabledReason: rt.disabledReason ?? (k.enabled ? null : 'disabled in configuration'),
        disabledAtMs: rt.disabledAtMs,
        verified: !rt.unverified,
        circuit: circuitOf(rt, nowMs),
        consecutiveFailures: rt.failures,
        lastError: rt.lastError,
        lastErrorAtMs: rt.lastErrorAtMs,
      };
    });
  }

  async keyHealth(keyId: string): Promise<KeyHealth | null> {
    const k = this.keys.find((key) => key.id === keyId);
    const rt = this.runtime.get(keyId);
    if (!k || !rt) return null;
    return {
      enabled: k.enabled && rt.disabledReason === null,
      disabledReason: rt.disabledReason ?? (k.enabled ? null : 'disabled in configuration'),
    };
  }

  async budgetStates(nowMs: number, day: string): Promise<BudgetState[]> {
    const nowSec = Math.floor(nowMs / 1000);
    const out: BudgetState[] = [];
    for (const [project, models] of configuredBudgets(this.keys)) {
      const used = this.budgets.get(project);
      const names = new Set([...models.keys(), ...(used?.keys() ?? [])]);
      for (const model of names) {
        if (model === DEFAULT_BUDGET) continue;
        const limits = models.get(model) ?? models.get(DEFAULT_BUDGET)!;
        const p = used?.get(model);
        const resting = p !== undefined && p.restUntilMs > nowMs;
        out.push({
          project,
          model,
          ...limits,
          requestsThisMinute: p ? p.requestLog.filter((t) => t > nowMs - MINUTE_MS).length : 0,
          requestsToday: p && p.day === day ? p.dayCount : 0,
          tokensThisMinute: p ? p.tokens.used(nowSec) : 0,
          restUntilMs: resting ? p.restUntilMs : null,
          restReason: resting ? p.restReason : null,
        });
      }
    }
    return out;
  }

  async putResource(resource: OwnedResource): Promise<void> {
    if (this.resources.size > 10_000) {
      const now = Date.now();
      for (const [name, r] of this.resources) if (r.expiresAtMs <= now) this.resources.delete(name);
    }
    this.resources.set(resource.name, { ...resource, owner: { ...resource.owner } });
  }

  async getResources(names: readonly string[], nowMs: number): Promise<(ResourceOwner | null)[]> {
    return names.map((name) => {
      const r = this.resources.get(name);
      return r && r.expiresAtMs > nowMs ? r.owner : null;
    });
  }

  async deleteResource(name: string): Promise<void> {
    this.resources.delete(name);
  }

  async listResources(kind: string, client: string | null, nowMs: number): Promise<OwnedResource[]> {
    const out: OwnedResource[] = [];
    for (const r of this.resources.values())
      if (
        r.expiresAtMs > nowMs &&
        resourceKind(r.name) === kind &&
        (client === null || r.owner.client === client)
      )
        out.push(r);
    return out;
  }

  async acquireSlot(
    scope: string,
    holder: string,
    limit: number,
    ttlMs: number,
    nowMs: number,
  ): Promise<{ ok: boolean; held: number }> {
    const holders = this.liveSlots(scope, nowMs);
    if (!holders.has(holder) && holders.size >= limit) return { ok: false, held: holders.size };
    holders.set(holder, nowMs + ttlMs);
    this.slots.set(scope, holders);
    return { ok: true, held: holders.size };
  }

  async renewSlot(scope: string, holder: string, ttlMs: number, nowMs: number): Promise<void> {
    const holders = this.liveSlots(scope, nowMs);
    holders.set(holder, nowMs + ttlMs);
    this.slots.set(scope, holders);
  }

  async releaseSlot(scope: string, holder: string): Promise<void> {
    const holders = this.slots.get(scope);
    holders?.delete(holder);
    if (holders?.size === 0) this.slots.delete(scope);
  }

  /** The scope's holders whose lease has not run out. */
  private liveSlots(scope: string, nowMs: number): Map<string, number> {
    const holders = this.slots.get(scope) ?? new Map<string, number>();
    for (const [h, until] of holders) if (until <= nowMs) holders.delete(h);
    return holders;
  }

  async hit(name: string, windowMs: number, nowMs: number): Promise<HitResult> {
    const windowStart = nowMs - (nowMs % windowMs);
    const c = this.counters.get(name);
    if (!c || c.windowStart !== windowStart) {
      if (this.counters.size > 100_000) this.sweepCounters(nowMs);
      this.counters.set(name, { windowStart, windowMs, count: 1 });
      return { count: 1, resetAtMs: windowStart + windowMs };
    }
    c.count += 1;
    return { count: c.count, resetAtMs: windowStart + windowMs };
  }

  async putClient(name: string, record: string, ifAbsent = false): Promise<number | null> {
    if (ifAbsent && this.clients.has(name)) return null;
    this.clients.set(name, record);
    return ++this.clientsVer;
  }

  async deleteClient(name: string): Promise<number | null> {
    if (!this.clients.delete(name)) return null;
    return ++this.clientsVer;
  }

  async clientsVersion(): Promise<number> {
    return this.clientsVer;
  }

  async listClients(): Promise<{ version: number; records: Record<string, string> }> {
    return { version: this.clientsVer, records: Object.fromEntries(this.clients) };
  }

  async addToCounter(name: string, delta: number, expiresAtMs: number): Promise<number> {
    const now = Date.now();
    if (this.expiring.size > 100_000)
      for (const [k, v] of this.expiring) if (v.expiresAtMs <= now) this.expiring.delete(k);
    const c = this.expiring.get(name);
    const value = (c && c.expiresAtMs > now ? c.value : 0) + delta;
    this.expiring.set(name, { value, expiresAtMs });
    return value;
  }

  async readCounter(name: string, nowMs: number): Promise<number> {
    const c = this.expiring.get(name);
    return c && c.expiresAtMs > nowMs ? c.value : 0;
  }

  /**
   * Use learned elsewhere (FailoverStore seeds a fresh local store with its share of what Redis
   * last showed, before any acquire): request times (any order), the day's count, token
   * seconds and a rest, added to what the budget holds.
   */
  seedBudget(
    project: string,
    model: string,
    seed: {
      log: readonly number[];
      day: string;
      dayCount: number;
      tokens: ReadonlyMap<number, number>;
      restUntilMs: number;
      restReason: string | null;
    },
  ): void {
    const p = this.budget(project, model);
    if (seed.log.length > 0) p.requestLog = [...p.requestLog, ...seed.log].sort((a, b) => a - b);
    if (seed.day > p.day) {
      p.day = seed.day;
      p.dayCount = seed.dayCount;
    } else if (seed.day === p.day) p.dayCount += seed.dayCount;
    for (const [sec, n] of seed.tokens) if (n > 0) p.tokens.book(sec, n);
    rest(p, seed.restUntilMs, seed.restReason ?? '');
  }

  /** A key's state learned elsewhere (see seedBudget): disabled, not verified yet, circuit open until. */
  seedKey(
    keyId: string,
    seed: {
      disabledReason: string | null;
      disabledAtMs: number | null;
      unverified: boolean;
      openUntilMs: number;
    },
  ): void {
    const rt = this.runtime.get(keyId);
    if (!rt) return;
    rt.disabledReason = seed.disabledReason;
    rt.disabledAtMs = seed.disabledAtMs;
    rt.unverified = seed.unverified;
    rt.openUntilMs = seed.openUntilMs;
  }

  async ping(): Promise<void> {}
  async close(): Promise<void> {}

  /** Drops the counters whose own window has ended (not the caller's: a 1 s sweep must keep live 60 s counters). */
  private sweepCounters(nowMs: number): void {
    for (const [k, v] of this.counters) if (v.windowStart + v.windowMs <= nowMs) this.counters.delete(k);
  }

  /**
   * Drops the budgets with nothing to remember: no request in the last minute, no token in the
   * window, none counted today, no rest running. Every well-formed model name gets a budget,
   * so made-up names (refused by Google, their reservations given back) would otherwise pile up.
   * Runs when the count doubles: amortized constant time per budget made.
   */
  private sweepBudgets(nowMs: number, day: string): void {
    for (const [project, models] of this.budgets) {
      for (const [model, p] of models) if (isIdle(p, nowMs, day)) models.delete(model);
      if (models.size === 0) this.budgets.delete(project);
    }
    this.budgetCount = 0;
    for (const models of this.budgets.values()) this.budgetCount += models.size;
    this.sweepBudgetsAt = Math.max(MIN_BUDGET_SWEEP, 2 * this.budgetCount);
  }

  private forgetBudget(project: string, model: string): void {
    const models = this.budgets.get(project);
    if (!models?.delete(model)) return;
    this.budgetCount -= 1;
    if (models.size === 0) this.budgets.delete(project);
  }

  private budget(project: string, model: string): BudgetRuntime {
    let models = this.budgets.get(project);
    if (!models) {
      models = new Map();
      this.budgets.set(project, models);
    }
    let p = models.get(model);
    if (!p) {
      p = {
        requestLog: [],
        day: '',
        dayCount: 0,
        tokens: new TokenWindow(),
        restUntilMs: 0,
        restReason: null,
      };
      models.set(model, p);
      this.budgetCount += 1;
    }
    return p;
  }
}

/** Nothing to remember: no request in the last minute, no token in the window, none counted today, no rest. */
function isIdle(p: BudgetRuntime, nowMs: number, day: string): boolean {
  return (
    (p.requestLog.length === 0 || p.requestLog[p.requestLog.length - 1]! <= nowMs - MINUTE_MS) &&
    p.tokens.used(Math.floor(nowMs / 1000)) === 0 &&
    (p.dayCount === 0 || p.day < day) &&
    p.restUntilMs <= nowMs
  );
}

function rest(p: BudgetRuntime, untilMs: number, reason: string): void {
  if (untilMs > p.restUntilMs) {
    p.restUntilMs = untilMs;
    p.restReason = reason;
  }
}

/** The key of every model not named in a project's modelLimits, in configuredBudgets. */
export const DEFAULT_BUDGET = '\u0000default';

/**
 * Each project's configured budgets: its first key's (configuration order, as acquire meets
 * them when keys of a project agree) named models, and under DEFAULT_BUDGET every other model's.
 */
export function configuredBudgets(keys: readonly PoolKeyRecord[]): Map<string, Map<string, BudgetLimits>> {
  const out = new Map<string, Map<string, BudgetLimits>>();
  for (const k of keys) {
    if (out.has(k.project)) continue;
    const models = new Map<string, BudgetLimits>([[DEFAULT_BUDGET, { rpm: k.rpm, rpd: k.rpd, tpm: k.tpm }]]);
    for (const [model, l] of Object.entries(k.modelLimits))
      models.set(model, { rpm: l.rpm, rpd: l.rpd, tpm: l.tpm });
    out.set(k.project, models);
  }
  return out;
}

type ProjectUse = Pick<
  KeyState,
  'requestsThisMinute' | 'requestsToday' | 'tokensThisMinute' | 'restUntilMs' | 'restReason'
>;
/** A project with no budget in use. */
export const NO_USE: ProjectUse = {
  requestsThisMinute: 0,
  requestsToday: 0,
  tokensThisMinute: 0,
  restUntilMs: null,
  restReason: null,
};

/**
 * Each project's use as its keys show it: requests and tokens summed over its models, and the
 * longest rest among them (named with its model).
 */
export function useByProject(budgets: readonly BudgetState[]): Map<string, ProjectUse> {
  const out = new Map<string, ProjectUse>();
  for (const b of budgets) {
    const u = out.get(b.project) ?? { ...NO_USE };
    u.requestsThisMinute += b.requestsThisMinute;
    u.requestsToday += b.requestsToday;
    u.tokensThisMinute += b.tokensThisMinute;
    if (b.restUntilMs !== null && (u.restUntilMs === null || b.restUntilMs > u.restUntilMs)) {
      u.restUntilMs = b.restUntilMs;
      u.restReason = `${b.model || 'any model'}: ${b.restReason}`;
    }
    out.set(b.project, u);
  }
  return out;
}

function newKeyRuntime(unverified: boolean): KeyRuntime {
  return {
    unverified,
    disabledReason: null,
    disabledAtMs: null,
    failures: 0,
    openUntilMs: 0,
    probeUntilMs: 0,
    lastError: null,
    lastErrorAtMs: null,
  };
}

function noteError(rt: KeyRuntime, reason: string, nowMs: number): void {
  rt.lastError = reason;
  rt.lastErrorAtMs = nowMs;
}

export function circuitOf(rt: { openUntilMs: number }, nowMs: number): KeyState['circuit'] {
  if (rt.openUntilMs === 0) return 'closed';
  return rt.openUntilMs > nowMs ? 'open' : 'half_open';
}

/**
 * Input tokens reserved (and settled) per epoch second over the rolling minute, with their running
 * sum: slots that left the minute are dropped when the clock enters a new second, not summed
 * again on every acquire (a busy project has up to 60 slots).
 */
class TokenWindow {
  private readonly slots = new Map<number, number>();
  private sum = 0;
  private trimmedAt = Number.NaN;

  /** Tokens in the minute that ends with second `nowSec`. */
  used(nowSec: number): number {
    if (nowSec !== this.trimmedAt) {
      this.trimmedAt = nowSec;
      for (const [sec, tokens] of this.slots) {
        if (sec <= nowSec - WINDOW_S) {
          this.slots.delete(sec);
          this.sum -= tokens;
        }
      }
    }
    return this.sum;
  }

  book(sec: number, tokens: number): void {
    this.slots.set(sec, (this.slots.get(sec) ?? 0) + tokens);
    this.sum += tokens;
  }

  /** Corrects a slot by `delta` (never below zero); a slot that left the minute stays gone. */
  settle(sec: number, delta: number): void {
    const slot = this.slots.get(sec);
    if (slot === undefined) return;
    const next = Math.max(0, slot + delta);
    this.slots.set(sec, next);
    this.sum += next - slot;
  }

  /**
   * 0 when `tokens` fit in the rolling minute (a lone request larger than the limit is let through
   * when nothing else is in the window, or it could never be served); otherwise the epoch ms when
   * enough of the window will have expired.
   */
  admission(nowSec: number, tokens: number, limit: number): number {
    const used = this.used(nowSec);
    if (used === 0 || used + tokens <= limit) return 0;
    const ordered = [...this.slots.entries()].sort((a, b) => a[0] - b[0]);
    let remaining = used;
    for (const [sec, t] of ordered) {
      remaining -= t;
      if (remaining === 0 || remaining + tokens <= limit) return (sec + WINDOW_S) * 1000;
    }
    return (nowSec + WINDOW_S) * 1000;
  }
}
