import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildGateway } from '../../src/app/build.ts';
import { ConfigError, type Env, parseEnv } from '../../src/config/env.ts';
import { assertUnique, envKeyId, keyFromEntry, keyToEntry, parseKeysFile } from '../../src/config/keys.ts';
import { KeyManager } from '../../src/config/keys-store.ts';
import type { KeyPool } from '../../src/pool/key-pool.ts';
import type { StateStore } from '../../src/store/types.ts';

/** The pool keys as the gateway loads them at start (reading only: the pool and store stay untouched). */
const loadKeys = (env: Env) => new KeyManager({ env, pool: {} as KeyPool, store: {} as StateStore }).load();

describe('configuration', () => {
  it('defaults', () => {
    const env = parseEnv({});
    expect(env).toMatchObject({
      DEFAULT_RPM: 60,
      DEFAULT_RPD: 1440,
      DEFAULT_TPM: 32000,
      GEMINI_MODEL: 'gemini-2.5-flash-lite',
      GEMINI_BASE_URL: 'https://generativelanguage.googleapis.com',
      ALLOW_ANONYMOUS: false,
    });
  });

  it('a bad value names the variable', () => {
    expect(() => parseEnv({ DEFAULT_RPM: 'many' })).toThrow(/DEFAULT_RPM/);
    expect(() => parseEnv({ GEMINI_BASE_URL: 'not a url' })).toThrow(/GEMINI_BASE_URL/);
    expect(() => parseEnv({ CLIENT_API_KEYS_MAP: 'tokenwithoutname' })).toThrow(/CLIENT_API_KEYS_MAP/);
  });

  it('parses client tokens, list forms and per-client limits', () => {
    const env = parseEnv({
      CLIENT_API_KEYS_MAP: 'tok-1:web, tok-2:mobile',
      CORS_ORIGINS: '["https://a.example","https://b.example"]',
      TRUSTED_PROXIES: '127.0.0.1, 10.0.0.0/8',
      CLIENT_RATE_LIMITS: 'web:100,mobile:10',
    });
    expect([...env.CLIENT_API_KEYS_MAP]).toEqual([
      ['tok-1', 'web'],
      ['tok-2', 'mobile'],
    ]);
    expect(env.CORS_ORIGINS).toEqual(['https://a.example', 'https://b.example']);
    expect(env.TRUSTED_PROXIES).toEqual(['127.0.0.1', '10.0.0.0/8']);
    expect(env.CLIENT_RATE_LIMITS.get('mobile')).toBe(10);
  });

  it('reads the keys file and GEMINI_API_KEYS together, with defaults and projects', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gg-keys-'));
    const file = join(dir, 'keys.json');
    writeFileSync(
      file,
      JSON.stringify({
        keys: [
          { id: 'key_1', api_key: 'AIza-one', project: 'proj-a', limits: { requests_per_minute: 15 } },
          { id: 'key_2', api_key: 'AIza-two', models: ['gemini-2.5-flash'], enabled: false },
        ],
      }),
    );
    const keys = await loadKeys(
      parseEnv({ API_KEYS_FILE: file, GEMINI_API_KEYS: 'AIza-three', DEFAULT_TPM: '1000' }),
    );
    expect(keys.map((k) => k.id)).toEqual(['key_1', 'key_2', envKeyId('AIza-three')]);
    expect(keys[0]).toMatchObject({
      project: 'proj-a',
      limits: { requestsPerMinute: 15, requestsPerDay: 1440, tokensPerMinute: 1000 },
    });
    expect(keys[1]).toMatchObject({ project: 'key_2', enabled: false, models: ['gemini-2.5-flash'] });
    expect(keys[2]!.id).not.toContain('three');
  });

  it('a broken keys file names the entry and field, never the key', () => {
    const env = parseEnv({});
    const text = JSON.stringify({
      keys: [{ id: 'k', api_key: 'AIza-SECRET', limits: { requests_per_minute: -1 } }],
    });
    let message = '';
    try {
      parseKeysFile(text, 'keys.json', env);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/keys\.0\.limits\.requests_per_minute/);
    expect(message).not.toContain('AIza-SECRET');
    expect(() => parseKeysFile('{not json', 'keys.json', env)).toThrow(ConfigError);
  });

  it('a keys file that cannot be read, and malformed list settings, are named in the error', async () => {
    const missing = join(mkdtempSync(join(tmpdir(), 'gg-keys-')), 'nope.json');
    await expect(loadKeys(parseEnv({ API_KEYS_FILE: missing }))).rejects.toThrow(
      /API_KEYS_FILE: cannot read .*nope\.json \(ENOENT\)/,
    );
    expect(() => parseEnv({ CORS_ORIGINS: '["https://a.example", 3]' })).toThrow(
      /CORS_ORIGINS.*JSON list of strings/,
    );
    expect(() => parseEnv({ CLIENT_RATE_LIMITS: 'alice:ten' })).toThrow(
      /CLIENT_RATE_LIMITS.*name:requests_per_minute/,
    );
  });

  it('projects with control characters and model names that no request could give are refused', () => {
    const env = parseEnv({});
    const file = (entry: object) => JSON.stringify({ keys: [{ id: 'k', api_key: 'AIza-x', ...entry }] });
    expect(() => parseKeysFile(file({ project: 'a\tb' }), 'keys.json', env)).toThrow(/keys\.0\.project/);
    expect(() => parseKeysFile(file({ project: 'line\nbreak' }), 'keys.json', env)).toThrow(
      /control characters/,
    );
    expect(() => parseKeysFile(file({ models: ['gemini-2.5-flash', 'a,b'] }), 'keys.json', env)).toThrow(
      /keys\.0\.models\.1/,
    );
    const [parsed] = parseKeysFile(
      file({ project: 'My Project (EU)', models: ['gemini-2.5-flash'] }),
      'keys.json',
      env,
    ).keys;
    expect(parsed).toMatchObject({ project: 'My Project (EU)', models: ['gemini-2.5-flash'] });
  });

  it('duplicate keys are refused', async () => {
    await expect(loadKeys(parseEnv({ GEMINI_API_KEYS: 'a,a' }))).rejects.toThrow(/duplicate key id/);
  });

  it('refuses to start without client tokens unless ALLOW_ANONYMOUS=true', async () => {
    await expect(buildGateway({ GEMINI_API_KEYS: 'AIza-x' })).rejects.toThrow(/ALLOW_ANONYMOUS/);
    await expect(buildGateway({ CLIENT_API_KEYS_MAP: 't:n' })).rejects.toThrow(/no pool keys/);
    const gw = await buildGateway({
      GEMINI_API_KEYS: 'AIza-x',
      ALLOW_ANONYMOUS: 'true',
      LOG_LEVEL: 'silent',
    });
    await gw.close();
  });
});

