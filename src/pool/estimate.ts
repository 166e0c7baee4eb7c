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
