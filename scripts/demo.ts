/**
 * `npm run demo`: the fake Gemini and the gateway wired to it, with demo keys, in one process.
 * Prints a client token, a curl line and an SDK snippet. Ctrl-C stops both.
 */
import { buildGateway } from '../src/app/build.ts';
import { startFakeGemini } from '../src/fake/fake-gemini.ts';

const port = Number(process.env.PORT ?? 8000);
const demoKeys = ['AIzaDemoKeyOne', 'AIzaDemoKeyTwo', 'AIzaDemoKeyThree'].map((k) => `${k}-not-a-real-key`);
const token = 'demo-client-token';

// The fake enforces a free-tier-like limit; the gateway knows the same budget and never hits it.
const fake = await startFakeGemini({ keys: demoKeys.map((apiKey) => ({ apiKey })), limits: { rpm: 15 } });
const env: Record<string, string | undefined> = {
  NODE_ENV: process.env.NODE_ENV ?? 'development',
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
  GEMINI_BASE_URL: fake.url,
  GEMINI_API_KEYS: demoKeys.join(','),
  DEFAULT_RPM: '15',
  CLIENT_API_KEYS_MAP: `${token}:demo`,
  ADMIN_TOKEN: process.env.ADMIN_TOKEN ?? 'demo-admin-token',
  MEDIA_DIR: process.env.MEDIA_DIR ?? 'media',
};
// NODE_ENV=development: coloured one-line-per-request logs, secrets scrubbed like in production.
const gateway = await buildGateway(env);
await gateway.app.listen({ port, host: '127.0.0.1' });
const base = `http://127.0.0.1:${port}`;

console.log(`
gemini-gateway demo is running at ${base}
  upstream: a local fake Gemini at ${fake.url} (3 demo keys, 15 requests/minute each)
  client token: ${token}

Try it:
  curl -s ${base}/v1beta/models/gemini-2.5-flash-lite:generateContent \\
    -H 'x-goog-api-key: ${token}' -H 'content-type: application/json' \\
    -d '{"contents":[{"parts":[{"text":"Hello gateway"}]}]}'

  curl -s ${base}/v1/generate -H 'authorization: Bearer ${token}' \\
    -H 'content-type: application/json' -d '{"prompt":"Hello"}'

With the official SDK (npm i @google/genai):
  import { GoogleGenAI } from '@google/genai';
  const ai = new GoogleGenAI({ apiKey: '${token}', httpOptions: { baseUrl: '${base}' } });
  const r = await ai.models.generateContent({ model: 'gemini-2.5-flash-lite', contents: 'Hello' });
  console.log(r.text);

Health: ${base}/health/detailed   API docs: ${base}/docs
Admin dashboard: ${base}/admin/dashboard (admin token: ${env.ADMIN_TOKEN})   Ctrl-C to stop.
`);

const stop = async () => {
  await gateway.close();
  await fake.close();
  process.exit(0);
};
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
