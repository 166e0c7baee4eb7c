import { randomInt } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { encodePng } from '../src/media/png.ts';

/**
 * Test doubles for the image generation feature, all real HTTP servers on 127.0.0.1:
 * - startFakeImageProviders(): the OpenAI images edits endpoint and Stability's
 *   style-transfer endpoint (auth checked, multipart parsed, a real PNG returned);
 * - startFakeImageHost(): where user images come from (PNG, text, redirects, slow and huge
 *   bodies), for the SSRF / safe-fetch tests.
 * makePng() builds a small valid PNG.
 */

/** A valid truecolor PNG of one colour. */
export function makePng(
  width = 2,
  height = 2,
  rgb: readonly [number, number, number] = [200, 30, 90],
): Buffer {
  return encodePng(width, height, () => rgb);
}

interface Listening {
  server: Server;
  url: string;
  close(): Promise<void>;
}

async function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>,
  host = '127.0.0.1',
  listenPort = 0,
): Promise<Listening> {
  const server = createServer((req, res) => {
    Promise.resolve(handler(req, res)).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function parseMultipart(req: IncomingMessage): Promise<FormData | null> {
  const body = await readBody(req);
  try {
    return await new Request('http://fake.local/', {
      method: 'POST',
      headers: { 'content-type': req.headers['content-type'] ?? '' },
      body,
    }).formData();
  } catch {
    return null;
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

// ---------------------------------------------------------------------------------------------
// Providers

export interface ProviderFileRecord {
  field: string;
  name: string;
  type: string;
  size: number;
}

export interface ProviderRequestRecord {
  provider: 'openai' | 'stability';
  path: string;
  authorized: boolean;
  fields: Record<string, string>;
  files: ProviderFileRecord[];
}

export interface FakeImageProviders {
  url: string;
  /** Use as OPENAI_BASE_URL. */
  openaiBaseUrl: string;
  /** Use as STABILITY_BASE_URL. */
  stabilityBaseUrl: string;
  /** The PNG every successful call returns. */
  png: Buffer;
  requests: ProviderRequestRecord[];
  /** The next `times` calls answer `status` (openai: JSON error; stability: JSON errors). */
  failNext(status: number, times?: number): void;
  /** The next calls answer 200 without an image (openai: empty data; stability: JSON without image). */
  answerWithoutImage(on: boolean): void;
  /** stability: the next calls answer as Stability does when its filter blocks the result. */
  contentFiltered(on: boolean): void;
  close(): Promise<void>;
}

export const STABILITY_STYLE_TRANSFER_PATH = '/v2beta/stable-image/control/style-transfer';

export async function startFakeImageProviders(
  opts: { openaiKey?: string; stabilityKey?: string } = {},
): Promise<FakeImageProviders> {
  const openaiKey = opts.openaiKey ?? 'sk-fake-openai';
  const stabilityKey = opts.stabilityKey ?? 'sk-fake-stability';
  const png = makePng(4, 4, [20, 120, 220]);
  const requests: ProviderRequestRecord[] = [];
  let failStatus = 0;
  let failTimes = 0;
  let noImage = false;
  let filtered = false;

  const record = async (provider: 'openai' | 'stability', req: IncomingMessage, key: string) => {
    const authorized = req.headers.authorization === `Bearer ${key}`;
    const form = await parseMultipart(req);
    const fields: Record<string, string> = {};
    const files: ProviderFileRecord[] = [];
    for (const [field, value] of form?.entries() ?? []) {
      if (typeof value === 'string') fields[field] = value;
      else files.push({ field, name: value.name, type: value.type, size: value.size });
    }
    const rec: ProviderRequestRecord = { provider, path: req.url ?? '', authorized, fields, files };
    requests.push(rec);
    return { rec, form };
  };

  const takeFailure = (): number => {
    if (failTimes <= 0) return 0;
    failTimes--;
    return failStatus;
  };

  const srv = await listen(async (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'POST' && path === '/v1/images/edits') {
      const { rec, form } = await record('openai', req, openaiKey);
      if (!rec.authorized)
        return json(res, 401, {
          error: {
            message: 'Incorrect API key provided.',
            type: 'invalid_request_error',
            code: 'invalid_api_key',
          },
        });
      const failure = takeFailure();
      if (failure) return json(res, failure, { error: { message: 'fake failure', type: 'server_error' } });
      const images = rec.files.filter((f) => f.field === 'image[]' || f.field === 'image');
      if (!form || !rec.fields.model || !rec.fields.prompt || images.length === 0)
        return json(res, 400, {
          error: { message: 'model, prompt and image are required', type: 'invalid_request_error' },
        });
      if (noImage) return json(res, 200, { created: Math.floor(Date.now() / 1000), data: [] });
      return json(res, 200, {
        created: Math.floor(Date.now() / 1000),
        data: [{ b64_json: png.toString('base64') }],
        usage: { total_tokens: 100, input_tokens: 50, output_tokens: 50 },
      });
    }
    if (req.method === 'POST' && path === STABILITY_STYLE_TRANSFER_PATH) {
      const { rec } = await record('stability', req, stabilityKey);
      if (!rec.authorized)
        return json(res, 401, { id: 'x', name: 'unauthorized', errors: ['authorization: invalid key'] });
      const failure = takeFailure();
      if (failure) return json(res, failure, { id: 'x', name: 'server_error', errors: ['fake failure'] });
      const names = new Set(rec.files.map((f) => f.field));
      if (!names.has('init_image') || !names.has('style_image'))
        return json(res, 400, {
          id: 'x',
          name: 'bad_request',
          errors: ['init_image and style_image are required'],
        });
      const accept = String(req.headers.accept ?? '');
      if (noImage || !accept.startsWith('image/'))
        return json(res, 200, {
          finish_reason: 'SUCCESS',
          seed: 1,
          ...(noImage ? {} : { image: png.toString('base64') }),
        });
      res.writeHead(200, {
        'content-type': 'image/png',
        'finish-reason': filtered ? 'CONTENT_FILTERED' : 'SUCCESS',
        seed: String(randomInt(1e9)),
      });
      res.end(png);
      return;
    }
    json(res, 404, { error: { message: 'not found' } });
  });

  return {
    url: srv.url,
    openaiBaseUrl: `${srv.url}/v1`,
    stabilityBaseUrl: srv.url,
    png,
    requests,
    failNext(status, times = 1) {
      failStatus = status;
      failTimes = times;
    },
    answerWithoutImage(on) {
      noImage = on;
    },
    contentFiltered(on) {
      filtered = on;
    },
    close: srv.close,
  };
}

// ---------------------------------------------------------------------------------------------
// Image host

export interface FakeImageHost {
  url: string;
  host: string;
  port: number;
  /** Paths requested, in order. */
  hits: string[];
  /** PNG served at /person.png */
  person: Buffer;
  /** PNG served at /garment.png */
  garment: Buffer;
  close(): Promise<void>;
}

/**
 * Routes:
 *   /person.png, /garment.png   small PNGs
 *   /text                       text/plain (not an image)
 *   /fake-png                   declares image/png, sends HTML
 *   /redirect?to=<url>[&status=302]   redirect to the given URL
 *   /chain/<n>                  n redirects in a row, then /person.png
 *   /big?bytes=<n>[&length=0]   a PNG header followed by n bytes (with content-length unless length=0)
 *   /slow-headers               never answers
 *   /slow-body                  sends headers and a PNG header, then stalls
 *   /status/<code>              that status
 */
export async function startFakeImageHost(
  opts: { host?: string; port?: number } = {},
): Promise<FakeImageHost> {
  const person = makePng(3, 3, [240, 200, 170]);
  const garment = makePng(3, 3, [10, 10, 160]);
  const hits: string[] = [];
  const stalled = new Set<ServerResponse>();

  const srv = await listen(
    (req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      hits.push(u.pathname);
      const send = (status: number, type: string, body: Buffer | string) => {
        res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      if (u.pathname === '/person.png') return send(200, 'image/png', person);
      if (u.pathname === '/garment.png') return send(200, 'image/png', garment);
      if (u.pathname === '/text') return send(200, 'text/plain', 'internal secret text, not an image');
      if (u.pathname === '/fake-png')
        return send(200, 'image/png', '<html><body>secret admin page</body></html>');
      if (u.pathname === '/redirect') {
        res.writeHead(Number(u.searchParams.get('status') ?? 302), {
          location: u.searchParams.get('to') ?? '/',
        });
        res.end();
        return;
      }
      const chain = /^\/chain\/(\d+)$/.exec(u.pathname);
      if (chain) {
        const n = Number(chain[1]);
        res.writeHead(302, { location: n > 1 ? `/chain/${n - 1}` : '/person.png' });
        res.end();
        return;
      }
      if (u.pathname === '/big') {
        const n = Number(u.searchParams.get('bytes') ?? 1024);
        const body = Buffer.concat([person.subarray(0, 16), Buffer.alloc(n)]);
        const headers: Record<string, string | number> = { 'content-type': 'image/png' };
        if (u.searchParams.get('length') !== '0') headers['content-length'] = body.length;
        res.writeHead(200, headers);
        // stream in pieces so the client can stop early
        let off = 0;
        const pump = () => {
          while (off < body.length) {
            const piece = body.subarray(off, off + 16 * 1024);
            off += piece.length;
            if (!res.write(piece)) return void res.once('drain', pump);
          }
          res.end();
        };
        res.on('error', () => {});
        return pump();
      }
      if (u.pathname === '/slow-headers') {
        stalled.add(res);
        return;
      }
      if (u.pathname === '/slow-body') {
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': 10_000 });
        res.write(person.subarray(0, 16));
        stalled.add(res);
        return;
      }
      const status = /^\/status\/(\d{3})$/.exec(u.pathname);
      if (status) return send(Number(status[1]), 'text/plain', 'status body');
      send(404, 'text/plain', 'not found');
    },
    opts.host,
    opts.port,
  );

  const { port } = srv.server.address() as AddressInfo;
  return {
    url: srv.url,
    host: opts.host ?? '127.0.0.1',
    port,
    hits,
    person,
    garment,
    close: async () => {
      for (const r of stalled) r.destroy();
      await srv.close();
    },
  };
}
