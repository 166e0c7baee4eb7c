import {
  GatewayError,
  PoolExhausted,
  ProviderFailed,
  RateLimited,
  UpstreamRejected,
} from '../../../errors/gateway-errors.ts';
import type {
  GenerateContentRequest,
  GenerateContentResponse,
  Part,
} from '../../../upstream/gemini-types.ts';
import { asGeneratedImage, providerFailure } from './common.ts';
import type { ImageProvider, ProviderFactory } from './types.ts';

/**
 * Gemini image model (IMAGE_MODEL, default gemini-2.5-flash-image) through the gateway's own
 * key pool (deps.gemini): both images inline (base64), then the prompt; IMAGE output only.
 */
export const createGeminiProvider: ProviderFactory = ({ env, gemini }): ImageProvider => {
  const model = env.IMAGE_MODEL;
  return {
    name: 'gemini',
    model,
    async generateImage(images, prompt, ctx) {
      const request: GenerateContentRequest = {
        contents: [
          {
            role: 'user',
            parts: [
              ...images.map((img) => ({
                inlineData: { mimeType: img.mimeType, data: img.bytes.toString('base64') },
              })),
              { text: prompt },
            ],
          },
        ],
        generationConfig: { responseModalities: ['IMAGE'] },
      };
      let res: GenerateContentResponse;
      try {
        res = await gemini.generateContent(model, request, { requestId: ctx.requestId, signal: ctx.signal });
      } catch (err) {
        // The pool being exhausted is not a provider failure: keep it and its retry time.
        if (isOutOfCapacity(err)) throw err;
        if (err instanceof GatewayError) throw new ProviderFailed('gemini', err);
        throw providerFailure('gemini', 'error calling the model');
      }
      const image = extractImage(res);
      if (!image) {
        const reason = res.candidates?.[0]?.finishReason;
        throw providerFailure(
          'gemini',
          `the model returned no image${reason ? ` (finishReason ${reason})` : ''}`,
        );
      }
      return asGeneratedImage('gemini', image);
    },
  };
};

/** The first image part of the first candidate (inlineData or inline_data), skipping thought images. */
export function extractImage(res: GenerateContentResponse): Buffer | null {
  const parts: Part[] = res.candidates?.[0]?.content?.parts ?? [];
  const images: { data: string; thought: boolean }[] = [];
  for (const part of parts) {
    const inline = (part.inlineData ?? part.inline_data) as Record<string, unknown> | undefined;
    if (!inline || typeof inline.data !== 'string' || inline.data === '') continue;
    const mime = String(inline.mimeType ?? inline.mime_type ?? '');
    if (mime && !mime.startsWith('image/')) continue;
    images.push({ data: inline.data, thought: part.thought === true });
  }
  const chosen = images.find((i) => !i.thought) ?? images[0];
  return chosen ? Buffer.from(chosen.data, 'base64') : null;
}

/** Out of capacity: every pool key at its limit, a caller's limit, or Google's own 429. */
function isOutOfCapacity(err: unknown): boolean {
  return (
    err instanceof PoolExhausted ||
    err instanceof RateLimited ||
    (err instanceof UpstreamRejected && err.upstreamStatus === 429)
  );
}
