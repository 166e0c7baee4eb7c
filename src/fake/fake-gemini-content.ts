/** Deterministic content for the fake Gemini: token counts, answers, JSON from schemas, PNG, embeddings. */
import { encodePng } from '../media/png.ts';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Models

export interface FakeModel {
  name: string;
  displayName: string;
  methods: string[];
  inputTokenLimit: number;
  outputTokenLimit: number;
}

const GEN = ['generateContent', 'countTokens', 'createCachedContent', 'batchGenerateContent'];
const EMBED = ['embedContent', 'batchEmbedContents', 'countTokens'];

/** The models the fake knows; any other model name gets Google's 404. */
export const FAKE_MODELS: readonly FakeModel[] = [
  {
    name: 'gemini-2.5-pro',
    displayName: 'Gemini 2.5 Pro',
    methods: GEN,
    inputTokenLimit: 1048576,
    outputTokenLimit: 65536,
  },
  {
    name: 'gemini-2.5-flash',
    displayName: 'Gemini 2.5 Flash',
    methods: GEN,
    inputTokenLimit: 1048576,
    outputTokenLimit: 65536,
  },
  {
    name: 'gemini-2.5-flash-lite',
    displayName: 'Gemini 2.5 Flash-Lite',
    methods: GEN,
    inputTokenLimit: 1048576,
    outputTokenLimit: 65536,
  },
  {
    name: 'gemini-2.5-flash-image',
    displayName: 'Nano Banana',
    methods: GEN,
    inputTokenLimit: 32768,
    outputTokenLimit: 32768,
  },
  {
    name: 'gemini-2.0-flash',
    displayName: 'Gemini 2.0 Flash',
    methods: GEN,
    inputTokenLimit: 1048576,
    outputTokenLimit: 8192,
  },
  {
    name: 'gemini-2.0-flash-lite',
    displayName: 'Gemini 2.0 Flash-Lite',
    methods: GEN,
    inputTokenLimit: 1048576,
    outputTokenLimit: 8192,
  },
  {
    name: 'gemini-flash-latest',
    displayName: 'Gemini Flash Latest',
    methods: GEN,
    inputTokenLimit: 1048576,
    outputTokenLimit: 65536,
  },
  {
    name: 'gemini-flash-lite-latest',
    displayName: 'Gemini Flash-Lite Latest',
    methods: GEN,
    inputTokenLimit: 1048576,
    outputTokenLimit: 65536,
  },
  {
    name: 'text-embedding-004',
    displayName: 'Text Embedding 004',
    methods: EMBED,
    inputTokenLimit: 2048,
    outputTokenLimit: 1,
  },
  {
    name: 'gemini-embedding-001',
    displayName: 'Gemini Embedding 001',
    methods: EMBED,
    inputTokenLimit: 2048,
    outputTokenLimit: 1,
  },
];

export const MODELS_BY_NAME: ReadonlyMap<string, FakeModel> = new Map(FAKE_MODELS.map((m) => [m.name, m]));

