/**
 * Secrets scrubbed from everything the gateway passes on from upstream: unary bodies, error
 * bodies, stream chunks and header values. An upstream that echoes the pool key it was called
 * with (in an error message, in the model's text) must not hand it to a client, nor a client
 * token that found its way into an answer.
 *
 * Hot path: every 200 answer is scanned, so the common case (no secret in it) must cost next to
 * nothing. The secrets are grouped by their first PREFIX bytes (pool keys all begin with
 * "AIza": 1,000 keys are one group). Each group is searched with one Buffer.indexOf, for an
 * anchor within the prefix its secrets share, chosen to begin with the byte least common in
 * model answers (Buffer.indexOf runs through a body at memchr speed to the anchor's first byte,
 * and stops at every occurrence of it: "-cli" of "test-client-token" stops far less often than
 * "test"). Only where an anchor occurs are the candidate secrets compared. When the secrets
 * have many distinct anchors (many unrelated client tokens), one pass over the bytes with a
 * hashed table of the prefixes replaces the per-group searches.
 */

/** Bytes a secret is indexed by. */
const PREFIX = 4;
/** The longest needle a group is searched with. */
const MAX_NEEDLE = 16;
/** Up to this many distinct anchors, one Buffer.indexOf each; beyond it, the hashed single pass. */
const MAX_ANCHORS = 8;
const TABLE_BITS = 16;
const REPLACEMENT = Buffer.from('[REDACTED]');
const LF = 0x0a;
const CR = 0x0d;

/** What a body is searched for: an anchor, and where in their secrets it sits. */
interface Anchor {
  needle: Buffer;
  /** Offsets of the anchor from the start of the secrets it stands for. */
  offsets: number[];
}

interface Matcher {
  /** One anchor per group of secrets that share a PREFIX (fewer when groups share anchors). */
  anchors: Anchor[];
  /** Hashed table of prefixes (single-pass mode, many anchors), else null. */
  table: Uint8Array | null;
  /** Prefix → the distinct lengths of secrets that begin with it, longest first. */
  lengths: Map<string, number[]>;
  /** Every secret variant, as latin1 text of its UTF-8 bytes. */
  secrets: Set<string>;
  /** Bytes that occur in some secret (what a secret cut at a chunk's end may end with). */
  secretBytes: Uint8Array;
  /** The longest secret variant, in bytes. */
  maxLength: number;
}

const EMPTY_MATCHER: Matcher = {
  anchors: [],
  table: null,
  lengths: new Map(),
  secrets: new Set(),
  secretBytes: new Uint8Array(256),
  maxLength: 0,
};

function hash4(w: number): number {
  return Math.imul(w, 0x9e3779b1) >>> (32 - TABLE_BITS);
}

/** The 4 bytes at i as one little-endian word. */
function word(b: Buffer, i: number): number {
  return b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
}

export class ResponseScrubber {
  /** Secrets shorter than this are not scrubbed (they would blank ordinary words), as in the log scrubber. */
  static readonly MIN_LENGTH = 8;
  private m: Matcher = EMPTY_MATCHER;
  private lastClean: string | null = null;

  constructor(secrets: Iterable<string> = []) {
    this.set(secrets);
  }

  /** Replaces the set of secrets (pool keys, client tokens); also their JSON- and URL-encoded forms. */
  set(secrets: Iterable<string>): void {
    const variants = new Set<string>();
    for (const s of secrets) {
      if (typeof s !== 'string' || s.length < ResponseScrubber.MIN_LENGTH) continue;
      variants.add(s);
      variants.add(JSON.stringify(s).slice(1, -1));
      variants.add(encodeURIComponent(s));
    }
    const lengths = new Map<string, number[]>();
    const set = new Set<string>();
    const secretBytes = new Uint8Array(256);
    let maxLength = 0;
    for (const v of variants) {
      const bytes = Buffer.from(v, 'utf8');
      const text = bytes.toString('latin1');
      set.add(text);
      for (const b of bytes) secretBytes[b] = 1;
      maxLength = Math.max(maxLength, bytes.length);
      const prefix = text.slice(0, PREFIX);
      const list = lengths.get(prefix);
      if (!list) lengths.set(prefix, [bytes.length]);
      else if (!list.includes(bytes.length)) list.push(bytes.length);
    }
    for (const list of lengths.values()) list.sort((a, b) => b - a);
    // Each group's shared prefix, and in it the anchor that begins with the rarest byte.
    const shared = new Map<string, string>();
    for (const text of set) {
      const prefix = text.slice(0, PREFIX);
      const before = shared.get(prefix);
      shared.set(prefix, before === undefined ? text.slice(0, MAX_NEEDLE) : commonPrefix(before, text));
    }
    const anchors = new Map<string, Anchor>();
    for (const common of shared.values()) {
      let at = 0;
      for (let i = 1; i + PREFIX <= common.length; i++)
        if (commonness(common.charCodeAt(i)) < commonness(common.charCodeAt(at))) at = i;
      const needle = common.slice(at);
      const anchor = anchors.get(needle);
      if (!anchor) anchors.set(needle, { needle: Buffer.from(needle, 'latin1'), offsets: [at] });
      else if (!anchor.offsets.includes(at)) anchor.offsets.push(at);
    }
    let table: Uint8Array | null = null;
    if (anchors.size > MAX_ANCHORS) {
      table = new Uint8Array(1 << TABLE_BITS);
      for (const prefix of shared.keys()) table[hash4(word(Buffer.from(prefix, 'latin1'), 0))] = 1;
    }
    this.m = { anchors: [...anchors.values()], table, lengths, secrets: set, secretBytes, maxLength };
    this.lastClean = null;
  }

