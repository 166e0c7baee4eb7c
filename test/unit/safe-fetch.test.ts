import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeImageHost, startFakeImageHost } from '../../fake/fake-image-providers.ts';
import { toProblem } from '../../src/http/errors.ts';
import type { HttpProblem } from '../../src/http/problem.ts';
import { forbiddenAddressReason, parseIPv6 } from '../../src/net/ip-policy.ts';
import {
  type ResolvedAddress,
  type Resolver,
  SafeFetchError,
  type SafeFetchOptions,
  safeFetchImage,
} from '../../src/net/safe-fetch.ts';

describe('ip-policy', () => {
  const forbidden = [
    // IPv4 ranges
    '0.0.0.0',
    '0.1.2.3',
    '10.0.0.1',
    '10.255.255.255',
    '100.64.0.1',
    '100.127.255.254',
    '127.0.0.1',
    '127.1.2.3',
    '169.254.169.254', // cloud metadata
    '169.254.0.1',
    '172.16.0.1',
    '172.31.255.255',
    '192.0.0.170',
    '192.0.2.10',
    '192.168.1.1',
    '198.18.0.1',
    '198.51.100.7',
    '203.0.113.9',
    '224.0.0.1', // multicast
    '239.255.255.250',
    '240.0.0.1',
    '255.255.255.255', // broadcast
    // IPv6
    '::',
    '::1',
    '0:0:0:0:0:0:0:1',
    'fc00::1',
    'fd12:3456:789a::1', // unique local
    'fe80::1', // link-local
    'febf::1',
    'fec0::1',
    'ff02::1', // multicast
    '2001:db8::1',
    '100::1',
    // IPv4-mapped, dotted and hex
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:a9fe:a9fe', // 169.254.169.254
    '::ffff:10.0.0.1',
    '::ffff:0a00:0001',
    '0:0:0:0:0:ffff:c0a8:0101', // 192.168.1.1
    '::ffff:0:127.0.0.1', // IPv4-translated
    '::127.0.0.1', // IPv4-compatible
    '::7f00:1',
    // NAT64
    '64:ff9b::127.0.0.1',
    '64:ff9b::a9fe:a9fe',
    '64:ff9b:1::1',
    // 6to4 embedding private addresses
    '2002:7f00:0001::1',
    '2002:c0a8:0101::1',
    '2002:a9fe:a9fe::',
    // Teredo
    '2001:0:4136:e378:8000:63bf:3fff:fdd2',
    // not global unicast
    '4000::1',
  ];
  const allowed = [
    '8.8.8.8',
    '1.1.1.1',
    '93.184.215.14',
    '100.63.255.255', // just below CGNAT
    '100.128.0.1', // just above CGNAT
    '172.15.255.255',
    '172.32.0.1',
    '2606:4700:4700::1111',
    '2001:4860:4860::8888',
    '::ffff:8.8.8.8',
    '::ffff:808:808',
    '64:ff9b::8.8.8.8',
    '2002:0808:0808::1',
  ];
  it.each(forbidden)('refuses %s', (ip) => {
    expect(forbiddenAddressReason(ip)).not.toBeNull();
  });
  it.each(allowed)('allows %s', (ip) => {
    expect(forbiddenAddressReason(ip)).toBeNull();
  });
  it('refuses things that are not addresses', () => {
    expect(forbiddenAddressReason('localhost')).not.toBeNull();
    expect(forbiddenAddressReason('')).not.toBeNull();
  });
  it('parses IPv6 forms', () => {
    expect(parseIPv6('::ffff:127.0.0.1')).toEqual([0, 0, 0, 0, 0, 0xffff, 0x7f00, 1]);
    expect(parseIPv6('1::')).toEqual([1, 0, 0, 0, 0, 0, 0, 0]);
    expect(parseIPv6('fe80::1%eth0')).toEqual([0xfe80, 0, 0, 0, 0, 0, 0, 1]);
    expect(parseIPv6('1:2:3:4:5:6:7:8:9')).toBeNull();
  });
});

