import { linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, parseEnv } from '../../src/config/env.ts';
import { KeyManager, maskKey, writeFileAtomic } from '../../src/config/keys-store.ts';
import { KeyPool } from '../../src/pool/key-pool.ts';
import { MemoryStore } from '../../src/store/memory.ts';

/** Tests written to kill mutants of src/config/keys-store.ts that the suite let live. */

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'gg-mut-admin-'));
  dirs.push(d);
  return d;
}

const KEY_A = 'AIzaMutAdminKeyAAAAAAAAAAAAAAAAAAAAAA1';
const KEY_B = 'AIzaMutAdminKeyBBBBBBBBBBBBBBBBBBBBBB2';
const KEY_C = 'AIzaMutAdminKeyCCCCCCCCCCCCCCCCCCCCCC3';
const KEY_ENV = 'AIzaMutAdminKeyEEEEEEEEEEEEEEEEEEEEEE4';

async function setup(fileKeys: unknown, extraEnv: Record<string, string> = {}) {
  const file = join(tempDir(), 'keys.json');
  writeFileSync(file, JSON.stringify(fileKeys), { mode: 0o600 });
  const env = parseEnv({ API_KEYS_FILE: file, ...extraEnv });
  const store = new MemoryStore();
  const pool = new KeyPool(store, { queueMaxWaitMs: 0, circuit: { failureThreshold: 5, cooldownMs: 1000 } });
  const keys = new KeyManager({ env, pool, store });
  await keys.load();
  await keys.apply();
  return { file, store, pool, keys };
}

const fileIds = (file: string) =>
  (JSON.parse(readFileSync(file, 'utf8')).keys as Array<{ id: string }>).map((k) => k.id);

describe('writeFileAtomic', () => {
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

describe('KeyManager', () => {
  it('changes are serialized: two concurrent adds both end up in the pool and the file', async () => {
    const { file, keys, pool } = await setup({ keys: [{ id: 'a', api_key: KEY_A }] });
    await Promise.all([keys.add({ id: 'b', api_key: KEY_B }), keys.add({ id: 'c', api_key: KEY_C })]);
    expect(pool.keys.map((k) => k.id).sort()).toEqual(['a', 'b', 'c']);
    expect(fileIds(file).sort()).toEqual(['a', 'b', 'c']);
  });

  it('a file reload keeps the GEMINI_API_KEYS keys', async () => {
    const { file, keys, pool } = await setup(
      { keys: [{ id: 'a', api_key: KEY_A }] },
      { GEMINI_API_KEYS: KEY_ENV },
    );
    const envId = pool.keys.find((k) => k.id.startsWith('env_'))!.id;
    writeFileSync(
      file,
      JSON.stringify({
        keys: [
          { id: 'a', api_key: KEY_A },
          { id: 'b', api_key: KEY_B },
        ],
      }),
    );
    expect(await keys.reloadFile()).toMatchObject({ changed: true, added: ['b'], removed: [], total: 3 });
    expect(pool.keys.map((k) => k.id)).toEqual(['a', 'b', envId]);
  });

  it('a file that repeats a GEMINI_API_KEYS key is rejected and changes nothing', async () => {
    const { file, keys, pool } = await setup(
      { keys: [{ id: 'a', api_key: KEY_A }] },
      { GEMINI_API_KEYS: KEY_ENV },
    );
    const before = pool.keys.map((k) => k.id);
    writeFileSync(
      file,
      JSON.stringify({
        keys: [
          { id: 'a', api_key: KEY_A },
          { id: 'dup', api_key: KEY_ENV },
        ],
      }),
    );
    const err = await keys.reloadFile().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(String(err)).not.toContain(KEY_ENV);
    expect(pool.keys.map((k) => k.id)).toEqual(before);
  });

  it('a file reload does not lift an automatic disable of a key the file keeps enabled', async () => {
    const { file, keys, store } = await setup({
      keys: [
        { id: 'a', api_key: KEY_A },
        { id: 'b', api_key: KEY_B },
      ],
    });
    // found dead upstream (e.g. API_KEY_INVALID): disabled in the store, still enabled in the file
    await store.setKeyEnabled('a', false, 'API_KEY_INVALID', Date.now());
    writeFileSync(
      file,
      JSON.stringify({
        keys: [
          { id: 'a', api_key: KEY_A },
          { id: 'b', api_key: KEY_B },
          { id: 'c', api_key: KEY_C },
        ],
      }),
    );
    expect(await keys.reloadFile()).toMatchObject({ changed: true, added: ['c'] });
    const a = (await store.keyStates(Date.now(), '2026-01-01')).find((s) => s.id === 'a')!;
    expect(a.enabled).toBe(false);
  });

  it('reports every applied change, so the log scrubber learns keys added at runtime', async () => {
    const { keys } = await setup({ keys: [{ id: 'a', api_key: KEY_A }] });
    const seen: string[][] = [];
    keys.onChange = (configs) => seen.push(configs.map((k) => k.apiKey));
    await keys.add({ id: 'b', api_key: KEY_B });
    await keys.remove('a');
    expect(seen).toEqual([[KEY_A, KEY_B], [KEY_B]]);
  });

  it("the gateway's own write of the keys file is not reloaded as a change", async () => {
    const { keys } = await setup({ keys: [{ id: 'a', api_key: KEY_A }] });
    await keys.add({ id: 'b', api_key: KEY_B });
    expect(await keys.reloadFile()).toMatchObject({ changed: false });
  });
});

describe('maskKey', () => {
  it('shows nothing of a value shorter than 12 characters', () => {
    expect(maskKey('AIza1234567')).toBe('…');
    expect(maskKey('AIza12345678')).toBe('AIza…5678');
  });
});
