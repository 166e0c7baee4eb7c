import { AsyncResource } from 'node:async_hooks';
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { ConfigError } from '../config/env.ts';

/**
 * Every Redis client of the gateway (the state store's, the response cache's) is made here, so
 * that a Redis that fails in any way (refuses, vanishes, stops answering, comes back empty)
 * never wedges a request and never counts one twice:
 *
 * - `commandTimeout`: every command is answered, or rejected, within REDIS_COMMAND_TIMEOUT_MS.
 * - `socketTimeout` (same value): a connection that has not answered a written command for that
 *   long is dropped and reconnected, so after one timeout the following commands fail at once
 *   instead of each waiting out its own timeout on a dead connection.
 * - `enableOfflineQueue: false` once connected: while the connection is down (or handshaking),
 *   commands fail at once instead of waiting in a queue and being sent late, after their caller
 *   has given up on them (a late acquire would still count its request). The state store sends
 *   such a command once more itself when the connection was only being renewed (a failover's
 *   moment: RedisStore.whenRenewed).
 * - `maxRetriesPerRequest: 0` and `autoResendUnfulfilledCommands: false`: commands that were
 *   written and not answered when a connection closes are rejected at once and never written
 *   again on the next connection. Redis may have run them already: a script sent twice would
 *   count its requests twice. A Cluster has a resend of its own: a command whose node connection
 *   closed is sent again after `retryDelayOnFailover` (to the slot's master after a failover);
 *   it is 0 here, which turns that off. (Its resends on MOVED, ASK, TRYAGAIN and CLUSTERDOWN stay:
 *   Redis ran nothing then.)
 * - `retryStrategy`: reconnect forever, backing off from 50 ms to at most 1 s (plus jitter).
 * - An 'error' listener from the start: no "Unhandled error event" stack; one log line per outage
 *   (and per further kind of cause during it) that says the cause (refused, host not found, no
 *   answer, authentication, TLS), never a password, and one when it is back. Before the first
 *   connection the cause goes into connectRedis's ConfigError instead.
 *
 * A Redis that stalls (SIGSTOP, a long script, a network blackhole) can still run the commands it
 * had received before it stalled once it resumes: their callers already got an error. The acquire
 * script carries its deadline on Redis's clock and books nothing past it (acquire.lua); the other
 * scripts settle or report what was sent, which is right whenever they run.
 */

/** The store's scripts, by the command names RedisStore defines them as (its SCRIPTS). */
export const STORE_SCRIPT_NAMES: readonly string[] = [
  'ggAcquire',
  'ggReport',
  'ggSettle',
  'ggBackoff',
  'ggRegistry',
  'ggReseed',
  'ggSlot',
];

/**
 * What the store's client needs: auto-pipelining for the plain commands that callers issue
 * together (admin views, rate-limit counters), but not for the scripts. The store gathers its
 * acquires and settlements itself, and a pipeline of one around each call only costs the gateway
 * CPU (a pipeline built, and its write deferred to a later tick, with nothing to gather).
 * ioredis matches ignored commands by the name a script is defined as, not by EVALSHA.
 */
export const REDIS_OPTIONS = {
  enableAutoPipelining: true,
  autoPipeliningIgnoredCommands: [...STORE_SCRIPT_NAMES],
} satisfies RedisOptions;

/** REDIS_COMMAND_TIMEOUT_MS's default. */
export const DEFAULT_REDIS_COMMAND_TIMEOUT_MS = 1000;
const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 1000;

/** Reconnect forever: 50 ms, doubling to at most 1 s, plus up to 100 ms of jitter (instances spread out). */
export function reconnectDelay(attempt: number): number {
  const base = Math.min(RECONNECT_MIN_MS * 2 ** Math.min(Math.max(attempt - 1, 0), 10), RECONNECT_MAX_MS);
  return base + Math.floor(Math.random() * 100);
}

