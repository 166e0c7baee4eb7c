/** Deterministic content for the fake Gemini: models, token counts, answers, PNG, embeddings. */
import { encodePng } from '../src/media/png.ts';
import { sampleFromSchema } from './fake-gemini-schema.ts';
import {
  describeResults,
  type FunctionCalls,
  functionDeclarations,
  lastFunctionResults,
  planFunctionCalls,
} from './fake-gemini-tools.ts';

export { sampleFromSchema } from './fake-gemini-schema.ts';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Models

export interface FakeModel {
  name: string;
  displayName: string;
  /** What the fake serves for the model; any other action answers Google's 404. */
  methods: string[];
  /** models.list's `supportedGenerationMethods`, where Google lists other names than `methods`. */
  listedMethods?: string[];
  inputTokenLimit: number;
  outputTokenLimit: number;
  /** Default '001'. */
  version?: string;
  /** Listed as `thinking` (models that think before answering). */
  thinking?: boolean;
}

const GEN = ['generateContent', 'countTokens', 'createCachedContent', 'batchGenerateContent'];
const IMAGE_GEN = ['generateContent', 'countTokens', 'batchGenerateContent'];
const EMBED = ['embedContent', 'batchEmbedContents', 'countTokens'];
const IMAGEN = ['predict'];
const VEO = ['predictLongRunning'];
const M = 1048576;

function text(name: string, displayName: string, extra: Partial<FakeModel> = {}): FakeModel {
  return {
    name,
    displayName,
    methods: GEN,
    inputTokenLimit: M,
    outputTokenLimit: 65536,
    thinking: true,
    ...extra,
  };
}

function media(name: string, displayName: string, methods: string[]): FakeModel {
  return { name, displayName, methods, inputTokenLimit: 480, outputTokenLimit: 8192 };
}

/**
 * The models the fake knows, as Google's models.list shows them; any other model name gets
 * Google's 404. The Gemini 3 names are those `@google/gemini-cli` (0.61) resolves its defaults
 * and aliases to (`auto`, `pro`: gemini-3.1-pro-preview with an API key; `flash`, `flash-lite`:
 * the 3.x flash models; its router and checkers use the flash and flash-lite ones), so the CLI
 * runs against the demo unchanged. text-embedding-004 (retired by Google in January 2026) stays
 * because the SDK tests use it.
 */
export const FAKE_MODELS: readonly FakeModel[] = [
  text('gemini-2.5-pro', 'Gemini 2.5 Pro', { version: '2.5' }),
  text('gemini-2.5-flash', 'Gemini 2.5 Flash'),
  text('gemini-2.5-flash-lite', 'Gemini 2.5 Flash-Lite'),
  text('gemini-3-pro-preview', 'Gemini 3 Pro Preview', { version: '3-pro-preview-11-2025' }),
  text('gemini-3-flash-preview', 'Gemini 3 Flash Preview', { version: '3-flash-preview-12-2025' }),
  text('gemini-3.1-pro-preview', 'Gemini 3.1 Pro Preview'),
  text('gemini-3.1-pro-preview-customtools', 'Gemini 3.1 Pro Preview (custom tools)'),
  text('gemini-3.1-flash-lite-preview', 'Gemini 3.1 Flash-Lite Preview'),
  text('gemini-3.1-flash-lite', 'Gemini 3.1 Flash-Lite'),
  text('gemini-3.5-flash', 'Gemini 3.5 Flash'),
  text('gemini-3.5-flash-lite', 'Gemini 3.5 Flash-Lite'),
  text('gemini-3.8-flash', 'Gemini 3.8 Flash'),
  text('gemini-pro-latest', 'Gemini Pro Latest'),
  text('gemini-flash-latest', 'Gemini Flash Latest'),
  text('gemini-flash-lite-latest', 'Gemini Flash-Lite Latest'),
  text('gemini-2.5-flash-image', 'Nano Banana', {
    methods: IMAGE_GEN,
    inputTokenLimit: 32768,
    outputTokenLimit: 32768,
    version: '2.0',
    thinking: false,
  }),
  text('gemini-3-pro-image-preview', 'Nano Banana Pro', {
    methods: IMAGE_GEN,
    inputTokenLimit: 131072,
    outputTokenLimit: 32768,
    version: '3.0',
  }),
  text('gemini-3.1-flash-image-preview', 'Nano Banana 2', {
    methods: IMAGE_GEN,
    inputTokenLimit: 131072,
    outputTokenLimit: 32768,
  }),
  {
    name: 'gemini-embedding-001',
    displayName: 'Gemini Embedding 001',
    methods: EMBED,
    listedMethods: ['embedContent', 'countTextTokens', 'countTokens', 'asyncBatchEmbedContent'],
    inputTokenLimit: 2048,
    outputTokenLimit: 1,
  },
  {
    name: 'text-embedding-004',
    displayName: 'Text Embedding 004',
    methods: EMBED,
    listedMethods: ['embedContent'],
    version: '004',
    inputTokenLimit: 2048,
    outputTokenLimit: 1,
  },
  media('imagen-4.0-generate-001', 'Imagen 4', IMAGEN),
  media('imagen-4.0-ultra-generate-001', 'Imagen 4 Ultra', IMAGEN),
  media('imagen-4.0-fast-generate-001', 'Imagen 4 Fast', IMAGEN),
  media('veo-2.0-generate-001', 'Veo 2', VEO),
  media('veo-3.0-generate-001', 'Veo 3', VEO),
  media('veo-3.0-fast-generate-001', 'Veo 3 fast', VEO),
  media('veo-3.1-generate-preview', 'Veo 3.1', VEO),
  media('veo-3.1-fast-generate-preview', 'Veo 3.1 fast', VEO),
];

