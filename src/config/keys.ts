import { createHash } from 'node:crypto';
import { z } from 'zod';
import { MODEL_NAME } from '../upstream/gemini-types.ts';
import { ConfigError, type Env, parseSettingJson } from './env.ts';

export interface KeyLimits {
  requestsPerMinute: number;
  requestsPerDay: number;
  tokensPerMinute: number;
}

export interface KeyConfig {
  id: string;
  apiKey: string;
  /** Budget bucket: keys of one Google Cloud project share one quota. Defaults to the key id. */
  project: string;
  /** Allowed models; empty = every model. */
  models: string[];
  enabled: boolean;
  limits: KeyLimits;
}

const limitsSchema = z
  .object({
    requests_per_minute: z.number().int().positive().optional(),
    requests_per_day: z.number().int().positive().optional(),
    tokens_per_minute: z.number().int().positive().optional(),
  })
  .strict()
  .optional();

const keyEntrySchema = z
  .object({
    id: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[A-Za-z0-9_.:-]+$/, 'letters, digits, _ . : - only'),
    api_key: z.string().min(1),
    // No control characters: the Redis store writes projects and models into tab-separated text.
    project: z
      .string()
      .min(1)
      .max(200)
      .refine((s) => ![...s].some((c) => c < ' '), 'no control characters (tabs, line breaks)')
      .optional(),
    models: z.array(z.string().regex(MODEL_NAME, 'a model name: letters, digits, . _ - only')).optional(),
    enabled: z.boolean().optional(),
    limits: limitsSchema,
  })
  .strict();

export const keysFileSchema = z.object({ keys: z.array(keyEntrySchema) }).strict();
export type KeyEntry = z.infer<typeof keyEntrySchema>;

export function keyFromEntry(
  entry: KeyEntry,
  env: Pick<Env, 'DEFAULT_RPM' | 'DEFAULT_RPD' | 'DEFAULT_TPM'>,
): KeyConfig {
  return {
    id: entry.id,
    apiKey: entry.api_key,
    project: entry.project ?? entry.id,
    models: entry.models ?? [],
    enabled: entry.enabled ?? true,
    limits: {
      requestsPerMinute: entry.limits?.requests_per_minute ?? env.DEFAULT_RPM,
      requestsPerDay: entry.limits?.requests_per_day ?? env.DEFAULT_RPD,
      tokensPerMinute: entry.limits?.tokens_per_minute ?? env.DEFAULT_TPM,
    },
  };
}

export function keyToEntry(key: KeyConfig): KeyEntry {
  return {
    id: key.id,
    api_key: key.apiKey,
    ...(key.project !== key.id ? { project: key.project } : {}),
    ...(key.models.length ? { models: key.models } : {}),
    enabled: key.enabled,
    limits: {
      requests_per_minute: key.limits.requestsPerMinute,
      requests_per_day: key.limits.requestsPerDay,
      tokens_per_minute: key.limits.tokensPerMinute,
    },
  };
}

/** Stable, non-reversible id for keys given only as GEMINI_API_KEYS (the key itself must never be an id). */
export function envKeyId(apiKey: string): string {
  return `env_${createHash('sha256').update(apiKey).digest('hex').slice(0, 10)}`;
}

/** Parses a keys file's text; errors name the entry and field, never the key value. */
export function parseKeysFile(text: string, source: string, env: Env): KeyConfig[] {
  return parseSettingJson(text, source, 'keys file', keysFileSchema).keys.map((e) => keyFromEntry(e, env));
}

export function assertUnique(keys: KeyConfig[]): void {
  const ids = new Set<string>();
  const values = new Set<string>();
  for (const k of keys) {
    if (ids.has(k.id)) throw new ConfigError(`keys: duplicate key id "${k.id}"`);
    if (values.has(k.apiKey))
      throw new ConfigError(`keys: key "${k.id}" repeats the api_key of another entry`);
    ids.add(k.id);
    values.add(k.apiKey);
  }
}
