/**
 * What one scrape of /metrics costs with a large pool: `node scripts/bench/metrics-scrape.ts
 * [--keys 10000] [--requests 20000] [--models 2] [--scrapes 20] [--per-key auto|true|false]
 * [--redis]`.
 *
 * A gateway (in this process) with `--keys` pool keys, each its own project (as a pool of
 * free-tier keys is), serves `--requests` requests spread over `--models` models against the
 * fake Gemini, so every key and project has series; then `--scrapes` scrapes, 300 ms apart (past
 * the metrics' 250 ms snapshot memo, so each one reads the store again), are timed from the
 * client's side. Prints bytes, series and the median, p95 and worst time per scrape.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { Pool } from 'undici';
import { startFakeGemini } from '../../fake/fake-gemini.ts';
import { buildGateway } from '../../src/app/build.ts';
import { median, Servers } from './common.ts';

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '10000' },
    requests: { type: 'string', default: '20000' },
    models: { type: 'string', default: '2' },
    scrapes: { type: 'string', default: '20' },
    'per-key': { type: 'string', default: 'auto' },
    redis: { type: 'boolean', default: false },
  },
});
const KEYS = Number(values.keys);
const REQUESTS = Number(values.requests);
const MODELS = ['gemini-2.5-flash-lite', 'gemini-2.5-flash', 'gemini-2.5-pro'].slice(
  0,
  Number(values.models),
);
const SCRAPES = Number(values.scrapes);
const TOKEN = 'scrape-bench-token';

const dir = mkdtempSync(join(tmpdir(), 'gg-scrape-'));
const servers = new Servers();
try {
  const fake = await startFakeGemini({ acceptAnyKey: true });
  const keysFile = join(dir, 'keys.json');
  writeFileSync(
    keysFile,
    JSON.stringify({
      keys: Array.from({ length: KEYS }, (_, i) => ({
        id: `key_${i}`,
        api_key: `AIzaScrape${String(i).padStart(6, '0')}`,
        limits: { requests_per_minute: 1_000_000, requests_per_day: 100_000_000, tokens_per_minute: 1e9 },
      })),
    }),
  );
  const env: Record<string, string> = {
    NODE_ENV: 'production',
    GEMINI_BASE_URL: fake.url,
    API_KEYS_FILE: keysFile,
    CLIENT_API_KEYS_MAP: `${TOKEN}:bench`,
    GLOBAL_RATE_LIMIT: '0',
    BURST_RATE_LIMIT: '0',
    VERIFY_KEYS: 'false',
    METRICS_PER_KEY: String(values['per-key']),
  };
  if (values.redis) env.REDIS_URL = (await servers.startRedis()).url;
  const gateway = await buildGateway(env, { logger: pino({ level: 'silent' }) });
  await gateway.app.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${(gateway.app.server.address() as { port: number }).port}`;

  const pool = new Pool(base, { connections: 32 });
  let sent = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (sent < REQUESTS) {
        const model = MODELS[sent % MODELS.length];
        sent += 1;
        const r = await pool.request({
          path: `/v1beta/models/${model}:generateContent`,
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-goog-api-key': TOKEN },
          body: '{"contents":[{"parts":[{"text":"hi"}]}]}',
        });
        await r.body.dump();
      }
    }),
  );
  console.log(`${REQUESTS} requests over ${KEYS} keys in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const times: number[] = [];
  const order: number[] = [];
  let bytes = 0;
  let series = 0;
  for (let i = 0; i < SCRAPES; i++) {
    await new Promise((r) => setTimeout(r, 300));
    const start = performance.now();
    const r = await pool.request({ path: '/metrics', method: 'GET' });
    const text = await r.body.text();
    times.push(performance.now() - start);
    order.push(performance.now() - start);
    bytes = Buffer.byteLength(text);
    series = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
  }
  await pool.close();
  times.sort((a, b) => a - b);
  console.log(
    `METRICS_PER_KEY=${values['per-key']}${values.redis ? ' (Redis)' : ''}: ${(bytes / 1024).toFixed(0)} KiB, ${series} samples; ` +
      `scrape median ${median(times).toFixed(1)} ms, p95 ${times[Math.floor(times.length * 0.95)]!.toFixed(1)} ms, ` +
      `worst ${times[times.length - 1]!.toFixed(1)} ms (${SCRAPES} scrapes)`,
  );
  console.log(`each scrape, ms: ${order.map((t) => t.toFixed(1)).join(' ')}`);
  await gateway.close();
  await fake.close();
} finally {
  servers.killAll();
  rmSync(dir, { recursive: true, force: true });
}
