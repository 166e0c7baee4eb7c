/**
 * The one state interface. Two implementations: MemoryStore (embedded default) and RedisStore
 * (shared by every instance; each pool operation is one atomic Lua call). test/contract runs
 * the same suite against both.
 */

/** One budget: requests per minute, requests per Pacific day, input tokens per minute. */
export interface BudgetLimits {
  rpm: number;
  rpd: number;
  tpm: number;
}

/**
 * A key as the budget accounting sees it (no secret). Budgets are per (project, model), as
 * Google counts them: keys of one project share each model's budget and rests.
 */
export interface PoolKeyRecord extends BudgetLimits {
  id: string;
  /** Keys with the same project share every (project, model) budget and rest. */
  project: string;
  /** Allowed models; empty = all. */
  models: string[];
  enabled: boolean;
  /** Budgets of named models (normalized names); rpm/rpd/tpm above serve every other model. */
  modelLimits: Readonly<Record<string, BudgetLimits>>;
}

export interface AcquireRequest {
  /**
   * Model the request is for (normalized: pool/models.ts); '' = any (model listing), so keys
   * restricted to models still qualify. The budget spent is the (project, model) one.
   */
  model: string;
  /** Input tokens reserved before sending; settled with usageMetadata afterwards. */
  estimatedTokens: number;
  nowMs: number;
  /** Pacific calendar day (YYYY-MM-DD) of nowMs: the requests-per-day bucket. */
  day: string;
  /** Start of the next Pacific day, when a day-exhausted project frees up. */
  nextDayMs: number;
  /** Keys already tried for this request. */
  exclude: readonly string[];
  /**
   * Only keys of this project (a request that uses a file, cache, batch, operation or interaction
   * of that project: Google refuses another project's resources), or only this key (an upload
   * session bound to the key that started it).
   */
  pin?: Pin;
  circuitProbeLeaseMs: number;
}

export type Pin = { project: string } | { keyId: string };

export interface Reservation {
  keyId: string;
  project: string;
  /** The budget's model (normalized; '' for model listing). */
  model: string;
  /** Second (epoch s) whose token bucket holds the reservation. */
  tokenSlot: number;
  tokens: number;
  /** The key was half-open: this request is its circuit probe. */
  probe: boolean;
  /** No failures on record and not a probe: a success needs no circuit bookkeeping. */
  clean: boolean;
  /** When it was booked (its entry in the project's request log) and the Pacific day it counts in. */
  atMs: number;
  day: string;
}

export type AcquireResult =
  | { ok: true; reservation: Reservation }
  /** retryAtMs: earliest time a key may free up; null when no key can ever serve this model. */
  | { ok: false; retryAtMs: number | null; globalBackoff: boolean };

export type Outcome =
  | { kind: 'success'; actualTokens?: number }
  /**
   * Upstream rate-limited the (project, model): no key of the project serves that model until
   * untilMs. `model`: the model the quota named, when it is not the reservation's (that one rests too).
   */
  | { kind: 'rest'; untilMs: number; reason: string; model?: string; actualTokens?: number }
  /** The key itself is dead (invalid, leaked, suspended, service disabled). */
  | { kind: 'disable'; reason: string }
  /** 5xx / timeout / network: counts toward the circuit breaker. */
  | { kind: 'failure'; reason: string; actualTokens?: number }
  /**
   * Neither the key's fault nor a success (503 overloaded, client error, a stream whose client
   * left): releases a probe only. `actualTokens`: what the request was billed, when known.
   */
  | { kind: 'neutral'; reason?: string; actualTokens?: number }
  /**
   * Never sent upstream (its waiter left, or this instance lacks the key's secret), or refused by
   * Google before any quota counted it (a model it does not know): the request, its day count
   * and its tokens are given back, and a probe is released. A budget left empty is forgotten.
   */
  | { kind: 'unused' };

/** The input tokens a report settles its reservation to; undefined keeps the estimate. */
export function settledTokens(outcome: Outcome): number | undefined {
  if (outcome.kind === 'unused') return 0; // nothing went upstream
  return 'actualTokens' in outcome ? outcome.actualTokens : undefined;
}

export interface CircuitSettings {
  failureThreshold: number;
  cooldownMs: number;
}

export interface KeyState {
  id: string;
  project: string;
  enabled: boolean;
  disabledReason: string | null;
  disabledAtMs: number | null;
  /** Answered a verification call (or a request) since it joined the pool. */
  verified: boolean;
  /** The longest rest among its project's models (restReason names the model). */
  restUntilMs: number | null;
  restReason: string | null;
  circuit: 'closed' | 'open' | 'half_open';
  consecutiveFailures: number;
  /** Requests and tokens of its project, all models together. */
  requestsThisMinute: number;
  requestsToday: number;
  tokensThisMinute: number;
  lastError: string | null;
  lastErrorAtMs: number | null;
}

/** One (project, model) budget: its limits, what is used and its rest. */
export interface BudgetState extends BudgetLimits {
  project: string;
  /** Normalized model name; '' = requests for no model (model listing). */
  model: string;
  requestsThisMinute: number;
  requestsToday: number;
  tokensThisMinute: number;
  restUntilMs: number | null;
  restReason: string | null;
}

/** Who made a stateful resource (a file, cached content, batch, operation, interaction). */
export interface ResourceOwner {
  /** Google refuses the resource to every other project's keys. */
  project: string;
  keyId: string;
  /** The gateway client that made it: only it (and admins) may see, use or delete it. */
  client: string;
  /** What its route needs beyond ownership (an upload session: the upstream upload URL). */
  detail?: string;
}

