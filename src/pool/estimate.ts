/** Tokens Google bills per inline image on 2.x models (one 768×768 tile; a floor for larger ones). */
export const TOKENS_PER_MEDIA_PART = 258;

/**
 * Input-token estimate reserved before a request is sent (settled with usageMetadata after):
 * a quarter token per character of text plus a tile per media part. Walks any request shape
 * (generateContent, countTokens, embedContent, batchEmbedContents) without knowing it.
 */
export function estimateInputTokens(body: unknown): number {
  let chars = 0;
  let media = 0;
  const stack: unknown[] = [body];
  while (stack.length > 0) {
    const node = stack.pop();
    if (Array.isArray(node)) {
      for (const item of node) stack.push(item);
    } else if (node !== null && typeof node === 'object') {
      const record = node as Record<string, unknown>;
      for (const key in record) {
        const value = record[key];
        if (key === 'text' && typeof value === 'string') chars += value.length;
        else if (key === 'inlineData' || key === 'inline_data' || key === 'fileData' || key === 'file_data')
          media += 1;
        else if (typeof value === 'object') stack.push(value);
      }
    }
  }
  return Math.ceil(chars / 4) + media * TOKENS_PER_MEDIA_PART;
}

const PROMPT_TOKENS = /"promptTokenCount"\s*:\s*(\d+)/g;

/** The last promptTokenCount in a chunk of Gemini JSON/SSE text (usage is cumulative), if any. */
export function lastPromptTokenCount(text: string): number | undefined {
  let found: number | undefined;
  PROMPT_TOKENS.lastIndex = 0;
  for (let m = PROMPT_TOKENS.exec(text); m !== null; m = PROMPT_TOKENS.exec(text)) found = Number(m[1]);
  return found;
}

const PROMPT_MARKER = Buffer.from('"promptTokenCount"');
const SPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);

/**
 * lastPromptTokenCount of a whole answer body, read from its bytes: the usage sits at the end of
 * an answer, so it is found without decoding the whole body to a string.
 */
export function bodyPromptTokenCount(body: Buffer): number | undefined {
  const at = body.lastIndexOf(PROMPT_MARKER);
  if (at < 0) return undefined;
  let i = at + PROMPT_MARKER.length;
  while (SPACE.has(body[i]!)) i++;
  if (body[i] === 0x3a) {
    i++;
    while (SPACE.has(body[i]!)) i++;
    let value = 0;
    const start = i;
    for (; body[i]! >= 0x30 && body[i]! <= 0x39; i++) value = value * 10 + body[i]! - 0x30;
    if (i > start && i - start < 16) return value;
  }
  // Not followed by a count (or an absurd one): let the text scan decide.
  return lastPromptTokenCount(body.toString('utf8'));
}

/** Bytes of a chunk's end carried into the next one: a split count and its field name fit in it. */
const USAGE_CARRY = 64;
const EMPTY = Buffer.alloc(0);

/**
 * The prompt token count of a stream (SSE or JSON array), read chunk by chunk from the bytes.
 * Usage is cumulative and every chunk repeats it, so the last complete count is the best known
 * at any moment, also when the stream is cut off. A count split across two chunks
 * (`"promptTokenCount": 12` | `34,`) is read whole: the previous chunk's tail is carried over,
 * and a count that runs to the end of what has arrived is not taken until its end is seen.
 */
export class StreamUsageReader {
  /** The last complete promptTokenCount seen; undefined before the first. */
  promptTokens: number | undefined;
  private tail: Buffer = EMPTY;

  push(chunk: Buffer): void {
    const found = lastCount(chunk, chunk.length);
    if (found !== undefined) this.promptTokens = found;
    else if (this.tail.length > 0) {
      // A count whose field name began in the previous chunk. Only the seam is copied, so a
      // large chunk (image data) is not.
      const seam = Buffer.concat([this.tail, chunk.subarray(0, 2 * USAGE_CARRY)]);
      const straddling = lastCount(seam, this.tail.length);
      if (straddling !== undefined) this.promptTokens = straddling;
    }
    // A copy: a view would keep the whole chunk alive.
    const end = chunk.length >= USAGE_CARRY ? chunk : Buffer.concat([this.tail, chunk]);
    this.tail = Buffer.from(end.subarray(Math.max(0, end.length - USAGE_CARRY)));
  }
}

/** The last complete count in `data` whose field name starts before `startsBefore`. */
function lastCount(data: Buffer, startsBefore: number): number | undefined {
  if (startsBefore <= 0) return undefined;
  for (
    let at = data.lastIndexOf(PROMPT_MARKER, startsBefore - 1);
    at >= 0;
    at = at > 0 ? data.lastIndexOf(PROMPT_MARKER, at - 1) : -1
  ) {
    const value = countAfter(data, at + PROMPT_MARKER.length);
    if (value !== undefined) return value;
  }
  return undefined;
}

/** The count after a field name at `i` (`: 123`), or undefined when absent, absurd or not ended yet. */
function countAfter(data: Buffer, i: number): number | undefined {
  while (SPACE.has(data[i]!)) i++;
  if (data[i] !== 0x3a) return undefined;
  i++;
  while (SPACE.has(data[i]!)) i++;
  let value = 0;
  const start = i;
  for (; data[i]! >= 0x30 && data[i]! <= 0x39; i++) value = value * 10 + data[i]! - 0x30;
  // Digits up to the end of what arrived may go on in the next chunk.
  if (i === start || i >= data.length || i - start >= 16) return undefined;
  return value;
}
