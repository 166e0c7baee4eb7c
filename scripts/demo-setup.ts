/**
 * What `npm run demo` runs (scripts/demo.ts prints the banner): the fake Gemini, a small local
 * image server (sample photos for the create-image example) and the gateway wired to both, in
 * one process. Tests start it on ephemeral ports to run the README's examples against it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type FakeGemini, startFakeGemini } from '../fake/fake-gemini.ts';
import { makePng } from '../fake/fake-image-providers.ts';
import { buildGateway, type Gateway } from '../src/app/build.ts';

export const DEMO_TOKEN = 'demo-client-token';

/**
 * The demo pool: enough for SDK scripts and loops (the fake enforces the same limits, which
 * the gateway never oversteps).
 */
export const DEMO_POOL = { keys: 10, rpm: 300, rpd: 100_000, tpm: 1_000_000 } as const;

export interface DemoOptions {
  /** Gateway port (0: any free one). Default 8000. */
  port?: number;
  /** Port of the sample image server (0: any free one). Default port + 1 (8001). */
  imagesPort?: number;
  logLevel?: string;
  nodeEnv?: string;
  adminToken?: string;
  mediaDir?: string;
}

export interface Demo {
  gateway: Gateway;
  fake: FakeGemini;
  /** The gateway, e.g. http://127.0.0.1:8000 */
  url: string;
  /** The sample image server, e.g. http://127.0.0.1:8001 (serves /person.png and /garment.png) */
  imagesUrl: string;
  token: string;
  adminToken: string;
  close(): Promise<void>;
}

/** Demo keys, each with its own ending so that the masked forms (AIza…y-01) can be told apart. */
export function demoKeys(n: number = DEMO_POOL.keys): string[] {
  return Array.from({ length: n }, (_, i) => `AIzaNotARealDemoKey-${String(i + 1).padStart(2, '0')}`);
}

/**
 * Sample photos for the create-image example: a "person" and a "garment" (plain PNGs; the fake
 * Gemini answers with an image whatever it is given).
 */
async function startImageServer(port: number): Promise<{ server: Server; url: string }> {
  const files = new Map([
    ['/person.png', makePng(64, 64, [236, 196, 160])],
    ['/garment.png', makePng(64, 64, [30, 60, 160])],
  ]);
  const server = createServer((req, res) => {
    const body = req.method === 'GET' ? files.get(new URL(req.url ?? '/', 'http://x').pathname) : undefined;
    if (!body) {
      res
        .writeHead(404, { 'content-type': 'text/plain' })
        .end('not found: try /person.png or /garment.png\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

export async function startDemo(opts: DemoOptions = {}): Promise<Demo> {
  const port = opts.port ?? 8000;
  const adminToken = opts.adminToken ?? 'demo-admin-token';
  const keys = demoKeys();
  const images = await startImageServer(opts.imagesPort ?? (port === 0 ? 0 : port + 1));
  const imagesHost = new URL(images.url).host;
  const fake = await startFakeGemini({
    keys: keys.map((apiKey) => ({ apiKey })),
    limits: { rpm: DEMO_POOL.rpm, rpd: DEMO_POOL.rpd, tpm: DEMO_POOL.tpm },
  });
  let gateway: Gateway;
  try {
    gateway = await buildGateway({
      NODE_ENV: opts.nodeEnv ?? 'development',
      LOG_LEVEL: opts.logLevel ?? 'info',
      GEMINI_BASE_URL: fake.url,
      GEMINI_API_KEYS: keys.join(','),
      DEFAULT_RPM: String(DEMO_POOL.rpm),
      DEFAULT_RPD: String(DEMO_POOL.rpd),
      DEFAULT_TPM: String(DEMO_POOL.tpm),
      // Every demo client is 127.0.0.1: the per-IP limits (100 a minute, 20 a second by
      // default) would cap it below the pool. One IP may use the whole pool, at any pace.
      GLOBAL_RATE_LIMIT: String(DEMO_POOL.keys * DEMO_POOL.rpm),
      BURST_RATE_LIMIT: '0',
      CLIENT_API_KEYS_MAP: `${DEMO_TOKEN}:demo`,
      ADMIN_TOKEN: adminToken,
      MEDIA_DIR: opts.mediaDir ?? 'media',
      // The sample image server is on 127.0.0.1, which the SSRF policy refuses unless allowed.
      IMAGE_FETCH_ALLOW_HOSTS: imagesHost,
    });
    await gateway.app.listen({ port, host: '127.0.0.1' });
  } catch (err) {
    await fake.close();
    images.server.close();
    throw err;
  }
  const address = gateway.app.server.address() as AddressInfo;
  return {
    gateway,
    fake,
    url: `http://127.0.0.1:${address.port}`,
    imagesUrl: images.url,
    token: DEMO_TOKEN,
    adminToken,
    async close() {
      await gateway.close();
      await fake.close();
      images.server.closeAllConnections();
      await new Promise<void>((resolve) => images.server.close(() => resolve()));
    },
  };
}

/** The shell line that sets what the examples use (README, banner). */
export function demoExports(demo: Pick<Demo, 'url' | 'imagesUrl' | 'token'>): string {
  return `export GW=${demo.url} TOKEN=${demo.token} IMAGES=${demo.imagesUrl}`;
}

/** The README's create-image example (after demoExports), as the banner prints it. */
export const CREATE_IMAGE_EXAMPLE = `curl -s $GW/api/v1/create-image -H 'content-type: application/json' -d '{"user_id":"u1",
  "api_key":"'$TOKEN'","catalog_id":"c1","user_image_url":"'$IMAGES'/person.png",
  "catalog_image_url":"'$IMAGES'/garment.png"}'`;

export function demoBanner(demo: Demo): string {
  const { keys, rpm, rpd, tpm } = DEMO_POOL;
  const n = (x: number) => x.toLocaleString('en-US');
  return `
gemini-gateway demo is running at ${demo.url}
  upstream: a local fake Gemini at ${demo.fake.url}
  pool: ${keys} demo keys, each ${n(rpm)} requests/minute, ${n(rpd)} requests/day, ${n(tpm)} tokens/minute
        = ${n(keys * rpm)} requests/minute in all (also the per-IP limit; no per-second limit)
  sample images for create-image: ${demo.imagesUrl}/person.png and ${demo.imagesUrl}/garment.png
  client token: ${demo.token}

Try it:
  ${demoExports(demo)}

  curl -s $GW/v1beta/models/gemini-2.5-flash-lite:generateContent \\
    -H "x-goog-api-key: $TOKEN" -H 'content-type: application/json' \\
    -d '{"contents":[{"parts":[{"text":"Hello gateway"}]}]}'

  curl -s $GW/v1/generate -H "authorization: Bearer $TOKEN" \\
    -H 'content-type: application/json' -d '{"prompt":"Hello"}'

  ${CREATE_IMAGE_EXAMPLE.replaceAll('\n', '\n  ')}

With the official SDK (npm i @google/genai):
  import { GoogleGenAI } from '@google/genai';
  const ai = new GoogleGenAI({ apiKey: '${demo.token}', httpOptions: { baseUrl: '${demo.url}' } });
  const r = await ai.models.generateContent({ model: 'gemini-2.5-flash-lite', contents: 'Hello' });
  console.log(r.text);

Health: ${demo.url}/health/detailed   API docs: ${demo.url}/docs
Admin dashboard: ${demo.url}/admin/dashboard (admin token: ${demo.adminToken})   Ctrl-C to stop.
`;
}
