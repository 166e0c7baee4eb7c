import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { parseFallbacks } from '../pool/fallback.ts';
import { describeJsonError } from './json-error.ts';
import { TIERS } from './tiers.ts';

/**
 * Every setting the gateway reads from the environment (and `.env`), validated at start.
 * A bad value stops start-up with a message naming the variable.
 */
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', ''])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (min = 0) => z.coerce.number().int().min(min);
/** A duration in seconds: "10s" or "5m" are refused with a message that says so (not "received NaN"). */
const seconds = (def: number) =>
  z.coerce
    .number({ error: 'expected a positive number of seconds, e.g. 300 or 2.5 (no unit)' })
    .positive()
    .default(def);

/**
 * Why a Redis address is not one, or null: a redis:// or rediss:// URL, or a Unix socket path.
 * ioredis reads anything else as a socket path (an http:// URL fails with ENOENT). The message
 * never repeats the address (it may hold a password).
 */
export function redisUrlProblem(raw: string): string | null {
  const s = raw.trim();
  if (s.startsWith('/') && !s.startsWith('//')) return null;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(s)?.[1]?.toLowerCase();
  const expected =
    'must be a redis:// or rediss:// URL (redis://[:password@]host:6379[/db]) or the path of a Unix socket';
  if (scheme === 'redis' || scheme === 'rediss') {
    try {
      if (!new URL(s).hostname) return `${expected}; it has no host`;
      return null;
    } catch {
      return `${expected}; it is not a valid URL (percent-encode special characters of the password)`;
    }
  }
  if (scheme === 'unix') return `${expected}; give the socket as a path (/run/redis/redis.sock), not unix://`;
  return scheme ? `${expected}, not ${scheme}://` : `${expected}; it has no scheme`;
}

const redisAddress = z.string().superRefine((raw, ctx) => {
  const problem = redisUrlProblem(raw);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** "a,b" or '["a","b"]' → ["a","b"] */
const list = z.string().transform((raw, ctx) => {
  const s = raw.trim();
  if (s === '') return [] as string[];
  if (s.startsWith('[')) {
    try {
      const parsed: unknown = JSON.parse(s);
      if (Array.isArray(parsed) && parsed.every((x) => typeof x === 'string')) return parsed as string[];
    } catch {
      /* fall through to the error below */
    }
    ctx.addIssue({ code: 'custom', message: 'expected a JSON list of strings or a comma-separated list' });
    return z.NEVER;
  }
  return s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
});

/** "host:port,host:port" (an IPv6 host in brackets: "[::1]:6379") → [{host, port}] */
const hostPorts = z.string().transform((raw, ctx) => {
  const out: { host: string; port: number }[] = [];
  for (const entry of raw
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    const m = /^(?:\[([^\]]+)\]|([^:/\s]+)):(\d{1,5})$/.exec(entry);
    const port = Number(m?.[3]);
    if (!m || port < 1 || port > 65535) {
      ctx.addIssue({ code: 'custom', message: 'each entry must be host:port (no scheme, no password)' });
      return z.NEVER;
    }
    out.push({ host: (m[1] ?? m[2])!, port });
  }
  if (out.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'expected at least one host:port' });
    return z.NEVER;
  }
  return out;
});

/** "token1:name1,token2:name2" → Map(token → name) */
const tokenMap = z.string().transform((raw, ctx) => {
  const map = new Map<string, string>();
  for (const entry of raw
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    const idx = entry.lastIndexOf(':');
    const token = idx > 0 ? entry.slice(0, idx).trim() : '';
    const name = idx > 0 ? entry.slice(idx + 1).trim() : '';
    if (!token || !name) {
      ctx.addIssue({ code: 'custom', message: 'each entry must be token:name' });
      return z.NEVER;
    }
    map.set(token, name);
  }
  return map;
});

/** "name:rpm,name2:rpm" → Map(name → rpm) */
const perNameLimits = z.string().transform((raw, ctx) => {
  const map = new Map<string, number>();
  for (const entry of raw
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    const [name, value] = entry.split(':');
    const n = Number(value);
    if (!name || !Number.isInteger(n) || n < 0) {
      ctx.addIssue({ code: 'custom', message: 'each entry must be name:requests_per_minute' });
      return z.NEVER;
    }
    map.set(name.trim(), n);
  }
  return map;
});

