import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseTierFile, TIER_TABLE_SOURCE, TIERS, type Tier, tierLimits } from '../../src/config/tiers.ts';

/** The data file read on its own, to check the loaded table against it. */
const FILE_TEXT = readFileSync(new URL('../../src/config/tier-limits.json', import.meta.url), 'utf8');
const FILE = JSON.parse(FILE_TEXT) as {
  source: string;
  read: string;
  note: string;
  table_rows: Record<string, string>;
  tiers: Record<string, Record<string, { rpm?: number; tpm?: number; rpd?: number; sessions?: number }>>;
};

describe("Google's tier table", () => {
  it('loads with its source page, the date it was read and how', () => {
    expect(TIER_TABLE_SOURCE).toEqual({ source: FILE.source, read: FILE.read, note: FILE.note });
    expect(TIER_TABLE_SOURCE.source).toBe('https://ai.google.dev/gemini-api/docs/rate-limits');
    expect(TIER_TABLE_SOURCE.read).toBe('2026-12-04');
    expect(TIER_TABLE_SOURCE.note).toMatch(/third-party copy/);
  });

  it('has every tier, each with models', () => {
    expect(TIERS).toEqual(['free', 'tier1', 'tier2', 'tier3']);
    expect(Object.keys(FILE.tiers).sort()).toEqual([...TIERS].sort());
    for (const tier of TIERS) expect(Object.keys(tierLimits(tier)).length).toBeGreaterThan(10);
  });

  it('holds positive whole numbers only, at least one per model, under normalized model names', () => {
    for (const tier of TIERS) {
      for (const [model, limits] of Object.entries(tierLimits(tier))) {
        expect(model).toMatch(/^[a-z0-9][a-z0-9._-]*$/);
        expect(model.startsWith('models/')).toBe(false);
        const values = Object.values(limits);
        expect(values.length, `${tier} ${model}`).toBeGreaterThan(0);
        for (const v of values) {
          expect(Number.isInteger(v), `${tier} ${model}`).toBe(true);
          expect(v, `${tier} ${model}`).toBeGreaterThan(0);
        }
      }
    }
  });

  it('gives exactly the numbers of the data file, field by field', () => {
    for (const tier of TIERS) {
      const expected = Object.fromEntries(
        Object.entries(FILE.tiers[tier]!).map(([model, r]) => [
          model,
          {
            ...(r.rpm !== undefined && { requestsPerMinute: r.rpm }),
            ...(r.tpm !== undefined && { tokensPerMinute: r.tpm }),
            ...(r.rpd !== undefined && { requestsPerDay: r.rpd }),
            ...(r.sessions !== undefined && { liveSessions: r.sessions }),
          },
        ]),
      );
      expect({ ...tierLimits(tier) }).toEqual(expected);
    }
  });

  it("matches Google's table for known models", () => {
    expect(tierLimits('free')['gemini-2.5-pro']).toEqual({
      requestsPerMinute: 2,
      tokensPerMinute: 125_000,
      requestsPerDay: 50,
    });
    expect(tierLimits('free')['gemini-2.5-flash']).toEqual({
      requestsPerMinute: 10,
      tokensPerMinute: 250_000,
      requestsPerDay: 250,
    });
    expect(tierLimits('tier1')['gemini-3-pro-preview']).toEqual({
      requestsPerMinute: 50,
      tokensPerMinute: 1_000_000,
      requestsPerDay: 1000,
    });
    expect(tierLimits('tier1')['gemini-2.5-pro']).toEqual({
      requestsPerMinute: 150,
      tokensPerMinute: 2_000_000,
      requestsPerDay: 10_000,
    });
    // '*' (no published limit) fields are absent
    expect(tierLimits('tier1')['gemini-2.5-flash-lite']).toEqual({
      requestsPerMinute: 4000,
      tokensPerMinute: 4_000_000,
    });
    expect(tierLimits('tier2')['gemini-2.5-flash-image']).toEqual({
      requestsPerMinute: 2000,
      tokensPerMinute: 1_500_000,
      requestsPerDay: 50_000,
    });
    expect(tierLimits('tier3')['gemini-embedding-001']).toEqual({
      requestsPerMinute: 10_000,
      tokensPerMinute: 10_000_000,
    });
    expect(tierLimits('tier1')['imagen-4.0-generate-001']).toEqual({
      requestsPerMinute: 10,
      requestsPerDay: 70,
    });
    expect(tierLimits('tier3')['veo-3.1-generate-preview']).toEqual({
      requestsPerMinute: 10,
      requestsPerDay: 500,
    });
    expect(tierLimits('tier1')['gemini-live-2.5-flash-preview']).toEqual({
      tokensPerMinute: 4_000_000,
      liveSessions: 50,
    });
    expect(tierLimits('tier2')['gemini-2.0-flash-live-001']?.liveSessions).toBe(1000);
  });

  it('covers the current models of the source in every tier that lists them', () => {
    const paid = [
      'gemini-3-pro-preview',
      'gemini-2.5-pro',
      'gemini-2.5-flash',
      'gemini-2.5-flash-lite',
      'gemini-2.0-flash',
      'gemini-2.0-flash-lite',
      'gemini-2.5-flash-image',
      'gemini-embedding-001',
      'imagen-4.0-generate-001',
      'imagen-4.0-fast-generate-001',
      'imagen-4.0-ultra-generate-001',
      'veo-3.1-generate-preview',
      'veo-3.0-generate-001',
      'gemini-live-2.5-flash-preview',
      'gemini-2.5-flash-native-audio-preview-09-2025',
    ];
    for (const tier of ['tier1', 'tier2', 'tier3'] as const)
      for (const model of paid) expect(tierLimits(tier)[model], `${tier} ${model}`).toBeDefined();
    for (const model of [
      'gemini-2.5-pro',
      'gemini-2.5-flash',
      'gemini-2.5-flash-lite',
      'gemini-embedding-001',
    ])
      expect(tierLimits('free')[model], model).toBeDefined();
  });

  it('leaves a model out of a tier that publishes no number for it', () => {
    // the free tier has no Gemini 3 Pro, no image output, no Imagen or Veo
    for (const model of [
      'gemini-3-pro-preview',
      'gemini-2.5-flash-image',
      'imagen-4.0-generate-001',
      'veo-2.0-generate-001',
    ])
      expect(tierLimits('free')[model], model).toBeUndefined();
  });

  it('an unknown tier or model gives nothing', () => {
    expect(tierLimits('tier4' as Tier)).toEqual({});
    expect(Object.keys(tierLimits('__proto__' as Tier))).toEqual([]);
    expect(Object.keys(tierLimits('toString' as Tier))).toEqual([]);
    expect(tierLimits('tier1')['gemini-0-unknown']).toBeUndefined();
    expect(tierLimits('tier1')['models/gemini-2.5-pro']).toBeUndefined();
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty'])
      expect(tierLimits('free')[name], name).toBeUndefined();
  });

  it('cannot be changed by a caller', () => {
    const table = tierLimits('tier1') as Record<string, object>;
    expect(() => {
      table['gemini-2.5-pro'] = {};
    }).toThrow(TypeError);
    expect(() => {
      (tierLimits('tier1')['gemini-2.5-pro'] as { requestsPerMinute: number }).requestsPerMinute = 1;
    }).toThrow(TypeError);
    expect(tierLimits('tier1')['gemini-2.5-pro']?.requestsPerMinute).toBe(150);
  });

  it('a broken data file is refused at load, naming the field', () => {
    const edit = (change: (f: typeof FILE) => void) => {
      const f = JSON.parse(FILE_TEXT) as typeof FILE;
      change(f);
      return JSON.stringify(f);
    };
    expect(() => parseTierFile(FILE_TEXT)).not.toThrow();
    expect(() =>
      parseTierFile(
        edit((f) => {
          f.tiers.tier1!['gemini-2.5-pro']!.rpm = -5;
        }),
      ),
    ).toThrow(/tiers\.tier1\.gemini-2\.5-pro\.rpm/);
    expect(() =>
      parseTierFile(
        edit((f) => {
          f.tiers.tier2!['gemini-2.5-pro']!.rpd = 1.5;
        }),
      ),
    ).toThrow(/tiers\.tier2\.gemini-2\.5-pro\.rpd/);
    expect(() =>
      parseTierFile(
        edit((f) => {
          f.tiers.free!['models/gemini-2.5-pro'] = { rpm: 1 };
          f.table_rows['models/gemini-2.5-pro'] = 'Gemini 2.5 Pro';
        }),
      ),
    ).toThrow(/no models\/ prefix/);
    expect(() =>
      parseTierFile(
        edit((f) => {
          delete f.tiers.tier3;
        }),
      ),
    ).toThrow(/tiers\.tier3/);
    expect(() =>
      parseTierFile(
        edit((f) => {
          f.tiers.tier1!['gemini-2.5-pro'] = {};
        }),
      ),
    ).toThrow(/at least one of/);
    expect(() =>
      parseTierFile(
        edit((f) => {
          (f.tiers.tier1!['gemini-2.5-pro'] as Record<string, number>).rpx = 3;
        }),
      ),
    ).toThrow(/tiers\.tier1\.gemini-2\.5-pro/);
    expect(() =>
      parseTierFile(
        edit((f) => {
          f.tiers.tier1!['gemini-9-ultra'] = { rpm: 3 };
        }),
      ),
    ).toThrow(/tiers\.tier1\.gemini-9-ultra: model missing from table_rows/);
    expect(() =>
      parseTierFile(
        edit((f) => {
          f.read = 'December 2026';
        }),
      ),
    ).toThrow(/read/);
    expect(() =>
      parseTierFile(
        edit((f) => {
          f.source = 'not a url';
        }),
      ),
    ).toThrow(/source/);
    expect(() => parseTierFile('{oops', 'tier-limits.json')).toThrow(/tier-limits\.json: not valid JSON/);
  });

  it('the build copies the data file next to the compiled module', () => {
    const script = readFileSync(new URL('../../scripts/copy-assets.ts', import.meta.url), 'utf8');
    expect(script).toContain("cpSync('src/config/tier-limits.json', 'dist/config/tier-limits.json')");
  });
});
