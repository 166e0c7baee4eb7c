import type { KeyConfig } from '../../src/config/keys.ts';

/** A pool key as the keys file would give it: generous limits unless `over` says otherwise. */
export function keyConfig(
  id: string,
  over: Partial<KeyConfig> = {},
  secretPrefix = 'AIzaTestPoolKey-',
): KeyConfig {
  return {
    id,
    apiKey: `${secretPrefix}${id}`,
    project: id,
    models: [],
    enabled: true,
    limits: { requestsPerMinute: 1000, requestsPerDay: 100_000, tokensPerMinute: 10_000_000 },
    modelLimits: {},
    entry: { id, api_key: `${secretPrefix}${id}` },
    ...over,
  };
}
