import { linkSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseEnv } from '../../src/config/env.ts';
import { KeyManager, maskKey, writeFileAtomic } from '../../src/config/keys-store.ts';
import { ConfigReloader, effectiveSettings, parseRuntimeConfig } from '../../src/config/reload.ts';
import { KeyPool } from '../../src/pool/key-pool.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { problemOfRejection } from '../helpers/problem.ts';
import { tempDirs } from '../helpers/temp.ts';

const tempDir = tempDirs('gg-reload-');

const KEY_A = 'AIzaUnitTestKeyAAAAAAAAAAAAAAAAAAAAAA1';
const KEY_B = 'AIzaUnitTestKeyBBBBBBBBBBBBBBBBBBBBBB2';
const KEY_C = 'AIzaUnitTestKeyCCCCCCCCCCCCCCCCCCCCCC3';
const KEY_ENV = 'AIzaUnitTestKeyEEEEEEEEEEEEEEEEEEEEEE4';

function setup(fileKeys: unknown, extraEnv: Record<string, string> = {}) {
  const dir = tempDir();
  const file = join(dir, 'keys.json');
  writeFileSync(file, JSON.stringify(fileKeys), { mode: 0o600 });
  const env = parseEnv({ API_KEYS_FILE: file, ...extraEnv });
  const store = new MemoryStore();
  const pool = new KeyPool(store, { queueMaxWaitMs: 0, circuit: { failureThreshold: 5, cooldownMs: 1000 } });
  const keys = new KeyManager({ env, pool, store });
  return { dir, file, env, store, pool, keys };
}

/** Rewrites the keys file with these entries, as an operator's edit would. */
const writeKeys = (file: string, ...keys: Array<Record<string, unknown>>) =>
  writeFileSync(file, JSON.stringify({ keys }));

const readKeys = (file: string) =>
  JSON.parse(readFileSync(file, 'utf8')).keys as Array<Record<string, unknown>>;

describe('CONFIG_FILE', () => {
  it('accepts the runtime subset and overrides the environment with it', () => {
    const env = parseEnv({ GLOBAL_RATE_LIMIT: '100', CLIENT_RATE_LIMITS: 'a:5' });
    const cfg = parseRuntimeConfig(
      '{"GLOBAL_RATE_LIMIT": 7, "CLIENT_RATE_LIMITS": {"b": 9}, "LOG_LEVEL": "debug"}',
    );
    const s = effectiveSettings(env, cfg);
    expect(s.GLOBAL_RATE_LIMIT).toBe(7);
    expect(s.BURST_RATE_LIMIT).toBe(env.BURST_RATE_LIMIT);
    expect([...s.CLIENT_RATE_LIMITS]).toEqual([['b', 9]]);
    expect(s.LOG_LEVEL).toBe('debug');
    expect(effectiveSettings(env, {}).CLIENT_RATE_LIMITS.get('a')).toBe(5);
  });

  it('rejects bad JSON, unknown settings and bad values, naming them', () => {
    expect(() => parseRuntimeConfig('{')).toThrow(ConfigError);
    expect(() => parseRuntimeConfig('{"PORT": 1}')).toThrow(/PORT|unrecognized/i);
    expect(() => parseRuntimeConfig('{"GLOBAL_RATE_LIMIT": -1}')).toThrow(/GLOBAL_RATE_LIMIT/);
    expect(() => parseRuntimeConfig('{"LOG_LEVEL": "loud"}')).toThrow(/LOG_LEVEL/);
  });

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

describe('writeFileAtomic', () => {
  it('replaces the file whole, keeps its mode and leaves no temporary file', async () => {
    const dir = tempDir();
    const file = join(dir, 'f.json');
    writeFileSync(file, 'old', { mode: 0o640 });
    await writeFileAtomic(file, 'new content');
    expect(readFileSync(file, 'utf8')).toBe('new content');
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir)).toEqual(['f.json']);
    const fresh = join(dir, 'new.json');
    await writeFileAtomic(fresh, '{}');
    expect(statSync(fresh).mode & 0o777).toBe(0o600);
  });
});

