import { createHash } from 'node:crypto';
import { z } from 'zod';
import { JOB_BUDGET_NAME } from '../pool/job-budgets.ts';
import { normalizeModel } from '../pool/models.ts';
import { MODEL_NAME } from '../upstream/gemini-types.ts';
import { ConfigError, type Env, parseSettingJson } from './env.ts';
import { TIERS, type Tier, type TierModelLimits, tierLimits } from './tiers.ts';

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
  /** The budget of every model not named in modelLimits. */
  limits: KeyLimits;
  /** Budgets of named models (normalized names), resolved from model_limits, defaults and the tier table. */
  modelLimits: Record<string, KeyLimits>;
  /** The keys-file entry as written (persisted back unchanged: tiers and defaults are not expanded). */
  entry: KeyEntry;
  /**
   * Concurrent Live API sessions of its project, per model: `all` from `live_sessions` of the
   * entry or of the file's defaults (every model), else `models` from the tier table (Live
   * models). Absent when neither says: src/live/session-limit.ts applies its default.
   */
  liveSessions?: { all?: number; models: Readonly<Record<string, number>> };
}

const limitsSchema = z
  .object({
    requests_per_minute: z.number().int().positive().optional(),
    requests_per_day: z.number().int().positive().optional(),
    tokens_per_minute: z.number().int().positive().optional(),
  })
  .strict()
  .optional();

const modelLimitsSchema = z
  .record(
    // A model, or a batch / long-running job budget (pool/job-budgets.ts: batch:<model>, batch:manage, operations:poll).
    z
      .string()
      .refine(
        (n) => /^(models\/)?[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(n) || JOB_BUDGET_NAME.test(n),
        'a model name (or batch:<model>, batch:manage, operations:poll)',
      ),
    limitsSchema.unwrap(),
  )
  .optional();
const tierSchema = z.enum(TIERS).optional();

const keyEntrySchema = z
  .object({
    id: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[A-Za-z0-9_.:-]+$/, 'letters, digits, _ . : - only'),
    api_key: z
      .string()
      .min(1)
      .refine((s) => s.trim() === s && s.length > 0 && !/\s/.test(s), 'a key has no spaces'),
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
    model_limits: modelLimitsSchema,
    tier: tierSchema,
    live_sessions: z.number().int().positive().optional(),
  })
  .strict();

const defaultsSchema = z
  .object({
    tier: tierSchema,
    limits: limitsSchema,
    model_limits: modelLimitsSchema,
    live_sessions: z.number().int().positive().optional(),
  })
  .strict()
  .optional();

export const keysFileSchema = z.object({ defaults: defaultsSchema, keys: z.array(keyEntrySchema) }).strict();
export type KeyEntry = z.infer<typeof keyEntrySchema>;
export type KeyDefaults = NonNullable<z.infer<typeof defaultsSchema>>;
type EntryLimits = NonNullable<KeyEntry['limits']>;
type LimitEnv = Pick<Env, 'DEFAULT_RPM' | 'DEFAULT_RPD' | 'DEFAULT_TPM'> & {
  DEFAULT_TIER?: Tier | undefined;
};

/**
 * A key's budgets, field by field, the most specific source first: the key's `model_limits`
 * for the model, the file's `defaults.model_limits`, the key's own `limits`, the tier table
 * (the key's `tier`, else `defaults.tier`, else DEFAULT_TIER), `defaults.limits`, and last
 * DEFAULT_RPM/RPD/TPM. A model the tier table or a model_limits names gets a budget of its own;
 * every other model gets `limits`.
 */
export function keyFromEntry(entry: KeyEntry, env: LimitEnv, defaults: KeyDefaults = {}): KeyConfig {
  const tier = entry.tier ?? defaults.tier ?? env.DEFAULT_TIER;
  const table = tier ? tierLimits(tier) : {};
  const keyModels = normalizedKeys(entry.model_limits);
  const defaultModels = normalizedKeys(defaults.model_limits);
  const resolve = (model: string | null): KeyLimits => {
    const layers: Array<EntryLimits | undefined> = [
      model === null ? undefined : keyModels[model],
      model === null ? undefined : defaultModels[model],
      entry.limits,
      model === null ? undefined : fromTier(table[model]),
      defaults.limits,
    ];
    const pick = (field: keyof EntryLimits, fallback: number) =>
      layers.find((l) => l?.[field] !== undefined)?.[field] ?? fallback;
    return {
      requestsPerMinute: pick('requests_per_minute', env.DEFAULT_RPM),
      requestsPerDay: pick('requests_per_day', env.DEFAULT_RPD),
      tokensPerMinute: pick('tokens_per_minute', env.DEFAULT_TPM),
    };
  };
  const named = new Set([...Object.keys(table), ...Object.keys(defaultModels), ...Object.keys(keyModels)]);
  const modelLimits: Record<string, KeyLimits> = {};
  for (const model of named) modelLimits[model] = resolve(model);
  const liveAll = entry.live_sessions ?? defaults.live_sessions;
  const liveModels: Record<string, number> = {};
  for (const [model, row] of Object.entries(table))
    if (row.liveSessions) liveModels[model] = row.liveSessions;
  const live =
    liveAll !== undefined || Object.keys(liveModels).length > 0
      ? { liveSessions: { ...(liveAll !== undefined && { all: liveAll }), models: liveModels } }
      : {};
  return {
    id: entry.id,
    apiKey: entry.api_key,
    project: entry.project ?? entry.id,
    models: (entry.models ?? []).map(normalizeModel),
    enabled: entry.enabled ?? true,
    limits: resolve(null),
    modelLimits,
    entry,
    ...live,
  };
}

function normalizedKeys(limits: Record<string, EntryLimits> | undefined): Record<string, EntryLimits> {
  const out: Record<string, EntryLimits> = {};
  for (const [model, l] of Object.entries(limits ?? {})) out[normalizeModel(model)] = l;
  return out;
}

function fromTier(t: TierModelLimits | undefined): EntryLimits | undefined {
  if (!t) return undefined;
  return {
    requests_per_minute: t.requestsPerMinute,
    requests_per_day: t.requestsPerDay,
    tokens_per_minute: t.tokensPerMinute,
  };
}

/** The entry as it is persisted: what was written, with the fields the admin API changes. */
export function keyToEntry(key: KeyConfig): KeyEntry {
  return { ...key.entry, enabled: key.enabled };
}

/** The budget a key gives `model` (a normalized name). */
export function limitsFor(key: KeyConfig, model: string): KeyLimits {
  return key.modelLimits[model] ?? key.limits;
}

/** Stable, non-reversible id for keys given only as GEMINI_API_KEYS (the key itself must never be an id). */
export function envKeyId(apiKey: string): string {
  return `env_${createHash('sha256').update(apiKey).digest('hex').slice(0, 10)}`;
}

/** Parses a keys file's text; errors name the entry and field, never the key value. */
export function parseKeysFile(
  text: string,
  source: string,
  env: Env,
): { keys: KeyConfig[]; defaults: KeyDefaults } {
  const file = parseSettingJson(text, source, 'keys file', keysFileSchema);
  const defaults = file.defaults ?? {};
  return { keys: file.keys.map((e) => keyFromEntry(e, env, defaults)), defaults };
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
