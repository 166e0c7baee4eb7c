import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import { UsageJournal } from './journal.ts';
import { MemoryStore } from './memory.ts';
import type { RedisStore } from './redis.ts';
import { commandTimeoutOf } from './redis-client.ts';
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
  type StateStore,
  settledTokens,
} from './types.ts';

/**
 * STORE_FAILURE_MODE=local: a RedisStore that, while Redis is unreachable, goes on serving from a
 * local MemoryStore holding this instance's share of every budget, and adds what it spent there
 * to Redis when Redis is back, without a restart.
 *
 * Shares. Every instance writes a heartbeat into Redis (a sorted set under the prefix, every
 * HEARTBEAT_MS, living HEARTBEAT_TTL_MS; its member says the instance's state: R through Redis,
 * L alone, J rejoining) and reads the live ones: N, and its rank among them. Alone, an instance
 * gets floor(limit / N) of each limit (rpm, rpd, tpm of each (project, model) budget; Live
 * session slots too), plus one when its rank is below limit mod N: the shares add up to the limit.
 * An instance that the others have not seen yet (it started within their last heartbeat) takes no
 * share: they do not count it.
 *
 * What was spent before the switch. The heartbeat also reads the use of every budget (a
 * snapshot: request times of the last minute by second, the day's count, token seconds, rests,
 * disabled and unverified keys, open circuits, the global backoff). The local store is seeded
 * with 1/N of that use, rounded up (every N-th request time, newest first, so that any later
 * window holds ceil(m/N) of the m still in it), plus, in full, this instance's own admissions since
 * a margin before the snapshot (overlapMs: two instances' snapshots are at most a snapshot period
 * apart; a pool of thousands of keys is read in slices, and less often than every heartbeat). Summed over the instances, seeds and local admissions stay within the limit in every
 * window and every day: limit = sum(share) >= N * ceil(G / N) + own admissions since the
 * snapshots + local ones. A request that Redis admitted and whose answer arrives after the switch
 * is added to the local store as well: requests in flight at the switch count in both places.
 *
 * When. An instance spends alone only once Redis has been unreachable for a heartbeat period plus
 * the command timeout (aloneFromMs): by then every other instance has met the outage too (its own
 * heartbeat failed), so none is still spending through Redis, and a blip that some instances
 * never see is over before anyone spends alone. Until then requests wait in the pool's line.
 *
 * Back. When a heartbeat succeeds again, the key registry is written again (a Redis that lost its
 * data is re-seeded from the journal: RedisStore), what the admin changed meanwhile is replayed,
 * and the local spend (kept as a UsageJournal on Redis's clock) is added to Redis and to
 * RedisStore's journal (RedisStore.addSpend). The instance then spends nothing alone any more
 * ('rejoining': requests wait in the pool's line) until every other instance it knew has done the
 * same (a heartbeat since Redis's return in state J or R; one that does not show up within
 * REJOIN_WAIT_MS is taken for gone), and only then serves through Redis again: no instance spends
 * through Redis while another's local spend is missing from it. A merge that failed is sent
 * again: counted twice at worst, never lost. Reports of local reservations that end after the
 * merge (tokens settled, a reservation given back, a rest) go to Redis too.
 *
 * Not covered: an instance cut off from a Redis that the others still reach (a partition) spends
 * its share alone while they spend the whole limit through Redis; an instance that stops while
 * alone takes its unmerged spend with it; admin-made clients cannot be changed while alone, and
 * resources made before the outage are answered 503 (who owns them lives in Redis).
 */

/** How often an instance writes its heartbeat and reads the snapshot. */
export const HEARTBEAT_MS = 2000;
/** A heartbeat's life: an instance that stopped (or crashed) stops counting after this. */
export const HEARTBEAT_TTL_MS = 3 * HEARTBEAT_MS;
/** Keys per slice of a snapshot (one script call each). */
const SNAPSHOT_SLICE = 500;
/**
 * A snapshot is read every heartbeat, or less often when reading it takes long (a pool of
 * thousands of keys): Redis spends at most about 1/SNAPSHOT_COST_SHARE of its time on them.
 */
const SNAPSHOT_COST_SHARE = 50;
const SNAPSHOT_MAX_EVERY_MS = 20_000;

const HEARTBEAT_LUA = `${readFileSync(new URL('./lua/lib.lua', import.meta.url), 'utf8')}\n${readFileSync(
  new URL('./lua/heartbeat.lua', import.meta.url),
  'utf8',
)}`;

type HeartbeatRedis = {
  ggHeartbeat(
    route: string,
    prefix: string,
    member: string,
    ttlMs: string,
    snapshotStart: string,
    action: string,
    previous: string,
    slice: string,
  ): Promise<string>;
};

/** Thrown where local mode cannot answer for Redis (who owns a resource made before the outage). */
export class StoreDegradedError extends Error {
  constructor(what: string) {
    super(`the state store (Redis) is unreachable: ${what} is not known locally`);
  }
}

/**
 * Whether an error of a Redis call means Redis is out of reach (or cannot serve now), rather than
 * a refused command (a script error, a bad argument): only the former switches to local mode.
 */
