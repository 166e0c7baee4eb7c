import { Cluster, ReplyError } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseEnv } from '../../src/config/env.ts';
import { isOutage } from '../../src/store/failover.ts';
import { redisTopologyOf } from '../../src/store/open-redis.ts';
import {
  clusterOf,
  clusterPrefix,
  commandTimeoutOf,
  createRedisClientFor,
  STORE_SCRIPT_NAMES,
} from '../../src/store/redis-client.ts';

/** Settings and clients of the Redis topologies (one server, Sentinel, Cluster) and the failure mode. */

const base = { CLIENT_API_KEYS_MAP: 'tok:name' };
const refusal = (env: Record<string, string>) => {
  try {
    parseEnv({ ...base, ...env });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('accepted');
};

describe('settings', () => {
  it('STORE_FAILURE_MODE is local unless set to closed', () => {
    expect(parseEnv(base).STORE_FAILURE_MODE).toBe('local');
    expect(parseEnv({ ...base, STORE_FAILURE_MODE: 'closed' }).STORE_FAILURE_MODE).toBe('closed');
    expect(refusal({ STORE_FAILURE_MODE: 'open' })).toMatch(/STORE_FAILURE_MODE/);
  });

  it('REDIS_SENTINELS and REDIS_CLUSTER_NODES are host:port lists (IPv6 in brackets)', () => {
    const env = parseEnv({
      ...base,
      REDIS_SENTINELS: 'a:26379, [::1]:26380',
      REDIS_SENTINEL_NAME: 'mymaster',
    });
    expect(env.REDIS_SENTINELS).toEqual([
      { host: 'a', port: 26379 },
      { host: '::1', port: 26380 },
    ]);
    expect(redisTopologyOf(env, undefined)).toEqual({
      kind: 'sentinel',
      sentinels: env.REDIS_SENTINELS,
      name: 'mymaster',
      password: undefined,
      sentinelPassword: undefined,
      db: 0,
    });
    const cluster = parseEnv({
      ...base,
      REDIS_CLUSTER_NODES: '10.0.0.1:7000,10.0.0.2:7000',
      REDIS_PASSWORD: 'pw',
    });
    expect(redisTopologyOf(cluster, undefined)).toEqual({
      kind: 'cluster',
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7000 },
      ],
      password: 'pw',
    });
    expect(redisTopologyOf(parseEnv(base), undefined)).toBeUndefined();
    expect(redisTopologyOf(parseEnv(base), 'redis://r:6379')).toEqual({ kind: 'url', url: 'redis://r:6379' });
  });

  it('refuses what cannot work, naming the setting', () => {
    expect(refusal({ REDIS_SENTINELS: 'a:26379' })).toMatch(
      /REDIS_SENTINEL_NAME: required with REDIS_SENTINELS/,
    );
    expect(refusal({ REDIS_SENTINELS: 'redis://a:26379', REDIS_SENTINEL_NAME: 'm' })).toMatch(
      /REDIS_SENTINELS: each entry must be host:port/,
    );
    expect(refusal({ REDIS_CLUSTER_NODES: 'a' })).toMatch(/REDIS_CLUSTER_NODES/);
    expect(refusal({ REDIS_CLUSTER_NODES: 'a:70000' })).toMatch(/REDIS_CLUSTER_NODES/);
    expect(refusal({ REDIS_URL: 'redis://a:6379', REDIS_CLUSTER_NODES: 'b:7000' })).toMatch(
      /set one of REDIS_URL/,
    );
    expect(refusal({ REDIS_HOST: 'a', REDIS_SENTINELS: 'b:1', REDIS_SENTINEL_NAME: 'm' })).toMatch(
      /set one of REDIS_URL/,
    );
  });
});

describe('clients', () => {
  it('on a Cluster the prefix is a hash tag (one slot for every key of the store)', () => {
    expect(clusterPrefix('gg:')).toBe('{gg}:');
    expect(clusterPrefix('team-a')).toBe('{team-a}');
    expect(clusterPrefix('{gg}:')).toBe('{gg}:');
  });

  it('a Cluster client keeps the timeouts and the no-replay rules on each node, and skips pipelining for the scripts', () => {
    const client = createRedisClientFor(
      { kind: 'cluster', nodes: [{ host: '127.0.0.1', port: 1 }] },
      { commandTimeoutMs: 700 },
    );
    try {
      const cluster = clusterOf(client);
      expect(cluster).toBeInstanceOf(Cluster);
      expect(commandTimeoutOf(client)).toBe(700);
      expect(cluster!.options.redisOptions).toMatchObject({
        commandTimeout: 700,
        socketTimeout: 700,
        maxRetriesPerRequest: 0,
        autoResendUnfulfilledCommands: false,
      });
      expect(cluster!.options.autoPipeliningIgnoredCommands).toEqual([...STORE_SCRIPT_NAMES]);
      expect(client.listenerCount('error')).toBeGreaterThan(0);
    } finally {
      client.disconnect();
    }
  });

  it('a Sentinel client follows failovers and does not replay', () => {
    const client = createRedisClientFor(
      {
        kind: 'sentinel',
        sentinels: [{ host: '127.0.0.1', port: 1 }],
        name: 'mymaster',
        password: 'secret-pw',
      },
      { commandTimeoutMs: 600 },
    );
    try {
      expect(clusterOf(client)).toBeNull();
      const o = client.options;
      expect(o).toMatchObject({
        name: 'mymaster',
        failoverDetector: true,
        commandTimeout: 600,
        maxRetriesPerRequest: 0,
        autoResendUnfulfilledCommands: false,
        password: 'secret-pw',
      });
      expect(o.reconnectOnError?.(new Error('READONLY You cannot write against a read only replica.'))).toBe(
        true,
      );
      expect(o.reconnectOnError?.(new Error('ERR something else'))).toBe(false);
    } finally {
      client.disconnect();
    }
  });
});

describe('what switches the local failure mode on', () => {
  it('an unreachable or unavailable Redis, not a refused command', () => {
    expect(isOutage(new Error('Connection is closed.'))).toBe(true);
    expect(isOutage(new Error('Command timed out'))).toBe(true);
    expect(
      isOutage(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })),
    ).toBe(true);
    expect(isOutage(new ReplyError('LOADING Redis is loading the dataset in memory'))).toBe(true);
    expect(isOutage(new ReplyError('READONLY You cannot write against a read only replica.'))).toBe(true);
    expect(isOutage(new ReplyError('CLUSTERDOWN The cluster is down'))).toBe(true);
    expect(isOutage(new ReplyError('ERR user_script:1: Script attempted to access nonexistent global'))).toBe(
      false,
    );
    expect(
      isOutage(new ReplyError('WRONGTYPE Operation against a key holding the wrong kind of value')),
    ).toBe(false);
    expect(isOutage(new Error('model name contains a line break'))).toBe(false);
  });
});