export const MODELS_BY_NAME: ReadonlyMap<string, FakeModel> = new Map(FAKE_MODELS.map((m) => [m.name, m]));

export function modelJson(m: FakeModel): Obj {
  const out: Obj = {
    name: `models/${m.name}`,
    version: m.version ?? '001',
    displayName: m.displayName,
    description: `${m.displayName} (fake)`,
    inputTokenLimit: m.inputTokenLimit,
    outputTokenLimit: m.outputTokenLimit,
    supportedGenerationMethods: m.listedMethods ?? m.methods,
  };
  if (m.methods.includes('generateContent')) {
    out.temperature = 1;
    out.topP = 0.95;
    out.topK = 64;
    out.maxTemperature = 2;
  }
  if (m.thinking !== undefined) out.thinking = m.thinking;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tokens

export interface TokenCount {
  total: number;
  text: number;
  images: number;
  /** Thinking tokens of the answer (thoughtsTokenCount): requests with a thinkingBudget above 0. */
  thoughts?: number;
}

const IMAGE_TOKENS = 258;
export const IMAGE_OUTPUT_TOKENS = 1290;

function countParts(parts: unknown, acc: { chars: number; images: number }): void {
  if (!Array.isArray(parts)) return;
  for (const p of parts) {
    if (!isObj(p)) continue;
    if (typeof p.text === 'string') acc.chars += p.text.length;
    if (p.inlineData !== undefined || p.inline_data !== undefined) acc.images++;
    const call = p.functionCall ?? p.function_call ?? p.functionResponse ?? p.function_response;
    if (isObj(call)) acc.chars += JSON.stringify(call).length;
  }
}

function countContents(contents: unknown, acc: { chars: number; images: number }): void {
  if (Array.isArray(contents)) {
    for (const c of contents) if (isObj(c)) countParts(c.parts, acc);
  } else if (isObj(contents)) {
    countParts(contents.parts, acc);
  }
}

/**
 * ceil(chars / 4) over contents (text, function calls and results as JSON), systemInstruction
 * and function declarations, plus 258 per inline image.
 */
export function countRequestTokens(req: Obj): TokenCount {
  const acc = { chars: 0, images: 0 };
  countContents(req.contents, acc);
  const sys = req.systemInstruction ?? req.system_instruction;
  if (isObj(sys)) countParts(sys.parts, acc);
  const decls = functionDeclarations(req);
  if (decls.length > 0) acc.chars += JSON.stringify(decls).length;
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
  /** functionCall parts (after the text, in one chunk of their own) when the model calls a function. */
  calls?: FunctionCalls;
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
  const fullPrompt = lastUserText(req.contents);
  const prompt = fullPrompt.slice(0, 200);
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
  const calls = planFunctionCalls(model, req, fullPrompt);
  if (calls !== null) return { textPieces: [], image: null, calls };
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
    const results = lastFunctionResults(req.contents);
    text =
      results.length > 0
        ? `Fake answer to: ${prompt} (${describeResults(results)})`
        : `Fake answer to: ${prompt}`;
  }
  return { textPieces: splitText(text, pieces), image: null };
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