export function isOutage(err: unknown): boolean {
  const e = err as Error | undefined;
  const message = String(e?.message ?? err);
  if (e?.name === 'ReplyError')
    return /^(LOADING|READONLY|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|OOM|NOREPLICAS|BUSY|MISCONF|NOAUTH|WRONGPASS)\b/.test(
      message,
    );
  // Refused by the store itself, not by Redis.
  return !/line break/.test(message);
}

interface BudgetSnap {
  project: string;
  model: string;
  day: string;
  dayCount: number;
  restUntil: number;
  restReason: string;
  /** Request times by second (Redis's clock), newest first: [second, count]. */
  log: [number, number][];
  tokens: [number, number][];
}

interface KeySnap {
  id: string;
  disabled: string;
  disabledAt: number;
  unverified: boolean;
  openUntil: number;
}

interface Snapshot {
  /** Redis's clock when it was read. */
  redisMs: number;
  backoffUntil: number;
  keys: KeySnap[];
  budgets: BudgetSnap[];
}

/** One of this instance's own admissions through Redis (Redis's clock). */
interface OwnAdmission {
  project: string;
  model: string;
  atMs: number;
  slot: number;
  tokens: number;
  day: string;
}

/** Where a local reservation was booked, and as what it goes to Redis. */
interface LocalOrigin {
  store: MemoryStore;
  journal: UsageJournal;
  redisAtMs: number;
  redisSlot: number;
}

export interface FailoverStatus {
  /**
   * redis: Redis serves. local: Redis is unreachable (or back but not yet rejoined) and this
   * instance serves alone from its share. rejoining: its local spend is in Redis again and it waits
   * (requests wait in the pool's line) until every other instance has added its own.
   */
  mode: 'redis' | 'local' | 'rejoining';
  /** Since when Redis is away for this instance (epoch ms); null while Redis serves. */
  degradedSinceMs: number | null;
  /** When it starts (or started) spending alone: a heartbeat period and a timeout after the switch. */
  aloneFromMs: number | null;
  /** Live instances last seen through the heartbeats (this one included). */
  instances: number;
  /** The N and rank of this instance's shares while alone (the view at the switch). */
  shareOf: { n: number; rank: number; share: boolean } | null;
  /**
   * Every other live instance has had a heartbeat since this one first wrote its own: they count
   * it in their N. Until then this instance takes no share when Redis goes away (they would not
   * leave one for it).
   */
  counted: boolean;
}

export interface FailoverOptions {
  logger?: Pick<Logger, 'warn' | 'info'>;
  /** Heartbeat period while Redis serves (default HEARTBEAT_MS). */
  heartbeatMs?: number;
}

/** Heartbeat periods while alone (probing for Redis) and while rejoining (waiting for the others). */
const PROBE_MS = 500;
const REJOIN_POLL_MS = 250;
/**
 * How long a rejoining instance waits for an instance it knew before the outage to show up (with a
 * heartbeat from after Redis's return) and add its local spend: past it, that one is taken for
 * gone (it stopped during the outage).
 */
export const REJOIN_WAIT_MS = 15_000;

/** A heartbeat member: `<instance id>#<state>` (R serving through Redis, L alone, J rejoining). */
type MemberState = 'R' | 'L' | 'J';
interface Member {
  id: string;
  state: MemberState;
  /** Its last heartbeat (Redis's clock). */
  beatMs: number;
}

export class FailoverStore implements StateStore {
  readonly kind = 'redis' as const;
  readonly primary: RedisStore;
  readonly instanceId = randomUUID();
  private readonly redis: HeartbeatRedis;
  private readonly prefix: string;
  private readonly logger: Pick<Logger, 'warn' | 'info'> | undefined;
  private readonly heartbeatMs: number;
  private mode: 'redis' | 'local' | 'rejoining' = 'redis';
  private degradedSinceMs: number | null = null;
  private local: MemoryStore | null = null;
  private records: readonly PoolKeyRecord[] = [];
  private unverified = false;
  private snapshot: Snapshot | null = null;
  /** The live members of the last heartbeat (this instance included). */
  private members: Member[] = [];
  /** The member this instance last wrote (removed when it writes another). */
  private lastMember = '';
  /**
   * N and rank of the shares while alone, whether this instance takes a share at all (counted by
   * every other one), and the other instances known at the switch.
   */
  private basis: { n: number; rank: number; share: boolean; others: string[] } | null = null;
  /** This instance's first heartbeat (Redis's clock). */
  private registeredAtMs: number | null = null;
  /** When this instance may start spending alone after a switch (epoch ms). */
  private aloneFromMs = 0;
  /** How often a snapshot is read (adapts to its cost), and when the next one is due. */
  private snapshotEveryMs: number;
  private nextSnapshotAt = 0;
  /** When Redis answered again after the switch (Redis's clock); null while unreachable. */
  private backAtMs: number | null = null;
  /** Redis's clock minus this instance's. */
  private skewMs = 0;
  private recent: OwnAdmission[] = [];
  /** Local spend not yet added to Redis, and the newest Pacific day in it. */
  private pending = new UsageJournal();
  private pendingDay = '';
  private pendingDirty = false;
  /** Journals taken out of `pending` whose merge is owed, oldest first. */
  private readonly unmerged: { journal: UsageJournal; day: string }[] = [];
  private readonly merged = new WeakSet<UsageJournal>();
  private merging: Promise<void> | null = null;
  private readonly origin = new WeakMap<Reservation, LocalOrigin>();
  /** What the admin (or the pool) changed while alone, replayed on Redis when it is back. */
  private readonly replay: ((s: RedisStore) => Promise<unknown>)[] = [];
  private lastClients: { version: number; records: Record<string, string> } | null = null;
  private readonly counters = new Map<string, { base: number; local: number; expiresAtMs: number }>();
  private timer: NodeJS.Timeout | null = null;
  private beating: Promise<void> | null = null;
  private closed = false;