export interface OwnedResource {
  /** Google's name, e.g. `files/abc`, `cachedContents/x`, `batches/y`, `models/veo/operations/z`. */
  name: string;
  owner: ResourceOwner;
  expiresAtMs: number;
}

/** `files/a` → files; `models/veo-3/operations/x` → operations; `cachedContents/x` → cachedContents. */
export function resourceKind(name: string): string {
  if (name.startsWith('models/') && name.includes('/operations/')) return 'operations';
  const slash = name.indexOf('/');
  return slash < 0 ? name : name.slice(0, slash);
}

export type KeyHealth = Pick<KeyState, 'enabled' | 'disabledReason'>;

export interface HitResult {
  count: number;
  /** When the current window ends (epoch ms). */
  resetAtMs: number;
}

export interface StateStore {
  readonly kind: 'memory' | 'redis';

  /**
   * Replaces the key registry; runtime state (usage, rests, disables) of kept keys survives.
   * With `unverified`, keys new to the store start unverified: like a half-open circuit, such a
   * key carries at most one request at a time (across instances) until markVerified or a success.
   */
  syncKeys(keys: readonly PoolKeyRecord[], options?: { unverified?: boolean }): Promise<void>;
  /** The key answered a verification call: it carries traffic without the one-at-a-time rule. */
  markVerified(keyId: string): Promise<void>;
  /** Round-robin choice of a key with budget, and reservation of that budget: one atomic step. */
  acquire(req: AcquireRequest): Promise<AcquireResult>;
  /**
   * Settles the token reservation of a clean success (the common case). Redis batches these
   * into one script call every few milliseconds, so the hot path stays at one round trip.
   */
  settleTokens(res: Reservation, actualTokens: number): Promise<void>;
  /** Settles a reservation with the upstream outcome (tokens, rests, disables, circuit). */
  report(res: Reservation, outcome: Outcome, nowMs: number, circuit: CircuitSettings): Promise<void>;
  /** Every instance stops using all keys until untilMs (suspected per-IP throttling). */
  setGlobalBackoff(untilMs: number, nowMs: number): Promise<void>;
  setKeyEnabled(keyId: string, enabled: boolean, reason: string | null, nowMs: number): Promise<void>;
  /** Clears a rest and an open circuit. */
  resetKey(keyId: string): Promise<void>;
  keyStates(nowMs: number, day: string): Promise<KeyState[]>;
  /** One key's enabled flag and disable reason (null: unknown key): cheap, for per-key checks. */
  keyHealth(keyId: string): Promise<KeyHealth | null>;
  /**
   * Every (project, model) budget that is configured (a model in some key's modelLimits) or has
   * been used, with its use and rest.
   */
  budgetStates(nowMs: number, day: string): Promise<BudgetState[]>;

  /** Records who owns a resource until expiresAtMs (its own lifetime at Google). */
  putResource(resource: OwnedResource): Promise<void>;
  /** The owners of `names`, in order (null: unknown or expired). */
  getResources(names: readonly string[], nowMs: number): Promise<(ResourceOwner | null)[]>;
  deleteResource(name: string): Promise<void>;
  /** The live resources of a kind (resourceKind), of one client (null: every client). */
  listResources(kind: string, client: string | null, nowMs: number): Promise<OwnedResource[]>;

  /**
   * Concurrency slots with leases (Live sessions per project and model, across instances): takes
   * one of `limit` slots of `scope` for `holder` until nowMs + ttlMs. Holders whose lease ran out
   * (an instance that crashed) no longer count. A holder that already has a slot keeps it (its
   * lease is extended). `held`: the scope's live holders afterwards (or when refused).
   */
  acquireSlot(
    scope: string,
    holder: string,
    limit: number,
    ttlMs: number,
    nowMs: number,
  ): Promise<{ ok: boolean; held: number }>;
  /** Extends a holder's lease (taking its slot again if it had lapsed, whatever the limit). */
  renewSlot(scope: string, holder: string, ttlMs: number, nowMs: number): Promise<void>;
  releaseSlot(scope: string, holder: string): Promise<void>;

  /** Fixed-window counter: increments `name` in the window containing nowMs. */
  hit(name: string, windowMs: number, nowMs: number): Promise<HitResult>;

  /**
   * Gateway clients made through the admin API (src/clients/), shared by every instance: each a
   * JSON record (a token only as its SHA-256), under a version that grows with every change.
   * putClient writes one (with ifAbsent, only when the name is free: null when it is taken) and
   * returns the new version.
   */
  putClient(name: string, record: string, ifAbsent?: boolean): Promise<number | null>;
  /** Removes a client: the new version, or null when there was no such client. */
  deleteClient(name: string): Promise<number | null>;
  /** The clients' version (0 when none was ever written): one read, per request of such a client. */
  clientsVersion(): Promise<number>;
  /** Every client's record, by name, and the version they are of, read in one step. */
  listClients(): Promise<{ version: number; records: Record<string, string> }>;
  /** Adds `delta` to counter `name`, which expires at expiresAtMs (clients' per-day budgets); its new value. */
  addToCounter(name: string, delta: number, expiresAtMs: number): Promise<number>;
  /** A counter of addToCounter (0 when absent or expired). */
  readCounter(name: string, nowMs: number): Promise<number>;

  ping(): Promise<void>;
  close(): Promise<void>;
}
