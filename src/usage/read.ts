/**
 * Reading Gemini's `usageMetadata` from the bytes of an answer, as upstream reported it:
 *
 * - `promptTokenCount`: input tokens, cached ones included;
 * - `candidatesTokenCount`: output tokens (thinking excluded; image output tokens included, see
 *   `candidatesTokensDetails`);
 * - `cachedContentTokenCount`: the part of the prompt served from a context cache;
 * - `thoughtsTokenCount`: thinking tokens (billed as output).
 *
 * The usage object sits at the end of an answer (unary) or of every chunk (streams, where it is
 * cumulative), so it is found from the end of the bytes and only that object is parsed.
 */

export interface TokenUsage {
  prompt: number;
  output: number;
  cached: number;
  thought: number;
  /** Output tokens of modality IMAGE (candidatesTokensDetails), billed at an image price. */
  imageOutput: number;
}

const MARKER = Buffer.from('"usageMetadata"');
/** A usage object is a few hundred bytes; anything much larger is not one. */
const MAX_OBJECT = 4096;

/** The usage of a whole answer body (the last usageMetadata in it), or undefined when it has none. */
export function readUsage(body: Buffer): TokenUsage | undefined {
  for (let at = body.lastIndexOf(MARKER); at >= 0; at = at > 0 ? body.lastIndexOf(MARKER, at - 1) : -1) {
    const found = objectAfter(body, at + MARKER.length);
    if (found === 'incomplete' || found === undefined) continue;
    return found;
  }
  return undefined;
}

/**
 * The usage of a stream (SSE or a JSON array), read chunk by chunk. Usage is cumulative and every
 * chunk repeats it, so the last complete usage object seen is the stream's usage so far, also
 * when the stream is cut off. An object split across chunks is read whole: the bytes from its
 * field name on are carried into the next chunk.
 */
export class StreamUsageMeter {
  /** The last complete usage seen; undefined before the first. */
  usage: TokenUsage | undefined;
  /** The newest usage object (or field name) still running on into the next chunk. */
  private carry: Buffer | null = null;

  push(chunk: Buffer): void {
    let data = chunk;
    if (this.carry !== null) {
      if (chunk.length <= MAX_OBJECT + MARKER.length) {
        // A small chunk: read it together with what was carried.
        data = Buffer.concat([this.carry, chunk]);
      } else {
        // A large one (image data): only its start can complete the carried object.
        const seam = Buffer.concat([this.carry, chunk.subarray(0, MAX_OBJECT + MARKER.length)]);
        const r = lastUsage(seam, this.carry.length);
        if (r.usage !== undefined) this.usage = r.usage;
      }
      this.carry = null;
    }
    const r = lastUsage(data, data.length);
    if (r.usage !== undefined) this.usage = r.usage;
    if (r.openAt >= 0)
      this.carry = data.length - r.openAt <= MAX_OBJECT ? Buffer.from(data.subarray(r.openAt)) : null;
    else this.carry = partialMarker(data);
  }
}

/**
 * The newest complete usage object in `data` whose field name starts before `startsBefore`, and
 * where the newest field name starts when its object is not complete yet (else -1).
 */
function lastUsage(data: Buffer, startsBefore: number): { usage: TokenUsage | undefined; openAt: number } {
  let openAt = -1;
  let newest = true;
  for (
    let at = startsBefore > 0 ? data.lastIndexOf(MARKER, startsBefore - 1) : -1;
    at >= 0;
    at = at > 0 ? data.lastIndexOf(MARKER, at - 1) : -1
  ) {
    const found = objectAfter(data, at + MARKER.length);
    if (found === 'incomplete') {
      if (newest) openAt = at;
    } else if (found !== undefined) return { usage: found, openAt };
    newest = false;
  }
  return { usage: undefined, openAt };
}

/** The end of `data` when it is the start of the field name (`"usageMeta`), as a copy; else null. */
function partialMarker(data: Buffer): Buffer | null {
  for (let k = Math.min(MARKER.length - 1, data.length); k > 0; k--) {
    if (data[data.length - k] === 0x22 && sameBytes(data, data.length - k, MARKER.subarray(0, k)))
      return Buffer.from(data.subarray(data.length - k));
  }
  return null;
}