  constructor(primary: RedisStore, prefix: string, options: FailoverOptions = {}) {
    this.primary = primary;
    this.prefix = prefix;
    this.logger = options.logger;
    this.heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
    this.snapshotEveryMs = this.heartbeatMs;
    primary.redis.defineCommand('ggHeartbeat', { numberOfKeys: 1, lua: HEARTBEAT_LUA });
    this.redis = primary.redis as unknown as HeartbeatRedis;
  }

  /** First heartbeat (awaited: N is known before traffic), then one every period of the mode. */
  async start(): Promise<void> {
    await this.beat();
    this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    const period =
      this.mode === 'redis' ? this.heartbeatMs : this.mode === 'local' ? PROBE_MS : REJOIN_POLL_MS;
    this.timer = setTimeout(() => {
      void this.beat().finally(() => this.schedule());
    }, period);
    this.timer.unref();
  }

  status(): FailoverStatus {
    return {
      mode: this.mode,
      degradedSinceMs: this.degradedSinceMs,
      aloneFromMs: this.mode === 'redis' ? null : this.aloneFromMs,
      instances: Math.max(1, new Set(this.members.map((m) => m.id)).size),
      shareOf: this.basis ? { n: this.basis.n, rank: this.basis.rank, share: this.basis.share } : null,
      counted: this.counted(),
    };
  }

  private counted(): boolean {
    const since = this.registeredAtMs;
    if (since === null) return false;
    return this.members.every((m) => m.id === this.instanceId || m.beatMs > since);
  }

  /** A heartbeat now (tests; after the key registry changed). */
  heartbeat(): Promise<void> {
    return this.beat();
  }

  private beat(): Promise<void> {
    this.beating ??= (async () => {
      try {
        // Alone, a heartbeat that answers starts the rejoin; rejoining, each heartbeat looks for
        // the others; back, the snapshot is read at once (Redis may go away again before the next).
        for (let round = 0; round < 3 && !this.closed; round++) {
          const mode = this.mode;
          const reply = await this.call('');
          if (mode === 'local') {
            this.backAtMs ??= Number(reply.slice(0, reply.indexOf('\n')));
            // Its spend into Redis; on to 'rejoining' (written with the next round).
            if (!(await this.rejoin())) break;
            this.nextSnapshotAt = 0;
            continue;
          }
          if (Date.now() >= this.nextSnapshotAt) await this.takeSnapshot();
          if (mode === 'redis') break;
          // Rejoining: back to Redis once every other instance has added its spend.
          if (!this.othersRejoined()) break;
          await this.backToRedis();
        }
      } catch (err) {
        if (this.mode !== 'local' && (await this.isAway(err))) this.goLocal(err);
      } finally {
        this.beating = null;
      }
    })();
    return this.beating;
  }

  /** One heartbeat script call (with a slice of the snapshot from key `snapshotStart`, if given). */
  private async call(snapshotStart: string): Promise<string> {
    const mode = this.mode;
    const member = `${this.instanceId}#${mode === 'redis' ? 'R' : mode === 'local' ? 'L' : 'J'}`;
    const sent = Date.now();
    const reply = await this.primary.whenRenewed(() =>
      this.redis.ggHeartbeat(
        `${this.prefix}gen`,
        this.prefix,
        member,
        String(HEARTBEAT_TTL_MS),
        snapshotStart,
        'beat',
        this.lastMember,
        String(SNAPSHOT_SLICE),
      ),
    );
    this.lastMember = member;
    this.applyHeartbeat(reply, (sent + Date.now()) / 2);
    return reply;
  }

  private applyHeartbeat(reply: string, localMs: number): void {
    const end = reply.indexOf('\n');
    const redisMs = Number(reply.slice(0, end));
    this.skewMs = Math.round(redisMs - localMs);
    this.registeredAtMs ??= redisMs;
    this.members = [];
    const next = reply.indexOf('\n', end + 1);
    for (const item of reply.slice(end + 1, next < 0 ? undefined : next).split(',')) {
      const eq = item.lastIndexOf('=');
      const hash = item.lastIndexOf('#');
      if (eq < 0 || hash < 0) continue;
      this.members.push({
        id: item.slice(0, hash),
        state: item.slice(hash + 1, eq) as MemberState,
        beatMs: Number(item.slice(eq + 1)) - HEARTBEAT_TTL_MS,
      });
    }
  }