export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('production'),
  // server
  PORT: int(0).max(65535).optional(),
  SERVER_PORT: int(0).max(65535).optional(),
  SERVER_HOST: z.string().default('0.0.0.0'),
  // keys and upstream
  API_KEYS_FILE: z.string().optional(),
  GEMINI_API_KEYS: list.default([]),
  DEFAULT_RPM: int(1).default(60),
  DEFAULT_RPD: int(1).default(1440),
  DEFAULT_TPM: int(1).default(32000),
  /** Fills per-model limits of keys without a tier of their own from Google's table (config/tiers.ts). */
  DEFAULT_TIER: z.enum(TIERS).optional(),
  GEMINI_BASE_URL: z.url().default('https://generativelanguage.googleapis.com'),
  GEMINI_MODEL: z.string().min(1).default('gemini-2.5-flash-lite'),
  UPSTREAM_TIMEOUT_MS: int(1).default(120_000),
  MAX_ATTEMPTS: int(1).max(20).default(4),
  QUEUE_MAX_WAIT_MS: int(0).default(5000),
  CIRCUIT_FAILURE_THRESHOLD: int(1).default(5),
  CIRCUIT_COOLDOWN_MS: int(1).default(30_000),
  // model fallback (opt-in): "a>b>c" chains; a request asks with x-gateway-fallback: on
  MODEL_FALLBACKS: z
    .string()
    .default('')
    .transform((text, ctx) => {
      try {
        return parseFallbacks(text);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    }),
  MODEL_FALLBACK_DEFAULT: bool.default(false),
  /** Check every pool key with models.list (no generation quota) at start and after key changes. */
  VERIFY_KEYS: bool.default(true),
  /** How often keys disabled with a reason that heals (SERVICE_DISABLED, BILLING, …) are re-checked. */
  VERIFY_RECHECK_MS: int(1).default(600_000),
  /** Keys checked at once. */
  VERIFY_CONCURRENCY: int(1).max(64).default(4),
  /** Start waits this long at most for the first verification round (it never fails start). */
  VERIFY_STARTUP_WAIT_MS: int(0).default(5000),
  // client auth
  CLIENT_API_KEYS_MAP: tokenMap.default(new Map()),
  ALLOW_ANONYMOUS: bool.default(false),
  /** A JSON file of clients (tokens as SHA-256, limits, models, expiry), hot-reloaded (src/clients/). */
  CLIENTS_FILE: z.string().optional(),
  ADMIN_TOKEN: z.string().optional(),
  METRICS_TOKEN: z.string().optional(),
  /**
   * Series per pool key (gateway_key_state, gateway_key_remaining, key_id of
   * gateway_upstream_requests_total): `auto` (default) while the pool has at most 100 keys,
   * `true` always, `false` never. A pool of thousands of keys would otherwise make every scrape
   * megabytes long.
   */
  METRICS_PER_KEY: z.enum(['auto', 'true', 'false']).default('auto'),
  /** Projects that get (project, model) budget series (the most used first); 0 = every project. */
  METRICS_MAX_PROJECTS: int(0).default(100),
  // state
  REDIS_URL: redisAddress.optional(),
  REDIS_HOST: z
    .string()
    .refine((h) => !h.includes('://'), 'a host name, not a URL (a URL goes in REDIS_URL)')
    .optional(),
  REDIS_PORT: int(1).max(65535).default(6379),
  REDIS_DB: int(0).default(0),
  REDIS_PASSWORD: z.string().optional(),
  /** Longest wait for any Redis command: past it the command fails (a pool request answers 503). */
  REDIS_COMMAND_TIMEOUT_MS: int(1).max(60_000).default(1000),
  STATE_PREFIX: z.string().default('gg:'),
  /**
   * What pool requests get while Redis is unreachable: `local` (default) serves each instance's
   * share of every budget from memory (1/N, N = the instances it last saw) and adds what it spent
   * to Redis when it is back; `closed` answers 503 (src/store/failover.ts).
   */
  STORE_FAILURE_MODE: z.enum(['local', 'closed']).default('local'),
  /** A Sentinel group instead of REDIS_URL: some of its sentinels (host:port,...) and the master's name. */
  REDIS_SENTINELS: hostPorts.optional(),
  REDIS_SENTINEL_NAME: z.string().min(1).optional(),
  /** The sentinels' own password, when they have one (REDIS_PASSWORD is the master's). */
  REDIS_SENTINEL_PASSWORD: z.string().optional(),
  /** A Redis Cluster instead of REDIS_URL: some of its nodes (host:port,...); STATE_PREFIX becomes a hash tag. */
  REDIS_CLUSTER_NODES: hostPorts.optional(),
  /** Where embedded mode (no Redis) keeps what must survive a restart (admin-created clients, usage). */
  DATA_DIR: z.string().default('./data'),
  /** Days of usage history kept (per day, client and model: src/usage); at least 90. */
  USAGE_RETENTION_DAYS: int(90).default(400),
  /** A price table of the same shape as src/usage/prices.json whose models replace the built-in ones. */
  PRICES_FILE: z.string().optional(),
  /** Price overrides as JSON: {"<model>": {"input", "output", "cached"?, "output_image"?, "long"?}} (USD per 1M tokens). */
  PRICES_JSON: z.string().optional(),
  /**
   * Resource affinity (src/upstream/affinity.ts): a request that uses a file, cache, batch or
   * interaction goes to a key of the project that owns it. `off` is for tests only: it shows
   * what fails without affinity (client privacy stays on).
   */
  AFFINITY: z.enum(['on', 'off']).default('on'),
  /**
   * Signs upload session ids (HMAC). Default: derived from CLIENT_API_KEYS_MAP, which every
   * instance of a deployment shares; set it when instances have different client tokens.
   */
  UPLOAD_SESSION_SECRET: z.string().min(16).optional(),
  // HTTP layer
  REQUEST_TIMEOUT: seconds(300),
  MAX_UPLOAD_SIZE: int(1).default(10 * 1024 * 1024),
  /** Largest request body of the native Gemini proxy (Google takes inline data up to 100 MB). */
  NATIVE_MAX_BODY_SIZE: int(1).default(100 * 1024 * 1024),
  CORS_ORIGINS: list.default([]),
  CORS_ALLOW_CREDENTIALS: bool.default(false),
  GLOBAL_RATE_LIMIT: int(0).default(100),
  BURST_RATE_LIMIT: int(0).default(20),
  CLIENT_RATE_LIMIT: int(0).default(0),
  CLIENT_RATE_LIMITS: perNameLimits.default(new Map()),
  /**
   * Who GLOBAL_RATE_LIMIT and BURST_RATE_LIMIT apply to: requests without a valid client token
   * (default; authenticated requests are governed by their client's limits), or everyone.
   */
  IP_LIMIT_SCOPE: z.enum(['unauthenticated', 'all']).default('unauthenticated'),
  TRUSTED_PROXIES: list.default([]),
  COMPRESSION_THRESHOLD: int(0).default(1024),
  SHUTDOWN_TIMEOUT_MS: int(0).default(25_000),
  /** Processes serving the port (node:cluster): a number, or `auto` for one per CPU core. */
  WORKERS: z
    .string()
    .default('1')
    .transform((raw, ctx) => {
      const s = raw.trim().toLowerCase();
      if (s === 'auto') return availableParallelism();
      const n = Number(s);
      if (!Number.isInteger(n) || n < 1 || n > 256) {
        ctx.addIssue({ code: 'custom', message: 'expected a number of processes (1 to 256) or auto' });
        return z.NEVER;
      }
      return n;
    }),
  /** Longest wait for a request's headers (slow or half-open connections are closed with 408). */
  HEADERS_TIMEOUT_MS: int(1).default(10_000),
  /** Longest wait for a whole request (headers and body) to arrive; must be >= HEADERS_TIMEOUT_MS. */
  REQUEST_READ_TIMEOUT_MS: int(1).default(60_000),
  CONFIG_FILE: z.string().optional(),
  // logging
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_DIR: z.string().optional(),
  LOG_ROTATION: z.enum(['daily', 'hourly', '00:00']).default('daily'),
  LOG_RETENTION_DAYS: int(1).default(7),
  /** false: log only to files in LOG_DIR (not to stdout). */
  LOG_STDOUT: bool.default(true),
  // cache
  CACHE_ENABLED: bool.default(true),
  CACHE_DEFAULT_TTL: int(1).default(3600),
  CACHE_COMPRESSION_THRESHOLD: int(0).default(1000),
  CACHE_MAX_BYTES: int(1024).default(64 * 1024 * 1024),
  CACHE_NATIVE_PROXY: bool.default(false),
  /** Where cached answers live; default: Redis when CACHE_REDIS_URL or REDIS_URL is set, else memory. */
  CACHE_BACKEND: z.enum(['memory', 'redis']).optional(),
  /** A Redis of the response cache's own (default: the state store's, when there is one). */
  CACHE_REDIS_URL: redisAddress.optional(),
  // text processing
  TEXT_MAX_LENGTH: int(1).default(20_000),
  BATCH_MAX_SIZE: int(1).default(50),
  BATCH_CONCURRENCY: int(1).default(4),
  // image generation
  AI_PROVIDER: z.string().default('gemini'),
  IMAGE_MODEL: z.string().default('gemini-2.5-flash-image'),
  BACKEND_URL: z.url().optional(),
  BACKEND_SERVICE_TOKEN: z.string().optional(),
  OPENAI_API_KEY: z.string().optional(),
  OPENAI_BASE_URL: z.url().default('https://api.openai.com/v1'),
  STABILITY_API_KEY: z.string().optional(),
  STABILITY_BASE_URL: z.url().default('https://api.stability.ai'),
  MEDIA_DIR: z.string().default('media'),
  /** Generated images older than this are deleted (0 = kept forever). */
  MEDIA_RETENTION_HOURS: z.coerce
    .number({ error: 'expected a number of hours, e.g. 168 or 0.5 (0 keeps images forever)' })
    .min(0)
    .default(168),
  THROTTLE_RPM: int(0).default(10),
  IMAGE_FETCH_ALLOW_HOSTS: list.default([]),
  IMAGE_FETCH_MAX_BYTES: int(1).default(10 * 1024 * 1024),
  IMAGE_FETCH_TIMEOUT_MS: int(1).default(15_000),
});