/**
 * The usage object after a field name ending at `i` (`: {...}`): parsed, 'incomplete' when the
 * bytes end before it does, undefined when what follows is not a usage object.
 */
function objectAfter(data: Buffer, i: number): TokenUsage | 'incomplete' | undefined {
  while (i < data.length && isSpace(data[i]!)) i++;
  if (i >= data.length) return 'incomplete';
  if (data[i] !== 0x3a) return undefined;
  i++;
  while (i < data.length && isSpace(data[i]!)) i++;
  if (i >= data.length) return 'incomplete';
  if (data[i] !== 0x7b) return undefined;
  return scanObject(data, i);
}

/** Names whose values are read, by length (a name is compared only when its length matches). */
const NAMES = new Map<number, Array<[Buffer, keyof TokenUsage | 'details']>>();
for (const [name, field] of [
  ['promptTokenCount', 'prompt'],
  ['candidatesTokenCount', 'output'],
  ['cachedContentTokenCount', 'cached'],
  ['thoughtsTokenCount', 'thought'],
  ['candidatesTokensDetails', 'details'],
] as const) {
  const list = NAMES.get(name.length) ?? [];
  list.push([Buffer.from(name), field]);
  NAMES.set(name.length, list);
}

/**
 * The usage object starting at data[start] (`{`), read in one pass over its bytes: the integer
 * values of its own count fields, without JSON.parse. An object with output details by modality
 * (image output tokens) is parsed whole. 'incomplete' when the data ends before the object does;
 * undefined when it is longer than any usage object.
 */
function scanObject(data: Buffer, start: number): TokenUsage | 'incomplete' | undefined {
  const u: TokenUsage = { prompt: 0, output: 0, cached: 0, thought: 0, imageOutput: 0 };
  let details = false;
  let depth = 0;
  const limit = Math.min(data.length, start + MAX_OBJECT);
  for (let i = start; i < limit; i++) {
    const b = data[i]!;
    if (b === 0x22) {
      let j = i + 1;
      while (j < limit && data[j] !== 0x22) j += data[j] === 0x5c ? 2 : 1;
      if (j >= limit) break;
      const candidates = depth === 1 ? NAMES.get(j - i - 1) : undefined;
      if (candidates !== undefined) {
        for (const [name, field] of candidates) {
          if (!sameBytes(data, i + 1, name)) continue;
          if (field === 'details') {
            details = true;
            break;
          }
          let k = j + 1;
          while (k < limit && isSpace(data[k]!)) k++;
          if (data[k] !== 0x3a) break;
          k++;
          while (k < limit && isSpace(data[k]!)) k++;
          let value = 0;
          const digits = k;
          for (; k < limit && data[k]! >= 0x30 && data[k]! <= 0x39; k++) value = value * 10 + data[k]! - 0x30;
          if (k > digits && k - digits < 16) u[field] = value;
          break;
        }
      }
      i = j;
    } else if (b === 0x7b || b === 0x5b) depth++;
    else if (b === 0x7d || b === 0x5d) {
      depth--;
      if (depth === 0) {
        if (!details) return u;
        try {
          return toUsage(JSON.parse(data.toString('utf8', start, i + 1)));
        } catch {
          return undefined;
        }
      }
    }
  }
  return limit < data.length || data.length - start > MAX_OBJECT ? undefined : 'incomplete';
}

function sameBytes(data: Buffer, at: number, name: Buffer): boolean {
  for (let k = 0; k < name.length; k++) if (data[at + k] !== name[k]) return false;
  return true;
}

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}

const count = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : 0);

/** A parsed usageMetadata object as TokenUsage (absent or malformed counts are 0). */
export function toUsage(meta: unknown): TokenUsage | undefined {
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) return undefined;
  const m = meta as Record<string, unknown>;
  let imageOutput = 0;
  const details = m.candidatesTokensDetails;
  if (Array.isArray(details)) {
    for (const d of details) {
      if (d !== null && typeof d === 'object' && (d as Record<string, unknown>).modality === 'IMAGE')
        imageOutput += count((d as Record<string, unknown>).tokenCount);
    }
  }
  return {
    prompt: count(m.promptTokenCount),
    output: count(m.candidatesTokenCount),
    cached: count(m.cachedContentTokenCount),
    thought: count(m.thoughtsTokenCount),
    imageOutput,
  };
}
