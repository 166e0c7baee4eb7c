import { z } from 'zod';
import type { Env } from '../../config/env.ts';
import {
  InvalidArgument,
  InvalidInput,
  PayloadTooLarge,
  UnsupportedMediaType,
} from '../../errors/gateway-errors.ts';
import { detectImageType, type ImageType } from '../../media/image-type.ts';
import type { CallContext, GeminiCaller } from '../../upstream/gemini-caller.ts';
import type { GenerateContentRequest } from '../../upstream/gemini-types.ts';
import { generateStructured, generateText, resolveModel, type TokenUsage } from '../generate/gemini.ts';
import { refuseInjection } from '../text/injection.ts';
import { buildTranslateRequest } from './prompt.ts';

export const DEFAULT_TARGET_LANGUAGE = 'Vietnamese';

/** A language name or tag: "Vietnamese", "Brazilian Portuguese", "zh-Hant", "Español (México)". */
const LANGUAGE_RE = /^[\p{L}\p{M}][\p{L}\p{M} ()'.,_-]{0,39}$/u;

/** The form fields besides the image (multipart text fields). */
export interface TranslateFields {
  target_language?: string;
  source_language?: string;
  model?: string;
  format?: string;
}

export interface PreparedTranslate {
  model: string;
  targetLanguage: string;
  sourceLanguage?: string;
  format: 'text' | 'blocks';
  imageType: ImageType;
  request: GenerateContentRequest;
  /** Normalized request for the cache key (the image bytes are hashed separately). */
  cacheKeyInput: Record<string, unknown>;
}

export interface TranslationBlock {
  original: string;
  translated: string;
}

/** What is cached; the route adds cached and request_id. */
export interface TranslateResult {
  translated_text: string;
  target_language: string;
  source_language: string | null;
  model: string;
  format: 'text' | 'blocks';
  usage: TokenUsage;
  blocks?: TranslationBlock[];
}

export const blocksAnswer = z.object({
  blocks: z.array(z.object({ original: z.string(), translated: z.string() })),
});

function language(field: string, raw: string | undefined): string | undefined {
  const value = raw?.trim().replace(/\s+/g, ' ');
  if (!value) return undefined;
  if (!LANGUAGE_RE.test(value))
    throw new InvalidInput(
      `${field} must be a language name or tag such as Vietnamese or pt-BR (at most 40 characters)`,
    );
  refuseInjection(field, value);
  return value;
}

/**
 * Validates the upload by content (magic bytes → UnsupportedMediaType, MAX_UPLOAD_SIZE →
 * PayloadTooLarge) and the fields (InvalidInput), and builds the Gemini request. Nothing invalid gets past this point.
 */
export function prepareTranslate(image: Buffer, fields: TranslateFields, env: Env): PreparedTranslate {
  if (image.length === 0) throw new InvalidArgument('the uploaded file is empty');
  if (image.length > env.MAX_UPLOAD_SIZE)
    throw new PayloadTooLarge(`the image is ${image.length} bytes; the limit is ${env.MAX_UPLOAD_SIZE}`);
  const imageType = detectImageType(image);
  if (!imageType)
    throw new UnsupportedMediaType(
      'the file is not a supported image (PNG, JPEG, WebP, GIF or HEIC, judged by its content)',
    );
  const format = fields.format?.trim() || 'text';
  if (format !== 'text' && format !== 'blocks') throw new InvalidInput('format must be text or blocks');
  const targetLanguage = language('target_language', fields.target_language) ?? DEFAULT_TARGET_LANGUAGE;
  const sourceLanguage = language('source_language', fields.source_language);
  const model = resolveModel(fields.model, env.GEMINI_MODEL);
  return {
    model,
    targetLanguage,
    sourceLanguage,
    format,
    imageType,
    request: buildTranslateRequest({
      image: { mimeType: imageType.mimeType, data: image },
      targetLanguage,
      sourceLanguage,
      format,
    }),
    cacheKeyInput: { target_language: targetLanguage, source_language: sourceLanguage, format },
  };
}

export async function runTranslate(
  gemini: GeminiCaller,
  p: PreparedTranslate,
  ctx: CallContext,
  log?: { warn(obj: object, msg: string): void },
): Promise<TranslateResult> {
  const base = {
    target_language: p.targetLanguage,
    source_language: p.sourceLanguage ?? null,
    model: p.model,
    format: p.format,
  };
  if (p.format === 'blocks') {
    const { data, usage } = await generateStructured(gemini, p.model, p.request, blocksAnswer, ctx, log);
    const blocks = data.blocks.map((b) => ({ original: b.original, translated: b.translated }));
    return { ...base, translated_text: blocks.map((b) => b.translated).join('\n\n'), usage, blocks };
  }
  const { text, usage } = await generateText(gemini, p.model, p.request, ctx, { allowEmpty: true });
  return { ...base, translated_text: text.trim(), usage };
}