describe('KeyManager', () => {
  it('loads file and environment keys, and persists admin changes of file keys to the file', async () => {
    const { file, keys, pool } = setup(
      {
        keys: [
          { id: 'a', api_key: KEY_A },
          { id: 'b', api_key: KEY_B, limits: { requests_per_minute: 5 } },
        ],
      },
      { GEMINI_API_KEYS: KEY_ENV },
    );
    await keys.load();
    await keys.apply();
    expect(pool.keys.map((k) => k.id)).toEqual(['a', 'b', expect.stringMatching(/^env_/)]);
    expect(keys.list().map((k) => k.origin)).toEqual(['file', 'file', 'env']);

    await keys.add({ id: 'c', api_key: KEY_C, project: 'p1' });
    expect(pool.keys.map((k) => k.id)).toContain('c');
    let onDisk = readKeys(file);
    expect(onDisk.map((k) => k.id)).toEqual(['a', 'b', 'c']);
    expect(onDisk[1]!.limits).toMatchObject({ requests_per_minute: 5 });
    expect(JSON.stringify(onDisk)).not.toContain(KEY_ENV); // environment keys stay in the environment
    expect(statSync(file).mode & 0o777).toBe(0o600);

    await keys.setEnabled('b', false, 'disabled by admin');
    expect(readKeys(file).find((k) => k.id === 'b')!.enabled).toBe(false);
    await keys.setEnabled('b', true, null);
    expect(readKeys(file).find((k) => k.id === 'b')!.enabled).toBe(true);

    await keys.remove('a');
    onDisk = readKeys(file);
    expect(onDisk.map((k) => k.id)).toEqual(['b', 'c']);
    expect(pool.keys.map((k) => k.id)).not.toContain('a');
  });

  it('refuses duplicates, invalid entries and removing the last key', async () => {
    const { keys } = setup({ keys: [{ id: 'a', api_key: KEY_A }] });
    await keys.load();
    await keys.apply();
    expect(await problemOfRejection(keys.add({ id: 'a', api_key: KEY_B }))).toMatchObject({ status: 409 });
    expect(await problemOfRejection(keys.add({ id: 'z', api_key: KEY_A }))).toMatchObject({ status: 409 });
    expect(await problemOfRejection(keys.add({ id: 'bad id!', api_key: KEY_B }))).toMatchObject({
      status: 422,
    });
    expect(await problemOfRejection(keys.add({ api_key: KEY_B, surprise: 1 }))).toMatchObject({
      status: 422,
    });
    expect(await problemOfRejection(keys.remove('nope'))).toMatchObject({ status: 404 });
    expect(await problemOfRejection(keys.remove('a'))).toMatchObject({ status: 409 });
    const added = await keys.add({ api_key: KEY_B });
    expect(added.config.id).toMatch(/^key_[0-9a-f]{10}$/);
  });

  it('a reload applies a valid file and keeps the current keys when the file is invalid', async () => {
    const { file, keys, pool } = setup({ keys: [{ id: 'a', api_key: KEY_A }] });
    await keys.load();
    await keys.apply();
    writeKeys(file, { id: 'a', api_key: KEY_A }, { id: 'b', api_key: KEY_B });
    expect(await keys.reloadFile()).toMatchObject({ changed: true, added: ['b'], removed: [], total: 2 });
    expect(await keys.reloadFile()).toMatchObject({ changed: false });

    for (const broken of [
      '{"keys": [',
      JSON.stringify({ keys: [{ id: 'a' }] }),
      JSON.stringify({
        keys: [
          { id: 'a', api_key: KEY_A },
          { id: 'a', api_key: KEY_B },
        ],
      }),
    ]) {
      writeFileSync(file, broken);
      const err = await keys.reloadFile().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect(String((err as Error).message)).not.toContain(KEY_A);
      expect(pool.keys.map((k) => k.id)).toEqual(['a', 'b']);
    }
  });

  it('an operator enabling a key in the file also lifts a runtime disable', async () => {
    const { file, keys, store } = setup({
      keys: [
        { id: 'a', api_key: KEY_A, enabled: false },
        { id: 'b', api_key: KEY_B },
      ],
    });
    await keys.load();
    await keys.apply();
    await store.setKeyEnabled('a', false, 'disabled by admin', Date.now());
    writeKeys(file, { id: 'a', api_key: KEY_A, enabled: true }, { id: 'b', api_key: KEY_B });
    await keys.reloadFile();
    const a = (await store.keyStates(Date.now(), '2026-01-01')).find((s) => s.id === 'a')!;
    expect(a.enabled).toBe(true);
  });
});

describe('maskKey', () => {
  it('shows four characters at each end, nothing of short values', () => {
    expect(maskKey('AIzaSyABCDEFGHIJKLMNOPxyz1')).toBe('AIza…xyz1');
    expect(maskKey('short')).toBe('…');
  });
});

// Found by mutation testing of src/config/keys-store.ts: behaviours the tests above left open.

/** setup(), with the keys loaded and applied to the pool. */
async function loaded(fileKeys: unknown, extraEnv: Record<string, string> = {}) {
  const s = setup(fileKeys, extraEnv);
  await s.keys.load();
  await s.keys.apply();
  return s;
}

const fileIds = (file: string) => readKeys(file).map((k) => k.id);