  /**
   * Reads the use of every budget, a slice of keys per call. Its time is the first slice's: every
   * later slice holds at least what was spent until then.
   */
  private async takeSnapshot(): Promise<void> {
    const started = performance.now();
    const snap: Snapshot = { redisMs: 0, backoffUntil: 0, keys: [], budgets: [] };
    const budgets = new Map<string, BudgetSnap>();
    for (let start = 0; start >= 0; ) {
      const lines = (await this.call(String(start))).split('\n');
      if (start === 0) snap.redisMs = Number(lines[0]);
      start = -1;
      for (let i = 2; i < lines.length; i++) {
        const f = lines[i]!.split('\t');
        if (f[0] === 'c') start = Number(f[1]);
        else if (f[0] === 'g') snap.backoffUntil = Number(f[1]) || 0;
        else if (f[0] === 'k')
          snap.keys.push({
            id: f[1]!,
            disabled: f[2] ?? '',
            disabledAt: Number(f[3]) || 0,
            unverified: f[4] === '1',
            openUntil: Number(f[5]) || 0,
          });
        // A project whose keys span two slices comes twice: the later reading holds more.
        else if (f[0] === 'b')
          budgets.set(`${f[1]}\t${f[2]}`, {
            project: f[1]!,
            model: f[2]!,
            day: f[3] ?? '',
            dayCount: Number(f[4]) || 0,
            restUntil: Number(f[5]) || 0,
            restReason: f[6] ?? '',
            log: pairs(f[7]),
            tokens: pairs(f[8]),
          });
      }
    }
    snap.budgets = [...budgets.values()];
    this.snapshot = snap;
    const took = performance.now() - started;
    this.snapshotEveryMs = Math.min(
      Math.max(this.heartbeatMs, took * SNAPSHOT_COST_SHARE),
      SNAPSHOT_MAX_EVERY_MS,
    );
    this.nextSnapshotAt = Date.now() + this.snapshotEveryMs;
    this.pruneRecent();
  }

  /**
   * Own admissions this long before the snapshot are counted in full on top of it: every other
   * instance's snapshot is at most its own period older (about this one's: the same pool).
   */
  private overlapMs(): number {
    return Math.min(2 * this.snapshotEveryMs + this.heartbeatMs, 50_000);
  }

  // ---- switching ----

  /**
   * Redis is away: an outage's error (isOutage), and not a connection renewed within the command
   * timeout. A failover's moment is no outage: what failed in it fails as in closed mode, and no
   * instance goes alone for it.
   */
  private async isAway(err: unknown): Promise<boolean> {
    return isOutage(err) && !(await this.primary.connectionRenewed());
  }

  private goLocal(err: unknown): void {
    if (this.mode === 'local') return;
    const ids = [...new Set([...this.members.map((m) => m.id), this.instanceId])].sort();
    this.basis = {
      n: ids.length,
      rank: ids.indexOf(this.instanceId),
      share: this.counted(),
      others: ids.filter((id) => id !== this.instanceId),
    };
    this.mode = 'local';
    this.backAtMs = null;
    this.degradedSinceMs ??= Date.now();
    // Alone only once every other instance must have met the outage too (a heartbeat of each, and
    // its command timeout): a blip that some instances never see ends before anyone spends alone,
    // and an instance this one does not know yet (it started within the last heartbeat) has gone
    // alone too, with no share (status().counted).
    this.aloneFromMs = Date.now() + this.heartbeatMs + (commandTimeoutOf(this.primary.redis) ?? 1000) + 500;
    const local = new MemoryStore();
    this.local = local;
    // MemoryStore's syncKeys does its work before its promise settles: the store is ready now.
    void local.syncKeys(this.shares(this.records), { unverified: false });
    this.seed(local);
    const cause = String((err as Error)?.message ?? err).split('\n')[0];
    this.logger?.warn(
      {
        failure_mode: 'local',
        instances: this.basis.n,
        rank: this.basis.rank,
        cause,
        snapshot_age_ms: this.snapshotAgeMs(),
      },
      this.basis.share
        ? `state store (Redis) unreachable: this instance serves alone from its share of every budget (1/${this.basis.n}) until Redis is back (STORE_FAILURE_MODE=local)`
        : 'state store (Redis) unreachable: this instance started too recently for the others to leave it a share, so it refuses pool requests until Redis is back (STORE_FAILURE_MODE=local)',
    );
  }

  private snapshotAgeMs(): number | null {
    return this.snapshot ? Date.now() + this.skewMs - this.snapshot.redisMs : null;
  }

  /** The records with every limit cut to this instance's share. */
  private shares(records: readonly PoolKeyRecord[]): PoolKeyRecord[] {
    const cut = (l: BudgetLimits): BudgetLimits => {
      const rpm = this.share(l.rpm);
      // A minute budget too small to split serves nothing here (rpd 0 refuses cleanly).
      return { rpm: Math.max(rpm, 1), rpd: rpm === 0 ? 0 : this.share(l.rpd), tpm: this.share(l.tpm) };
    };
    return records.map((k) => {
      const modelLimits: Record<string, BudgetLimits> = {};
      for (const [model, l] of Object.entries(k.modelLimits)) modelLimits[model] = cut(l);
      return { ...k, ...cut(k), modelLimits };
    });
  }