export interface RedisClientSettings {
  /** What the client serves, in log lines and errors: 'state store', 'response cache'. */
  role?: string;
  /** The setting that named the URL, in errors: REDIS_URL, CACHE_REDIS_URL. */
  setting?: string;
  /** REDIS_COMMAND_TIMEOUT_MS. */
  commandTimeoutMs?: number;
  /** Where outages are logged (one line each); none: they are not logged. */
  logger?: Pick<Logger, 'warn' | 'info'>;
  /** What the gateway does while this Redis is down, appended to the outage line. */
  whileDown?: string;
  /** ioredis options over the ones above (tests). */
  overrides?: RedisOptions;
}

interface ClientState {
  target: string;
  role: string;
  setting: string;
  timeoutMs: number;
  secrets: string[];
  lastError: Error | null;
  everReady: boolean;
  /** The kinds of cause logged during the current outage (one line each); null: up. */
  down: Set<string> | null;
}

const states = new WeakMap<Redis, ClientState>();

/** The URL's host and port (or socket path), without user or password: for log lines and errors. */
export function redisTarget(url: string): string {
  const s = url.trim();
  if (s.startsWith('/') && !s.startsWith('//')) return `unix socket ${s.split('?')[0]}`;
  try {
    const u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `redis://${s}`);
    return `${u.hostname || 'localhost'}:${u.port || '6379'}`;
  } catch {
    return 'the configured address';
  }
}

function urlSecrets(url: string): string[] {
  try {
    const u = new URL(url);
    return [u.password, u.username].filter((x) => x.length >= 3).flatMap((x) => [x, decodeURIComponent(x)]);
  } catch {
    return [];
  }
}

/** Which kind of cause an ioredis error is, so that one outage logs one line per kind. */
export function redisErrorKind(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const message = String(e?.message ?? err);
  switch (e?.code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
    case 'EAI_FAIL':
      return 'not_found';
    case 'ENOENT':
      return 'no_socket';
    case 'ETIMEDOUT':
      return 'connect_timeout';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'unreachable';
    case 'EACCES':
      return 'no_access';
  }
  if (/Socket timeout|Command timed out/i.test(message)) return 'timeout';
  if (/^(WRONGPASS|NOAUTH)|invalid (username-)?password|AUTH .*without any password/i.test(message))
    return 'auth';
  if (/^NOPERM/.test(message)) return 'permission';
  if (/^LOADING/.test(message)) return 'loading';
  if (/TLS|SSL|certificate/i.test(message) || String(e?.code ?? '').startsWith('ERR_SSL')) return 'tls';
  return 'other';
}

/** One phrase for an ioredis error: the cause in words, the target named, no secret in it. */
export function describeRedisError(
  err: unknown,
  ctx: { target: string; setting?: string; timeoutMs?: number; secrets?: readonly string[] },
): string {
  const setting = ctx.setting ?? 'REDIS_URL';
  let message = String((err as Error)?.message ?? err).split('\n')[0]!;
  for (const secret of ctx.secrets ?? []) if (secret) message = message.split(secret).join('***');
  switch (redisErrorKind(err)) {
    case 'refused':
      return `connection refused by ${ctx.target} (is Redis running there?)`;
    case 'not_found':
      return `host not found: ${ctx.target} (check the host name in ${setting})`;
    case 'no_socket':
      return `no Unix socket at ${ctx.target.replace(/^unix socket /, '')} (${setting} must be a redis:// or rediss:// URL or the path of Redis's socket)`;
    case 'connect_timeout':
      return `connecting to ${ctx.target} timed out`;
    case 'timeout':
      return `no answer from ${ctx.target} within ${ctx.timeoutMs ?? DEFAULT_REDIS_COMMAND_TIMEOUT_MS} ms (REDIS_COMMAND_TIMEOUT_MS)`;
    case 'reset':
      return `connection to ${ctx.target} reset (${message}; a rediss:// URL for a plain Redis or the other way round does this too)`;
    case 'unreachable':
      return `no route to ${ctx.target}`;
    case 'no_access':
      return `permission denied opening ${ctx.target}`;
    case 'auth':
      return `authentication failed at ${ctx.target}: ${message.split(' ')[0]} (check the user and password in ${setting})`;
    case 'permission':
      return `the Redis user may not run what the gateway needs at ${ctx.target}: ${message}`;
    case 'loading':
      return `${ctx.target} is loading its data set`;
    case 'tls':
      return `TLS with ${ctx.target} failed: ${message} (rediss:// needs a TLS port, redis:// a plain one)`;
    default:
      return `${ctx.target}: ${message}`;
  }
}