describe('safeFetchImage', () => {
  let host: FakeImageHost; // 127.0.0.1, in the allow list
  let other: FakeImageHost; // 127.0.0.1, NOT in the allow list
  let base: SafeFetchOptions;

  const noDns: Resolver = async (name) => {
    throw Object.assign(new Error(`unexpected DNS query for ${name}`), { code: 'ENOTFOUND' });
  };
  const fixedResolver =
    (table: Record<string, string[]>): Resolver =>
    async (name) => {
      const answers = table[name];
      if (!answers) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
      return answers.map((address): ResolvedAddress => ({ address, family: address.includes(':') ? 6 : 4 }));
    };

  beforeAll(async () => {
    host = await startFakeImageHost();
    other = await startFakeImageHost();
    base = {
      allowHosts: [`127.0.0.1:${host.port}`],
      maxBytes: 64 * 1024,
      timeoutMs: 2000,
      resolver: noDns,
    };
  });
  afterAll(async () => {
    await host.close();
    await other.close();
  });

  /** The refusal as the client is answered, with the operator-only detail beside it. */
  async function refused(
    url: string,
    opts: Partial<SafeFetchOptions> = {},
  ): Promise<HttpProblem & { internal: string }> {
    const err = await safeFetchImage(url, { ...base, ...opts }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafeFetchError);
    return Object.assign(toProblem(err as SafeFetchError), { internal: (err as SafeFetchError).internal });
  }

  it('fetches an image from an allowed host', async () => {
    const img = await safeFetchImage(`${host.url}/person.png`, base);
    expect(img.mimeType).toBe('image/png');
    expect(img.ext).toBe('png');
    expect(img.bytes.equals(host.person)).toBe(true);
  });

  it.each([
    'file:///etc/passwd',
    'ftp://example.com/a.png',
    'gopher://example.com/',
    'data:image/png;base64,iVBORw0KGgo=',
    'javascript:alert(1)',
  ])('refuses the scheme of %s', async (url) => {
    const err = await refused(url);
    expect(err.status).toBe(400);
    expect(err.detail).toMatch(/http or https/);
  });

  it('refuses invalid URLs and URLs with credentials', async () => {
    expect((await refused('not a url')).status).toBe(400);
    expect((await refused(`http://user:pass@127.0.0.1:${host.port}/person.png`)).status).toBe(400);
  });

  it('refuses loopback and private literals, in every spelling, without connecting', async () => {
    const before = other.hits.length;
    const p = other.port;
    const urls = [
      `http://127.0.0.1:${p}/person.png`,
      `http://127.1:${p}/person.png`,
      `http://2130706433:${p}/person.png`,
      `http://0x7f000001:${p}/person.png`,
      `http://0177.0.0.1:${p}/person.png`,
      `http://[::1]:${p}/person.png`,
      `http://[::ffff:127.0.0.1]:${p}/person.png`,
      `http://[::ffff:7f00:1]:${p}/person.png`,
      `http://[0:0:0:0:0:ffff:7f00:0001]:${p}/person.png`,
      `http://[::]:${p}/person.png`,
      `http://0.0.0.0:${p}/person.png`,
      `http://169.254.169.254/latest/meta-data/`,
      `http://[::ffff:a9fe:a9fe]/latest/meta-data/`,
      `http://[64:ff9b::a9fe:a9fe]/`,
      `http://[2002:a9fe:a9fe::1]/`,
      `http://10.0.0.1/`,
      `http://172.16.5.4/`,
      `http://192.168.0.1/`,
      `http://100.64.0.1/`,
      `http://224.0.0.1/`,
      `http://255.255.255.255/`,
      `http://[fd00::1]/`,
      `http://[fe80::1]/`,
      `http://[ff02::1]/`,
    ];
    for (const url of urls) {
      const err = await refused(url);
      expect(err.status, url).toBe(400);
      expect(err.detail, url).not.toMatch(/127|169\.254|::/);
    }
    expect(other.hits.length).toBe(before);
  });

  it('refuses an allowed address on a port that is not in the allow list', async () => {
    const err = await refused(`http://127.0.0.1:${other.port}/person.png`);
    expect(err.status).toBe(400);
    expect(other.hits).toEqual([]);
  });

  it('refuses a host name that resolves to 127.0.0.1, even when 127.0.0.1:port is allowed', async () => {
    const resolver = fixedResolver({ 'evil.test': ['127.0.0.1'] });
    const err = await refused(`http://evil.test:${host.port}/person.png`, { resolver });
    expect(err.status).toBe(400);
    expect(err.internal).toMatch(/127\.0\.0\.1/);
    expect(err.detail).not.toMatch(/127\.0\.0\.1/);
    expect(host.hits).not.toContain('/person.png?evil');
  });

  it('refuses a host name with any private answer among public ones', async () => {
    const resolver = fixedResolver({ 'mixed.test': ['8.8.8.8', '10.1.2.3'] });
    expect((await refused('http://mixed.test/a.png', { resolver })).status).toBe(400);
    const v6 = fixedResolver({ 'v6.test': ['::ffff:192.168.0.10'] });
    expect((await refused('http://v6.test/a.png', { resolver: v6 })).status).toBe(400);
  });

  it('refuses localhost through the system resolver', async () => {
    const err = await refused(`http://localhost:${other.port}/person.png`, { resolver: undefined });
    expect(err.status).toBe(400);
    expect(other.hits).toEqual([]);
  });

  it('gives one answer for unresolvable and refused hosts (no internal DNS oracle)', async () => {
    const resolver = fixedResolver({ 'internal.test': ['10.0.0.5'] });
    const a = await refused('http://nxdomain.test/a.png', { resolver });
    const b = await refused('http://internal.test/a.png', { resolver });
    expect(a.status).toBe(b.status);
    expect(a.detail).toBe(b.detail);
  });

  it('re-checks every redirect: to a private address', async () => {
    const targets = [
      'http://169.254.169.254/latest/meta-data/',
      `http://127.0.0.1:${other.port}/person.png`,
      `http://[::ffff:7f00:1]:${other.port}/person.png`,
      'file:///etc/passwd',
    ];
    for (const to of targets) {
      const err = await refused(`${host.url}/redirect?to=${encodeURIComponent(to)}`);
      expect(err.status, to).toBe(400);
    }
    expect(other.hits).toEqual([]);
  });

  it('re-checks every redirect: to a host name that resolves to loopback', async () => {
    const resolver = fixedResolver({ 'evil.test': ['127.0.0.1'] });
    const to = `http://evil.test:${host.port}/person.png`;
    const before = host.hits.filter((h) => h === '/person.png').length;
    const err = await refused(`${host.url}/redirect?to=${encodeURIComponent(to)}&status=307`, { resolver });
    expect(err.status).toBe(400);
    expect(host.hits.filter((h) => h === '/person.png').length).toBe(before);
  });

  it('follows up to 3 redirects, not more', async () => {
    const img = await safeFetchImage(`${host.url}/chain/3`, base);
    expect(img.bytes.equals(host.person)).toBe(true);
    const err = await refused(`${host.url}/chain/4`);
    expect(err.status).toBe(422);
    expect(err.detail).toMatch(/redirected more than 3/);
  });

  it('connects to the address it checked (DNS rebinding: public first, private after)', async () => {
    // "public" server on 127.0.0.2 and a "private" one on 127.0.0.1, same port; the test policy
    // treats 127.0.0.2 as public. The resolver answers public once, then private.
    const pub = await startFakeImageHost({ host: '127.0.0.2' });
    let priv: FakeImageHost;
    try {
      priv = await startFakeImageHost({ host: '127.0.0.1', port: pub.port });
    } catch {
      await pub.close();
      return expect.fail('could not bind 127.0.0.1 on the same port as 127.0.0.2');
    }
    try {
      const calls: string[] = [];
      const resolver: Resolver = async (name) => {
        calls.push(name);
        return [{ address: calls.length === 1 ? '127.0.0.2' : '127.0.0.1', family: 4 }];
      };
      const addressPolicy = (a: string) => (a === '127.0.0.2' ? null : forbiddenAddressReason(a));
      const img = await safeFetchImage(`http://rebind.test:${pub.port}/person.png`, {
        ...base,
        allowHosts: [],
        resolver,
        addressPolicy,
      });
      expect(img.bytes.equals(pub.person)).toBe(true);
      expect(pub.hits).toEqual(['/person.png']);
      expect(priv.hits).toEqual([]);
      expect(calls).toEqual(['rebind.test']);

      // and when the private answer comes first it is refused before connecting
      const err = await refused(`http://rebind.test:${pub.port}/person.png`, {
        allowHosts: [],
        resolver,
        addressPolicy,
      });
      expect(err.status).toBe(400);
      expect(priv.hits).toEqual([]);
    } finally {
      await pub.close();
      await priv.close();
    }
  });

  it('enforces the size limit from content-length', async () => {
    const err = await refused(`${host.url}/big?bytes=100000`, { maxBytes: 10_000 });
    expect(err.status).toBe(413);
  });

  it('enforces the size limit while streaming (no content-length)', async () => {
    const t0 = Date.now();
    const err = await refused(`${host.url}/big?bytes=50000000&length=0`, { maxBytes: 100_000 });
    expect(err.status).toBe(413);
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('accepts a body of exactly maxBytes', async () => {
    const img = await safeFetchImage(`${host.url}/person.png`, { ...base, maxBytes: host.person.length });
    expect(img.bytes.length).toBe(host.person.length);
  });

  it('times out when the server never answers', async () => {
    const t0 = Date.now();
    const err = await refused(`${host.url}/slow-headers`, { timeoutMs: 300 });
    expect(err.status).toBe(504);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('times out when the body stalls', async () => {
    const err = await refused(`${host.url}/slow-body`, { timeoutMs: 300 });
    expect(err.status).toBe(504);
  });

  it('times out when DNS never answers', async () => {
    const hang: Resolver = () => new Promise(() => {});
    const err = await refused('http://slow-dns.test/a.png', { timeoutMs: 200, resolver: hang });
    expect(err.status).toBe(504);
  });

  it('requires image content by magic bytes', async () => {
    for (const path of ['/text', '/fake-png']) {
      const err = await refused(`${host.url}${path}`);
      expect(err.status).toBe(415);
      expect(err.detail).not.toMatch(/secret/);
    }
  });

  it('reports a non-2xx answer without echoing its body', async () => {
    const err = await refused(`${host.url}/status/404`);
    expect(err.status).toBe(422);
    expect(err.detail).toMatch(/404/);
    expect(err.detail).not.toMatch(/status body/);
  });

  it('reports a connection failure as 422', async () => {
    const dead = await startFakeImageHost();
    const port = dead.port;
    await dead.close();
    const err = await refused(`http://127.0.0.1:${port}/person.png`, { allowHosts: [`127.0.0.1:${port}`] });
    expect(err.status).toBe(422);
  });
});