  /** This instance's share of a limit: the shares of the N instances add up to it. */
  private share(limit: number): number {
    const { n, rank, share } = this.basis ?? { n: 1, rank: 0, share: true };
    if (!share) return 0;
    return Math.floor(limit / n) + (rank < limit % n ? 1 : 0);
  }

  /** The local store's start: 1/N of what Redis last showed, and this instance's own recent admissions in full. */
  private seed(local: MemoryStore): void {
    const n = this.basis?.n ?? 1;
    const skew = this.skewMs;
    const toLocalSec = (sec: number) => Math.ceil((sec * 1000 - skew) / 1000);
    const snap = this.snapshot;
    if (snap) {
      for (const b of snap.budgets) {
        const log: number[] = [];
        let index = 0;
        for (const [sec, count] of b.log) {
          for (let c = 0; c < count; c++, index++) if (index % n === 0) log.push(sec * 1000 + 999 - skew);
        }
        const tokens = new Map<number, number>();
        for (const [sec, t] of b.tokens) tokens.set(toLocalSec(sec), Math.ceil(t / n));
        local.seedBudget(b.project, b.model, {
          log,
          day: b.day,
          dayCount: Math.ceil(b.dayCount / n),
          tokens,
          restUntilMs: b.restUntil > 0 ? b.restUntil - skew : 0,
          restReason: b.restReason || null,
        });
      }
      for (const k of snap.keys)
        local.seedKey(k.id, {
          disabledReason: k.disabled || null,
          disabledAtMs: k.disabledAt ? k.disabledAt - skew : null,
          unverified: k.unverified,
          openUntilMs: k.openUntil > 0 ? k.openUntil - skew : 0,
        });
      if (snap.backoffUntil > 0) void local.setGlobalBackoff(snap.backoffUntil - skew, Date.now());
    }
    const since = snap ? snap.redisMs - this.overlapMs() : Number.NEGATIVE_INFINITY;
    for (const a of this.recent) if (a.atMs > since) this.seedOwn(local, a);
  }

  private seedOwn(local: MemoryStore, a: OwnAdmission): void {
    local.seedBudget(a.project, a.model, {
      log: [a.atMs - this.skewMs],
      day: a.day,
      dayCount: 1,
      tokens: new Map([[Math.ceil((a.slot * 1000 - this.skewMs) / 1000), a.tokens]]),
      restUntilMs: 0,
      restReason: null,
    });
  }

  private noteOwn(r: Reservation): void {
    const a: OwnAdmission = {
      project: r.project,
      model: r.model,
      atMs: r.atMs,
      slot: r.tokenSlot,
      tokens: r.tokens,
      day: r.day,
    };
    this.recent.push(a);
    if (this.recent.length > 256 && this.recent.length % 256 === 0) this.pruneRecent();
    // Answered after the switch: it counts in the local store too.
    if (this.mode === 'local' && this.local) this.seedOwn(this.local, a);
  }

  private pruneRecent(): void {
    const keepFrom = Math.max(
      (this.snapshot?.redisMs ?? Number.NEGATIVE_INFINITY) - this.overlapMs() - 1000,
      Date.now() + this.skewMs - 60_000,
    );
    let i = 0;
    while (i < this.recent.length && this.recent[i]!.atMs < keepFrom) i++;
    if (i > 0) this.recent = this.recent.slice(i);
  }

  /**
   * Redis answers again: the registry is written again (a Redis that lost its data gets it, and
   * the journals re-seed it), what the admin changed meanwhile is replayed, and the local spend is
   * added. Then this instance spends nothing more alone ('rejoining'). False: not done (Redis
   * went away again, or a step failed): tried again at the next heartbeat.
   */
  private async rejoin(): Promise<boolean> {
    try {
      await this.primary.syncKeys(this.records, { unverified: this.unverified });
      while (this.replay.length > 0) {
        await this.replay[0]!(this.primary);
        this.replay.shift();
      }
      await this.mergeAll();
    } catch {
      return false;
    }
    if (this.mode !== 'local') return false;
    // Nothing is awaited between the last merge and this: every local admission is in Redis.
    this.mode = 'rejoining';
    return true;
  }

  /**
   * Whether every other instance known at the switch (and every live one) has added its local
   * spend: its heartbeat since Redis's return says it is rejoining or serving through Redis.
   * One that does not show up within REJOIN_WAIT_MS is taken for gone.
   */
  private othersRejoined(): boolean {
    const back = this.backAtMs ?? 0;
    const latest = new Map<string, Member>();
    for (const m of this.members) if (m.id !== this.instanceId) latest.set(m.id, m);
    const waiting = new Set(this.basis?.others ?? []);
    for (const m of latest.values()) if (m.state === 'L') waiting.add(m.id);
    for (const id of waiting) {
      const m = latest.get(id);
      if (!m || m.beatMs < back || m.state === 'L') {
        const now = Date.now() + this.skewMs;
        if (now - back < REJOIN_WAIT_MS) return false;
      }
    }
    return true;
  }