/**
 * Where the state store's Redis is: one server (a URL), a Sentinel group (the master it names,
 * found again after a failover), or a Cluster (REDIS_SENTINELS, REDIS_CLUSTER_NODES).
 */
export type RedisTopology =
  | { kind: 'url'; url: string }
  | {
      kind: 'sentinel';
      sentinels: readonly HostPort[];
      /** The master group's name (REDIS_SENTINEL_NAME). */
      name: string;
      password?: string;
      sentinelPassword?: string;
      db?: number;
    }
  | { kind: 'cluster'; nodes: readonly HostPort[]; password?: string };

export interface HostPort {
  host: string;
  port: number;
}

/** Is this client a Cluster (made by createRedisClientFor for REDIS_CLUSTER_NODES)? */
export function isCluster(client: unknown): client is Cluster {
  return client instanceof Cluster;
}

/** The client as a Cluster, when it is one (a Cluster is handed around as the Redis type). */
export function clusterOf(client: unknown): Cluster | null {
  return client instanceof Cluster ? client : null;
}

/**
 * In a Cluster every script must touch one hash slot: the store's keys all start with the
 * prefix, so the prefix becomes a hash tag (`gg:` -> `{gg}:`); one that has a tag already is kept.
 */
export function clusterPrefix(prefix: string): string {
  if (/\{[^}]+\}/.test(prefix)) return prefix;
  return prefix.endsWith(':') ? `{${prefix.slice(0, -1)}}:` : `{${prefix}}`;
}

/** The command timeout a client was made with (a Cluster keeps it in its nodes' options). */
export function commandTimeoutOf(client: Redis | Cluster): number | undefined {
  return isCluster(client) ? client.options.redisOptions?.commandTimeout : client.options.commandTimeout;
}

/**
 * A Redis client with the failure behaviour above. It connects on first use, or when
 * connectRedis is awaited (what the gateway does at start).
 */
export function createRedisClient(url: string, settings: RedisClientSettings = {}): Redis {
  return createRedisClientFor({ kind: 'url', url }, settings);
}

/**
 * createRedisClient for any topology. A Cluster is returned as the Redis type the gateway's
 * callers are written against: the commands they use (single keys, MULTI on keys of one slot,
 * scripts routed by their first key) behave alike; where the two differ (options, SCAN), callers
 * ask isCluster.
 */
