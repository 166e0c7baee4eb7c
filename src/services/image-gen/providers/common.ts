import { ProviderFailed } from '../../../errors/gateway-errors.ts';
import { detectImageType } from '../../../media/image-type.ts';
import type { GeneratedImage } from './types.ts';

/** Provider HTTP calls: generation is slow, but not unbounded. */
export const PROVIDER_TIMEOUT_MS = 120_000;

export function providerFailure(provider: string, what: string): ProviderFailed {
  return new ProviderFailed(provider, what);
}

/** Checks that provider output really is an image, by magic bytes. */
export function asGeneratedImage(provider: string, bytes: Buffer): GeneratedImage {
  const type = detectImageType(bytes);
  if (!type) throw providerFailure(provider, 'the answer is not an image');
  return { bytes, mimeType: type.mimeType };
}

export function timeoutSignal(ms: number, outer?: AbortSignal): AbortSignal {
  const t = AbortSignal.timeout(ms);
  return outer ? AbortSignal.any([t, outer]) : t;
}

/** Network error or timeout of a provider call (never the error text: it may hold a URL with a key). */
export function networkFailure(provider: string, err: unknown): ProviderFailed {
  const name = (err as Error)?.name;
  if (name === 'TimeoutError') return providerFailure(provider, 'timed out');
  if (name === 'AbortError') return providerFailure(provider, 'aborted');
  return providerFailure(provider, 'network error');
}

export function fileName(mimeType: string, index: number): string {
  const ext = mimeType.split('/')[1]?.replace('jpeg', 'jpg') ?? 'bin';
  return `image-${index + 1}.${ext}`;
}

/**
 * POSTs a multipart form to a provider with its key as a Bearer token. A network failure or a
 * non-2xx answer is a ProviderFailed; the answer's body is never echoed (providers' 401s quote the key).
 */
export async function postForm(
  provider: string,
  fetchImpl: typeof fetch,
  endpoint: string,
  apiKey: string,
  accept: string,
  form: FormData,
  signal?: AbortSignal,
): Promise<Response> {
  let res: Response;
  try {
    res = await fetchImpl(endpoint, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, accept },
      body: form,
      signal: timeoutSignal(PROVIDER_TIMEOUT_MS, signal),
    });
  } catch (err) {
    throw networkFailure(provider, err);
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    throw providerFailure(provider, `answered HTTP ${res.status}`);
  }
  return res;
}
