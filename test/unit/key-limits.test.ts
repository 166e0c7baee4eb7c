import { describe, expect, it } from 'vitest';
import { ConfigError, parseEnv } from '../../src/config/env.ts';
import {
  type KeyDefaults,
  type KeyEntry,
  keyFromEntry,
  keyToEntry,
  limitsFor,
  parseKeysFile,
} from '../../src/config/keys.ts';
import { type Tier, tierLimits } from '../../src/config/tiers.ts';

/**
 * How a key's budgets are resolved (the comment on keyFromEntry), field by field, the most
 * specific source first: the key's model_limits > defaults.model_limits > the key's limits >
 * the tier table > defaults.limits > DEFAULT_RPM/RPD/TPM.
 */
const ENV = { DEFAULT_RPM: 61, DEFAULT_RPD: 1441, DEFAULT_TPM: 32_001 };
const envWithTier = (DEFAULT_TIER: Tier | undefined) => ({ ...ENV, DEFAULT_TIER });
/** A model every tier table gives all three numbers (checked below). */
const M = 'gemini-2.5-pro';
const TIER: Tier = 'tier1';
const FIELDS = [
  ['requests_per_minute', 'requestsPerMinute'],
  ['requests_per_day', 'requestsPerDay'],
  ['tokens_per_minute', 'tokensPerMinute'],
] as const;
type FileField = (typeof FIELDS)[number][0];
type Layer = 'keyModel' | 'defaultsModel' | 'keyLimits' | 'tier' | 'defaultsLimits';
const LAYERS: Layer[] = ['keyModel', 'defaultsModel', 'keyLimits', 'tier', 'defaultsLimits'];

/** An entry and defaults in which each layer in `present` sets `field` to a value of its own. */
function layered(field: FileField, present: ReadonlySet<Layer>): { entry: KeyEntry; defaults: KeyDefaults } {
  const entry: KeyEntry = { id: 'k', api_key: 'AIza-layered' };
  const defaults: KeyDefaults = {};
  if (present.has('keyModel')) entry.model_limits = { [M]: { [field]: 1 } };
  if (present.has('defaultsModel')) defaults.model_limits = { [M]: { [field]: 2 } };
  if (present.has('keyLimits')) entry.limits = { [field]: 3 };
  if (present.has('tier')) entry.tier = TIER;
  if (present.has('defaultsLimits')) defaults.limits = { [field]: 5 };
  return { entry, defaults };
}

