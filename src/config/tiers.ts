import { readFileSync } from 'node:fs';
import { z } from 'zod';

/**
 * Google's published rate limits per usage tier and model, from the data file tier-limits.json
 * (which records the page it was read from, the date, and how). `tier` in the keys file fills a
 * key's per-model limits from it; explicit numbers in the keys file win (see keyFromEntry).
 * Limits are per Google Cloud project and per model; a model or field Google publishes no number
 * for is absent, so the key's own limits apply to it.
 */
export const TIERS = ['free', 'tier1', 'tier2', 'tier3'] as const;
export type Tier = (typeof TIERS)[number];

export interface TierModelLimits {
  requestsPerMinute?: number;
  requestsPerDay?: number;
  tokensPerMinute?: number;
  /** Concurrent Live API sessions per project (Live models only). */
  liveSessions?: number;
}

const count = z.number().int().positive();
/** Normalized model names: no `models/` prefix (budgets count `gemini-2.5-flash`, not `models/gemini-2.5-flash`). */
const modelName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,127}$/, 'a normalized model name (no models/ prefix)');
const rowSchema = z
  .object({ rpm: count.optional(), tpm: count.optional(), rpd: count.optional(), sessions: count.optional() })
  .strict()
  .refine((r) => Object.values(r).some((v) => v !== undefined), 'at least one of rpm, tpm, rpd, sessions');
const tierSchema = z.record(modelName, rowSchema);

export const tierFileSchema = z
  .object({
    /** The page the numbers were read from. */
    source: z.url(),
    /** The date they were read (YYYY-MM-DD). */
    read: z.iso.date(),
    /** How they were obtained (e.g. from a copy of the page), and what was left out. */
    note: z.string().min(1),
    units: z.record(z.string(), z.string()),
    /** Each model's row in Google's table, to check the numbers against the source. */
    table_rows: z.record(modelName, z.string().min(1)),
    tiers: z.object({ free: tierSchema, tier1: tierSchema, tier2: tierSchema, tier3: tierSchema }).strict(),
  })
  .strict()
  .superRefine((file, ctx) => {
    for (const tier of TIERS)
      for (const model of Object.keys(file.tiers[tier]))
        if (!Object.hasOwn(file.table_rows, model))
          ctx.addIssue({
            code: 'custom',
            path: ['tiers', tier, model],
            message: 'model missing from table_rows',
          });
  });
export type TierFile = z.infer<typeof tierFileSchema>;

type Table = Readonly<Record<Tier, Readonly<Record<string, Readonly<TierModelLimits>>>>>;

/** Validates the data file's text and turns it into the lookup table; errors name the field. */
export function parseTierFile(text: string, source = 'tier-limits.json'): { file: TierFile; table: Table } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source}: not valid JSON (${(err as Error).message})`);
  }
  const parsed = tierFileSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((i) => {
        // A bad record key (model name) carries the reason in its own issues.
        const why = i.code === 'invalid_key' ? i.issues.map((k) => k.message).join(', ') : i.message;
        return `${i.path.join('.') || '(root)'}: ${why}`;
      })
      .join('; ');
    throw new Error(`${source}: ${issues}`);
  }
  const file = parsed.data;
  const table = {} as Record<Tier, Readonly<Record<string, Readonly<TierModelLimits>>>>;
  for (const tier of TIERS) {
    // No prototype: a model named like an Object.prototype member finds nothing.
    const models: Record<string, Readonly<TierModelLimits>> = Object.create(null);
    for (const [model, row] of Object.entries(file.tiers[tier])) {
      const limits: TierModelLimits = {};
      if (row.rpm !== undefined) limits.requestsPerMinute = row.rpm;
      if (row.tpm !== undefined) limits.tokensPerMinute = row.tpm;
      if (row.rpd !== undefined) limits.requestsPerDay = row.rpd;
      if (row.sessions !== undefined) limits.liveSessions = row.sessions;
      models[model] = Object.freeze(limits);
    }
    table[tier] = Object.freeze(models);
  }
  return { file, table: Object.freeze(table) };
}

const loaded = parseTierFile(readFileSync(new URL('./tier-limits.json', import.meta.url), 'utf8'));
const TABLE = loaded.table;
const NONE: Readonly<Record<string, Readonly<TierModelLimits>>> = Object.freeze(Object.create(null));

/** Where the table comes from: the page, the date it was read, and how. */
export const TIER_TABLE_SOURCE: Readonly<{ source: string; read: string; note: string }> = Object.freeze({
  source: loaded.file.source,
  read: loaded.file.read,
  note: loaded.file.note,
});

/** The tier's per-model limits (normalized model names); an unknown tier gives none. */
export function tierLimits(tier: Tier): Readonly<Record<string, Readonly<TierModelLimits>>> {
  return Object.hasOwn(TABLE, tier) ? TABLE[tier] : NONE;
}