describe('environment settings', () => {
  it('defaults are the documented ones (README, docs/operations.md)', () => {
    expect(parseEnv({})).toMatchObject({
      SERVER_HOST: '0.0.0.0',
      STATE_PREFIX: 'gg:',
      QUEUE_MAX_WAIT_MS: 5000,
      MAX_ATTEMPTS: 4,
      UPSTREAM_TIMEOUT_MS: 120_000,
      REQUEST_TIMEOUT: 300,
      CIRCUIT_FAILURE_THRESHOLD: 5,
      CIRCUIT_COOLDOWN_MS: 30_000,
      LOG_LEVEL: 'info',
      HEADERS_TIMEOUT_MS: 10_000,
      REQUEST_READ_TIMEOUT_MS: 60_000,
      MAX_UPLOAD_SIZE: 10 * 1024 * 1024,
      COMPRESSION_THRESHOLD: 1024,
      GLOBAL_RATE_LIMIT: 100,
      BURST_RATE_LIMIT: 20,
      CLIENT_RATE_LIMIT: 0,
      SHUTDOWN_TIMEOUT_MS: 25_000,
      NODE_ENV: 'production',
      LOG_ROTATION: 'daily',
      LOG_RETENTION_DAYS: 7,
      LOG_STDOUT: true,
      CORS_ALLOW_CREDENTIALS: false,
    });
  });

  it('an empty value (FOO= in .env) counts as unset and falls back to the default', () => {
    const env = parseEnv({ LOG_STDOUT: '', DEFAULT_RPM: '', CACHE_ENABLED: '' });
    expect(env.LOG_STDOUT).toBe(true);
    expect(env.CACHE_ENABLED).toBe(true);
    expect(env.DEFAULT_RPM).toBe(60);
  });

  it('booleans accept true/1/yes and false/0/no', () => {
    for (const yes of ['true', '1', 'yes'])
      expect(parseEnv({ ALLOW_ANONYMOUS: yes }).ALLOW_ANONYMOUS).toBe(true);
    for (const no of ['false', '0', 'no']) expect(parseEnv({ LOG_STDOUT: no }).LOG_STDOUT).toBe(false);
    expect(() => parseEnv({ ALLOW_ANONYMOUS: 'maybe' })).toThrow(/ALLOW_ANONYMOUS/);
  });

  it('HEADERS_TIMEOUT_MS above REQUEST_READ_TIMEOUT_MS is refused, naming the setting', () => {
    expect(() => parseEnv({ HEADERS_TIMEOUT_MS: '5000', REQUEST_READ_TIMEOUT_MS: '1000' })).toThrow(
      /HEADERS_TIMEOUT_MS: must not exceed REQUEST_READ_TIMEOUT_MS/,
    );
    expect(parseEnv({ HEADERS_TIMEOUT_MS: '1000', REQUEST_READ_TIMEOUT_MS: '1000' }).HEADERS_TIMEOUT_MS).toBe(
      1000,
    );
  });

  it('a client token may contain ":" (the name is what follows the last one)', () => {
    const env = parseEnv({ CLIENT_API_KEYS_MAP: 'tok:with:colons:webapp' });
    expect([...env.CLIENT_API_KEYS_MAP]).toEqual([['tok:with:colons', 'webapp']]);
  });

  it('out-of-range numbers are refused: MAX_ATTEMPTS above 20, a negative per-client limit', () => {
    expect(() => parseEnv({ MAX_ATTEMPTS: '21' })).toThrow(/MAX_ATTEMPTS/);
    expect(parseEnv({ MAX_ATTEMPTS: '20' }).MAX_ATTEMPTS).toBe(20);
    expect(() => parseEnv({ CLIENT_RATE_LIMITS: 'alice:-5' })).toThrow(/CLIENT_RATE_LIMITS/);
    expect(parseEnv({ CLIENT_RATE_LIMITS: 'alice:0' }).CLIENT_RATE_LIMITS.get('alice')).toBe(0);
  });
});