describe('writeFileAtomic: replacing and failing', () => {
  it('puts a new file in place by rename: a reader holding the old file still sees it whole', async () => {
    const dir = tempDir();
    const file = join(dir, 'keys.json');
    writeFileSync(file, 'old content');
    const held = join(dir, 'held-by-a-reader');
    linkSync(file, held); // the old inode, as an open reader would keep it
    await writeFileAtomic(file, 'new content');
    expect(readFileSync(file, 'utf8')).toBe('new content');
    expect(readFileSync(held, 'utf8')).toBe('old content');
  });

  it('leaves no temporary file behind when the rename fails', async () => {
    const dir = tempDir();
    const target = join(dir, 'target');
    mkdirSync(target);
    writeFileSync(join(target, 'inside'), 'x'); // a non-empty directory cannot be renamed over
    await expect(writeFileAtomic(target, 'text')).rejects.toThrow();
    expect(readdirSync(dir)).toEqual(['target']);
  });
});

describe('KeyManager: concurrent changes, reloads and change events', () => {
  it('changes are serialized: two concurrent adds both end up in the pool and the file', async () => {
    const { file, keys, pool } = await loaded({ keys: [{ id: 'a', api_key: KEY_A }] });
    await Promise.all([keys.add({ id: 'b', api_key: KEY_B }), keys.add({ id: 'c', api_key: KEY_C })]);
    expect(pool.keys.map((k) => k.id).sort()).toEqual(['a', 'b', 'c']);
    expect(fileIds(file).sort()).toEqual(['a', 'b', 'c']);
  });

  it('a file reload keeps the GEMINI_API_KEYS keys', async () => {
    const { file, keys, pool } = await loaded(
      { keys: [{ id: 'a', api_key: KEY_A }] },
      { GEMINI_API_KEYS: KEY_ENV },
    );
    const envId = pool.keys.find((k) => k.id.startsWith('env_'))!.id;
    writeKeys(file, { id: 'a', api_key: KEY_A }, { id: 'b', api_key: KEY_B });
    expect(await keys.reloadFile()).toMatchObject({ changed: true, added: ['b'], removed: [], total: 3 });
    expect(pool.keys.map((k) => k.id)).toEqual(['a', 'b', envId]);
  });

  it('a file that repeats a GEMINI_API_KEYS key is rejected and changes nothing', async () => {
    const { file, keys, pool } = await loaded(
      { keys: [{ id: 'a', api_key: KEY_A }] },
      { GEMINI_API_KEYS: KEY_ENV },
    );
    const before = pool.keys.map((k) => k.id);
    writeKeys(file, { id: 'a', api_key: KEY_A }, { id: 'dup', api_key: KEY_ENV });
    const err = await keys.reloadFile().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(String(err)).not.toContain(KEY_ENV);
    expect(pool.keys.map((k) => k.id)).toEqual(before);
  });

  it('a file reload does not lift an automatic disable of a key the file keeps enabled', async () => {
    const { file, keys, store } = await loaded({
      keys: [
        { id: 'a', api_key: KEY_A },
        { id: 'b', api_key: KEY_B },
      ],
    });
    // found dead upstream (e.g. API_KEY_INVALID): disabled in the store, still enabled in the file
    await store.setKeyEnabled('a', false, 'API_KEY_INVALID', Date.now());
    writeKeys(file, { id: 'a', api_key: KEY_A }, { id: 'b', api_key: KEY_B }, { id: 'c', api_key: KEY_C });
    expect(await keys.reloadFile()).toMatchObject({ changed: true, added: ['c'] });
    const a = (await store.keyStates(Date.now(), '2026-01-01')).find((s) => s.id === 'a')!;
    expect(a.enabled).toBe(false);
  });

  it('reports every applied change, so the log scrubber learns keys added at runtime', async () => {
    const { keys } = await loaded({ keys: [{ id: 'a', api_key: KEY_A }] });
    const seen: string[][] = [];
    keys.onChange = (configs) => seen.push(configs.map((k) => k.apiKey));
    await keys.add({ id: 'b', api_key: KEY_B });
    await keys.remove('a');
    expect(seen).toEqual([[KEY_A, KEY_B], [KEY_B]]);
  });

  it("the gateway's own write of the keys file is not reloaded as a change", async () => {
    const { keys } = await loaded({ keys: [{ id: 'a', api_key: KEY_A }] });
    await keys.add({ id: 'b', api_key: KEY_B });
    expect(await keys.reloadFile()).toMatchObject({ changed: false });
  });
});

describe('maskKey: short values', () => {
  it('shows nothing of a value shorter than 12 characters', () => {
    expect(maskKey('AIza1234567')).toBe('…');
    expect(maskKey('AIza12345678')).toBe('AIza…5678');
  });
});
