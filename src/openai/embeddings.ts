/** OpenAI embeddings request → Gemini batchEmbedContents, and Gemini's answer → OpenAI's list. */
import type { Part } from '../upstream/gemini-types.ts';
import { invalidParam, OpenAiError } from './errors.ts';
import { isObj } from './json.ts';
import { embeddingsRequestSchema, normalizeModel, parseRequest } from './request-schema.ts';

export interface GeminiEmbedCall {
  model: string;
  /** batchEmbedContents body. */
  request: { requests: Array<{ model: string; content: { parts: Part[] }; outputDimensionality?: number }> };
  encoding: 'float' | 'base64';
  inputs: string[];
}

/** An OpenAI embeddings request → a Gemini batchEmbedContents request. */
export function openAiEmbeddingsToGemini(raw: unknown): GeminiEmbedCall {
  const req = parseRequest(embeddingsRequestSchema, raw);
  const model = normalizeModel(req.model);
  const inputs = typeof req.input === 'string' ? [req.input] : req.input;
  const texts = inputs.map((v, i) => {
    if (typeof v === 'string') return v;
    throw invalidParam(
      `input[${i}]`,
      'token arrays are not supported; send strings',
      typeof v === 'number' || Array.isArray(v) ? 'unsupported_input' : null,
    );
  });
  const requests = texts.map((text) => {
    const r: GeminiEmbedCall['request']['requests'][number] = {
      model: `models/${model}`,
      content: { parts: [{ text }] },
    };
    if (req.dimensions != null) r.outputDimensionality = req.dimensions;
    return r;
  });
  return { model, request: { requests }, encoding: req.encoding_format ?? 'float', inputs: texts };
}

export interface EmbeddingsResponse {
  object: 'list';
  data: Array<{ object: 'embedding'; index: number; embedding: number[] | string }>;
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/** Float32 little-endian bytes in base64: what OpenAI sends for encoding_format "base64". */
export function embeddingToBase64(values: readonly number[]): string {
  const f = Float32Array.from(values);
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString('base64');
}

/**
 * Gemini's batchEmbedContents answer → OpenAI's list. Gemini reports no token usage for
 * embeddings: `promptTokens` is the caller's estimate.
 */
export function geminiEmbeddingsToOpenAi(
  res: unknown,
  model: string,
  encoding: 'float' | 'base64',
  promptTokens: number,
  expected?: number,
): EmbeddingsResponse {
  const list = isObj(res) && Array.isArray(res.embeddings) ? res.embeddings : undefined;
  if (!list || (expected !== undefined && list.length !== expected))
    throw new OpenAiError(502, 'the upstream embeddings answer is malformed', {
      code: 'bad_upstream_response',
    });
  const data = list.map((e, index) => {
    const values = isObj(e) && Array.isArray(e.values) ? (e.values as number[]) : [];
    return {
      object: 'embedding' as const,
      index,
      embedding: encoding === 'base64' ? embeddingToBase64(values) : values,
    };
  });
  return { object: 'list', data, model, usage: { prompt_tokens: promptTokens, total_tokens: promptTokens } };
}
