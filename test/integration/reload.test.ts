import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { buildGateway } from '../../src/app/build.ts';
import { ConfigError } from '../../src/config/env.ts';
import { generateText, poolKeyValues, stackPerTest, TEST_TOKEN } from '../helpers/stack.ts';
import { tempDirs } from '../helpers/temp.ts';

/** Hot reload of API_KEYS_FILE and CONFIG_FILE. */

const stack = stackPerTest();

const tempDir = tempDirs('gg-reload-');

const values = poolKeyValues(3);
const keysJson = (n: number) =>
  JSON.stringify({ keys: values.slice(0, n).map((api_key, i) => ({ id: `k${i + 1}`, api_key })) });

/** Replaces a file the way editors and config managers do: write aside, rename over. */
function replaceFile(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('keys file', () => {
  it('a changed file is applied without restart (in-place write and rename-over alike)', async () => {
    const file = join(tempDir(), 'keys.json');
    writeFileSync(file, keysJson(1));
    const s = await stack({ keys: 3, env: { GEMINI_API_KEYS: '', API_KEYS_FILE: file } });
    expect(s.gateway.pool.keys.map((k) => k.id)).toEqual(['k1']);
    replaceFile(file, keysJson(2));
    await until(() => s.gateway.pool.keys.length === 2);
    writeFileSync(file, keysJson(3));
    await until(() => s.gateway.pool.keys.length === 3);
    s.fake.resetStats();
    for (let i = 0; i < 6; i++) expect((await generateText(s, `n${i}`)).status).toBe(200);
    expect(s.fake.stats.byKey.get(values[2]!) ?? 0).toBeGreaterThan(0);
    expect(s.gateway.reloader.status.last_result).toBe('applied');
  });

  it('a broken file changes nothing and the log says why, without a key value', async () => {
    const file = join(tempDir(), 'keys.json');
    writeFileSync(file, keysJson(2));
    const lines: string[] = [];
    const s = await stack({ keys: 2, logLines: lines, env: { GEMINI_API_KEYS: '', API_KEYS_FILE: file } });
    for (const broken of [
      '{"keys": [ {"id": "k1", ',
      JSON.stringify({ keys: [{ id: 'k1', api_key: values[0], colour: 'blue' }] }),
      JSON.stringify({
        keys: [
          { id: 'k1', api_key: values[0] },
          { id: 'k1', api_key: values[1] },
        ],
      }),
    ]) {
      const before = lines.length;
      replaceFile(file, broken);
      await until(() => lines.slice(before).some((l) => l.includes('reload rejected')));
      expect(s.gateway.pool.keys.map((k) => k.id)).toEqual(['k1', 'k2']);
      expect((await generateText(s)).status).toBe(200);
    }
    const rejected = lines.filter((l) => l.includes('reload rejected')).map((l) => JSON.parse(l));
    expect(rejected).toHaveLength(3);
    expect(rejected[0].reason).toMatch(/API_KEYS_FILE: not valid JSON/);
    expect(rejected[1].reason).toMatch(/colour|unrecognized/i);
    expect(rejected[2].reason).toMatch(/duplicate key id "k1"/);
    for (const v of values) expect(lines.join('')).not.toContain(v);
    expect(s.gateway.reloader.status).toMatchObject({
      last_result: 'rejected',
      last_error: expect.any(String),
    });
  });

  it('no request is dropped while the key list is reloaded under load', async () => {
    const file = join(tempDir(), 'keys.json');
    writeFileSync(file, keysJson(3));
    const s = await stack({
      keys: 3,
      env: { GEMINI_API_KEYS: '', API_KEYS_FILE: file, DEFAULT_RPM: '10000' },
    });
    let stop = false;
    const statuses: number[] = [];
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) statuses.push((await generateText(s, `w${w}-${i}`)).status);
    };
    const workers = Array.from({ length: 8 }, (_, w) => worker(w));
    // At least 8 reloads, and on until 60 requests went through them (a busy machine is slower).
    for (let round = 0; round < 8 || (statuses.length < 60 && round < 200); round++) {
      replaceFile(file, keysJson(round % 2 === 0 ? 2 : 3));
      await new Promise((r) => setTimeout(r, 120));
      // A reload through the admin path runs concurrently with the watcher's.
      void s.gateway.reloader.reloadAll('admin');
    }
    stop = true;
    await Promise.all(workers);
    expect(statuses.length).toBeGreaterThan(50);
    expect(statuses.filter((x) => x !== 200)).toEqual([]);
  });
});

describe('CONFIG_FILE', () => {
  it('changes the caller rate limits at runtime; an invalid version is ignored', async () => {
    const config = join(tempDir(), 'gateway.json');
    writeFileSync(config, JSON.stringify({ GLOBAL_RATE_LIMIT: 0, BURST_RATE_LIMIT: 0 }));
    const lines: string[] = [];
    // IP_LIMIT_SCOPE=all: the per-IP limits count these authenticated requests too.
    const s = await stack({ logLines: lines, env: { CONFIG_FILE: config, IP_LIMIT_SCOPE: 'all' } });
    const ops = () =>
      fetch(`${s.url}/v1/text_processing/operations`, { headers: { 'x-goog-api-key': TEST_TOKEN } }).then(
        (r) => r.status,
      );
    for (let i = 0; i < 4; i++) expect(await ops()).toBe(200);
    // Early in a minute, so the three requests below share one window.
    if (Date.now() % 60_000 > 55_000)
      await new Promise((r) => setTimeout(r, 60_000 - (Date.now() % 60_000) + 20));
    replaceFile(config, JSON.stringify({ GLOBAL_RATE_LIMIT: 2, BURST_RATE_LIMIT: 0, LOG_LEVEL: 'warn' }));
    await until(() => s.gateway.reloader.settings.GLOBAL_RATE_LIMIT === 2);
    expect([await ops(), await ops(), await ops()]).toEqual([200, 200, 429]);
    expect(s.gateway.logger.level).toBe('warn');

    replaceFile(config, JSON.stringify({ GLOBAL_RATE_LIMIT: 'lots' }));
    await until(() => lines.some((l) => l.includes('CONFIG_FILE reload rejected')));
    expect(s.gateway.reloader.settings.GLOBAL_RATE_LIMIT).toBe(2);
  });

  it('an invalid CONFIG_FILE stops start-up with a message naming the setting', async () => {
    const config = join(tempDir(), 'gateway.json');
    writeFileSync(config, JSON.stringify({ BURST_RATE_LIMIT: -3 }));
    const err = await buildGateway(
      {
        GEMINI_API_KEYS: values[0],
        CLIENT_API_KEYS_MAP: `${TEST_TOKEN}:tests`,
        CONFIG_FILE: config,
      },
      { logger: pino({ level: 'silent' }) },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(String(err)).toMatch(/BURST_RATE_LIMIT/);
  });
});
