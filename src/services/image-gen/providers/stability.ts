import { asGeneratedImage, fileName, networkFailure, postForm, providerFailure } from './common.ts';
import type { ImageProvider, ProviderFactory } from './types.ts';

export const STABILITY_PATH = '/v2beta/stable-image/control/style-transfer';

/**
 * Stability AI "Control: Style Transfer" (the one Stable Image endpoint that takes two images):
 * multipart POST {STABILITY_BASE_URL}/v2beta/stable-image/control/style-transfer with
 * init_image = the person, style_image = the garment/catalog image, the prompt and
 * output_format=png; `accept: image/*` makes it answer with the image bytes.
 */
export const createStabilityProvider: ProviderFactory = ({
  env,
  fetch: fetchImpl = fetch,
}): ImageProvider => {
  const apiKey = env.STABILITY_API_KEY;
  if (!apiKey) throw new Error('AI_PROVIDER=stability needs STABILITY_API_KEY');
  const endpoint = `${env.STABILITY_BASE_URL.replace(/\/+$/, '')}${STABILITY_PATH}`;
  return {
    name: 'stability',
    model: 'stable-image/control/style-transfer',
    async generateImage(images, prompt, ctx) {
      const [person, garment] = images;
      if (!person || !garment) throw providerFailure('stability', 'needs two images');
      const form = new FormData();
      form.append(
        'init_image',
        new Blob([new Uint8Array(person.bytes)], { type: person.mimeType }),
        fileName(person.mimeType, 0),
      );
      form.append(
        'style_image',
        new Blob([new Uint8Array(garment.bytes)], { type: garment.mimeType }),
        fileName(garment.mimeType, 1),
      );
      form.append('prompt', prompt);
      form.append('output_format', 'png');
      const res = await postForm('stability', fetchImpl, endpoint, apiKey, 'image/*', form, ctx.signal);
      if (res.headers.get('finish-reason') === 'CONTENT_FILTERED') {
        await res.body?.cancel().catch(() => {});
        throw providerFailure('stability', 'the result was content-filtered');
      }
      if (!(res.headers.get('content-type') ?? '').startsWith('image/')) {
        await res.body?.cancel().catch(() => {});
        throw providerFailure('stability', 'the answer holds no image');
      }
      let bytes: Buffer;
      try {
        bytes = Buffer.from(await res.arrayBuffer());
      } catch (err) {
        throw networkFailure('stability', err);
      }
      return asGeneratedImage('stability', bytes);
    },
  };
};
