import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/env.ts';
import { addUsage, type Counts, zeroCounts } from '../../src/usage/counts.ts';
import { costOf, loadPrices, priceOf } from '../../src/usage/prices.ts';
import { readUsage, StreamUsageMeter, type TokenUsage } from '../../src/usage/read.ts';
import { UsageRecorder } from '../../src/usage/recorder.ts';
import { SqliteUsageStore, USAGE_DB_FILE } from '../../src/usage/sqlite-store.ts';
import type { DayRow, HourRow, UsageBatch, UsageStore } from '../../src/usage/store.ts';
import { pacificDay } from '../../src/util/pacific.ts';

/** A Google-shaped answer with every usage field. */
const usageMeta = {
  promptTokenCount: 1234,
  candidatesTokenCount: 56,
  totalTokenCount: 1234 + 56 + 78,
  cachedContentTokenCount: 1000,
  thoughtsTokenCount: 78,
  promptTokensDetails: [{ modality: 'TEXT', tokenCount: 1234 }],
  cacheTokensDetails: [{ modality: 'TEXT', tokenCount: 1000 }],
};
const answer = (meta: unknown, text = 'hello') =>
  JSON.stringify({
    candidates: [{ content: { role: 'model', parts: [{ text }] }, finishReason: 'STOP', index: 0 }],
    usageMetadata: meta,
    modelVersion: 'gemini-2.5-pro',
    responseId: 'abc',
  });
const FULL: TokenUsage = { prompt: 1234, output: 56, cached: 1000, thought: 78, imageOutput: 0 };

describe('reading usageMetadata from answer bytes', () => {
  it('reads every field of a unary answer, as reported', () => {
    expect(readUsage(Buffer.from(answer(usageMeta)))).toEqual(FULL);
    // Pretty-printed JSON (spaces and newlines around the colon) too.
    expect(readUsage(Buffer.from(JSON.stringify(JSON.parse(answer(usageMeta)), null, 2)))).toEqual(FULL);
  });

  it('counts image output tokens from candidatesTokensDetails', () => {
    const meta = {
      promptTokenCount: 10,
      candidatesTokenCount: 1290 + 5,
      candidatesTokensDetails: [
        { modality: 'IMAGE', tokenCount: 1290 },
        { modality: 'TEXT', tokenCount: 5 },
      ],
    };
    expect(readUsage(Buffer.from(answer(meta)))).toEqual({
      prompt: 10,
      output: 1295,
      cached: 0,
      thought: 0,
      imageOutput: 1290,
    });
  });

  it('is not fooled by model text that mentions usageMetadata, and answers without usage give undefined', () => {
    const text = 'a "usageMetadata": {"promptTokenCount": 999999} inside the text';
    expect(readUsage(Buffer.from(answer(usageMeta, text)))).toEqual(FULL);
    expect(readUsage(Buffer.from(JSON.stringify({ embeddings: [{ values: [0.1] }] })))).toBeUndefined();
    expect(readUsage(Buffer.from(JSON.stringify({ totalTokens: 12 })))).toBeUndefined();
  });

  it('reads the last cumulative usage of a stream, however its bytes are cut into chunks', () => {
    // Three SSE events with growing (cumulative) usage, as Google sends them.
    const events = [5, 17, 31].map((out, i) =>
      answer({ ...usageMeta, candidatesTokenCount: out, thoughtsTokenCount: 78 + i }),
    );
    const bytes = Buffer.from(events.map((e) => `data: ${e}\r\n\r\n`).join(''));
    const last = { ...FULL, output: 31, thought: 80 };
    for (let cut = 1; cut < bytes.length; cut += 1) {
      const m = new StreamUsageMeter();
      m.push(bytes.subarray(0, cut));
      m.push(bytes.subarray(cut));
      expect(m.usage, `cut at ${cut}`).toEqual(last);
    }
    // One byte at a time.
    const m = new StreamUsageMeter();
    for (let i = 0; i < bytes.length; i++) m.push(bytes.subarray(i, i + 1));
    expect(m.usage).toEqual(last);
    // A JSON-array stream (no alt=sse).
    const array = Buffer.from(`[${events.join(',\r\n')}]`);
    const a = new StreamUsageMeter();
    for (let i = 0; i < array.length; i += 7) a.push(array.subarray(i, i + 7));
    expect(a.usage).toEqual(last);
  });

  it('keeps the usage seen so far when a stream is cut off, and ignores a large chunk without usage', () => {
    const m = new StreamUsageMeter();
    m.push(Buffer.from(`data: ${answer({ ...usageMeta, candidatesTokenCount: 9 })}\r\n\r\n`));
    m.push(
      Buffer.from(`data: {"candidates":[{"content":{"parts":[{"inlineData":{"data":"${'A'.repeat(100_000)}`),
    );
    expect(m.usage).toEqual({ ...FULL, output: 9 });
  });
});

