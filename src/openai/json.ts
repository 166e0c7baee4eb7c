/** Small readers of untyped JSON values, shared by the OpenAI ⇄ Gemini converters. */

export type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The parsed value, or undefined when the text is not JSON. */
export function safeJson(v: string | Uint8Array): unknown {
  try {
    return JSON.parse(typeof v === 'string' ? v : Buffer.from(v).toString('utf8'));
  } catch {
    return undefined;
  }
}