  private async backToRedis(): Promise<void> {
    // Spend of reservations that ended while rejoining (nothing new was admitted alone).
    await this.mergeAll();
    if (this.mode !== 'rejoining') return;
    this.mode = 'redis';
    const since = this.degradedSinceMs;
    this.degradedSinceMs = null;
    this.basis = null;
    this.local = null;
    this.backAtMs = null;
    this.logger?.info(
      { failure_mode: 'local', degraded_ms: since ? Date.now() - since : null },
      'state store (Redis) reachable again: the local spend of every instance is in it and shared budgets are in force again',
    );
  }

  /** Adds every journal of local spend to Redis (loops until nothing new was spent meanwhile). */
  private async mergeAll(): Promise<void> {
    for (;;) {
      if (this.pendingDirty) {
        this.unmerged.push({ journal: this.pending, day: this.pendingDay });
        this.pending = new UsageJournal();
        this.pendingDay = '';
        this.pendingDirty = false;
      }
      if (this.unmerged.length === 0) return;
      const next = this.unmerged[0]!;
      this.merging = this.primary.addSpend(next.journal, next.day);
      try {
        await this.merging;
      } finally {
        this.merging = null;
      }
      this.merged.add(next.journal);
      this.unmerged.shift();
    }
  }

  private markPending(day?: string): UsageJournal {
    this.pendingDirty = true;
    if (day && day > this.pendingDay) this.pendingDay = day;
    return this.pending;
  }

  /**
   * Runs on Redis while it answers (rejoining too); past an outage, on the local store (after
   * switching to it).
   */
  private async either<T>(
    onRedis: (s: RedisStore) => Promise<T>,
    onLocal: (l: MemoryStore) => Promise<T>,
  ): Promise<T> {
    if (this.mode !== 'local') {
      try {
        return await onRedis(this.primary);
      } catch (err) {
        if (!(await this.isAway(err))) throw err;
        this.goLocal(err);
      }
    }
    return onLocal(this.local!);
  }

  // ---- the pool ----

  async syncKeys(keys: readonly PoolKeyRecord[], options: { unverified?: boolean } = {}): Promise<void> {
    this.records = keys;
    this.unverified = options.unverified === true;
    await this.either(
      async (s) => {
        await s.syncKeys(keys, options);
        this.nextSnapshotAt = 0; // the snapshot follows the registry
        void this.beat();
      },
      (l) => l.syncKeys(this.shares(keys), options),
    );
  }

  markVerified(keyId: string): Promise<void> {
    return this.either(
      (s) => s.markVerified(keyId),
      async (l) => {
        await l.markVerified(keyId);
        this.replay.push((s) => s.markVerified(keyId));
      },
    );
  }

  acquire(req: AcquireRequest): Promise<AcquireResult> {
    if (this.mode === 'local') return this.localAcquire(req);
    // Rejoining: nothing is spent alone any more, and Redis's budgets wait for the others' spend.
    // The request waits in the pool's line (up to QUEUE_MAX_WAIT_MS) and asks again.
    if (this.mode === 'rejoining')
      return Promise.resolve({ ok: false, retryAtMs: Date.now() + REJOIN_POLL_MS, globalBackoff: false });
    return this.primary.acquire(req).then(
      (result) => {
        if (result.ok) this.noteOwn(result.reservation);
        return result;
      },
      async (err: unknown) => {
        if (!(await this.isAway(err))) throw err;
        this.goLocal(err);
        return this.localAcquire(req);
      },
    );
  }

  private async localAcquire(req: AcquireRequest): Promise<AcquireResult> {
    const local = this.local!;
    const now = Date.now();
    // Not yet: the others may not have noticed the outage (the request waits in the pool's line).
    if (now < this.aloneFromMs) return { ok: false, retryAtMs: this.aloneFromMs, globalBackoff: false };
    // Booked at the time it is sent (the request's own time may be a timeout old).
    const result = await local.acquire({ ...req, nowMs: now });
    if (result.ok) {
      const r = result.reservation;
      const redisAtMs = r.atMs + this.skewMs;
      const redisSlot = Math.floor(redisAtMs / 1000);
      const journal = this.markPending(r.day);
      journal.admitted(r.project, r.model, redisAtMs, redisSlot, r.tokens, r.day);
      this.origin.set(r, { store: local, journal, redisAtMs, redisSlot });
    }
    return result;
  }

  async settleTokens(res: Reservation, actualTokens: number): Promise<void> {
    const o = this.origin.get(res);
    if (!o) return this.primary.settleTokens(res, actualTokens); // never rejects (batched)
    await o.store.settleTokens(res, actualTokens);
    if (this.merging) await this.merging.catch(() => {});
    if (this.merged.has(o.journal)) await this.primary.settleTokens(asRedis(res, o), actualTokens);
    else {
      if (o.journal === this.pending) this.pendingDirty = true;
      o.journal.settled(res.project, res.model, o.redisSlot, actualTokens - res.tokens);
    }
  }

