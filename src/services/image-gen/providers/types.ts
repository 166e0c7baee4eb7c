import type { Env } from '../../../config/env.ts';
import type { GeminiCaller } from '../../../upstream/gemini-caller.ts';

/** An input image, already fetched and checked (magic bytes). */
export interface InputImage {
  bytes: Buffer;
  mimeType: string;
}

export interface GeneratedImage {
  bytes: Buffer;
  mimeType: string;
}

export interface GenerateContext {
  requestId: string;
  signal?: AbortSignal;
}

/**
 * One image generation backend. `images` are in order: [person, garment/catalog].
 * Failures are thrown as domain errors (ProviderFailed for a provider failure); `detail` must never contain
 * a key or a provider's raw error body.
 */
export interface ImageProvider {
  readonly name: string;
  /** The model (or endpoint) used, for logs. */
  readonly model: string;
  generateImage(images: InputImage[], prompt: string, ctx: GenerateContext): Promise<GeneratedImage>;
}

export interface ProviderDeps {
  env: Env;
  gemini: GeminiCaller;
  /** Default: global fetch. Tests may inject one. */
  fetch?: typeof fetch;
}

export type ProviderFactory = (deps: ProviderDeps) => ImageProvider;
