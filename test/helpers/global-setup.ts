import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { freePort } from '../../src/util/free-port.ts';

/**
 * Starts a real redis-server (Debian package) for the whole run and hands its URL to the tests
 * as REDIS_TEST_URL. Without redis-server the Redis tests are skipped, loudly; with
 * REQUIRE_REAL_SERVERS=1 (what .ci/run sets) a missing server fails the run instead.
 */
let redis: ChildProcess | undefined;
let dir: string | undefined;

export function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const required = process.env.REQUIRE_REAL_SERVERS === '1';
  if (!has('redis-server')) {
    const msg =
      'redis-server is not installed: every Redis test (store contract on Redis, Redis cache, multi-instance) is SKIPPED. Install it with: apt-get install -y redis-server';
    if (required) throw new Error(`REQUIRE_REAL_SERVERS=1 but ${msg}`);
    console.warn(`\n${'!'.repeat(100)}\n!!! ${msg}\n${'!'.repeat(100)}\n`);
    return async () => {};
  }
  const port = await freePort();
  dir = mkdtempSync(join(tmpdir(), 'gg-redis-'));
  redis = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    {
      stdio: 'ignore',
    },
  );
  const url = `redis://127.0.0.1:${port}`;
  const { Redis } = await import('ioredis');
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await client.connect();
      await client.ping();
      break;
    } catch {
      if (Date.now() > deadline) throw new Error('redis-server did not start within 10 s');
      client.disconnect();
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  client.disconnect();
  project.provide('redisUrl', url);
  process.env.REDIS_TEST_URL = url;
  return async () => {
    redis?.kill('SIGTERM');
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}
