import { appendFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, parseEnv } from '../../src/config/env.ts';
import { KeyManager } from '../../src/config/keys-store.ts';
import { ConfigReloader, concernsFile } from '../../src/config/reload.ts';
import { KeyPool } from '../../src/pool/key-pool.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { tempDirs } from '../helpers/temp.ts';

/** Hot reload must never empty the pool, and must not be woken by other files' churn. */

const tempDir = tempDirs('gg-reload-guards-');
const KEY_A = 'AIzaGuardTestKeyAAAAAAAAAAAAAAAAAAAAA1';
const KEY_B = 'AIzaGuardTestKeyBBBBBBBBBBBBBBBBBBBBB2';
const KEY_ENV = 'AIzaGuardTestKeyEEEEEEEEEEEEEEEEEEEEE3';

const reloaders: ConfigReloader[] = [];
afterEach(() => {
  for (const r of reloaders.splice(0)) r.stop();
});

async function setup(extraEnv: Record<string, string> = {}) {
  const dir = tempDir();
  const file = join(dir, 'keys.json');
  writeFileSync(file, JSON.stringify({ keys: [{ id: 'a', api_key: KEY_A }] }));
  const env = parseEnv({ API_KEYS_FILE: file, ...extraEnv });
  const store = new MemoryStore();
  const pool = new KeyPool(store, { queueMaxWaitMs: 0, circuit: { failureThreshold: 5, cooldownMs: 1000 } });
  const keys = new KeyManager({ env, pool, store });
  await keys.load();
  await keys.apply();
  let attempts = 0;
  const reloadFile = keys.reloadFile.bind(keys);
  keys.reloadFile = (opts) => {
    attempts += 1;
    return reloadFile(opts);
  };
  const reloader = new ConfigReloader({
    env,
    keys,
    logger: pino({ level: 'silent' }),
    applyConfig: () => {},
  });
  reloaders.push(reloader);
  await reloader.init();
  return { dir, file, pool, keys, reloader, attempts: () => attempts };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describe('a reload that would empty the pool', () => {
  it('{"keys": []} is refused as at start-up; the keys in force stay', async () => {
    const { file, pool, keys, reloader } = await setup();
    writeFileSync(file, '{"keys": []}');
    await expect(keys.reloadFile()).rejects.toThrow(ConfigError);
    await expect(keys.reloadFile()).rejects.toThrow(/API_KEYS_FILE: no keys/);
    expect(pool.keys.map((k) => k.id)).toEqual(['a']);

    const outcome = await reloader.reloadAll('admin');
    expect(outcome).toMatchObject({ ok: false, error: expect.stringMatching(/no keys/) });
    expect(reloader.status).toMatchObject({
      last_result: 'rejected',
      last_error: expect.stringMatching(/no keys/),
    });
    expect(pool.keys.map((k) => k.id)).toEqual(['a']);

    // The pool can still change: a valid file afterwards is applied.
    writeFileSync(file, JSON.stringify({ keys: [{ id: 'b', api_key: KEY_B }] }));
    expect(await keys.reloadFile()).toMatchObject({ changed: true, added: ['b'], removed: ['a'], total: 1 });
  });

  it('an empty file list is fine while GEMINI_API_KEYS keeps the pool non-empty', async () => {
    const { file, pool, keys } = await setup({ GEMINI_API_KEYS: KEY_ENV });
    writeFileSync(file, '{"keys": []}');
    expect(await keys.reloadFile()).toMatchObject({ changed: true, removed: ['a'], total: 1 });
    expect(pool.keys).toHaveLength(1);
    expect(pool.keys[0]!.id).toMatch(/^env_/);
  });
});

describe('the keys file watcher', () => {
  it('ignores other files in the folder (LOG_DIR there): no reload attempt per log write', async () => {
    const { dir, reloader, attempts } = await setup();
    reloader.start();
    expect(reloader.status.watching).toEqual(['keys_file']);
    const log = join(dir, 'gateway.2026-01-01.log');
    // Writes further apart than the debounce: each would have been its own reload attempt.
    for (let i = 0; i < 5; i++) {
      appendFileSync(log, `{"level":30,"msg":"request ${i}"}\n`);
      writeFileSync(join(dir, `.rotate-${i}.tmp`), 'x');
      await sleep(200);
    }
    expect(attempts()).toBe(0);
  });

  it('still sees the file itself: written in place and renamed over', async () => {
    const { file, pool, reloader, attempts } = await setup();
    reloader.start();
    writeFileSync(file, JSON.stringify({ keys: [{ id: 'b', api_key: KEY_B }] }));
    await until(() => pool.keys.some((k) => k.id === 'b'));
    writeFileSync(`${file}.tmp`, JSON.stringify({ keys: [{ id: 'a', api_key: KEY_A }] }));
    renameSync(`${file}.tmp`, file);
    await until(() => pool.keys.some((k) => k.id === 'a'));
    expect(attempts()).toBeGreaterThanOrEqual(2);
    expect(reloader.status.last_result).toBe('applied');
  });

  it("which events concern the file: its name, Kubernetes' ..data swaps, or no name", () => {
    expect(concernsFile('keys.json', 'keys.json')).toBe(true);
    expect(concernsFile('..data', 'keys.json')).toBe(true);
    expect(concernsFile('..data_tmp', 'keys.json')).toBe(true);
    expect(concernsFile('..2026_01_01_00_00_00.123', 'keys.json')).toBe(true);
    expect(concernsFile(null, 'keys.json')).toBe(true);
    expect(concernsFile('gateway.log', 'keys.json')).toBe(false);
    expect(concernsFile('keys.json.tmp', 'keys.json')).toBe(false);
    expect(concernsFile('.keys.json.123.abcd.tmp', 'keys.json')).toBe(false);
  });
});
