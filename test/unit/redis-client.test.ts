import { describe, expect, it } from 'vitest';
import { ConfigError, parseEnv, redisUrlProblem } from '../../src/config/env.ts';
import { RedisStore } from '../../src/store/redis.ts';
import {
  createRedisClient,
  DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
  describeRedisError,
  REDIS_OPTIONS,
  reconnectDelay,
  redisErrorKind,
  redisTarget,
  STORE_SCRIPT_NAMES,
} from '../../src/store/redis-client.ts';
import { TimeoutError, within } from '../../src/util/within.ts';

function errno(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

describe('Redis addresses (REDIS_URL, CACHE_REDIS_URL) are checked at start', () => {
  it.each([
    'redis://127.0.0.1:6379',
    'redis://:p%40ss@cache.internal:6380/2',
    'rediss://user:pw@redis.example.com',
    '/run/redis/redis.sock',
    '/tmp/redis.sock?db=2',
  ])('%s is an address', (url) => {
    expect(redisUrlProblem(url)).toBeNull();
  });

  it.each([
    ['http://127.0.0.1:6379', /not http:\/\//],
    ['https://redis.example.com', /not https:\/\//],
    ['127.0.0.1:6379', /no scheme/],
    ['localhost', /no scheme/],
    ['unix:///run/redis.sock', /as a path/],
    ['redis://', /no host|not a valid URL/],
  ])('%s is refused (%s)', (url, why) => {
    expect(redisUrlProblem(url)).toMatch(why);
  });

  it('the ConfigError names the setting and the fix, never the address (it may hold a password)', () => {
    const run = (env: Record<string, string>) => () => parseEnv({ GEMINI_API_KEYS: 'k', ...env });
    expect(run({ REDIS_URL: 'http://:hunter2secret@127.0.0.1:6379' })).toThrow(ConfigError);
    let message = '';
    try {
      run({ REDIS_URL: 'http://:hunter2secret@127.0.0.1:6379', CACHE_REDIS_URL: 'cache:6379' })();
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL .* not http:\/\//);
    expect(message).toMatch(/CACHE_REDIS_URL: must be a redis:\/\/ .*no scheme/);
    expect(message).not.toContain('hunter2secret');
    expect(run({ REDIS_HOST: 'redis://cache' })).toThrow(/REDIS_HOST: a host name, not a URL/);
  });

  it('REDIS_COMMAND_TIMEOUT_MS defaults to 1000 ms; CACHE_BACKEND is memory or redis', () => {
    const env = parseEnv({});
    expect(env.REDIS_COMMAND_TIMEOUT_MS).toBe(DEFAULT_REDIS_COMMAND_TIMEOUT_MS);
    expect(env.REDIS_COMMAND_TIMEOUT_MS).toBe(1000);
    expect(parseEnv({ REDIS_COMMAND_TIMEOUT_MS: '250' }).REDIS_COMMAND_TIMEOUT_MS).toBe(250);
    expect(() => parseEnv({ REDIS_COMMAND_TIMEOUT_MS: '0' })).toThrow(/REDIS_COMMAND_TIMEOUT_MS/);
    expect(parseEnv({ CACHE_BACKEND: 'memory' }).CACHE_BACKEND).toBe('memory');
    expect(() => parseEnv({ CACHE_BACKEND: 'disk' })).toThrow(/CACHE_BACKEND/);
  });
});

describe('what an outage log line says', () => {
  const ctx = { target: 'redis.internal:6379', timeoutMs: 500, secrets: ['hunter2secret'] };

  it.each([
    [
      errno('ECONNREFUSED', 'connect ECONNREFUSED 10.0.0.1:6379'),
      'refused',
      /connection refused by redis.internal:6379/,
    ],
    [
      errno('ENOTFOUND', 'getaddrinfo ENOTFOUND redis.internal'),
      'not_found',
      /host not found: redis.internal:6379/,
    ],
    [errno('EAI_AGAIN', 'getaddrinfo EAI_AGAIN redis.internal'), 'not_found', /host not found/],
    [
      errno('ENOENT', 'connect ENOENT //127.0.0.1:6379'),
      'no_socket',
      /no Unix socket .* must be a redis:\/\//,
    ],
    [
      errno('ETIMEDOUT', 'connect ETIMEDOUT'),
      'connect_timeout',
      /connecting to redis.internal:6379 timed out/,
    ],
    [
      new Error("Socket timeout. Expecting data, but didn't receive any in 500ms."),
      'timeout',
      /no answer from redis.internal:6379 within 500 ms/,
    ],
    [new Error('Command timed out'), 'timeout', /within 500 ms \(REDIS_COMMAND_TIMEOUT_MS\)/],
    [
      new Error('WRONGPASS invalid username-password pair or user is disabled.'),
      'auth',
      /authentication failed at redis.internal:6379: WRONGPASS \(check the user and password in REDIS_URL\)/,
    ],
    [
      new Error('NOAUTH HELLO must be called with the client already authenticated'),
      'auth',
      /authentication failed at redis.internal:6379: NOAUTH/,
    ],
    [
      new Error('ERR AUTH <password> called without any password configured for the default user'),
      'auth',
      /authentication failed/,
    ],
    [errno('ECONNRESET', 'read ECONNRESET'), 'reset', /connection to redis.internal:6379 reset/],
    [
      new Error('Client network socket disconnected before secure TLS connection was established'),
      'tls',
      /TLS with redis.internal:6379 failed/,
    ],
  ])('%s', (err, kind, text) => {
    expect(redisErrorKind(err)).toBe(kind);
    const line = describeRedisError(err, ctx);
    expect(line).toMatch(text);
    expect(line).not.toContain('\n');
  });

  it('an unknown error keeps its first line, with any password masked', () => {
    const line = describeRedisError(new Error('ERR weird hunter2secret thing\nstack line'), ctx);
    expect(line).toBe('redis.internal:6379: ERR weird *** thing');
  });

  it('targets name host and port or the socket, never user or password', () => {
    expect(redisTarget('redis://admin:hunter2secret@cache.internal:6380/3')).toBe('cache.internal:6380');
    expect(redisTarget('rediss://:pw@redis.example.com')).toBe('redis.example.com:6379');
    expect(redisTarget('redis://[::1]:7000')).toBe('[::1]:7000');
    expect(redisTarget('/run/redis.sock?db=1')).toBe('unix socket /run/redis.sock');
  });
});

describe('the client', () => {
  it('has the failure options: timeouts, no offline queue once connected, no replays, forever reconnect', () => {
    const client = createRedisClient('redis://127.0.0.1:1', { commandTimeoutMs: 750 });
    try {
      const o = client.options;
      expect(o.commandTimeout).toBe(750);
      expect(o.socketTimeout).toBe(750);
      expect(o.connectTimeout).toBeGreaterThanOrEqual(750);
      expect(o.maxRetriesPerRequest).toBe(0);
      expect(o.autoResendUnfulfilledCommands).toBe(false);
      expect(o.lazyConnect).toBe(true);
      expect(o.enableAutoPipelining).toBe(true);
      expect(client.listenerCount('error')).toBeGreaterThan(0);
      for (let attempt = 1; attempt < 100; attempt++) {
        const delay = o.retryStrategy!(attempt);
        expect(typeof delay).toBe('number');
        expect(delay as number).toBeLessThanOrEqual(1100);
      }
    } finally {
      client.disconnect();
    }
    expect(reconnectDelay(1)).toBeLessThan(150);
    expect(reconnectDelay(50)).toBeGreaterThanOrEqual(1000);
  });

  it("skips auto-pipelining for exactly the store's scripts", () => {
    const client = createRedisClient('redis://127.0.0.1:1');
    try {
      const store = new RedisStore(client, 'test:');
      // ioredis keeps the scripts defined on a client by command name.
      const defined = Object.keys((store.redis as unknown as { scriptsSet: object }).scriptsSet).sort();
      expect(defined).toEqual([...STORE_SCRIPT_NAMES].sort());
      expect([...REDIS_OPTIONS.autoPipeliningIgnoredCommands].sort()).toEqual(defined);
    } finally {
      client.disconnect();
    }
  });
});

describe('within', () => {
  it('answers with the promise, or a TimeoutError when it takes too long', async () => {
    expect(await within(Promise.resolve(3), 50)).toBe(3);
    const started = Date.now();
    await expect(within(new Promise(() => {}), 50, 'the store')).rejects.toThrow(TimeoutError);
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(within(Promise.reject(new Error('boom')), 50)).rejects.toThrow('boom');
  });
});
