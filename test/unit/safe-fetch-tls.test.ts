import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makePng } from '../../fake/fake-image-providers.ts';
import { toProblem } from '../../src/http/errors.ts';
import { type Resolver, SafeFetchError, safeFetchImage } from '../../src/net/safe-fetch.ts';

/**
 * https through the pinned connection: the socket goes to the address that was checked, and
 * TLS still verifies the certificate against the URL's host name (SNI and name check).
 * Certificates: test/fixtures/tls (a test CA and two server certificates it signed).
 */
const tls = (name: string) => readFileSync(new URL(`../fixtures/tls/${name}`, import.meta.url));
const png = makePng(4, 4);

function serve(certName: string): Promise<Server> {
  const server = createServer({ key: tls(`${certName}.key`), cert: tls(`${certName}.crt`) }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png' }).end(png);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

let good: Server;
let wrongName: Server;
const portOf = (s: Server) => (s.address() as AddressInfo).port;
// Every test name resolves to the loopback test servers; the allow list exempts them by name.
const resolver: Resolver = async () => [{ address: '127.0.0.1', family: 4 }];

beforeAll(async () => {
  good = await serve('images.test');
  wrongName = await serve('other.test');
});
afterAll(() => {
  good.close();
  wrongName.close();
});

describe('safe fetch over https', () => {
  it('fetches through the pinned address with the certificate verified for the URL’s name', async () => {
    const url = `https://images.test:${portOf(good)}/a.png`;
    const img = await safeFetchImage(url, {
      allowHosts: [`images.test:${portOf(good)}`],
      resolver,
      ca: tls('ca.crt'),
      maxBytes: 1_000_000,
      timeoutMs: 5000,
    });
    expect(img.mimeType).toBe('image/png');
    expect(img.bytes.equals(png)).toBe(true);
  });

  it('refuses a server whose certificate is for another name', async () => {
    const url = `https://images.test:${portOf(wrongName)}/a.png`;
    const err = (await safeFetchImage(url, {
      allowHosts: [`images.test:${portOf(wrongName)}`],
      resolver,
      ca: tls('ca.crt'),
      maxBytes: 1_000_000,
      timeoutMs: 5000,
    }).catch((e: unknown) => (e instanceof SafeFetchError ? toProblem(e) : e))) as {
      status: number;
      detail: string;
    };
    expect(err.status).toBeGreaterThanOrEqual(400);
    expect(err.status).toBeLessThan(600);
    expect(err.detail).not.toContain('127.0.0.1');
  });

  it('refuses an untrusted certificate (no test CA given)', async () => {
    const url = `https://images.test:${portOf(good)}/a.png`;
    const err = (await safeFetchImage(url, {
      allowHosts: [`images.test:${portOf(good)}`],
      resolver,
      maxBytes: 1_000_000,
      timeoutMs: 5000,
    }).catch((e: unknown) => (e instanceof SafeFetchError ? toProblem(e) : e))) as { status: number };
    expect(err.status).toBeGreaterThanOrEqual(400);
  });
});
