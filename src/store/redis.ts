import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis, RedisOptions } from 'ioredis';
import { UsageJournal } from './journal.ts';
import { circuitOf, configuredBudgets, DEFAULT_BUDGET, NO_USE, useByProject } from './memory.ts';
import { commandTimeoutOf, createRedisClient, redisRunId } from './redis-client.ts';
import { RedisHeard } from './redis-heard.ts';
import {
  type AcquireRequest,
  type AcquireResult,
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

const lua = (name: string) => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8');
/** Each script with the shared library (Redis's clock, the key layout, the registry) before it. */
const script = (name: string) => `${lua('lib')}\n${lua(name)}`;
/** The store's scripts, as the commands they are defined as on its client. */
const SCRIPTS = {
  ggAcquire: script('acquire'),
  ggReport: script('report'),
  ggSettle: script('settle'),
  ggBackoff: script('backoff'),
  ggRegistry: script('registry'),
  ggReseed: script('reseed'),
  ggSlot: script('slot'),
};

// The client's options (REDIS_OPTIONS in redis-client.ts) skip auto-pipelining for the scripts
// named in its STORE_SCRIPT_NAMES: a script added here is named there too (a test compares them).
/** How long token settlements of clean successes are gathered before one script call applies them. */
const SETTLE_BATCH_MS = 20;
/**
 * Most acquires one script call carries, to bound how long one call holds Redis. (Unbatched,
 * auto-pipelining sent the same acquires in one write, and Redis ran them back to back too.)
 * Not lower: every script call has a fixed cost on the gateway's side (encoding, a write, a
 * reply to decode), so smaller batches cost more per request under load.
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
  ggAcquire(prefix: string, generation: string, requests: string, deadline: string): Promise<string>;
  ggRegistry(prefix: string, unverified: string, generation: string, entries: string): Promise<string>;
  ggReseed(...args: string[]): Promise<string>;
  ggSettle(...args: (string | number)[]): Promise<number>;
  ggReport(...args: (string | number)[]): Promise<number>;
  ggBackoff(key: string, untilMs: number, ttlMs: number, instanceClock: string): Promise<number>;
  ggSlot(key: string, holder: string, limit: string, ttlMs: string, clock: string): Promise<string>;
};

/**
 * Shared state in Redis. Every pool decision is one Lua call (one round trip): choosing a key
 * and reserving its budget cannot interleave with another instance's choice.
 * Scripts touch keys under the configured prefix that they derive themselves (the prefix comes
 * in ARGV). On a Redis Cluster the prefix is a hash tag (clusterPrefix in redis-client.ts), so
 * every key of the store is in one slot, and each script call is routed there by one real key.
 */
export class RedisStore implements StateStore {
  readonly kind = 'redis' as const;
  readonly redis: ScriptedRedis;
  private readonly p: string;
  private pendingSettle: (string | number)[] = [];
  /** The registry last written, written again when Redis lost its data (reseed). */
  private registry: readonly PoolKeyRecord[] = [];
  private unverified = false;
  /** The generation of Redis's data this instance knows (registry.lua); '' before syncKeys. */
  private generation = '';
  /** What this instance spent, to re-seed a Redis that lost its data. */
  private readonly journal = new UsageJournal();
  private reseeding: Promise<void> | null = null;
  /** Redis's clock minus this instance's, as last seen in an acquire answer. */
  private clockSkewMs = 0;
  /** The Pacific day of the last admitted acquire (the journal's day counts are of that day). */
  private lastDay = '';
  private settleTimer: NodeJS.Timeout | null = null;
  private pendingAcquires: PendingAcquire[] = [];
  private acquiresScheduled = false;
  /** Acquire calls sent and not answered yet. */
  private acquireCallsOut = 0;
  /**
   * After an acquire timed out, the connection is stalled until ioredis's socket timeout drops it
   * (moments later): a batch written to it meanwhile would be lost with it, its callers told it
   * failed, and yet run by Redis when it resumes, booking requests never sent. Until the
   * connection closes (or a command timeout has passed), acquires fail at once, unwritten.
   * The shortened deadline (`heard`, below) refuses them already while the connection's socket
   * is known; the hold also covers the moments it is not (a Cluster that has not mapped the
   * store's slot to a node yet).
   */
  private holdAcquiresUntilMs = 0;
  /** A wait for the scripts' connection to be ready again (connectionRenewed). */
  private renewal: { connection: Redis; ready: Promise<boolean> } | null = null;
  /** When the scripts' connection (a Cluster's: the node serving the store's slot) last heard from Redis. */
  private readonly heard: RedisHeard;

  /**
   * Windows are measured on Redis's clock (TIME), so instances whose clocks differ count alike.
   * With instanceClock, the requests' own nowMs is used instead: only for tests that drive the
   * windows with a fake clock (the contract suite).
   */
  private readonly instanceClock: boolean;

  /** `redis` should be made by createRedisClient (redis-client.ts): timeouts, no replays. */
  constructor(redis: Redis, prefix: string, options: { instanceClock?: boolean } = {}) {
    this.p = prefix;
    this.instanceClock = options.instanceClock === true;
    // Each script is given one real key, the generation key, ahead of its arguments (KEYS[1],
    // which the scripts do not read: their arguments stay ARGV as they were): a Cluster client
    // sends a script to the node of its first key, and a script without keys to a random node.
    const route = `${prefix}gen`;
    for (const [name, lua] of Object.entries(SCRIPTS)) {
      redis.defineCommand(name, { numberOfKeys: 1, lua });
      const call = (redis as unknown as Record<string, (...args: unknown[]) => unknown>)[name]!.bind(redis);
      Object.assign(redis, { [name]: (...args: unknown[]) => call(route, ...args) });
    }
    this.redis = redis as ScriptedRedis;
    // A Cluster's scripts moved to another node (a failover): did that server keep the last writes?
    this.heard = new RedisHeard(redis, route, () => this.checkServerSoon());
    redis.on('close', () => {
      this.holdAcquiresUntilMs = 0;
    });
    // After a reconnect, check at once whether Redis kept its data (the next acquire would too).
    redis.on('ready', () => this.checkServerSoon());
  }

  /** A check of the server (checkServer) is owed: asked for, or the last one failed. */
  private serverCheckDue = false;
  private serverCheck: Promise<void> | null = null;

  /**
   * Checks the server in the background (after a reconnect, or when a Cluster's scripts moved to
   * another node). A check that fails (the new server not reachable yet) is tried again with the
   * next acquire call until one completes.
   */
  private checkServerSoon(): void {
    // Before the first syncKeys there is nothing to check: it reads the generation and the server.
    if (this.generation === '') return;
    this.serverCheckDue = true;
    if (this.serverCheck) return;
    this.serverCheckDue = false;
    this.serverCheck = this.checkServer()
      .catch(() => {
        this.serverCheckDue = true;
      })
      .finally(() => {
        this.serverCheck = null;
      });
  }

  /** The server (INFO run_id) this instance last talked to; null: not known (yet). */
  private runId: string | null = null;
  /** The server this instance's journal was last added to (a re-seed); null: none yet. */
  private seededRunId: string | null = null;

  /**
   * After a reconnect: a Redis without this instance's generation lost its data (re-seeded from
   * the journal). One with it but another run_id is another server (a Sentinel failover to a
   * replica, a restart from a snapshot): replication and snapshots lag, so the last writes may be
   * missing. Each instance adds its last minute again (its request times, token seconds and those
   * requests in the day's count): counted twice at worst, for one minute. In a Cluster the
   * server is the master serving the store's slot (checked when the scripts move to another node).
   */
  private async checkServer(): Promise<void> {
    const gen = await this.redis.get(`${this.p}gen`);
    const before = this.runId;
    // Not known (a Cluster slot without a live node yet): the next move of the scripts checks again.
    this.runId = (await this.scriptServerRunId()) ?? before;
    if (gen !== this.generation) return this.reseed();
    if (before === null || this.runId === null || before === this.runId) return;
    // An acquire that met the new server first may have re-seeded it already (its whole journal,
    // which holds this last minute): adding the minute again would count it twice.
    if (this.reseeding) await this.reseeding;
    if (this.seededRunId === this.runId) return;
    this.seededRunId = this.runId;
    const now = Date.now();
    const text = this.journal.text(now, now + this.clockSkewMs, this.lastDay, true);
    if (text !== '')
      await this.redis.ggReseed(
        this.p,
        '',
        randomUUID(),
        this.unverified ? '1' : '0',
        this.registry.map(ringEntry).join('\n'),
        text,
        String(now),
      );
  }

  /** The run_id of the server the scripts go to (a Cluster's: the slot's master); null: not known. */
  private async scriptServerRunId(): Promise<string | null> {
    const connection = this.heard.scriptConnection();
    return connection ? redisRunId(connection) : null;
  }

  /**
   * Redis lost its data, or another instance already re-seeded it: add this instance's journal
   * to the copy in force (once per generation; reseed.lua) and adopt its generation. One at a time.
   */
  private reseed(): Promise<void> {
    this.reseeding ??= (async () => {
      try {
        const now = Date.now();
        const redisNow = now + this.clockSkewMs;
        this.generation = await this.redis.ggReseed(
          this.p,
          this.generation,
          randomUUID(),
          this.unverified ? '1' : '0',
          this.registry.map(ringEntry).join('\n'),
          this.journal.text(now, redisNow, this.lastDay),
          String(now),
        );
        // The server this journal now lives on (checkServer adds nothing more to it).
        this.seededRunId = await this.scriptServerRunId();
        this.runId = this.seededRunId ?? this.runId;
      } finally {
        this.reseeding = null;
      }
    })();
    return this.reseeding;
  }

  /** Journals addSpend took in already (one called again after a failure is not taken in twice). */
  private readonly absorbed = new WeakSet<UsageJournal>();

  /**
   * Spend made while Redis was unreachable (FailoverStore's local mode), in a journal of its own
   * (request times and token seconds on Redis's clock, rests on this instance's, `day` the newest
   * Pacific day in it): added to Redis's copy, and taken into this instance's journal so that a
   * later loss of Redis's data re-seeds it too. When Redis lost its data meanwhile, the re-seed
   * adds it with the rest of the journal. A call that fails may have been applied: called again,
   * it counts twice (the safe side), never not at all.
   */
  async addSpend(spend: UsageJournal, day: string): Promise<void> {
    if (!this.absorbed.has(spend)) {
      this.absorbed.add(spend);
      this.journal.absorb(spend);
      if (day > this.lastDay) this.lastDay = day;
    }
    if (this.reseeding) await this.reseeding;
    const gen = await this.redis.get(`${this.p}gen`);
    if (gen !== this.generation) return this.reseed();
    const now = Date.now();
    const text = spend.text(now, now + this.clockSkewMs, day);
    if (text === '') return;
    // reseed.lua with a generation that is never in force ('') adds the journal it is given to
    // the copy in force (it writes the registry first only when Redis has no generation at all).
    await this.redis.ggReseed(
      this.p,
      '',
      randomUUID(),
      this.unverified ? '1' : '0',
      this.registry.map(ringEntry).join('\n'),
      text,
      String(now),
    );
  }

  static connect(
    url: string,
    prefix: string,
    options: RedisOptions = {},
    storeOptions: { instanceClock?: boolean } = {},
  ): RedisStore {
    // A client of its own, made as the gateway makes its clients.
    return new RedisStore(createRedisClient(url, { overrides: options }), prefix, storeOptions);
  }

  async syncKeys(keys: readonly PoolKeyRecord[], options: { unverified?: boolean } = {}): Promise<void> {
    this.registry = keys;
    this.unverified = options.unverified === true;
    // One script: the ring (position -> the key's configuration, format: acquire.lua; a hash,
    // because a list would be walked to reach a position), the id list, each key's hash (what
    // reports change and the admin views read), and the generation in force.
    const gen = await this.redis.ggRegistry(
      this.p,
      this.unverified ? '1' : '0',
      randomUUID(),
      keys.map(ringEntry).join('\n'),
    );
    // A generation other than the one this instance knew: Redis lost its data meanwhile.
    if (this.generation !== '' && gen !== this.generation) await this.reseed();
    else this.generation = gen;
    if (this.runId === null) this.runId = await this.scriptServerRunId();
  }

  async markVerified(keyId: string): Promise<void> {
    const k = `${this.p}k:${keyId}`;
    if (await this.redis.exists(k)) await this.redis.hset(k, 'unverified', '');
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
      const pin = req.pin ? ('keyId' in req.pin ? `k:${req.pin.keyId}` : `p:${req.pin.project}`) : '';
      lines += `${this.instanceClock ? req.nowMs : ''}\t${req.estimatedTokens}\t${req.day}\t${req.nextDayMs}\t${req.circuitProbeLeaseMs}\t${commaList(req.exclude)}\t${pin}\t${req.model}\n`;
      batch.push(p);
    }
    if (batch.length === 0) return;
    if (Date.now() < this.holdAcquiresUntilMs) {
      const held = new Error(
        'the state store stopped answering; no acquire is sent until its connection is renewed',
      );
      for (const p of batch) p.reject(held);
      return;
    }
    this.acquireCallsOut += 1;
    this.callAcquire(lines, true).then(
      (reply) => {
        this.acquireCallDone();
        if (!reply.startsWith('X\t')) return this.applyAcquireReply(batch, reply);
        // Redis ran the batch past its deadline (and booked nothing): a timeout, that arrived.
        this.noteRedisClock(Number(reply.slice(2)));
        const late = new Error('the state store answered after the command timeout');
        for (const pending of batch) pending.reject(late);
      },
      (err: unknown) => {
        if (isTimeout(err)) this.holdAcquiresUntilMs = Date.now() + (commandTimeoutOf(this.redis) ?? 0);
        this.acquireCallDone();
        for (const pending of batch) pending.reject(err);
      },
    );
  }

  /** One script call; when Redis's generation changed, re-seed and ask once more. */
  private async callAcquire(lines: string, mayReseed: boolean): Promise<string> {
    if (this.serverCheckDue) this.checkServerSoon();
    const reply = await this.whenRenewed(() =>
      this.redis.ggAcquire(this.p, this.generation, lines, this.acquireDeadline()),
    );
    if (!reply.startsWith('R\t')) return reply;
    if (!mayReseed) throw new Error('the state store lost its data and could not be re-seeded');
    await this.reseed();
    return this.callAcquire(lines, false);
  }

  /** The deadline an acquire sent now carries, on Redis's clock ('' for none): acquire.lua books nothing past it. */
  private acquireDeadline(): string {
    // Past the client's command timeout nobody waits for the answer.
    const timeout = commandTimeoutOf(this.redis);
    if (!timeout || this.instanceClock) return '';
    const now = Date.now();
    // Commands already unanswered on the connection: it may be dropped (with this call on it,
    // its callers told it failed) a timeout after Redis was last heard, and a stalled Redis may
    // still run the call when it resumes; it must book nothing past that moment.
    const localDeadline = Math.min(now + timeout, this.heard.dropMayComeAtMs(timeout));
    if (localDeadline <= now)
      throw new Error(`the state store has not answered for ${timeout} ms; no acquire is sent to it`);
    return String(localDeadline + this.clockSkewMs);
  }

  /**
   * Sends a command; when Redis cannot have run it (ranNothing) and the connection it was meant
   * for is being renewed, sends it once more on the new connection, if that is ready within the
   * command timeout. Only a connection that was answering a moment ago is waited for: one renewed
   * because the server moved (a Sentinel's switch, a demoted master's READONLY) or closed it, a
   * blip that is neither an outage nor worth a refusal. A Redis that stalled, or is gone, was not
   * heard for a timeout already: its commands fail at once, as before.
   */
  async whenRenewed<T>(send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (err) {
      if (!ranNothing(err) || !(await this.connectionRenewed())) throw err;
      return send();
    }
  }

  /**
   * Whether the connection to Redis was renewed: Redis answered within the last command timeout,
   * and the scripts' connection is ready (now, or within that timeout). False for a Redis that
   * stalled or is gone: not heard for a timeout already, so at once.
   */
  connectionRenewed(): Promise<boolean> {
    const timeoutMs = commandTimeoutOf(this.redis);
    const connection = this.heard.scriptConnection();
    if (!timeoutMs || !connection || !this.heard.heardWithin(timeoutMs)) return Promise.resolve(false);
    // ioredis's own test before it writes: 'ready' alone may still be the closing connection's.
    if (connection.status === 'ready' && connection.stream?.writable) return Promise.resolve(true);
    // One wait (and one listener) for every caller that meets the renewal.
    if (this.renewal?.connection !== connection) {
      const renewal = {
        connection,
        ready: new Promise<boolean>((resolve) => {
          const done = (ready: boolean) => {
            clearTimeout(timer);
            connection.off('ready', onReady);
            if (this.renewal === renewal) this.renewal = null;
            resolve(ready);
          };
          const onReady = () => done(true);
          const timer = setTimeout(() => done(false), timeoutMs);
          connection.once('ready', onReady);
        }),
      };
      this.renewal = renewal;
    }
    return this.renewal.ready;
  }

  private applyAcquireReply(batch: PendingAcquire[], reply: string): void {
    const answers = reply.split('\n');
    const redisNow = Number(answers[0]);
    const localNow = Date.now();
    this.noteRedisClock(redisNow);
    for (let i = 0; i < batch.length; i++) {
      const { req, resolve } = batch[i]!;
      const result = this.instanceClock
        ? acquireResult(req, answers[i + 1]!, req.nowMs, req.nowMs)
        : acquireResult(req, answers[i + 1]!, redisNow, localNow);
      if (result.ok) {
        const r = result.reservation;
        this.lastDay = req.day;
        this.journal.admitted(r.project, r.model, r.atMs, r.tokenSlot, r.tokens, r.day);
      }
      resolve(result);
    }
  }

  /** Redis's clock as a reply read it: the skew the next batch's deadline is told in. */
  private noteRedisClock(redisNow: number): void {
    if (Number.isFinite(redisNow)) this.clockSkewMs = redisNow - Date.now();
  }

  private acquireCallDone(): void {
    this.acquireCallsOut -= 1;
    this.scheduleAcquires();
  }

  async settleTokens(res: Reservation, actualTokens: number): Promise<void> {
    this.journal.settled(res.project, res.model, res.tokenSlot, actualTokens - res.tokens);
    this.pendingSettle.push(res.project, res.model, res.tokenSlot, actualTokens - res.tokens);
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
      this.journal.settled(res.project, res.model, res.tokenSlot, actual - res.tokens);
      this.pendingSettle.push(res.project, res.model, res.tokenSlot, actual - res.tokens);
      await this.flushSettlements();
    }
    const reason = ('reason' in outcome ? outcome.reason : undefined) ?? '';
    if (outcome.kind === 'unused') this.journal.returned(res.project, res.model, res.atMs, res.day);
    else if (outcome.kind === 'rest') {
      this.journal.rested(res.project, res.model, outcome.untilMs, reason);
      if (outcome.model !== undefined)
        this.journal.rested(res.project, outcome.model, outcome.untilMs, reason);
    } else if (outcome.kind === 'disable') this.journal.keyEnabled(res.keyId, false, reason);
    await this.whenRenewed(() =>
      this.redis.ggReport(
        this.p,
        res.keyId,
        res.project,
        res.model,
        outcome.kind,
        reason,
        outcome.kind === 'rest' ? outcome.untilMs : nowMs,
        nowMs,
        res.probe ? 1 : 0,
        circuit.failureThreshold,
        circuit.cooldownMs,
        res.atMs,
        res.day,
        outcome.kind === 'rest' ? (outcome.model ?? '') : '',
        this.instanceClock ? '1' : '0',
      ),
    );
  }

  async setGlobalBackoff(untilMs: number, nowMs: number): Promise<void> {
    const ttl = untilMs - nowMs;
    if (ttl > 0)
      await this.redis.ggBackoff(`${this.p}global_backoff`, untilMs, ttl, this.instanceClock ? '1' : '0');
  }

  async setKeyEnabled(keyId: string, enabled: boolean, reason: string | null, nowMs: number): Promise<void> {
    const k = `${this.p}k:${keyId}`;
    if (!(await this.redis.exists(k))) return;
    this.journal.keyEnabled(keyId, enabled, reason ?? 'disabled by admin');
    if (enabled) await this.redis.hset(k, 'disabled', '', 'disabled_at', '');
    else await this.redis.hset(k, 'disabled', reason ?? 'disabled by admin', 'disabled_at', nowMs);
  }

  async resetKey(keyId: string): Promise<void> {
    const k = `${this.p}k:${keyId}`;
    const project = await this.redis.hget(k, 'project');
    if (project === null) return;
    const models = new Set([
      ...(await this.redis.smembers(`${this.p}pm:${project}`)),
      ...(configuredBudgets(this.registry).get(project)?.keys() ?? []),
    ]);
    const tx = this.redis.multi().hset(k, 'failures', 0, 'open_until', 0, 'probe_until', 0);
    for (const model of models) tx.hdel(budgetKey(this.p, project, model), 'rest_until', 'rest_reason');
    await tx.exec();
  }

  async keyStates(nowMs: number, day: string): Promise<KeyState[]> {
    const ids = await this.redis.lrange(`${this.p}keys`, 0, -1);
    const [hashes, budgets] = await Promise.all([
      Promise.all(ids.map((id) => this.redis.hgetall(`${this.p}k:${id}`))),
      this.budgetStates(nowMs, day),
    ]);
    const use = useByProject(budgets);
    return ids.map((id, i) => {
      const h = hashes[i]!;
      const configEnabled = h.enabled === '1';
      const disabled = h.disabled ? h.disabled : null;
      const openUntilMs = Number(h.open_until ?? 0);
      const project = h.project ?? id;
      return {
        id,
        project,
        ...(use.get(project) ?? NO_USE),
        enabled: configEnabled && disabled === null,
        disabledReason: disabled ?? (configEnabled ? null : 'disabled in configuration'),
        disabledAtMs: h.disabled_at ? Number(h.disabled_at) : null,
        verified: h.unverified !== '1',
        circuit: circuitOf({ openUntilMs }, nowMs),
        consecutiveFailures: Number(h.failures ?? 0),
        lastError: h.last_error || null,
        lastErrorAtMs: h.last_error_at ? Number(h.last_error_at) : null,
      };
    });
  }

  async keyHealth(keyId: string): Promise<KeyHealth | null> {
    const [enabled, disabled] = await this.redis.hmget(`${this.p}k:${keyId}`, 'enabled', 'disabled');
    if (enabled === null) return null;
    const reason = disabled ? disabled : null;
    return {
      enabled: enabled === '1' && reason === null,
      disabledReason: reason ?? (enabled === '1' ? null : 'disabled in configuration'),
    };
  }

  async budgetStates(nowMs: number, day: string): Promise<BudgetState[]> {
    const configured = configuredBudgets(this.registry);
    const projects = [...configured.keys()];
    const used = await Promise.all(projects.map((p) => this.redis.smembers(`${this.p}pm:${p}`)));
    const nowSec = Math.floor(nowMs / 1000);
    const out: Promise<BudgetState>[] = [];
    projects.forEach((project, i) => {
      const models = configured.get(project)!;
      for (const model of new Set([...models.keys(), ...used[i]!])) {
        if (model === DEFAULT_BUDGET) continue;
        const limits = models.get(model) ?? models.get(DEFAULT_BUDGET)!;
        const pk = budgetKey(this.p, project, model);
        out.push(
          Promise.all([
            this.redis.hgetall(pk),
            this.redis.lrange(`${pk}:log`, 0, -1),
            this.redis.hgetall(`${pk}:tok`),
          ]).then(([h, log, tokens]) => {
            const restUntil = Number(h.rest_until ?? 0);
            const resting = restUntil > nowMs;
            return {
              project,
              model,
              ...limits,
              requestsThisMinute: log.filter((t) => Number(t) > nowMs - 60_000).length,
              requestsToday: h.day === day ? Number(h.day_count ?? 0) : 0,
              tokensThisMinute: Object.entries(tokens)
                .filter(([sec]) => Number(sec) > nowSec - 60)
                .reduce((sum, [, t]) => sum + Number(t), 0),
              restUntilMs: resting ? restUntil : null,
              restReason: resting ? (h.rest_reason ?? null) : null,
            };
          }),
        );
      }
    });
    return Promise.all(out);
  }

  /**
   * Resource ownership: a hash per resource (`r:<name>`: project, key, client, expiry) that
   * expires with the resource, and per kind a set of names for everyone and one per client
   * (members whose hash expired are dropped when listed).
   */
  async putResource(resource: OwnedResource): Promise<void> {
    const { name, owner, expiresAtMs } = resource;
    const kind = resourceKind(name);
    await this.redis
      .multi()
      .hset(`${this.p}r:${name}`, {
        project: owner.project,
        key: owner.keyId,
        client: owner.client,
        expires: String(expiresAtMs),
        ...(owner.detail !== undefined ? { detail: owner.detail } : {}),
      })
      .pexpireat(`${this.p}r:${name}`, expiresAtMs)
      .sadd(`${this.p}rk:${kind}`, name)
      .sadd(`${this.p}rk:${kind}:${owner.client}`, name)
      .exec();
  }

  async getResources(names: readonly string[], nowMs: number): Promise<(ResourceOwner | null)[]> {
    const hashes = await Promise.all(names.map((n) => this.redis.hgetall(`${this.p}r:${n}`)));
    return hashes.map((h) =>
      h.project !== undefined && Number(h.expires) > nowMs
        ? {
            project: h.project,
            keyId: h.key ?? '',
            client: h.client ?? '',
            ...(h.detail !== undefined ? { detail: h.detail } : {}),
          }
        : null,
    );
  }

  async deleteResource(name: string): Promise<void> {
    const client = await this.redis.hget(`${this.p}r:${name}`, 'client');
    const kind = resourceKind(name);
    const tx = this.redis.multi().del(`${this.p}r:${name}`).srem(`${this.p}rk:${kind}`, name);
    if (client !== null) tx.srem(`${this.p}rk:${kind}:${client}`, name);
    await tx.exec();
  }

  async listResources(kind: string, client: string | null, nowMs: number): Promise<OwnedResource[]> {
    const set = client === null ? `${this.p}rk:${kind}` : `${this.p}rk:${kind}:${client}`;
    const names = await this.redis.smembers(set);
    const owners = await Promise.all(names.map((n) => this.redis.hgetall(`${this.p}r:${n}`)));
    const out: OwnedResource[] = [];
    const gone: string[] = [];
    names.forEach((name, i) => {
      const h = owners[i]!;
      if (h.project === undefined || Number(h.expires) <= nowMs) gone.push(name);
      else
        out.push({
          name,
          owner: { project: h.project, keyId: h.key ?? '', client: h.client ?? '' },
          expiresAtMs: Number(h.expires),
        });
    });
    if (gone.length > 0) await this.redis.srem(set, ...gone);
    return out;
  }

  /** Concurrency slots: a sorted set per scope, holder → end of its lease (slot.lua). */
  async acquireSlot(
    scope: string,
    holder: string,
    limit: number,
    ttlMs: number,
    nowMs: number,
  ): Promise<{ ok: boolean; held: number }> {
    const clock = this.instanceClock ? String(nowMs) : '';
    const answer = await this.redis.ggSlot(
      `${this.p}slot:${scope}`,
      holder,
      String(limit),
      String(ttlMs),
      clock,
    );
    const [ok, held] = answer.split(' ');
    return { ok: ok === '1', held: Number(held) };
  }

  async renewSlot(scope: string, holder: string, ttlMs: number, nowMs: number): Promise<void> {
    const clock = this.instanceClock ? String(nowMs) : '';
    await this.redis.ggSlot(`${this.p}slot:${scope}`, holder, '', String(ttlMs), clock);
  }

  async releaseSlot(scope: string, holder: string): Promise<void> {
    await this.redis.zrem(`${this.p}slot:${scope}`, holder);
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

  /**
   * Admin-made clients: one hash (`clients`: name → JSON record) and its version (`clients:ver`),
   * changed together by one small script, so that a reader of both sees one state and a refused
   * change (a name taken, a client gone) changes neither.
   */
  async putClient(name: string, record: string, ifAbsent = false): Promise<number | null> {
    const h = `${this.p}clients`;
    const v = await this.redis.eval(CLIENT_PUT, 2, h, `${h}:ver`, name, record, ifAbsent ? '1' : '0');
    return v === null ? null : Number(v);
  }

  async deleteClient(name: string): Promise<number | null> {
    const h = `${this.p}clients`;
    const v = await this.redis.eval(CLIENT_DELETE, 2, h, `${h}:ver`, name);
    return v === null ? null : Number(v);
  }

  async clientsVersion(): Promise<number> {
    return Number((await this.redis.get(`${this.p}clients:ver`)) ?? 0);
  }

  async listClients(): Promise<{ version: number; records: Record<string, string> }> {
    const h = `${this.p}clients`;
    const res = await this.redis.multi().get(`${h}:ver`).hgetall(h).exec().then(replies);
    return { version: Number(res[0] ?? 0), records: (res[1] as Record<string, string> | null) ?? {} };
  }

  async addToCounter(name: string, delta: number, expiresAtMs: number): Promise<number> {
    const key = `${this.p}cnt:${name}`;
    const res = await this.redis.multi().incrby(key, delta).pexpireat(key, expiresAtMs).exec().then(replies);
    return Number(res[0]);
  }

  async readCounter(name: string, _nowMs: number): Promise<number> {
    return Number((await this.redis.get(`${this.p}cnt:${name}`)) ?? 0);
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

/** putClient: KEYS = hash, version; ARGV = name, record, ifAbsent ('1'). nil: the name is taken. */
const CLIENT_PUT = `if ARGV[3] == '1' then
  if redis.call('hsetnx', KEYS[1], ARGV[1], ARGV[2]) == 0 then return false end
else
  redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
end
return redis.call('incr', KEYS[2])`;
/** deleteClient: KEYS = hash, version; ARGV = name. nil: no such client. */
const CLIENT_DELETE = `if redis.call('hdel', KEYS[1], ARGV[1]) == 0 then return false end
return redis.call('incr', KEYS[2])`;

/** A MULTI's replies, or the first command's error (null from exec: the transaction was aborted). */
function replies(res: [Error | null, unknown][] | null): unknown[] {
  if (!res) throw new Error('Redis transaction aborted');
  for (const [err] of res) if (err) throw err;
  return res.map(([, value]) => value);
}

/**
 * A command Redis cannot have run: ioredis refused to write it (the connection is down and
 * commands are not queued: redis-client.ts), or the server refused a write as a replica, which it
 * does at a script's first write, before anything is written.
 */
function ranNothing(err: unknown): boolean {
  const message = (err as Error | undefined)?.message ?? '';
  return message.startsWith("Stream isn't writeable") || message.startsWith('READONLY');
}

/** ioredis's commandTimeout rejection. */
function isTimeout(err: unknown): boolean {
  return (err as Error | undefined)?.message === 'Command timed out';
}

/** acquire.lua's list format, searched for `,item,`: ",a,b," (or empty for none). */
function commaList(items: readonly string[]): string {
  return items.length ? `,${items.join(',')},` : '';
}

function ringEntry(k: PoolKeyRecord): string {
  let named = '';
  for (const [model, l] of Object.entries(k.modelLimits)) named += `,${model}=${l.rpm}:${l.rpd}:${l.tpm}`;
  if (named) named += ',';
  return [k.id, k.project, commaList(k.models), k.enabled ? '1' : '0', k.rpm, k.rpd, k.tpm, named].join('\t');
}

/** A (project, model) budget's hash (budget_key in lib.lua). */
function budgetKey(prefix: string, project: string, model: string): string {
  return `${prefix}p:${project}\t${model}`;
}

/**
 * One line of acquire.lua's answer: `1 id project token_slot probe failures` or
 * `0 retry_at_ms global_backoff`, tab-separated (ids and projects hold no tabs: config/keys.ts).
 */
function acquireResult(req: AcquireRequest, line: string, redisNow: number, localNow: number): AcquireResult {
  const r = line.split('\t');
  if (r[0] === '1') {
    const probe = r[4] === '1';
    return {
      ok: true,
      reservation: {
        keyId: r[1]!,
        project: r[2]!,
        model: req.model,
        tokenSlot: Number(r[3]),
        tokens: req.estimatedTokens,
        probe,
        clean: !probe && Number(r[5] || 0) === 0,
        // Booked on Redis's clock: its request-log entry ('unused' gives it back by value).
        atMs: redisNow,
        day: req.day,
      },
    };
  }
  // Redis's time of a free key, told on this instance's clock (the queue sleeps by it).
  const at = Number(r[1]);
  return { ok: false, retryAtMs: at < 0 ? null : at - redisNow + localNow, globalBackoff: r[2] === '1' };
}