  /** How many anchors a body is searched for (one Buffer.indexOf each, or one pass beyond 8). */
  get anchorCount(): number {
    return this.m.anchors.length;
  }

  /** The body with every secret replaced by [REDACTED]: the same Buffer when there is none. */
  scrub(body: Buffer): Buffer {
    const m = this.m;
    if (m.anchors.length === 0 || body.length < ResponseScrubber.MIN_LENGTH) return body;
    let found: Array<[number, number]> | null = null;
    if (m.table === null) {
      for (const { needle, offsets } of m.anchors) {
        for (let hit = body.indexOf(needle); hit >= 0; hit = body.indexOf(needle, hit + 1)) {
          for (const offset of offsets) {
            const at = hit - offset;
            const len = at >= 0 ? matchAt(m, body, at) : 0;
            if (len > 0) found = addMatch(found, at, at + len);
          }
        }
      }
    } else {
      const table = m.table;
      for (let i = 0, last = body.length - PREFIX; i <= last; i++) {
        if (table[hash4(word(body, i))] !== 1) continue;
        const len = matchAt(m, body, i);
        if (len > 0) {
          found = addMatch(found, i, i + len);
          i += len - 1;
        }
      }
    }
    return found === null ? body : replace(body, found);
  }

  /**
   * A header value or other short text, scrubbed the same way. The last text found clean is
   * remembered: upstream headers such as the content type repeat on every answer.
   */
  scrubText(text: string): string {
    if (this.m.anchors.length === 0 || text === this.lastClean) return text;
    const bytes = Buffer.from(text, 'utf8');
    const out = this.scrub(bytes);
    if (out !== bytes) return out.toString('utf8');
    this.lastClean = text;
    return text;
  }

  /** A scrubber for one stream: a secret cut in two by a chunk boundary is still found. */
  stream(): StreamScrub {
    return new StreamScrub(this);
  }

  /**
   * Where the part of a scrubbed chunk that may continue in the next one begins: the chunk's
   * length when it ends at a line break or in a byte no secret has.
   */
  holdFrom(out: Buffer): number {
    const m = this.m;
    const lastByte = out[out.length - 1];
    if (m.anchors.length === 0 || out.length === 0 || lastByte === LF || lastByte === CR) return out.length;
    let i = out.length;
    const stop = Math.max(0, out.length - (m.maxLength - 1));
    while (i > stop && m.secretBytes[out[i - 1]!] === 1) i--;
    return i;
  }
}

/**
 * How common a byte is in model answers (JSON of English text), lowest rarest: lowercase letters
 * and spaces, then JSON's punctuation, digits, capitals; anything else is rare.
 */
function commonness(byte: number): number {
  if ((byte >= 0x61 && byte <= 0x7a) || byte === 0x20) return 4;
  if (byte === 0x22 || byte === 0x2c || byte === 0x2e || byte === 0x3a || byte === 0x0a) return 3;
  if (byte === 0x7b || byte === 0x7d || byte === 0x5b || byte === 0x5d || byte === 0x27) return 3;
  if (byte >= 0x30 && byte <= 0x39) return 2;
  if (byte >= 0x41 && byte <= 0x5a) return 1;
  return 0;
}

function commonPrefix(a: string, b: string): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return a.slice(0, i);
}

/** The length of the longest secret at `at`, or 0. */
function matchAt(m: Matcher, body: Buffer, at: number): number {
  const lengths = m.lengths.get(body.toString('latin1', at, at + PREFIX));
  if (lengths === undefined) return 0;
  for (const len of lengths) {
    if (at + len <= body.length && m.secrets.has(body.toString('latin1', at, at + len))) return len;
  }
  return 0;
}

function addMatch(
  found: Array<[number, number]> | null,
  start: number,
  end: number,
): Array<[number, number]> {
  const list = found ?? [];
  list.push([start, end]);
  return list;
}

function replace(body: Buffer, found: Array<[number, number]>): Buffer {
  found.sort((a, b) => a[0] - b[0]);
  const parts: Buffer[] = [];
  let from = 0;
  for (const [start, end] of found) {
    if (start < from) {
      // Overlaps the one just replaced: the replacement covers both.
      from = Math.max(from, end);
      continue;
    }
    parts.push(body.subarray(from, start), REPLACEMENT);
    from = end;
  }
  parts.push(body.subarray(from));
  return Buffer.concat(parts);
}

/**
 * One stream's scrubbing. A chunk that does not end at a line break may end inside a secret:
 * its trailing run of bytes that occur in secrets (at most the longest secret less one) is held
 * back and scrubbed together with the next chunk. SSE events end at a line break, so the usual
 * chunk is passed on whole.
 */
export class StreamScrub {
  private readonly owner: ResponseScrubber;
  private held: Buffer | null = null;

  constructor(owner: ResponseScrubber) {
    this.owner = owner;
  }

  /** The bytes of `chunk` (with what was held back before) that may go out now; maybe empty. */
  push(chunk: Buffer): Buffer {
    let data = chunk;
    if (this.held !== null) {
      data = Buffer.concat([this.held, chunk]);
      this.held = null;
    }
    const out = this.owner.scrub(data);
    const at = this.owner.holdFrom(out);
    if (at === out.length) return out;
    this.held = Buffer.from(out.subarray(at));
    return out.subarray(0, at);
  }

  /** The stream ended: what was held back, scrubbed. */
  end(): Buffer {
    const held = this.held;
    this.held = null;
    return held === null ? Buffer.alloc(0) : this.owner.scrub(held);
  }
}