describe('the price table', () => {
  const table = loadPrices();
  const counts = (u: TokenUsage, n = 1): Counts => {
    const c = zeroCounts();
    for (let i = 0; i < n; i++) addUsage(c, u, false, table.longThreshold);
    return c;
  };

  it('says where its numbers come from and when they were read', () => {
    const file = JSON.parse(readFileSync(new URL('../../src/usage/prices.json', import.meta.url), 'utf8'));
    expect(file.source).toBe('https://ai.google.dev/gemini-api/docs/pricing');
    expect(file.read).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(file.page_updated).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(table.longThreshold).toBe(200_000);
    // The gateway's default model is priced.
    expect(priceOf(table, 'gemini-2.5-flash-lite')).toMatchObject({ input: 0.1, output: 0.4, cached: 0.01 });
    expect(priceOf(table, 'models/gemini-2.5-flash')).toMatchObject({ input: 0.3, output: 2.5 });
  });

  it('bills uncached input, cached input, and output with thinking, per million tokens', () => {
    const p = priceOf(table, 'gemini-2.5-flash-lite');
    // (1234 - 1000) × 0.10 + 1000 × 0.01 + (56 + 78) × 0.40, per million.
    const expected = (234 * 0.1 + 1000 * 0.01 + 134 * 0.4) / 1e6;
    expect(costOf(p, counts(FULL))).toBeCloseTo(expected, 12);
    expect(costOf(p, counts(FULL, 3))).toBeCloseTo(3 * expected, 12);
  });

  it('bills a request above 200k prompt tokens at the long-context prices (the whole request)', () => {
    const p = priceOf(table, 'gemini-2.5-pro');
    const long: TokenUsage = { prompt: 250_000, output: 1000, cached: 50_000, thought: 500, imageOutput: 0 };
    const short: TokenUsage = { prompt: 100_000, output: 2000, cached: 0, thought: 0, imageOutput: 0 };
    const c = counts(long);
    addUsage(c, short, false, table.longThreshold);
    const expected =
      (200_000 * 2.5 + 50_000 * 0.25 + 1500 * 15 + /* short */ 100_000 * 1.25 + 2000 * 10) / 1e6;
    expect(costOf(p, c)).toBeCloseTo(expected, 12);
  });

  it('bills image output at the image price, and has no price for unknown models', () => {
    const p = priceOf(table, 'gemini-2.5-flash-image');
    const u: TokenUsage = { prompt: 300, output: 1290, cached: 0, thought: 0, imageOutput: 1290 };
    expect(costOf(p, counts(u))).toBeCloseTo((300 * 0.3 + 1290 * 30) / 1e6, 12);
    expect(priceOf(table, 'gemini-unknown-model')).toBeUndefined();
    expect(costOf(undefined, counts(u))).toBeNull();
  });

  it('is overridden by PRICES_FILE and PRICES_JSON, and refuses a bad one naming the setting', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gg-prices-'));
    try {
      const file = join(dir, 'prices.json');
      writeFileSync(file, JSON.stringify({ models: { 'my-model': { input: 1, output: 2 } } }));
      const t = loadPrices({
        PRICES_FILE: file,
        PRICES_JSON: JSON.stringify({ 'gemini-2.5-flash-lite': { input: 5, output: 6, cached: 1 } }),
      });
      expect(priceOf(t, 'my-model')).toEqual({ input: 1, output: 2 });
      expect(priceOf(t, 'gemini-2.5-flash-lite')).toEqual({ input: 5, output: 6, cached: 1 });
      expect(priceOf(t, 'gemini-2.5-pro')).toMatchObject({ input: 1.25 });
      expect(t.overridden).toEqual(['my-model', 'gemini-2.5-flash-lite']);
      expect(() => loadPrices({ PRICES_JSON: '{"m": {"input": -1, "output": 1}}' })).toThrow(ConfigError);
      expect(() => loadPrices({ PRICES_JSON: '{"m": {"input": -1, "output": 1}}' })).toThrow(/PRICES_JSON/);
      expect(() => loadPrices({ PRICES_FILE: join(dir, 'missing.json') })).toThrow(
        /PRICES_FILE: cannot read/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A store in memory that can be made to fail, applying a batch or not before failing. */
class ScriptedStore implements UsageStore {
  readonly kind = 'sqlite';
  readonly shared = false;
  writes: UsageBatch[] = [];
  applied = new Map<number, UsageBatch>();
  fail: 'no' | 'before' | 'after' = 'no';
  async write(batch: UsageBatch): Promise<null> {
    this.writes.push(batch);
    if (this.fail === 'before') throw new Error('store down');
    // Exactly once by sequence number, as the real stores.
    if (!this.applied.has(batch.seq)) this.applied.set(batch.seq, batch);
    if (this.fail === 'after') throw new Error('answer lost');
    return null;
  }
  async tokensByClient(): Promise<Map<string, number>> {
    return new Map();
  }
  async days(): Promise<DayRow[]> {
    return [];
  }
  async hours(): Promise<HourRow[]> {
    return [];
  }
  async trim(): Promise<void> {}
  async close(): Promise<void> {}
  total(field: keyof Counts): number {
    let n = 0;
    for (const b of this.applied.values()) for (const e of b.entries) n += e.counts[field];
    return n;
  }
}

describe('the usage recorder', () => {
  const recorders: UsageRecorder[] = [];
  afterEach(async () => {
    for (const r of recorders.splice(0)) await r.close();
  });
  const make = (store: UsageStore, now = () => Date.now()) => {
    const r = new UsageRecorder({ store, prices: loadPrices(), flushMs: 3_600_000, now });
    recorders.push(r);
    return r;
  };
  const u = (prompt: number, output: number): TokenUsage => ({
    prompt,
    output,
    cached: 0,
    thought: 2,
    imageOutput: 0,
  });

  it('aggregates per client, model and hour, and writes one batch per flush', async () => {
    const store = new ScriptedStore();
    const r = make(store);
    r.record('alice', 'm1', u(10, 3), false);
    r.record('alice', 'm1', u(20, 4), false);
    r.record('alice', 'm2', u(1, 1), false);
    r.record('bob', 'm1', undefined, true);
    r.record(undefined, 'm1', u(5, 5), false);
    r.record('alice', '', u(99, 99), false); // no model (listing): not counted
    await r.flush();
    expect(store.writes).toHaveLength(1);
    const byKey = new Map(store.writes[0]!.entries.map((e) => [`${e.client}/${e.model}`, e.counts]));
    expect([...byKey.keys()].sort()).toEqual(['(none)/m1', 'alice/m1', 'alice/m2', 'bob/m1']);
    expect(byKey.get('alice/m1')).toMatchObject({
      requests: 2,
      prompt_tokens: 30,
      output_tokens: 7,
      thought_tokens: 4,
      errors: 0,
    });
    expect(byKey.get('bob/m1')).toMatchObject({ requests: 1, prompt_tokens: 0, errors: 1 });
    // Nothing new: no write.
    await r.flush();
    expect(store.writes).toHaveLength(1);
  });

  it('keeps a failed batch and writes it again as it was (same sequence), then newer counts', async () => {
    const store = new ScriptedStore();
    const r = make(store);
    r.record('alice', 'm1', u(10, 1), false);
    store.fail = 'after'; // applied, but the answer was lost (a timeout)
    await expect(r.flush()).rejects.toThrow(/unavailable/);
    r.record('alice', 'm1', u(7, 1), false);
    store.fail = 'before';
    await expect(r.flush()).rejects.toThrow(/unavailable/);
    store.fail = 'no';
    await r.flush();
    // The first batch went three times with one sequence number, then the newer one.
    expect(store.writes.map((b) => b.seq)).toEqual([1, 1, 1, 2]);
    expect(store.total('prompt_tokens')).toBe(17);
    expect(store.total('requests')).toBe(2);
  });

  it("tells a client's tokens today: confirmed by the store plus counted since, and reports them", async () => {
    const store = new ScriptedStore();
    store.tokensByClient = async () => new Map([['alice', 1000]]);
    const seen: Array<[string, number]> = [];
    const r = make(store);
    r.onTokens = (client, tokens) => seen.push([client, tokens]);
    await r.start();
    expect(r.tokensToday('alice')).toBe(1000);
    r.record('alice', 'm1', u(10, 3), false); // 10 + 3 + 2 thinking
    expect(r.tokensToday('alice')).toBe(1015);
    await r.flush();
    expect(r.tokensToday('alice')).toBe(1015);
    expect(r.tokensToday('bob')).toBe(0);
    expect(seen).toEqual([['alice', 15]]);
  });

  it('starts a new day at Pacific midnight', async () => {
    let now = Date.parse('2026-03-10T06:59:00Z'); // 23:59 in Los Angeles (PDT)
    const store = new ScriptedStore();
    const r = make(store, () => now);
    r.record('alice', 'm1', u(10, 0), false);
    expect(r.tokensToday('alice')).toBe(12);
    now += 120_000;
    expect(r.tokensToday('alice')).toBe(0);
    r.record('alice', 'm1', u(1, 0), false);
    await r.flush();
    const days = store.writes[0]!.entries.map((e) => e.day).sort();
    expect(days).toEqual(['2026-03-09', '2026-03-10']);
  });

  it('caps the Prometheus labels: clients past the cap count as "other"', () => {
    const r = new UsageRecorder({
      store: new ScriptedStore(),
      prices: loadPrices(),
      flushMs: 3_600_000,
      maxMetricClients: 2,
      maxMetricModels: 1,
    });
    recorders.push(r);
    for (const c of ['a', 'b', 'c', 'd']) r.record(c, 'gemini-2.5-flash-lite', u(1_000_000, 0), false);
    r.record('a', 'gemini-2.5-pro', u(1, 0), false);
    const m = r.metrics();
    const labels = m.map((t) => `${t.client}/${t.model}`).sort();
    expect(labels).toEqual([
      'a/gemini-2.5-flash-lite',
      'a/other',
      'b/gemini-2.5-flash-lite',
      'other/gemini-2.5-flash-lite',
    ]);
    const other = m.find((t) => t.client === 'other')!;
    expect(other.counts.requests).toBe(2);
    // Cost at each model's own price: 2 × (1M × $0.10 + 2 × $0.40 / 1M).
    expect(other.costUsd).toBeCloseTo(2 * (0.1 + 0.0000008), 9);
  });
});

describe('the embedded usage database', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('adds batches per day and hour, keeps them across a reopen, and trims past the retention', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gg-usage-db-'));
    dirs.push(dir);
    const now = Date.parse('2026-12-04T18:30:00Z');
    const hour = Math.floor(now / 3_600_000);
    const today = pacificDay(now);
    const counts = (p: number) => {
      const c = zeroCounts();
      addUsage(c, { prompt: p, output: 2, cached: 1, thought: 3, imageOutput: 0 }, false, 200_000);
      return c;
    };
    const a = new SqliteUsageStore(dir, 90, pacificDay);
    await a.write({
      seq: 1,
      entries: [{ hour, day: today, client: 'alice', model: 'm', counts: counts(10) }],
    });
    await a.write({
      seq: 2,
      entries: [
        { hour, day: today, client: 'alice', model: 'm', counts: counts(5) },
        { hour: hour - 24 * 100, day: '2026-08-26', client: 'old', model: 'm', counts: counts(1) },
      ],
    });
    await a.close();
    const b = new SqliteUsageStore(dir, 90, pacificDay);
    const rows = await b.days([today]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ day: today, client: 'alice', model: 'm' });
    expect(rows[0]!.counts).toMatchObject({
      requests: 2,
      prompt_tokens: 15,
      output_tokens: 4,
      cached_tokens: 2,
      thought_tokens: 6,
    });
    expect((await b.hours([hour]))[0]!.counts.prompt_tokens).toBe(15);
    expect(await b.tokensByClient(today)).toEqual(new Map([['alice', 15 + 4 + 6]]));
    expect(await b.days(['2026-08-26'])).toHaveLength(1);
    await b.trim(now);
    expect(await b.days(['2026-08-26'])).toHaveLength(0);
    expect(await b.days([today])).toHaveLength(1);
    await b.close();
  });

  it('opens a file another process is writing in the old journal mode (WORKERS starting together)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gg-usage-db-'));
    dirs.push(dir);
    // Another process holds a write lock on the file, not yet in WAL mode, for 300 ms: SQLite
    // refuses the switch to WAL at once then, whatever busy_timeout says.
    const holder = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { DatabaseSync } from 'node:sqlite';
         const db = new DatabaseSync(${JSON.stringify(join(dir, USAGE_DB_FILE))});
         db.exec('CREATE TABLE t (x)'); db.exec('BEGIN IMMEDIATE'); db.exec('INSERT INTO t VALUES (1)');
         console.log('holding');
         setTimeout(() => { db.exec('COMMIT'); db.close(); }, 300);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = once(holder, 'exit');
    await once(holder.stdout, 'data');
    const store = new SqliteUsageStore(dir, 90, pacificDay);
    await store.write({
      seq: 1,
      entries: [{ hour: 1, day: '2026-12-04', client: 'c', model: 'm', counts: zeroCounts() }],
    });
    expect(await store.days(['2026-12-04'])).toHaveLength(1);
    await store.close();
    expect((await exited)[0]).toBe(0);
  });

  it('refuses a DATA_DIR it cannot use, naming the setting', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gg-usage-db-'));
    dirs.push(dir);
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    expect(() => new SqliteUsageStore(join(file, 'sub'), 90, pacificDay)).toThrow(/DATA_DIR: cannot open/);
  });
});