export function createRedisClientFor(topology: RedisTopology, settings: RedisClientSettings = {}): Redis {
  const timeoutMs = settings.commandTimeoutMs ?? DEFAULT_REDIS_COMMAND_TIMEOUT_MS;
  const perConnection = {
    commandTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    connectTimeout: Math.max(timeoutMs, 1000),
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
  } satisfies RedisOptions;
  let client: Redis;
  let target: string;
  let secrets: string[];
  if (topology.kind === 'url') {
    client = new Redis(topology.url, {
      ...REDIS_OPTIONS,
      lazyConnect: true,
      ...perConnection,
      // Until the first connection is ready, commands issued at once wait for it (bounded: they
      // fail with it, or at their timeout). After that, see the top of this file.
      enableOfflineQueue: true,
      retryStrategy: reconnectDelay,
      ...settings.overrides,
    });
    target = redisTarget(topology.url);
    secrets = urlSecrets(topology.url);
  } else if (topology.kind === 'sentinel') {
    client = new Redis({
      ...REDIS_OPTIONS,
      lazyConnect: true,
      ...perConnection,
      enableOfflineQueue: true,
      retryStrategy: reconnectDelay,
      sentinels: topology.sentinels.map((s) => ({ host: s.host, port: s.port })),
      name: topology.name,
      ...(topology.password ? { password: topology.password } : {}),
      ...(topology.sentinelPassword ? { sentinelPassword: topology.sentinelPassword } : {}),
      db: topology.db ?? 0,
      // Every sentinel unreachable: asked again, as the server is (forever, 50 ms to 1 s).
      sentinelRetryStrategy: reconnectDelay,
      sentinelCommandTimeout: timeoutMs,
      // Sentinels announce a failover (+switch-master): the client moves to the new master
      // at once instead of when the old one drops its connections.
      failoverDetector: true,
      // The old master, demoted, refuses writes: connect again (asking the sentinels where the
      // master is now). The refused command is not sent again (it fails; see the top).
      reconnectOnError: (err: Error) => /^READONLY/.test(err.message),
      ...settings.overrides,
    });
    target = `sentinel master ${topology.name} (${topology.sentinels.map(hostPort).join(',')})`;
    secrets = [topology.password, topology.sentinelPassword].filter((x): x is string => !!x && x.length >= 3);
  } else {
    const options: ClusterOptions = {
      enableAutoPipelining: REDIS_OPTIONS.enableAutoPipelining,
      autoPipeliningIgnoredCommands: [...REDIS_OPTIONS.autoPipeliningIgnoredCommands],
      lazyConnect: true,
      enableOfflineQueue: true,
      clusterRetryStrategy: reconnectDelay,
      // A command whose node connection closed is not sent again (Redis may have run it; see the
      // top). A failed-over master is found through the MOVED answers that follow: a slot whose
      // node has gone is asked of another master, whose MOVED refreshes the slots.
      retryDelayOnFailover: 0,
      retryDelayOnClusterDown: 100,
      slotsRefreshTimeout: Math.max(timeoutMs, 1000),
      redisOptions: {
        ...perConnection,
        ...(topology.password ? { password: topology.password } : {}),
      },
      ...(settings.overrides as ClusterOptions | undefined),
    };
    client = new Cluster(
      topology.nodes.map((n) => ({ host: n.host, port: n.port })),
      options,
    ) as unknown as Redis;
    target = `cluster ${topology.nodes.map(hostPort).join(',')}`;
    secrets = topology.password && topology.password.length >= 3 ? [topology.password] : [];
  }
  const state: ClientState = {
    target,
    role: settings.role ?? 'state store',
    setting: settings.setting ?? 'REDIS_URL',
    timeoutMs,
    secrets,
    lastError: null,
    everReady: false,
    down: null,
  };
  states.set(client, state);
  const { logger } = settings;
  const onError = AsyncResource.bind((err: Error) => {
    state.lastError = err;
    if (!state.everReady) return; // connectRedis names the cause in its error
    const kind = redisErrorKind(err);
    if (state.down?.has(kind)) return;
    const first = state.down === null;
    state.down ??= new Set();
    state.down.add(kind);
    const cause = describeRedisError(err, state);
    logger?.warn(
      { redis: state.target, role: state.role, cause },
      `redis (${state.role}) ${first ? 'unreachable' : 'still unreachable'}: ${cause}${settings.whileDown ? `; ${settings.whileDown}` : ''}`,
    );
  });
  // Bound to where the client is made (start-up): an outage line is not the line of whichever
  // request's command happened to notice it (the logger adds the current request's id).
  client.on('error', onError);
  // A Cluster tells a node's connection errors apart from its own.
  if (topology.kind === 'cluster') (client as unknown as Cluster).on('node error', onError);
  client.on(
    'ready',
    AsyncResource.bind(() => {
      if (!settings.overrides || settings.overrides.enableOfflineQueue === undefined)
        client.options.enableOfflineQueue = false;
      if (state.down !== null)
        logger?.info({ redis: state.target, role: state.role }, `redis (${state.role}) reachable again`);
      state.down = null;
      state.everReady = true;
    }),
  );
  return client;
}

