import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestWhole, TransferError } from '../../src/upstream/whole.ts';

let server: Server;
let origin: string;
const agent = new Agent();

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/chunks') {
      res.writeHead(200, { 'Content-Type': 'application/json; charset=UTF-8' });
      res.write('{"a":');
      setTimeout(() => res.end('1}'), 20);
    } else if (req.url === '/no-type') {
      res.writeHead(404);
      res.end('nope');
    } else if (req.url === '/breaks') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
      res.write('{"partial":');
      setTimeout(() => res.destroy(), 20);
    } else if (req.url === '/slow') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await agent.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const get = (path: string, signal?: AbortSignal) =>
  requestWhole(agent, { origin, path, method: 'GET' }, signal);

describe('requestWhole', () => {
  it('gathers a body sent in several chunks, with its status and content type', async () => {
    const a = await get('/chunks');
    expect(a.statusCode).toBe(200);
    expect(a.contentType).toBe('application/json; charset=UTF-8');
    expect(a.body.toString()).toBe('{"a":1}');
  });

  it('reports a missing content type as undefined', async () => {
    const a = await get('/no-type');
    expect(a.statusCode).toBe(404);
    expect(a.contentType).toBeUndefined();
    expect(a.body.toString()).toBe('nope');
  });

  it('tells a body that broke off from a request that never got an answer', async () => {
    const broke = await get('/breaks').catch((e: unknown) => e);
    expect(broke).toBeInstanceOf(TransferError);
    expect((broke as TransferError).afterHeaders).toBe(true);

    const refused = await requestWhole(agent, {
      origin: 'http://127.0.0.1:1',
      path: '/',
      method: 'GET',
    }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TransferError);
    expect((refused as TransferError).afterHeaders).toBe(false);
  });

  it('stops the transfer when the signal fires, before or during it', async () => {
    const before = new AbortController();
    before.abort(new Error('gone'));
    const early = await get('/chunks', before.signal).catch((e: unknown) => e);
    expect((early as TransferError).cause).toEqual(new Error('gone'));

    const during = new AbortController();
    const pending = get('/slow', during.signal).catch((e: unknown) => e);
    setTimeout(() => during.abort(new Error('client left')), 30);
    const late = await pending;
    expect(late).toBeInstanceOf(TransferError);
    expect((late as TransferError).afterHeaders).toBe(true);
    expect(((late as TransferError).cause as Error).message).toBe('client left');
  });
});
