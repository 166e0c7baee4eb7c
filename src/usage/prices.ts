import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, parseSettingJson } from '../config/env.ts';
import type { Counts } from './counts.ts';

/**
 * The price table (USD per million tokens, per model) that turns counted usage into cost: the
 * data file prices.json (Google's published paid-tier Standard prices, with the page and the date
 * they were read), overridden per model by PRICES_FILE (a file of the same shape) and then by
 * PRICES_JSON (`{"<model>": {"input", "output", "cached"?, "output_image"?, "long"?}}`).
 */
const price = z.number().nonnegative().finite();
const rates = z
  .object({
    input: price,
    output: price,
    cached: price.optional(),
    output_image: price.optional(),
  })
  .strict();
const modelPrice = rates
  .extend({
    long: rates.partial().optional(),
    note: z.string().optional(),
  })
  .strict();
export type ModelPrice = z.infer<typeof modelPrice>;
const modelsSchema = z.record(z.string().min(1), modelPrice);
const tableSchema = z.looseObject({
  source: z.string().optional(),
  page_updated: z.string().optional(),
  read: z.string().optional(),
  long_context_threshold: z.number().int().positive().optional(),
  models: modelsSchema,
});

export interface PriceTable {
  /** Where the built-in numbers come from and when they were read (prices.json). */
  source: string;
  pageUpdated: string | null;
  read: string | null;
  /** Prompt size (tokens) above which a request is billed at a model's `long` prices. */
  longThreshold: number;
  models: ReadonlyMap<string, ModelPrice>;
  /** Models whose price came from PRICES_FILE or PRICES_JSON. */
  overridden: readonly string[];
}

const DEFAULT_THRESHOLD = 200_000;

function builtIn(): z.infer<typeof tableSchema> {
  const text = readFileSync(new URL('./prices.json', import.meta.url), 'utf8');
  return parseSettingJson(text, 'prices.json', 'built-in price table', tableSchema);
}

/** The price table in effect: the built-in one with PRICES_FILE's and PRICES_JSON's models over it. */
export function loadPrices(settings: { PRICES_FILE?: string; PRICES_JSON?: string } = {}): PriceTable {
  const base = builtIn();
  const models = new Map(Object.entries(base.models));
  const overridden: string[] = [];
  let threshold = base.long_context_threshold ?? DEFAULT_THRESHOLD;
  if (settings.PRICES_FILE) {
    let text: string;
    try {
      text = readFileSync(settings.PRICES_FILE, 'utf8');
    } catch (err) {
      throw new ConfigError(
        `PRICES_FILE: cannot read ${settings.PRICES_FILE} (${(err as NodeJS.ErrnoException).code})`,
      );
    }
    const file = parseSettingJson(text, 'PRICES_FILE', 'price table', tableSchema);
    if (file.long_context_threshold) threshold = file.long_context_threshold;
    for (const [m, p] of Object.entries(file.models)) {
      models.set(m, p);
      overridden.push(m);
    }
  }
  if (settings.PRICES_JSON) {
    const extra = parseSettingJson(settings.PRICES_JSON, 'PRICES_JSON', 'price overrides', modelsSchema);
    for (const [m, p] of Object.entries(extra)) {
      models.set(m, p);
      overridden.push(m);
    }
  }
  return {
    source: base.source ?? 'prices.json',
    pageUpdated: base.page_updated ?? null,
    read: base.read ?? null,
    longThreshold: threshold,
    models,
    overridden: [...new Set(overridden)],
  };
}

/** A model's price: its own name, else without a `models/` prefix; undefined when the table has none. */
export function priceOf(table: PriceTable, model: string): ModelPrice | undefined {
  return table.models.get(model) ?? table.models.get(model.replace(/^models\//, ''));
}

/**
 * Cost in USD of counted usage at a model's price, or null when the table has no price for it.
 * Per request class (up to the threshold, above it): uncached prompt tokens at `input`, cached
 * ones at `cached` (else `input`), text output and thinking at `output`, image output at
 * `output_image` (else `output`).
 */
export function costOf(p: ModelPrice | undefined, c: Counts): number | null {
  if (p === undefined) return null;
  const long = p.long ?? {};
  const shortPrompt = c.prompt_tokens - c.long_prompt_tokens;
  const shortCached = c.cached_tokens - c.long_cached_tokens;
  const shortOutput = c.output_tokens - c.long_output_tokens;
  const shortThought = c.thought_tokens - c.long_thought_tokens;
  // Image output tokens are part of output_tokens (image models have no long-context prices).
  const image = Math.min(c.image_output_tokens, shortOutput);
  const imagePrice = p.output_image ?? p.output;
  const micro =
    (shortPrompt - shortCached) * p.input +
    shortCached * (p.cached ?? p.input) +
    (shortOutput - image + shortThought) * p.output +
    image * imagePrice +
    (c.long_prompt_tokens - c.long_cached_tokens) * (long.input ?? p.input) +
    c.long_cached_tokens * (long.cached ?? p.cached ?? long.input ?? p.input) +
    (c.long_output_tokens + c.long_thought_tokens) * (long.output ?? p.output);
  return roundUsd(micro / 1_000_000);
}

/** USD to 1e-9 (a nano-dollar): sums of float products otherwise show noise in the last digits. */
export function roundUsd(usd: number): number {
  return Math.round(usd * 1e9) / 1e9;
}