  async report(res: Reservation, outcome: Outcome, nowMs: number, circuit: CircuitSettings): Promise<void> {
    const o = this.origin.get(res);
    if (!o) {
      // Booked in Redis.
      if (this.mode !== 'local') {
        try {
          return await this.primary.report(res, outcome, nowMs, circuit);
        } catch (err) {
          if (!(await this.isAway(err))) throw err;
          this.goLocal(err);
        }
      }
      // Redis is away: what the answer taught (a rest, a dead key, a failure) holds here too, and
      // reaches Redis with the local spend. A reservation given back stays counted (safe side).
      if (outcome.kind === 'rest' || outcome.kind === 'disable' || outcome.kind === 'failure') {
        await this.local!.report(res, outcome, nowMs, circuit);
        journalOutcome(this.markPending(), res, null, outcome);
      }
      return;
    }
    await o.store.report(res, outcome, nowMs, circuit);
    if (this.merging) await this.merging.catch(() => {});
    if (this.merged.has(o.journal)) {
      try {
        await this.primary.report(asRedis(res, o), outcome, nowMs, circuit);
      } catch (err) {
        if (!(await this.isAway(err))) throw err;
        // Away again: what it taught reaches Redis with the next local spend.
        this.goLocal(err);
        journalOutcome(this.markPending(), res, null, outcome);
      }
      return;
    }
    if (o.journal === this.pending) this.pendingDirty = true;
    journalOutcome(o.journal, res, o, outcome);
  }

  setGlobalBackoff(untilMs: number, nowMs: number): Promise<void> {
    return this.either(
      (s) => s.setGlobalBackoff(untilMs, nowMs),
      async (l) => {
        await l.setGlobalBackoff(untilMs, nowMs);
        this.replay.push((s) =>
          untilMs > Date.now() ? s.setGlobalBackoff(untilMs, Date.now()) : Promise.resolve(),
        );
      },
    );
  }

  setKeyEnabled(keyId: string, enabled: boolean, reason: string | null, nowMs: number): Promise<void> {
    return this.either(
      (s) => s.setKeyEnabled(keyId, enabled, reason, nowMs),
      async (l) => {
        await l.setKeyEnabled(keyId, enabled, reason, nowMs);
        this.replay.push((s) => s.setKeyEnabled(keyId, enabled, reason, Date.now()));
      },
    );
  }

  resetKey(keyId: string): Promise<void> {
    return this.either(
      (s) => s.resetKey(keyId),
      async (l) => {
        await l.resetKey(keyId);
        this.replay.push((s) => s.resetKey(keyId));
      },
    );
  }

  keyStates(nowMs: number, day: string): Promise<KeyState[]> {
    return this.either(
      (s) => s.keyStates(nowMs, day),
      (l) => l.keyStates(nowMs, day),
    );
  }

  keyHealth(keyId: string): Promise<KeyHealth | null> {
    return this.either(
      (s) => s.keyHealth(keyId),
      (l) => l.keyHealth(keyId),
    );
  }

  budgetStates(nowMs: number, day: string): Promise<BudgetState[]> {
    return this.either(
      (s) => s.budgetStates(nowMs, day),
      (l) => l.budgetStates(nowMs, day),
    );
  }

  // ---- resources: who owns what lives in Redis ----

  putResource(resource: OwnedResource): Promise<void> {
    return this.either(
      (s) => s.putResource(resource),
      async (l) => {
        await l.putResource(resource);
        this.replay.push((s) => s.putResource(resource));
      },
    );
  }

  getResources(names: readonly string[], nowMs: number): Promise<(ResourceOwner | null)[]> {
    return this.either(
      (s) => s.getResources(names, nowMs),
      async (l) => {
        const owners = await l.getResources(names, nowMs);
        // Unknown here may be known to Redis: never answered as "nobody's".
        if (owners.some((o) => o === null)) throw new StoreDegradedError('who owns this resource');
        return owners;
      },
    );
  }

  deleteResource(name: string): Promise<void> {
    return this.either(
      (s) => s.deleteResource(name),
      async (l) => {
        await l.deleteResource(name);
        this.replay.push((s) => s.deleteResource(name));
      },
    );
  }

  listResources(kind: string, client: string | null, nowMs: number): Promise<OwnedResource[]> {
    return this.either(
      (s) => s.listResources(kind, client, nowMs),
      async () => {
        throw new StoreDegradedError('the list of resources');
      },
    );
  }

  // ---- Live session slots: shares too ----

  acquireSlot(
    scope: string,
    holder: string,
    limit: number,
    ttlMs: number,
    nowMs: number,
  ): Promise<{ ok: boolean; held: number }> {
    return this.either(
      (s) => s.acquireSlot(scope, holder, limit, ttlMs, nowMs),
      (l) => l.acquireSlot(scope, holder, this.share(limit), ttlMs, nowMs),
    );
  }

  renewSlot(scope: string, holder: string, ttlMs: number, nowMs: number): Promise<void> {
    return this.either(
      (s) => s.renewSlot(scope, holder, ttlMs, nowMs),
      (l) => l.renewSlot(scope, holder, ttlMs, nowMs),
    );
  }

  releaseSlot(scope: string, holder: string): Promise<void> {
    return this.either(
      (s) => s.releaseSlot(scope, holder),
      async (l) => {
        await l.releaseSlot(scope, holder);
        this.replay.push((s) => s.releaseSlot(scope, holder));
      },
    );
  }

  hit(name: string, windowMs: number, nowMs: number): Promise<HitResult> {
    return this.either(
      (s) => s.hit(name, windowMs, nowMs),
      (l) => l.hit(name, windowMs, nowMs),
    );
  }

