/**
 * Runs the fake Gemini API standalone.
 *
 *   node scripts/fake-gemini.ts [--host 127.0.0.1] [--port 8090] [--rpm N] [--rpd N] [--tpm N]
 *        [--latency-ms N] [--chunk-delay-ms N] [--stream-chunks N] [--keys key1[:project],key2...]
 *
 * Environment: FAKE_HOST, FAKE_PORT, FAKE_RPM, FAKE_RPD, FAKE_TPM, FAKE_LATENCY_MS, FAKE_CHUNK_DELAY_MS,
 * FAKE_STREAM_CHUNKS, FAKE_KEYS (flags win). Without keys, any key is accepted.
 */
import { parseArgs } from 'node:util';
import { type FakeGeminiOptions, startFakeGemini } from '../fake/fake-gemini.ts';

const { values } = parseArgs({
  options: {
    host: { type: 'string' },
    port: { type: 'string' },
    rpm: { type: 'string' },
    rpd: { type: 'string' },
    tpm: { type: 'string' },
    'latency-ms': { type: 'string' },
    'chunk-delay-ms': { type: 'string' },
    'stream-chunks': { type: 'string' },
    keys: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (values.help) {
  console.log(
    'usage: node scripts/fake-gemini.ts [--host H] [--port P] [--rpm N] [--rpd N] [--tpm N] [--latency-ms N] [--chunk-delay-ms N] [--stream-chunks N] [--keys k1[:project],k2]',
  );
  process.exit(0);
}

function int(flag: string | undefined, env: string): number | undefined {
  const raw = flag ?? process.env[env];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`invalid number for ${env}: ${raw}`);
    process.exit(2);
  }
  return n;
}

const opts: FakeGeminiOptions = {
  host: values.host ?? process.env.FAKE_HOST ?? '127.0.0.1',
  port: int(values.port, 'FAKE_PORT') ?? 8090,
  latencyMs: int(values['latency-ms'], 'FAKE_LATENCY_MS'),
  chunkDelayMs: int(values['chunk-delay-ms'], 'FAKE_CHUNK_DELAY_MS'),
  streamChunks: int(values['stream-chunks'], 'FAKE_STREAM_CHUNKS'),
};
const limits = {
  rpm: int(values.rpm, 'FAKE_RPM'),
  rpd: int(values.rpd, 'FAKE_RPD'),
  tpm: int(values.tpm, 'FAKE_TPM'),
};
if (limits.rpm !== undefined || limits.rpd !== undefined || limits.tpm !== undefined) opts.limits = limits;
const keyList = values.keys ?? process.env.FAKE_KEYS;
if (keyList) {
  opts.keys = keyList
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const i = s.indexOf(':');
      return i < 0 ? { apiKey: s } : { apiKey: s.slice(0, i), project: s.slice(i + 1) };
    });
}

const fake = await startFakeGemini(opts);
const described = [
  opts.limits ? `limits ${JSON.stringify(opts.limits)}` : 'no limits',
  opts.keys ? `${opts.keys.length} keys` : 'any key accepted',
  opts.latencyMs ? `latency ${opts.latencyMs} ms` : '',
]
  .filter(Boolean)
  .join(', ');
console.log(`fake Gemini API listening on ${fake.url} (${described})`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await fake.close();
  process.exit(0);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