describe('per-model key limits', () => {
  it('the layered model is fully in the tier table (the precedence test relies on it)', () => {
    expect(tierLimits(TIER)[M]).toEqual({
      requestsPerMinute: 150,
      requestsPerDay: 10_000,
      tokensPerMinute: 2_000_000,
    });
  });

  it('each field comes from the most specific source that sets it', () => {
    const fromTier = tierLimits(TIER)[M]!;
    for (const [field, prop] of FIELDS) {
      const expected: Record<Layer | 'env', number> = {
        keyModel: 1,
        defaultsModel: 2,
        keyLimits: 3,
        tier: fromTier[prop]!,
        defaultsLimits: 5,
        env: {
          requestsPerMinute: ENV.DEFAULT_RPM,
          requestsPerDay: ENV.DEFAULT_RPD,
          tokensPerMinute: ENV.DEFAULT_TPM,
        }[prop],
      };
      // Drop the layers one by one from the top: the next one down must answer.
      for (let top = 0; top <= LAYERS.length; top++) {
        const present = new Set(LAYERS.slice(top));
        const { entry, defaults } = layered(field, present);
        const key = keyFromEntry(entry, ENV, defaults);
        const winner = LAYERS[top] ?? 'env';
        const what = `${field} with ${[...present].join(',') || 'nothing'}`;
        expect(limitsFor(key, M)[prop], what).toBe(expected[winner]);
        // the model has a budget of its own only when a model_limits or the tier table names it
        const named = present.has('keyModel') || present.has('defaultsModel') || present.has('tier');
        expect(Object.hasOwn(key.modelLimits, M), what).toBe(named);
      }
      // Any single layer alone is used.
      for (const only of LAYERS) {
        const { entry, defaults } = layered(field, new Set([only]));
        const key = keyFromEntry(entry, ENV, defaults);
        expect(limitsFor(key, M)[prop], `${field} from ${only} alone`).toBe(expected[only]);
      }
    }
  });

  it('a layer that sets one field leaves the others to the layers below', () => {
    const key = keyFromEntry(
      {
        id: 'k',
        api_key: 'AIza-k',
        tier: TIER,
        limits: { tokens_per_minute: 300 },
        model_limits: { [M]: { requests_per_minute: 7 } },
      },
      ENV,
      {
        model_limits: { [M]: { requests_per_day: 20 } },
        limits: { requests_per_minute: 500, requests_per_day: 500 },
      },
    );
    expect(key.modelLimits[M]).toEqual({ requestsPerMinute: 7, requestsPerDay: 20, tokensPerMinute: 300 });
    // a tier row without a requests-per-day number: RPD falls through to defaults.limits
    expect(tierLimits(TIER)['gemini-2.5-flash-lite']!.requestsPerDay).toBeUndefined();
    expect(key.modelLimits['gemini-2.5-flash-lite']).toEqual({
      requestsPerMinute: 4000,
      requestsPerDay: 500,
      tokensPerMinute: 300, // the key's own limits beat the tier table
    });
  });

  it('a tier row without a number for a field leaves that field to DEFAULT_*', () => {
    const key = keyFromEntry({ id: 'k', api_key: 'AIza-k', tier: 'tier1' }, ENV);
    expect(key.modelLimits['imagen-4.0-generate-001']).toEqual({
      requestsPerMinute: 10,
      requestsPerDay: 70,
      tokensPerMinute: ENV.DEFAULT_TPM,
    });
  });

  it('models nobody names get the key limits, then defaults.limits, then DEFAULT_*: never a tier or model_limits', () => {
    const bare = keyFromEntry({ id: 'k', api_key: 'AIza-k' }, ENV);
    expect(bare.limits).toEqual({ requestsPerMinute: 61, requestsPerDay: 1441, tokensPerMinute: 32_001 });
    expect(bare.modelLimits).toEqual({});
    expect(limitsFor(bare, M)).toEqual(bare.limits);

    const key = keyFromEntry(
      {
        id: 'k',
        api_key: 'AIza-k',
        tier: 'tier3',
        limits: { requests_per_minute: 9 },
        model_limits: { [M]: { requests_per_day: 1 } },
      },
      ENV,
      { limits: { requests_per_day: 99 }, model_limits: { 'gemini-2.5-flash': { tokens_per_minute: 5 } } },
    );
    expect(key.limits).toEqual({ requestsPerMinute: 9, requestsPerDay: 99, tokensPerMinute: 32_001 });
    expect(limitsFor(key, 'gemini-0-unlisted')).toEqual(key.limits);
    expect(limitsFor(key, M)).toEqual(key.modelLimits[M]);
    expect(limitsFor(key, M)).toEqual({
      requestsPerMinute: 9,
      requestsPerDay: 1,
      tokensPerMinute: 8_000_000,
    });
  });

  it('the tier is the key’s own, else defaults.tier, else DEFAULT_TIER', () => {
    const pro = (tier: Tier) => {
      const t = tierLimits(tier)[M]!;
      return {
        requestsPerMinute: t.requestsPerMinute,
        requestsPerDay: t.requestsPerDay ?? ENV.DEFAULT_RPD,
        tokensPerMinute: t.tokensPerMinute,
      };
    };
    const own = keyFromEntry({ id: 'k', api_key: 'AIza-k', tier: 'free' }, envWithTier('tier3'), {
      tier: 'tier2',
    });
    expect(own.modelLimits[M]).toEqual(pro('free'));
    const fromDefaults = keyFromEntry({ id: 'k', api_key: 'AIza-k' }, envWithTier('tier3'), {
      tier: 'tier2',
    });
    expect(fromDefaults.modelLimits[M]).toEqual(pro('tier2'));
    const fromEnv = keyFromEntry({ id: 'k', api_key: 'AIza-k' }, envWithTier('tier3'));
    expect(fromEnv.modelLimits[M]).toEqual(pro('tier3'));
    const none = keyFromEntry({ id: 'k', api_key: 'AIza-k' }, envWithTier(undefined));
    expect(none.modelLimits).toEqual({});
    // DEFAULT_TIER does not add models to a key whose own tier lacks them
    expect(tierLimits('tier3')['gemini-3-pro-preview']).toBeDefined();
    expect(own.modelLimits['gemini-3-pro-preview']).toBeUndefined();
    expect(fromEnv.modelLimits['gemini-3-pro-preview']).toBeDefined();
  });

  it('DEFAULT_TIER comes from the environment and is checked', () => {
    expect(parseEnv({ DEFAULT_TIER: 'tier2' }).DEFAULT_TIER).toBe('tier2');
    expect(parseEnv({}).DEFAULT_TIER).toBeUndefined();
    expect(() => parseEnv({ DEFAULT_TIER: 'gold' })).toThrow(/DEFAULT_TIER/);
    const [key] = parseKeysFile(
      JSON.stringify({ keys: [{ id: 'k', api_key: 'AIza-k' }] }),
      'keys.json',
      parseEnv({ DEFAULT_TIER: 'tier1' }),
    ).keys;
    expect(key!.modelLimits[M]).toEqual({
      requestsPerMinute: 150,
      requestsPerDay: 10_000,
      tokensPerMinute: 2_000_000,
    });
  });

  it('modelLimits names every model of the tier table and of both model_limits, and no other', () => {
    const key = keyFromEntry(
      {
        id: 'k',
        api_key: 'AIza-k',
        tier: 'tier2',
        model_limits: { 'my-tuned-model': { requests_per_minute: 3 } },
      },
      ENV,
      { model_limits: { 'gemini-flash-latest': { requests_per_day: 4 } } },
    );
    expect(Object.keys(key.modelLimits).sort()).toEqual(
      [...Object.keys(tierLimits('tier2')), 'my-tuned-model', 'gemini-flash-latest'].sort(),
    );
    for (const limits of Object.values(key.modelLimits))
      expect(Object.keys(limits).sort()).toEqual(['requestsPerDay', 'requestsPerMinute', 'tokensPerMinute']);
    expect(key.modelLimits['my-tuned-model']).toEqual({
      requestsPerMinute: 3,
      requestsPerDay: 1441,
      tokensPerMinute: 32_001,
    });
    expect(key.modelLimits['gemini-flash-latest']).toEqual({
      requestsPerMinute: 61,
      requestsPerDay: 4,
      tokensPerMinute: 32_001,
    });
  });

  it('model names in model_limits lose their models/ prefix and meet the tier row of the same model', () => {
    const key = keyFromEntry(
      {
        id: 'k',
        api_key: 'AIza-k',
        tier: 'tier1',
        model_limits: { [`models/${M}`]: { requests_per_minute: 7 } },
      },
      ENV,
      { model_limits: { 'models/gemini-2.5-flash': { requests_per_day: 8 } } },
    );
    expect(Object.keys(key.modelLimits).some((m) => m.startsWith('models/'))).toBe(false);
    expect(key.modelLimits[M]).toEqual({
      requestsPerMinute: 7,
      requestsPerDay: 10_000,
      tokensPerMinute: 2_000_000,
    });
    expect(key.modelLimits['gemini-2.5-flash']).toEqual({
      requestsPerMinute: 1000,
      requestsPerDay: 8,
      tokensPerMinute: 1_000_000,
    });
    // the key's own model_limits still beat the defaults' under either spelling
    const both = keyFromEntry(
      { id: 'k', api_key: 'AIza-k', model_limits: { [M]: { requests_per_minute: 1 } } },
      ENV,
      { model_limits: { [`models/${M}`]: { requests_per_minute: 2 } } },
    );
    expect(both.modelLimits[M]?.requestsPerMinute).toBe(1);
  });

  it('keyToEntry gives back the entry as written: no tier, defaults or limits expanded', () => {
    const entry: KeyEntry = {
      id: 'k1',
      api_key: 'AIza-k1',
      project: 'proj',
      enabled: true,
      tier: 'tier1',
      model_limits: { [`models/${M}`]: { requests_per_minute: 7 } },
    };
    const key = keyFromEntry(entry, envWithTier('tier3'), { tier: 'tier2', limits: { requests_per_day: 5 } });
    expect(keyToEntry(key)).toEqual(entry);
    expect(
      keyFromEntry(keyToEntry(key), envWithTier('tier3'), { tier: 'tier2', limits: { requests_per_day: 5 } }),
    ).toEqual(key);

    const file = {
      defaults: { tier: 'tier2', limits: { requests_per_minute: 9 } },
      keys: [
        { id: 'a', api_key: 'AIza-a' },
        {
          id: 'b',
          api_key: 'AIza-b',
          limits: { tokens_per_minute: 10 },
          model_limits: { 'gemini-2.5-flash': {} },
        },
      ],
    };
    const parsed = parseKeysFile(JSON.stringify(file), 'keys.json', parseEnv({ DEFAULT_TIER: 'tier3' }));
    expect(parsed.defaults).toEqual(file.defaults);
    parsed.keys.forEach((k, i) => {
      const { enabled, ...written } = keyToEntry(k);
      expect(enabled).toBe(true);
      expect(written).toEqual(file.keys[i]);
    });
    // the admin API's change (enabled) is what is written back
    expect(keyToEntry({ ...parsed.keys[1]!, enabled: false })).toEqual({ ...file.keys[1], enabled: false });
  });

  it('an api_key with spaces is refused, naming the field and never the key', () => {
    const env = parseEnv({});
    for (const apiKey of ['AIza with-space', ' AIza-lead', 'AIza-trail ', 'AIza\ttab', 'AIza\nline']) {
      const text = JSON.stringify({ keys: [{ id: 'k', api_key: apiKey }] });
      let error: unknown;
      try {
        parseKeysFile(text, 'keys.json', env);
      } catch (err) {
        error = err;
      }
      expect(error, JSON.stringify(apiKey)).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(/keys\.0\.api_key/);
      expect((error as Error).message).not.toContain(apiKey.trim());
    }
  });

  it('tiers and model_limits are checked where they are written', () => {
    const env = parseEnv({});
    const parse = (file: object) => () => parseKeysFile(JSON.stringify(file), 'keys.json', env);
    expect(parse({ keys: [{ id: 'k', api_key: 'AIza-k', tier: 'tier4' }] })).toThrow(/keys\.0\.tier/);
    expect(parse({ defaults: { tier: 'gold' }, keys: [] })).toThrow(/defaults\.tier/);
    expect(
      parse({ keys: [{ id: 'k', api_key: 'AIza-k', model_limits: { M: { requests_per_minute: 0 } } }] }),
    ).toThrow(/keys\.0\.model_limits\.M\.requests_per_minute/);
    expect(parse({ keys: [{ id: 'k', api_key: 'AIza-k', model_limits: { 'a b': {} } }] })).toThrow(
      /keys\.0\.model_limits/,
    );
    expect(parse({ defaults: { model_limits: { [M]: { rpm: 3 } } }, keys: [] })).toThrow(
      /defaults\.model_limits/,
    );
    expect(parse({ defaults: { whatever: 1 }, keys: [] })).toThrow(/defaults/);
  });
});