export function modelJson(m: FakeModel): Obj {
  const gen = m.methods.includes('generateContent');
  const out: Obj = {
    name: `models/${m.name}`,
    version: '001',
    displayName: m.displayName,
    description: `${m.displayName} (fake)`,
    inputTokenLimit: m.inputTokenLimit,
    outputTokenLimit: m.outputTokenLimit,
    supportedGenerationMethods: m.methods,
  };
  if (gen) {
    out.temperature = 1;
    out.topP = 0.95;
    out.topK = 64;
    out.maxTemperature = 2;
    if (m.name.startsWith('gemini-2.5') || m.name.includes('latest'))
      out.thinking = !m.name.includes('image');
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tokens

export interface TokenCount {
  total: number;
  text: number;
  images: number;
}

const IMAGE_TOKENS = 258;
export const IMAGE_OUTPUT_TOKENS = 1290;

function countParts(parts: unknown, acc: { chars: number; images: number }): void {
  if (!Array.isArray(parts)) return;
  for (const p of parts) {
    if (!isObj(p)) continue;
    if (typeof p.text === 'string') acc.chars += p.text.length;
    if (p.inlineData !== undefined || p.inline_data !== undefined) acc.images++;
  }
}

function countContents(contents: unknown, acc: { chars: number; images: number }): void {
  if (Array.isArray(contents)) {
    for (const c of contents) if (isObj(c)) countParts(c.parts, acc);
  } else if (isObj(contents)) {
    countParts(contents.parts, acc);
  }
}

/** ceil(text chars / 4) over contents + systemInstruction, plus 258 per inline image. */
export function countRequestTokens(req: Obj): TokenCount {
  const acc = { chars: 0, images: 0 };
  countContents(req.contents, acc);
  const sys = req.systemInstruction ?? req.system_instruction;
  if (isObj(sys)) countParts(sys.parts, acc);
  const text = Math.ceil(acc.chars / 4);
  const images = acc.images * IMAGE_TOKENS;
  return { total: text + images, text, images };
}

export function textTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

// ---------------------------------------------------------------------------------------------
// Answers

export interface Answer {
  /** Text pieces, one per stream chunk (concatenated: the whole text). */
  textPieces: string[];
  /** Image part (base64 PNG) when the request asked for an image. */
  image: string | null;
}

function lastUserText(contents: unknown): string {
  if (!Array.isArray(contents)) return '';
  for (let i = contents.length - 1; i >= 0; i--) {
    const c = contents[i];
    if (!isObj(c) || c.role === 'model' || !Array.isArray(c.parts)) continue;
    for (let j = c.parts.length - 1; j >= 0; j--) {
      const p = c.parts[j];
      if (isObj(p) && typeof p.text === 'string' && p.thought !== true) return p.text;
    }
  }
  return '';
}

export function splitText(text: string, pieces: number): string[] {
  const n = Math.max(1, Math.min(pieces, text.length));
  if (n === 1) return [text];
  const out: string[] = [];
  const size = Math.ceil(text.length / n);
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

export function buildAnswer(model: string, req: Obj, pieces: number): Answer {
  const prompt = lastUserText(req.contents).slice(0, 200);
  const cfg = isObj(req.generationConfig)
    ? req.generationConfig
    : isObj(req.generation_config)
      ? req.generation_config
      : {};
  const modalities = cfg.responseModalities ?? cfg.response_modalities;
  const wantsImage =
    model.includes('image') ||
    (Array.isArray(modalities) && modalities.some((m) => String(m).toUpperCase() === 'IMAGE'));
  if (wantsImage) {
    const imageOnly =
      Array.isArray(modalities) &&
      modalities.length > 0 &&
      !modalities.some((m) => String(m).toUpperCase() === 'TEXT');
    return { textPieces: imageOnly ? [] : [`Fake image for: ${prompt}`], image: fakePngBase64() };
  }
  const mime = cfg.responseMimeType ?? cfg.response_mime_type;
  const schema =
    cfg.responseJsonSchema ?? cfg.response_json_schema ?? cfg.responseSchema ?? cfg.response_schema;
  let text: string;
  if (mime === 'application/json') {
    text = JSON.stringify(isObj(schema) ? sampleFromSchema(schema) : { answer: `Fake answer to: ${prompt}` });
  } else if (
    mime === 'text/x.enum' &&
    isObj(schema) &&
    Array.isArray(schema.enum) &&
    schema.enum.length > 0
  ) {
    text = String(schema.enum[0]);
  } else {
    text = `Fake answer to: ${prompt}`;
  }
  return { textPieces: splitText(text, pieces), image: null };
}

// ---------------------------------------------------------------------------------------------
// JSON from a schema (Gemini's OpenAPI subset or JSON Schema)

function num(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return undefined;
}

function schemaType(s: Obj): string | undefined {
  let t = s.type;
  if (Array.isArray(t)) t = t.find((x) => String(x).toLowerCase() !== 'null') ?? t[0];
  if (typeof t === 'string') return t.toLowerCase();
  if (isObj(s.properties)) return 'object';
  if (s.items !== undefined) return 'array';
  if (Array.isArray(s.enum)) return 'string';
  return undefined;
}

function resolveRef(ref: string, root: Obj): Obj | undefined {
  if (!ref.startsWith('#')) return undefined;
  let cur: unknown = root;
  for (const seg of ref.slice(1).split('/')) {
    if (seg === '') continue;
    const key = seg.replace(/~1/g, '/').replace(/~0/g, '~');
    if (!isObj(cur)) return undefined;
    cur = cur[key];
  }
  return isObj(cur) ? cur : undefined;
}

function sampleString(s: Obj, name: string): string {
  const format = typeof s.format === 'string' ? s.format : '';
  let v: string;
  if (format === 'date-time') v = '2025-01-01T00:00:00Z';
  else if (format === 'date') v = '2025-01-01';
  else if (format === 'time') v = '12:00:00';
  else if (format === 'email') v = 'sample@example.com';
  else if (format === 'uri' || format === 'url') v = 'https://example.com/sample';
  else if (format === 'uuid') v = '00000000-0000-4000-8000-000000000000';
  else v = `sample ${name}`;
  const max = num(s.maxLength);
  const min = num(s.minLength);
  if (max !== undefined && v.length > max) v = v.slice(0, Math.max(0, max));
  if (min !== undefined && v.length < min) v = v.padEnd(min, 'x');
  return v;
}

function sampleNumber(s: Obj, integer: boolean): number {
  let lo = num(s.minimum);
  let hi = num(s.maximum);
  const exLo = s.exclusiveMinimum;
  const exHi = s.exclusiveMaximum;
  if (num(exLo) !== undefined) lo = num(exLo);
  if (num(exHi) !== undefined) hi = num(exHi);
  const loOpen = exLo !== undefined && exLo !== false;
  const hiOpen = exHi !== undefined && exHi !== false;
  let v: number;
  if (lo !== undefined && hi !== undefined) v = (lo + hi) / 2;
  else if (lo !== undefined) v = lo + 1;
  else if (hi !== undefined) v = hi - 1;
  else v = integer ? 1 : 0.5;
  if (!integer) return v;
  let r = Math.floor(v);
  if (lo !== undefined && (r < lo || (loOpen && r === lo)))
    r = loOpen && Number.isInteger(lo) ? lo + 1 : Math.ceil(lo);
  if (hi !== undefined && (r > hi || (hiOpen && r === hi)))
    r = hiOpen && Number.isInteger(hi) ? hi - 1 : Math.floor(hi);
  return r;
}

function sample(s: Obj, root: Obj, name: string, depth: number): unknown {
  if (depth > 12) return null;
  if (typeof s.$ref === 'string') {
    const target = resolveRef(s.$ref, root);
    return target ? sample(target, root, name, depth + 1) : null;
  }
  if ('const' in s) return s.const;
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0];
  for (const k of ['anyOf', 'oneOf'] as const) {
    const alts = s[k];
    if (Array.isArray(alts) && alts.length > 0) {
      const pick = alts.find((a) => isObj(a) && schemaType(a) !== 'null') ?? alts[0];
      if (isObj(pick)) return sample(pick, root, name, depth + 1);
    }
  }
  if (Array.isArray(s.allOf) && s.allOf.length > 0) {
    const merged: Obj = {};
    const props: Obj = {};
    for (const part of s.allOf) {
      if (!isObj(part)) continue;
      const p = typeof part.$ref === 'string' ? (resolveRef(part.$ref, root) ?? {}) : part;
      Object.assign(merged, p);
      if (isObj(p.properties)) Object.assign(props, p.properties);
    }
    if (isObj(s.properties)) Object.assign(props, s.properties);
    return sample({ ...merged, ...s, allOf: undefined, properties: props }, root, name, depth + 1);
  }
  switch (schemaType(s)) {
    case 'string':
      return sampleString(s, name);
    case 'number':
      return sampleNumber(s, false);
    case 'integer':
      return sampleNumber(s, true);
    case 'boolean':
      return true;
    case 'null':
      return null;
    case 'array': {
      const min = num(s.minItems) ?? 0;
      const max = num(s.maxItems) ?? Number.POSITIVE_INFINITY;
      let count = Math.min(Math.max(2, min), max);
      if (depth > 8) count = min;
      const items = isObj(s.items)
        ? s.items
        : Array.isArray(s.prefixItems) && isObj(s.prefixItems[0])
          ? s.prefixItems[0]
          : {};
      const out: unknown[] = [];
      for (let i = 0; i < count; i++) out.push(sample(items, root, name, depth + 1));
      return out;
    }
    case 'object': {
      const out: Obj = {};
      const props = isObj(s.properties) ? s.properties : {};
      const order: string[] = Array.isArray(s.propertyOrdering) ? s.propertyOrdering.map(String) : [];
      for (const k of Object.keys(props)) if (!order.includes(k)) order.push(k);
      for (const k of order) {
        const ps = props[k];
        if (isObj(ps)) out[k] = sample(ps, root, k, depth + 1);
      }
      return out;
    }
    default:
      return `sample ${name}`;
  }
}

/** A JSON value conforming to the schema (every property, arrays of 2 items, enums' first value). */
export function sampleFromSchema(schema: Obj): unknown {
  return sample(schema, schema, 'value', 0);
}

// ---------------------------------------------------------------------------------------------
// PNG (8×8 RGB gradient, built once)

let pngCache: string | null = null;

/** An 8×8 RGB gradient. */
export function fakePng(): Buffer {
  return encodePng(8, 8, (x, y) => [x * 32, y * 32, 160]);
}

export function fakePngBase64(): string {
  if (pngCache === null) pngCache = fakePng().toString('base64');
  return pngCache;
}

// ---------------------------------------------------------------------------------------------
// Embeddings: a hashed bag of words, L2-normalised (texts sharing words are similar).

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export const DEFAULT_EMBEDDING_DIMENSIONS = 8;

export function embedText(text: string, dimensions = DEFAULT_EMBEDDING_DIMENSIONS): number[] {
  const dims = Math.max(1, Math.min(3072, Math.floor(dimensions)));
  const v = new Array<number>(dims).fill(0);
  const words = text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  for (const w of words) {
    const h = fnv1a(w);
    const h2 = fnv1a(`${w}#`);
    v[h % dims] += h & 0x80000000 ? -1 : 1;
    v[h2 % dims] += (h2 & 0x80000000 ? -1 : 1) * 0.5;
  }
  let norm = 0;
  for (const x of v) norm += x * x;
  if (norm === 0) {
    v[0] = 1;
    return v;
  }
  norm = Math.sqrt(norm);
  return v.map((x) => Math.round((x / norm) * 1e6) / 1e6);
}

export function contentText(content: unknown): string {
  if (!isObj(content) || !Array.isArray(content.parts)) return '';
  let s = '';
  for (const p of content.parts) if (isObj(p) && typeof p.text === 'string') s += (s ? ' ' : '') + p.text;
  return s;
}