function hostPort(h: HostPort): string {
  return h.host.includes(':') ? `[${h.host}]:${h.port}` : `${h.host}:${h.port}`;
}

/**
 * Connects a client made by createRedisClient. Failing, it stops the client's reconnecting and
 * throws a ConfigError that names the setting, the target and the cause.
 */
export async function connectRedis(client: Redis): Promise<void> {
  const state = states.get(client);
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    const cause = state?.lastError ?? err;
    const ctx = state ?? { target: 'Redis' };
    throw new ConfigError(
      `${state?.setting ?? 'REDIS_URL'}: cannot connect to Redis (${state?.role ?? 'state store'}): ${describeRedisError(cause, ctx)}`,
    );
  }
}

function configMap(reply: unknown): Record<string, string> {
  if (Array.isArray(reply)) {
    const out: Record<string, string> = {};
    for (let i = 0; i + 1 < reply.length; i += 2) out[String(reply[i])] = String(reply[i + 1]);
    return out;
  }
  if (reply && typeof reply === 'object')
    return Object.fromEntries(Object.entries(reply).map(([k, v]) => [k, String(v)]));
  return {};
}

/** The server's run_id: two clients with the same one talk to one Redis (one memory). */
export async function redisRunId(client: Redis): Promise<string | null> {
  try {
    return /run_id:(\w+)/.exec(await client.info('server'))?.[1] ?? null;
  } catch {
    return null;
  }
}

/**
 * At start: the state store's Redis must never evict the gateway's rate state (budgets, rests,
 * disables) to make room, least of all for cached answers. With maxmemory set and a policy other
 * than noeviction, a start whose response cache shares that Redis is refused (ConfigError);
 * otherwise it is a warning. CONFIG may be disabled (managed Redis): then one warning.
 */
export async function checkEvictionPolicy(
  client: Redis,
  opts: { cacheShares: boolean; logger?: Pick<Logger, 'warn'> },
): Promise<void> {
  const target = states.get(client)?.target ?? 'Redis';
  let config: Record<string, string>;
  try {
    config = configMap(await client.call('CONFIG', 'GET', 'maxmemory*'));
  } catch (err) {
    opts.logger?.warn(
      { redis: target, cause: String((err as Error).message).split('\n')[0] },
      `cannot read maxmemory-policy of ${target} (CONFIG is disabled or not allowed); make sure it is noeviction, or Redis may evict the gateway's rate state${opts.cacheShares ? ' to make room for cached answers (or give the cache its own Redis: CACHE_REDIS_URL)' : ''}`,
    );
    return;
  }
  const maxmemory = Number(config.maxmemory ?? 0);
  const policy = config['maxmemory-policy'] ?? 'noeviction';
  if (!(maxmemory > 0)) return;
  if (policy === 'noeviction') {
    if (opts.cacheShares)
      opts.logger?.warn(
        { redis: target, maxmemory, policy },
        `${target} has maxmemory ${maxmemory} and is shared by the state store and the response cache: once cached answers fill it, Redis refuses writes and pool requests answer 503 until entries expire; give the cache its own Redis (CACHE_REDIS_URL) or keep the cache in memory (CACHE_BACKEND=memory)`,
      );
    return;
  }
  if (opts.cacheShares) {
    throw new ConfigError(
      `REDIS_URL: ${target} has maxmemory ${maxmemory} with maxmemory-policy ${policy}: Redis would evict the gateway's rate state (budgets, rests, disabled keys) to make room for cached answers. Fix one of: give the response cache its own Redis (CACHE_REDIS_URL), keep it in memory (CACHE_BACKEND=memory) or switch it off (CACHE_ENABLED=false), or set maxmemory-policy noeviction on this Redis`,
    );
  }
  opts.logger?.warn(
    { redis: target, maxmemory, policy },
    `${target} has maxmemory ${maxmemory} with maxmemory-policy ${policy}: under memory pressure Redis may evict the gateway's rate state (budgets, rests, disabled keys); set maxmemory-policy noeviction`,
  );
}