export type Env = z.infer<typeof envSchema>;

export class ConfigError extends Error {}

/** The text of a file a setting names (API_KEYS_FILE, CONFIG_FILE); a failure names both. */
export async function readSettingFile(setting: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${setting}: cannot read ${path} (${(err as NodeJS.ErrnoException).code})`);
  }
}

/**
 * A settings file's JSON, validated by `schema`. Errors name the setting and each field at
 * fault, never a value (a keys file holds secrets).
 */
export function parseSettingJson<T>(text: string, setting: string, what: string, schema: z.ZodType<T>): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON.parse's message: it quotes the text around the error (a key fragment).
    throw new ConfigError(`${setting}: ${describeJsonError(text)}`);
  }
  const result = schema.safeParse(json);
  if (!result.success) {
    const lines = result.error.issues.map(
      (i) => `  ${setting}: ${i.path.join('.') || '(root)'}: ${i.message}`,
    );
    throw new ConfigError(`invalid ${what}:\n${lines.join('\n')}`);
  }
  return result.data;
}

/** Empty strings count as unset, so `FOO=` in .env falls back to the default. */
export function parseEnv(source: Record<string, string | undefined>): Env {
  const cleaned: Record<string, string> = {};
  for (const [k, v] of Object.entries(source)) if (v !== undefined && v !== '') cleaned[k] = v;
  const result = envSchema
    .refine((e) => !e.REDIS_SENTINELS || e.REDIS_SENTINEL_NAME, {
      path: ['REDIS_SENTINEL_NAME'],
      message:
        "required with REDIS_SENTINELS: the name of the master group the sentinels watch (sentinel.conf's 'sentinel monitor <name> ...')",
    })
    .refine(
      (e) =>
        [e.REDIS_URL || e.REDIS_HOST, e.REDIS_SENTINELS, e.REDIS_CLUSTER_NODES].filter(Boolean).length <= 1,
      {
        path: ['REDIS_URL'],
        message:
          'set one of REDIS_URL (or REDIS_HOST), REDIS_SENTINELS and REDIS_CLUSTER_NODES (the password goes in REDIS_PASSWORD)',
      },
    )
    .refine((e) => e.HEADERS_TIMEOUT_MS <= e.REQUEST_READ_TIMEOUT_MS, {
      path: ['HEADERS_TIMEOUT_MS'],
      message: 'must not exceed REQUEST_READ_TIMEOUT_MS',
    })
    .safeParse(cleaned);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return result.data;
}