  // ---- admin-made clients: read from what Redis last said; changed only through Redis ----

  putClient(name: string, record: string, ifAbsent?: boolean): Promise<number | null> {
    return this.either(
      (s) => s.putClient(name, record, ifAbsent),
      async () => {
        throw new StoreDegradedError('the client registry (changes wait for Redis)');
      },
    );
  }

  deleteClient(name: string): Promise<number | null> {
    return this.either(
      (s) => s.deleteClient(name),
      async () => {
        throw new StoreDegradedError('the client registry (changes wait for Redis)');
      },
    );
  }

  clientsVersion(): Promise<number> {
    return this.either(
      (s) => s.clientsVersion(),
      async () => {
        if (!this.lastClients) throw new StoreDegradedError('the client registry');
        return this.lastClients.version;
      },
    );
  }

  listClients(): Promise<{ version: number; records: Record<string, string> }> {
    return this.either(
      async (s) => {
        this.lastClients = await s.listClients();
        return this.lastClients;
      },
      async () => {
        if (!this.lastClients) throw new StoreDegradedError('the client registry');
        return this.lastClients;
      },
    );
  }

  addToCounter(name: string, delta: number, expiresAtMs: number): Promise<number> {
    return this.either(
      async (s) => {
        const value = await s.addToCounter(name, delta, expiresAtMs);
        this.rememberCounter(name, value, expiresAtMs);
        return value;
      },
      async () => {
        const now = Date.now();
        let c = this.counters.get(name);
        if (!c || c.expiresAtMs <= now) {
          c = { base: 0, local: 0, expiresAtMs };
          this.counters.set(name, c);
        }
        c.local += delta;
        c.expiresAtMs = expiresAtMs;
        this.replay.push((s) =>
          expiresAtMs > Date.now() ? s.addToCounter(name, delta, expiresAtMs) : Promise.resolve(0),
        );
        return c.base + c.local;
      },
    );
  }

  readCounter(name: string, nowMs: number): Promise<number> {
    return this.either(
      async (s) => {
        const value = await s.readCounter(name, nowMs);
        const c = this.counters.get(name);
        this.rememberCounter(name, value, c?.expiresAtMs ?? nowMs + 86_400_000);
        return value;
      },
      async () => {
        const c = this.counters.get(name);
        return c && c.expiresAtMs > nowMs ? c.base + c.local : 0;
      },
    );
  }

  private rememberCounter(name: string, value: number, expiresAtMs: number): void {
    if (this.counters.size > 100_000) {
      const now = Date.now();
      for (const [k, v] of this.counters) if (v.expiresAtMs <= now) this.counters.delete(k);
    }
    this.counters.set(name, { base: value, local: 0, expiresAtMs });
  }

  async ping(): Promise<void> {
    // Alone, the instance serves: it is ready (degraded: status()).
    await this.either(
      (s) => s.ping(),
      async () => {},
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.mode !== 'local' && this.lastMember)
      await this.redis
        .ggHeartbeat(`${this.prefix}gen`, this.prefix, this.lastMember, '0', '', 'leave', '', '0')
        .catch(() => {});
    await this.primary.close();
  }
}

/** "sec:n,sec:n" → [[sec, n], ...] */
function pairs(text: string | undefined): [number, number][] {
  const out: [number, number][] = [];
  for (const item of (text ?? '').split(',')) {
    if (!item) continue;
    const [a, b] = item.split(':');
    out.push([Number(a), Number(b)]);
  }
  return out;
}

function asRedis(res: Reservation, o: LocalOrigin): Reservation {
  return { ...res, atMs: o.redisAtMs, tokenSlot: o.redisSlot };
}

/** What a report changes in a journal of local spend (a Redis reservation's: o null). */
function journalOutcome(j: UsageJournal, res: Reservation, o: LocalOrigin | null, outcome: Outcome): void {
  if (o) {
    const actual = settledTokens(outcome);
    if (actual !== undefined && actual !== res.tokens)
      j.settled(res.project, res.model, o.redisSlot, actual - res.tokens);
    if (outcome.kind === 'unused') j.returned(res.project, res.model, o.redisAtMs, res.day);
  }
  if (outcome.kind === 'rest') {
    j.rested(res.project, res.model, outcome.untilMs, outcome.reason);
    if (outcome.model !== undefined) j.rested(res.project, outcome.model, outcome.untilMs, outcome.reason);
  } else if (outcome.kind === 'disable') j.keyEnabled(res.keyId, false, outcome.reason);
}

/** gateway_store_degraded (0/1) and gateway_store_instances, read when Prometheus scrapes. */
export function registerFailoverMetrics(registry: Registry, store: FailoverStore): void {
  const registers = [registry];
  new Gauge({
    name: 'gateway_store_degraded',
    help: 'STORE_FAILURE_MODE=local: 1 while Redis is unreachable and this instance serves alone from its share of every budget, else 0.',
    registers,
    collect() {
      this.set(store.status().mode === 'local' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'gateway_store_instances',
    help: 'Gateway instances sharing the Redis state, as this instance last saw them through the heartbeats (the N of its 1/N share when Redis is unreachable).',
    registers,
    collect() {
      this.set(store.status().instances);
    },
  });
}
