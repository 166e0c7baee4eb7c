import { normalizeModel } from './models.ts';

/**
 * Model fallback (opt-in): MODEL_FALLBACKS="gemini-2.5-pro>gemini-2.5-flash>gemini-2.5-flash-lite"
 * (several chains separated by commas). When the pool cannot serve a model within the wait, the
 * next model of its chain serves; the answer says which (x-gateway-model). A request asks for it
 * with `x-gateway-fallback: on` (or off), MODEL_FALLBACK_DEFAULT decides otherwise (off).
 */
export type FallbackChains = ReadonlyMap<string, readonly string[]>;

export const FALLBACK_HEADER = 'x-gateway-fallback';
export const MODEL_HEADER = 'x-gateway-model';

/** "a>b>c,d>e" → a: [b, c], b: [c], d: [e]. Throws on a chain of one model or a model twice. */
export function parseFallbacks(text: string): FallbackChains {
  const chains = new Map<string, string[]>();
  for (const chain of text
    .split(',')
    .map((c) => c.trim())
    .filter(Boolean)) {
    const models = chain.split('>').map((m) => normalizeModel(m.trim()));
    if (models.length < 2 || models.some((m) => !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(m)))
      throw new Error(`"${chain}" is not a chain of model names (a>b>c)`);
    if (new Set(models).size !== models.length) throw new Error(`"${chain}" names a model twice`);
    models.forEach((m, i) => {
      if (chains.has(m)) throw new Error(`"${m}" starts two chains`);
      chains.set(m, models.slice(i + 1));
    });
    chains.delete(models[models.length - 1]!);
  }
  return chains;
}

/** The fallbacks of one request: none unless the chain exists and the request (or the default) asks. */
export function fallbacksFor(
  chains: FallbackChains,
  model: string,
  header: string | string[] | undefined,
  byDefault: boolean,
): readonly string[] | undefined {
  if (chains.size === 0) return undefined;
  const value = (Array.isArray(header) ? header[0] : header)?.trim().toLowerCase();
  const asked = value === undefined || value === '' ? byDefault : ['on', 'true', '1', 'yes'].includes(value);
  return asked ? chains.get(normalizeModel(model)) : undefined;
}
