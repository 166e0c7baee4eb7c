import { readFile } from 'node:fs/promises';
import { z } from 'zod';

/**
 * Every setting the gateway reads from the environment (and `.env`), validated at start.
 * A bad value stops start-up with a message naming the variable.
 */
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', ''])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (min = 0) => z.coerce.number().int().min(min);
const positive = (def: number) => z.coerce.number().positive().default(def);

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
  GEMINI_BASE_URL: z.url().default('https://generativelanguage.googleapis.com'),
  GEMINI_MODEL: z.string().min(1).default('gemini-2.5-flash-lite'),
  UPSTREAM_TIMEOUT_MS: int(1).default(120_000),
  MAX_ATTEMPTS: int(1).max(20).default(4),
  QUEUE_MAX_WAIT_MS: int(0).default(5000),
  CIRCUIT_FAILURE_THRESHOLD: int(1).default(5),
  CIRCUIT_COOLDOWN_MS: int(1).default(30_000),
  // client auth
  CLIENT_API_KEYS_MAP: tokenMap.default(new Map()),
  ALLOW_ANONYMOUS: bool.default(false),
  ADMIN_TOKEN: z.string().optional(),
  METRICS_TOKEN: z.string().optional(),
  // state
  REDIS_URL: z.string().optional(),
  REDIS_HOST: z.string().optional(),
  REDIS_PORT: int(1).max(65535).default(6379),
  REDIS_DB: int(0).default(0),
  REDIS_PASSWORD: z.string().optional(),
  STATE_PREFIX: z.string().default('gg:'),
  // HTTP layer
  REQUEST_TIMEOUT: positive(300),
  MAX_UPLOAD_SIZE: int(1).default(10 * 1024 * 1024),
  CORS_ORIGINS: list.default([]),
  CORS_ALLOW_CREDENTIALS: bool.default(false),
  GLOBAL_RATE_LIMIT: int(0).default(100),
  BURST_RATE_LIMIT: int(0).default(20),
  CLIENT_RATE_LIMIT: int(0).default(0),
  CLIENT_RATE_LIMITS: perNameLimits.default(new Map()),
  TRUSTED_PROXIES: list.default([]),
  COMPRESSION_THRESHOLD: int(0).default(1024),
  SHUTDOWN_TIMEOUT_MS: int(0).default(25_000),
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
  MEDIA_RETENTION_HOURS: int(0).default(168),
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
  } catch (err) {
    throw new ConfigError(`${setting}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
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