describe('pool keys', () => {
  const env = parseEnv({});

  it('each limit of a key entry is honoured, requests_per_day included', () => {
    const [key] = parseKeysFile(
      JSON.stringify({
        keys: [
          {
            id: 'k1',
            api_key: 'AIza-k1',
            limits: { requests_per_minute: 5, requests_per_day: 77, tokens_per_minute: 999 },
          },
        ],
      }),
      'keys.json',
      env,
    ).keys;
    expect(key!.limits).toEqual({ requestsPerMinute: 5, requestsPerDay: 77, tokensPerMinute: 999 });
  });

  it('a zero or negative tokens_per_minute is refused, naming the field', () => {
    const text = JSON.stringify({
      keys: [{ id: 'k1', api_key: 'AIza-k1', limits: { tokens_per_minute: 0 } }],
    });
    expect(() => parseKeysFile(text, 'keys.json', env)).toThrow(/keys\.0\.limits\.tokens_per_minute/);
  });

  it('one api_key under two ids is refused', () => {
    const a = keyFromEntry({ id: 'a', api_key: 'AIza-same-value' }, env);
    const b = keyFromEntry({ id: 'b', api_key: 'AIza-same-value' }, env);
    expect(() => assertUnique([a, b])).toThrow(ConfigError);
    expect(() => assertUnique([a, b])).toThrow(/"b" repeats the api_key/);
  });

  it('a key written back to the file keeps its project and enabled flag', () => {
    const entry = {
      id: 'k1',
      api_key: 'AIza-k1',
      project: 'proj-x',
      enabled: false,
      limits: { requests_per_minute: 1, requests_per_day: 2, tokens_per_minute: 3 },
    };
    const key = keyFromEntry(entry, env);
    expect(keyToEntry(key)).toEqual(entry);
    expect(keyFromEntry(keyToEntry(key), env)).toEqual(key);
  });
});
