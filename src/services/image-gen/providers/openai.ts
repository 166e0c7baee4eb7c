import { asGeneratedImage, fileName, postForm, providerFailure } from './common.ts';
import type { ImageProvider, ProviderFactory } from './types.ts';

/**
 * OpenAI image edits: multipart POST {OPENAI_BASE_URL}/images/edits with model, prompt and the
 * images as `image[]` files; the answer carries the image as data[0].b64_json.
 * The model is IMAGE_MODEL unless that names a Gemini model (the default), then gpt-image-1.
 */
export const createOpenAIProvider: ProviderFactory = ({ env, fetch: fetchImpl = fetch }): ImageProvider => {
  const apiKey = env.OPENAI_API_KEY;
  if (!apiKey) throw new Error('AI_PROVIDER=openai needs OPENAI_API_KEY');
  const model = env.IMAGE_MODEL.startsWith('gemini') ? 'gpt-image-1' : env.IMAGE_MODEL;
  const endpoint = `${env.OPENAI_BASE_URL.replace(/\/+$/, '')}/images/edits`;
  return {
    name: 'openai',
    model,
    async generateImage(images, prompt, ctx) {
      const form = new FormData();
      form.append('model', model);
      form.append('prompt', prompt);
      form.append('n', '1');
      images.forEach((img, i) => {
        form.append(
          'image[]',
          new Blob([new Uint8Array(img.bytes)], { type: img.mimeType }),
          fileName(img.mimeType, i),
        );
      });
      const res = await postForm('openai', fetchImpl, endpoint, apiKey, 'application/json', form, ctx.signal);
      let body: { data?: { b64_json?: string }[] };
      try {
        body = (await res.json()) as typeof body;
      } catch {
        throw providerFailure('openai', 'the answer is not JSON');
      }
      const b64 = body.data?.[0]?.b64_json;
      if (typeof b64 !== 'string' || b64 === '') throw providerFailure('openai', 'the answer holds no image');
      return asGeneratedImage('openai', Buffer.from(b64, 'base64'));
    },
  };
};
