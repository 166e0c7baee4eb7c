import { readFileSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import { circuitOf } from './memory.ts';
import {
  type AcquireRequest,
  type AcquireResult,
  type CircuitSettings,
  type HitResult,
  type KeyState,
  type Outcome,
  type PoolKeyRecord,
  type Reservation,
  type StateStore,
  settledTokens,
} from './types.ts';

const script = (name: string) => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8');
/** The store's scripts, as the commands they are defined as on its client. */
const SCRIPTS = {
  ggAcquire: script('acquire'),
  ggReport: script('report'),
  ggSettle: script('settle'),
  ggBackoff: script('backoff'),
};

/**
 * What the store's client needs: auto-pipelining for the plain commands that callers issue
 * together (admin views, rate-limit counters), but not for the scripts. The store gathers its
 * acquires and settlements itself, and a pipeline of one around each call only costs the gateway
 * CPU (about 1.4 µs per request in the benchmark profile, a third of ioredis's own share).
 * ioredis matches ignored commands by the name a script is defined as, not by EVALSHA.
 */
export const REDIS_OPTIONS = {
  enableAutoPipelining: true,
  autoPipeliningIgnoredCommands: Object.keys(SCRIPTS),
} satisfies RedisOptions;
/** How long token settlements of clean successes are gathered before one script call applies them. */
const SETTLE_BATCH_MS = 20;
/**
 * Most acquires one script call carries, to bound how long one call holds Redis. (Unbatched,
 * auto-pipelining sent the same acquires in one write, and Redis ran them back to back too.)
 * 16 measured about 3% more gateway CPU per request than 32 at saturation.
 */
const ACQUIRE_BATCH_MAX = 32;
/** The real one, taken before any test's fake timers could replace it. */
const nextTurn = setImmediate;

interface PendingAcquire {
  req: AcquireRequest;
  resolve: (result: AcquireResult) => void;
  reject: (err: unknown) => void;
}

type ScriptedRedis = Redis & {
  ggAcquire(prefix: string, requests: string): Promise<string>;
  ggSettle(...args: (string | number)[]): Promise<number>;
  ggReport(...args: (string | number)[]): Promise<number>;
  ggBackoff(key: string, untilMs: number, ttlMs: number): Promise<number>;
};

/**
 * Shared state in Redis. Every pool decision is one Lua call (one round trip): choosing a key
 * and reserving its budget cannot interleave with another instance's choice.
 * Scripts touch keys under the configured prefix that they derive themselves, so this targets a
 * single Redis server (or a primary with replicas), not Redis Cluster.
 */
export class RedisStore implements StateStore {
  readonly kind = 'redis' as const;
  readonly redis: ScriptedRedis;
  private readonly p: string;
  private pendingSettle: (string | number)[] = [];
  /** The registry last written, rewritten after a reconnect that finds it gone (Redis lost its data). */
  private registry: readonly PoolKeyRecord[] | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  private pendingAcquires: PendingAcquire[] = [];
  private acquiresScheduled = false;
  /** Acquire calls sent and not answered yet. */
  private acquireCallsOut = 0;

  /** `redis` should be made with REDIS_OPTIONS. */
  constructor(redis: Redis, prefix: string) {
    this.p = prefix;
    for (const [name, lua] of Object.entries(SCRIPTS)) redis.defineCommand(name, { numberOfKeys: 0, lua });
    this.redis = redis as ScriptedRedis;
    redis.on('ready', () => void this.restoreRegistry());
  }

  private async restoreRegistry(): Promise<void> {
    if (!this.registry) return;
    try {
      if ((await this.redis.exists(`${this.p}keys`)) === 0) await this.syncKeys(this.registry);
    } catch {
      /* still unreachable: the next 'ready' tries again */
    }
  }

  static connect(url: string, prefix: string, options: RedisOptions = {}): RedisStore {
    return new RedisStore(new Redis(url, { ...REDIS_OPTIONS, maxRetriesPerRequest: 2, ...options }), prefix);
  }

  async syncKeys(keys: readonly PoolKeyRecord[]): Promise<void> {
    this.registry = keys;
    const listKey = `${this.p}keys`;
    const previous = await this.redis.lrange(listKey, 0, -1);
    const tx = this.redis.multi();
    const ids = new Set(keys.map((k) => k.id));
    for (const old of previous) if (!ids.has(old)) tx.del(`${this.p}k:${old}`);
    tx.del(listKey, `${this.p}ring`);
    if (keys.length > 0) {
      tx.rpush(listKey, ...keys.map((k) => k.id));
      // The acquire script's ring: position -> the key's configuration (format: acquire.lua).
      // A hash, because a list would be walked to reach a position.
      tx.hset(`${this.p}ring`, Object.fromEntries(keys.map((k, i) => [String(i), ringEntry(k)])));
    }
    // The key's hash holds what reports change, and what the admin views read.
    for (const k of keys)
      tx.hset(`${this.p}k:${k.id}`, { project: k.project, enabled: k.enabled ? '1' : '0' });
    await tx.exec();
  }

  /**
   * Acquires are gathered and sent together in one script call (when: see scheduleAcquires):
   * under load, the requests that arrive together share one command, one write and one reply,
   * and Redis runs their choices one after the other in a single atomic step.
   */
  acquire(req: AcquireRequest): Promise<AcquireResult> {
    return new Promise((resolve, reject) => {
      this.pendingAcquires.push({ req, resolve, reject });
      this.scheduleAcquires();
    });
  }

  /**
   * While a call is out, new acquires wait for its answer and then go together (group commit):
   * under load the batches grow instead of the calls, so Redis is woken, and runs its per-call
   * work, once per batch; with nothing out, a batch leaves at the end of the current turn.
   */
  private scheduleAcquires(): void {
    if (this.acquiresScheduled || this.acquireCallsOut > 0 || this.pendingAcquires.length === 0) return;
    this.acquiresScheduled = true;
    nextTurn(() => this.flushAcquires());
  }

  private flushAcquires(): void {
    this.acquiresScheduled = false;
    const pending = this.pendingAcquires;
    this.pendingAcquires = [];
    for (let i = 0; i < pending.length; i += ACQUIRE_BATCH_MAX) {
      this.sendAcquires(pending.slice(i, i + ACQUIRE_BATCH_MAX));
    }
  }

  private sendAcquires(pending: PendingAcquire[]): void {
    // acquire.lua's request format: a line per request, tab-separated, the model last (ids and
    // days hold no tabs). Model names are checked where requests come in; one with a line break
    // would shift every answer after it, so it is refused here too.
    const batch: PendingAcquire[] = [];
    let lines = '';
    for (const p of pending) {
      const { req } = p;
      if (req.model.includes('\n')) {
        p.reject(new Error('model name contains a line break'));
        continue;
      }
      lines += `${req.nowMs}\t${req.estimatedTokens}\t${req.day}\t${req.nextDayMs}\t${req.circuitProbeLeaseMs}\t${commaList(req.exclude)}\t${req.model}\n`;
      batch.push(p);
    }
    if (batch.length === 0) return;
    this.acquireCallsOut += 1;
    this.redis.ggAcquire(this.p, lines).then(
      (reply) => {
        this.acquireCallDone();
        const answers = reply.split('\n');
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(acquireResult(batch[i]!.req, answers[i]!));
      },
      (err: unknown) => {
        this.acquireCallDone();
        for (const pending of batch) pending.reject(err);
      },
    );
  }

  private acquireCallDone(): void {
    this.acquireCallsOut -= 1;
    this.scheduleAcquires();
  }

  async settleTokens(res: Reservation, actualTokens: number): Promise<void> {
    this.pendingSettle.push(res.project, res.tokenSlot, actualTokens - res.tokens);
    this.settleTimer ??= setTimeout(() => void this.flushSettlements(), SETTLE_BATCH_MS);
  }

  private async flushSettlements(): Promise<void> {
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = null;
    if (this.pendingSettle.length === 0) return;
    const batch = this.pendingSettle;
    this.pendingSettle = [];
    await this.redis.ggSettle(this.p, ...batch).catch(() => {
      /* the reservation stands: budgets err on the safe side */
    });
  }

  async report(res: Reservation, outcome: Outcome, nowMs: number, circuit: CircuitSettings): Promise<void> {
    const actual = settledTokens(outcome);
    if (actual !== undefined && actual !== res.tokens) {
      // Rare path (failures, rests): settle now, together with whatever is batched.
      this.pendingSettle.push(res.project, res.tokenSlot, actual - res.tokens);
      await this.flushSettlements();
    }
    await this.redis.ggReport(
      this.p,
      res.keyId,
      res.project,
      outcome.kind,
      ('reason' in outcome ? outcome.reason : undefined) ?? '',
      outcome.kind === 'rest' ? outcome.untilMs : 0,
      nowMs,
      res.probe ? 1 : 0,
      circuit.failureThreshold,
      circuit.cooldownMs,
      res.atMs,
      res.day,
    );
  }

  async setGlobalBackoff(untilMs: number, nowMs: number): Promise<void> {
    const ttl = untilMs - nowMs;
    if (ttl > 0) await this.redis.ggBackoff(`${this.p}global_backoff`, untilMs, ttl);
  }

  async setKeyEnabled(keyId: string, enabled: boolean, reason: string | null, nowMs: number): Promise<void> {
    const k = `${this.p}k:${keyId}`;
    if (!(await this.redis.exists(k))) return;
    if (enabled) await this.redis.hset(k, 'disabled', '', 'disabled_at', '');
    else await this.redis.hset(k, 'disabled', reason ?? 'disabled by admin', 'disabled_at', nowMs);
  }

  async resetKey(keyId: string): Promise<void> {
    const k = `${this.p}k:${keyId}`;
    const project = await this.redis.hget(k, 'project');
    if (project === null) return;
    await this.redis
      .multi()
      .hset(k, 'failures', 0, 'open_until', 0, 'probe_until', 0)
      .hdel(`${this.p}p:${project}`, 'rest_until', 'rest_reason')
      .exec();
  }

  async keyStates(nowMs: number, day: string): Promise<KeyState[]> {
    const ids = await this.redis.lrange(`${this.p}keys`, 0, -1);
    const hashes = await Promise.all(ids.map((id) => this.redis.hgetall(`${this.p}k:${id}`)));
    const nowSec = Math.floor(nowMs / 1000);
    return Promise.all(
      ids.map(async (id, i) => {
        const h = hashes[i]!;
        const pk = `${this.p}p:${h.project}`;
        const [project, log, tokens] = await Promise.all([
          this.redis.hgetall(pk),
          this.redis.lrange(`${pk}:log`, 0, -1),
          this.redis.hgetall(`${pk}:tok`),
        ]);
        const restUntil = Number(project.rest_until ?? 0);
        const configEnabled = h.enabled === '1';
        const disabled = h.disabled ? h.disabled : null;
        const openUntilMs = Number(h.open_until ?? 0);
        return {
          id,
          project: h.project ?? id,
          enabled: configEnabled && disabled === null,
          disabledReason: configEnabled ? disabled : 'disabled in configuration',
          disabledAtMs: h.disabled_at ? Number(h.disabled_at) : null,
          restUntilMs: restUntil > nowMs ? restUntil : null,
          restReason: restUntil > nowMs ? (project.rest_reason ?? null) : null,
          circuit: circuitOf({ openUntilMs }, nowMs),
          consecutiveFailures: Number(h.failures ?? 0),
          requestsThisMinute: log.filter((t) => Number(t) > nowMs - 60_000).length,
          requestsToday: project.day === day ? Number(project.day_count ?? 0) : 0,
          tokensThisMinute: Object.entries(tokens)
            .filter(([sec]) => Number(sec) > nowSec - 60)
            .reduce((sum, [, t]) => sum + Number(t), 0),
          lastError: h.last_error || null,
          lastErrorAtMs: h.last_error_at ? Number(h.last_error_at) : null,
        };
      }),
    );
  }

  async hit(name: string, windowMs: number, nowMs: number): Promise<HitResult> {
    const windowStart = nowMs - (nowMs % windowMs);
    const key = `${this.p}hit:${name}:${windowStart}`;
    const res = await this.redis
      .multi()
      .incr(key)
      .pexpire(key, windowMs + 1000)
      .exec();
    const count = Number(res?.[0]?.[1] ?? 0);
    return { count, resetAtMs: windowStart + windowMs };
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  async close(): Promise<void> {
    if (this.pendingAcquires.length > 0) this.flushAcquires();
    await this.flushSettlements();
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** acquire.lua's list format, searched for `,item,`: ",a,b," (or empty for none). */
function commaList(items: readonly string[]): string {
  return items.length ? `,${items.join(',')},` : '';
}

function ringEntry(k: PoolKeyRecord): string {
  return [k.id, k.project, commaList(k.models), k.enabled ? '1' : '0', k.rpm, k.rpd, k.tpm].join('\t');
}

/**
 * One line of acquire.lua's answer: `1 id project token_slot probe failures` or
 * `0 retry_at_ms global_backoff`, tab-separated (ids and projects hold no tabs: config/keys.ts).
 */
function acquireResult(req: AcquireRequest, line: string): AcquireResult {
  const r = line.split('\t');
  if (r[0] === '1') {
    const probe = r[4] === '1';
    return {
      ok: true,
      reservation: {
        keyId: r[1]!,
        project: r[2]!,
        tokenSlot: Number(r[3]),
        tokens: req.estimatedTokens,
        probe,
        clean: !probe && Number(r[5] || 0) === 0,
        atMs: req.nowMs,
        day: req.day,
      },
    };
  }
  const at = Number(r[1]);
  return { ok: false, retryAtMs: at < 0 ? null : at, globalBackoff: r[2] === '1' };
}
