import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseEnv } from '../../src/config/env.ts';
import { assertUnique, keyFromEntry, keyToEntry, parseKeysFile } from '../../src/config/keys.ts';
import { KeyManager } from '../../src/config/keys-store.ts';
import { ConfigReloader, effectiveSettings, parseRuntimeConfig } from '../../src/config/reload.ts';
import { loggerOptions, redactUrl, SecretScrubber } from '../../src/observability/logger.ts';
import { KeyPool } from '../../src/pool/key-pool.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { tempDirs } from '../helpers/temp.ts';

/** Tests written to kill mutants of src/config and src/observability/logger.ts that the suite let live. */

const tempDir = tempDirs('gg-mut-config-');

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

describe('CONFIG_FILE', () => {
  it('every runtime setting of the file overrides the environment', () => {
    const env = parseEnv({ GLOBAL_RATE_LIMIT: '100', BURST_RATE_LIMIT: '20', CLIENT_RATE_LIMIT: '0' });
    const s = effectiveSettings(
      env,
      parseRuntimeConfig('{"GLOBAL_RATE_LIMIT": 7, "BURST_RATE_LIMIT": 3, "CLIENT_RATE_LIMIT": 11}'),
    );
    expect(s).toMatchObject({ GLOBAL_RATE_LIMIT: 7, BURST_RATE_LIMIT: 3, CLIENT_RATE_LIMIT: 11 });
  });

  it('a reload of an unchanged file applies nothing; a changed one is applied', async () => {
    const dir = tempDir();
    const file = join(dir, 'config.json');
    writeFileSync(file, '{"GLOBAL_RATE_LIMIT": 5}');
    const env = parseEnv({ CONFIG_FILE: file, GEMINI_API_KEYS: 'AIza-reload-test-key' });
    const store = new MemoryStore();
    const pool = new KeyPool(store, {
      queueMaxWaitMs: 0,
      circuit: { failureThreshold: 5, cooldownMs: 1000 },
    });
    const keys = new KeyManager({ env, pool, store });
    const applied: number[] = [];
    const reloader = new ConfigReloader({
      env,
      keys,
      logger: pino({ level: 'silent' }),
      applyConfig: (s) => applied.push(s.GLOBAL_RATE_LIMIT),
    });
    await reloader.init();
    expect(applied).toEqual([5]);
    expect(await reloader.reloadConfig()).toEqual({ ok: true, config: { changed: false } });
    expect(applied).toEqual([5]);
    writeFileSync(file, '{"GLOBAL_RATE_LIMIT": 9}');
    expect(await reloader.reloadConfig()).toEqual({ ok: true, config: { changed: true } });
    expect(applied).toEqual([5, 9]);
  });
});

describe('log redaction', () => {
  function capture(scrubber?: SecretScrubber) {
    const lines: string[] = [];
    const logger = pino(loggerOptions({ LOG_LEVEL: 'info', NODE_ENV: 'test' }, scrubber), {
      write: (l: string) => void lines.push(l),
    });
    return { logger, lines };
  }

  it('every secret-bearing field is blanked with [REDACTED], at the top level, one level down and in headers', () => {
    const S = 'Sup3rSecretValue';
    const shapes: Array<[string, Record<string, unknown>]> = [
      ['apiKey', { apiKey: S }],
      ['api_key', { api_key: S }],
      ['token', { token: S }],
      ['password', { password: S }],
      ['authorization', { authorization: S }],
      ['*.apiKey', { cfg: { apiKey: S } }],
      ['*.api_key', { cfg: { api_key: S } }],
      ['*.token', { cfg: { token: S } }],
      ['*.password', { cfg: { password: S } }],
      ['*.authorization', { cfg: { authorization: S } }],
      ['headers.x-goog-api-key', { headers: { 'x-goog-api-key': S } }],
      ['headers.x-api-key', { headers: { 'x-api-key': S } }],
      ['headers.x-admin-token', { headers: { 'x-admin-token': S } }],
      ['headers.cookie', { headers: { cookie: S } }],
      ['req.headers.authorization', { req: { headers: { authorization: S } } }],
      ['req.headers.x-goog-api-key', { req: { headers: { 'x-goog-api-key': S } } }],
      ['req.headers.x-api-key', { req: { headers: { 'x-api-key': S } } }],
      ['req.headers.x-admin-token', { req: { headers: { 'x-admin-token': S } } }],
      ['req.headers.cookie', { req: { headers: { cookie: S } } }],
    ];
    for (const [path, obj] of shapes) {
      const { logger, lines } = capture();
      logger.info(obj, 'line');
      expect(lines[0], path).not.toContain(S);
      expect(lines[0], path).toContain('"[REDACTED]"');
    }
  });

  it('masks every token-like query parameter, whatever its case', () => {
    expect(redactUrl('/x?access_token=abc&b=1')).toBe('/x?access_token=[REDACTED]&b=1');
    expect(redactUrl('/x?KEY=abc&Token=def')).toBe('/x?KEY=[REDACTED]&Token=[REDACTED]');
  });

  it('the scrubber also catches a secret as JSON escapes it and as a URL encodes it', () => {
    const quoted = 'tok"en\\with-quotes';
    const spaced = 'tok en/with+specials';
    const scrubber = new SecretScrubber([quoted, spaced]);
    const { logger, lines } = capture(scrubber);
    logger.info({ note: `carried ${quoted} here` }, 'json-escaped');
    logger.info({ url: `/x?q=${encodeURIComponent(spaced)}` }, 'url-encoded');
    const text = lines.join('');
    expect(text).not.toContain(JSON.stringify(quoted).slice(1, -1));
    expect(text).not.toContain(encodeURIComponent(spaced));
    expect(lines.every((l) => l.includes('[REDACTED]'))).toBe(true);
  });

  it('LOG_STDOUT=false without LOG_DIR writes nothing to stdout', () => {
    const out = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createLogger } from './src/observability/logger.ts';
         const l = createLogger({ LOG_LEVEL: 'info', NODE_ENV: 'production', LOG_ROTATION: 'daily', LOG_RETENTION_DAYS: 1, LOG_STDOUT: false });
         l.info('must not appear');`,
      ],
      { cwd: process.cwd(), encoding: 'utf8', timeout: 20_000 },
    );
    expect(out.status).toBe(0);
    expect(out.stdout).not.toContain('must not appear');
  });
});
