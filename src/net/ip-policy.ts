import { isIPv4, isIPv6 } from 'node:net';

/**
 * Which IP addresses a user-given URL may reach. Only public unicast addresses pass; every
 * private, loopback, link-local, shared (CGNAT), multicast, reserved or documentation range is
 * refused, and IPv6 forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64,
 * 6to4) are judged by the embedded address (or refused outright when the embedding cannot be
 * trusted, e.g. Teredo).
 *
 * Returns null when the address is allowed, else a short reason (for logs, never for clients).
 */
export function forbiddenAddressReason(address: string): string | null {
  const ip = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (isIPv4(ip)) return ipv4Reason(parseIPv4(ip));
  if (isIPv6(ip)) {
    const groups = parseIPv6(ip);
    return groups ? ipv6Reason(groups) : 'unparsable IPv6 address';
  }
  return 'not an IP address';
}

export function isForbiddenAddress(address: string): boolean {
  return forbiddenAddressReason(address) !== null;
}

/** [network, prefix length, reason] */
const V4_BLOCKS: ReadonlyArray<readonly [string, number, string]> = [
  ['0.0.0.0', 8, 'this-network (0.0.0.0/8)'],
  ['10.0.0.0', 8, 'private (10/8)'],
  ['100.64.0.0', 10, 'shared address space / CGNAT (100.64/10)'],
  ['127.0.0.0', 8, 'loopback (127/8)'],
  ['169.254.0.0', 16, 'link-local / cloud metadata (169.254/16)'],
  ['172.16.0.0', 12, 'private (172.16/12)'],
  ['192.0.0.0', 24, 'IETF protocol assignments (192.0.0/24)'],
  ['192.0.2.0', 24, 'documentation (192.0.2/24)'],
  ['192.88.99.0', 24, '6to4 relay anycast (192.88.99/24)'],
  ['192.168.0.0', 16, 'private (192.168/16)'],
  ['198.18.0.0', 15, 'benchmarking (198.18/15)'],
  ['198.51.100.0', 24, 'documentation (198.51.100/24)'],
  ['203.0.113.0', 24, 'documentation (203.0.113/24)'],
  ['224.0.0.0', 4, 'multicast (224/4)'],
  ['240.0.0.0', 4, 'reserved / broadcast (240/4)'],
];

const V4_TABLE = V4_BLOCKS.map(([net, bits, reason]) => ({
  net: parseIPv4(net),
  mask: bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0,
  reason,
}));

function parseIPv4(ip: string): number {
  const [a, b, c, d] = ip.split('.').map(Number) as [number, number, number, number];
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

function ipv4Reason(n: number): string | null {
  for (const block of V4_TABLE) if ((n & block.mask) >>> 0 === block.net) return block.reason;
  return null;
}

/** Eight 16-bit groups, or null. Accepts "::" compression and a dotted IPv4 tail; drops a %zone. */
export function parseIPv6(input: string): number[] | null {
  let ip = input;
  const zone = ip.indexOf('%');
  if (zone >= 0) ip = ip.slice(0, zone);
  let tail: number[] = [];
  const lastColon = ip.lastIndexOf(':');
  const last = ip.slice(lastColon + 1);
  if (last.includes('.')) {
    if (!isIPv4(last)) return null;
    const v4 = parseIPv4(last);
    tail = [v4 >>> 16, v4 & 0xffff];
    ip = `${ip.slice(0, lastColon + 1)}0:0`;
  }
  const halves = ip.split('::');
  if (halves.length > 2) return null;
  const toGroups = (s: string): number[] | null => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(Number.parseInt(g, 16));
    }
    return out;
  };
  const head = toGroups(halves[0] ?? '');
  const rest = halves.length === 2 ? toGroups(halves[1] ?? '') : [];
  if (!head || !rest) return null;
  let groups: number[];
  if (halves.length === 2) {
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return null;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return null;
  if (tail.length) {
    groups[6] = tail[0]!;
    groups[7] = tail[1]!;
  }
  return groups;
}

function embeddedV4(hi: number, lo: number): number {
  return ((hi << 16) | lo) >>> 0;
}

function ipv6Reason(g: number[]): string | null {
  const [g0, g1, g2, g3, g4, g5, g6, g7] = g as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const zeroTo = (n: number) => g.slice(0, n).every((x) => x === 0);

  if (zeroTo(8)) return 'unspecified (::)';
  if (zeroTo(7) && g7 === 1) return 'loopback (::1)';
  // ::ffff:a.b.c.d — IPv4-mapped: judged by the IPv4 address it carries
  if (zeroTo(5) && g5 === 0xffff) {
    const inner = ipv4Reason(embeddedV4(g6, g7));
    return inner ? `IPv4-mapped ${inner}` : null;
  }
  // ::ffff:0:a.b.c.d — IPv4-translated (SIIT)
  if (zeroTo(4) && g4 === 0xffff && g5 === 0) {
    const inner = ipv4Reason(embeddedV4(g6, g7));
    return inner ? `IPv4-translated ${inner}` : null;
  }
  // ::a.b.c.d — deprecated IPv4-compatible; nothing legitimate lives here
  if (zeroTo(6)) return 'IPv4-compatible (::/96)';
  // 64:ff9b::/96 — well-known NAT64 prefix
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) {
    const inner = ipv4Reason(embeddedV4(g6, g7));
    return inner ? `NAT64 ${inner}` : null;
  }
  // 64:ff9b:1::/48 — local-use NAT64: the translator is on a private network
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 1) return 'local-use NAT64 (64:ff9b:1::/48)';
  // 2002::/16 — 6to4: the IPv4 address sits in groups 1-2
  if (g0 === 0x2002) {
    const inner = ipv4Reason(embeddedV4(g1, g2));
    return inner ? `6to4 ${inner}` : null;
  }
  // 2001:0::/32 — Teredo: the client address is obfuscated; refuse the whole prefix
  if (g0 === 0x2001 && g1 === 0) return 'Teredo (2001::/32)';
  if (g0 === 0x2001 && g1 === 0xdb8) return 'documentation (2001:db8::/32)';
  // 2001::/23 — IETF protocol assignments (ORCHID, benchmarking 2001:2::/48, …)
  if (g0 === 0x2001 && g1 < 0x200) return 'IETF protocol assignments (2001::/23)';
  if (g0 === 0x3fff && g1 < 0x1000) return 'documentation (3fff::/20)';
  if (g0 === 0x100 && g1 === 0 && g2 === 0 && g3 === 0) return 'discard-only (100::/64)';
  if ((g0 & 0xfe00) === 0xfc00) return 'unique-local (fc00::/7)';
  if ((g0 & 0xffc0) === 0xfe80) return 'link-local (fe80::/10)';
  if ((g0 & 0xffc0) === 0xfec0) return 'site-local (fec0::/10)';
  if ((g0 & 0xff00) === 0xff00) return 'multicast (ff00::/8)';
  // Only global unicast (2000::/3) is routable on the internet.
  if ((g0 & 0xe000) !== 0x2000) return 'not global unicast (outside 2000::/3)';
  return null;
}
