import type { Logger } from 'pino';
import type { Env } from '../../config/env.ts';
import {
  GatewayError,
  InternalFailure,
  PermissionDenied,
  Unauthenticated,
} from '../../errors/gateway-errors.ts';
import { type FetchedImage, type Resolver, SafeFetchError, safeFetchImage } from '../../net/safe-fetch.ts';
import type { StateStore } from '../../store/types.ts';
import type { GeminiCaller } from '../../upstream/gemini-caller.ts';
import { type AccountBackend, createAccountBackend, type UsageWebhook } from './backend.ts';
import { createMediaStore, type MediaStore } from './media-store.ts';
import { buildPrompt } from './prompt.ts';
import { createImageProvider } from './providers/registry.ts';
import type { ImageProvider } from './providers/types.ts';
import type { CreateImageBody } from './schema.ts';
import { enforceThrottle, FailedAttempts } from './throttle.ts';

/**
 * The try-on flow: verify the user, check credits, fetch both images safely, generate, store.
 * The usage webhook is not sent here: run() returns it, and the route sends it once the answer
 * is out (so it never delays the answer).
 */

export interface ImageGenDeps {
  env: Env;
  gemini: GeminiCaller;
  store: StateStore;
  logger: Logger;
  /** Overrides for tests. */
  backend?: AccountBackend;
  provider?: ImageProvider;
  media?: MediaStore;
  resolver?: Resolver;
}

export interface RunContext {
  requestId: string;
  signal?: AbortSignal;
  /**
   * Runs once the user is verified, before credits and work (the per-user throttle: only an
   * authenticated request counts against its user). What it throws ends the run without a usage
   * report.
   */
  onVerified?: () => Promise<void>;
}

export interface RunSuccess {
  ok: true;
  imageUrl: string;
  latencyMs: number;
  webhook?: UsageWebhook;
}
export interface RunFailure {
  ok: false;
  error: GatewayError;
  /** Operator-only detail for the log line (e.g. which address was refused). */
  internal?: string;
  latencyMs: number;
  webhook?: UsageWebhook;
}
export type RunResult = RunSuccess | RunFailure;

export interface ImageGenService {
  readonly provider: ImageProvider;
  readonly backend: AccountBackend;
  readonly media: MediaStore;
  /** RateLimited when the (authenticated) user is over THROTTLE_RPM. */
  throttle(userId: string): Promise<void>;
  /** Failed attempts (invalid body, wrong user_id/api_key) per client IP, also THROTTLE_RPM. */
  readonly failedAttempts: FailedAttempts;
  run(body: CreateImageBody, ctx: RunContext): Promise<RunResult>;
}

export function createImageGenService(deps: ImageGenDeps): ImageGenService {
  const { env } = deps;
  const provider = deps.provider ?? createImageProvider(env.AI_PROVIDER, { env, gemini: deps.gemini });
  const backend = deps.backend ?? createAccountBackend(env, deps.logger);
  const media = deps.media ?? createMediaStore(env.MEDIA_DIR);

  async function fetchBoth(
    body: CreateImageBody,
    signal?: AbortSignal,
  ): Promise<[FetchedImage, FetchedImage]> {
    const both = new AbortController();
    const combined = signal ? AbortSignal.any([both.signal, signal]) : both.signal;
    const fetchOne = (field: 'user_image_url' | 'catalog_image_url') =>
      safeFetchImage(body[field], {
        allowHosts: env.IMAGE_FETCH_ALLOW_HOSTS,
        maxBytes: env.IMAGE_FETCH_MAX_BYTES,
        timeoutMs: env.IMAGE_FETCH_TIMEOUT_MS,
        resolver: deps.resolver,
        signal: combined,
      }).catch((err: unknown) => {
        both.abort();
        if (err instanceof SafeFetchError) throw new LabelledFetchError(field, err);
        throw err;
      });
    // allSettled so the first failure reported is deterministic (user image first)
    const [a, b] = await Promise.allSettled([fetchOne('user_image_url'), fetchOne('catalog_image_url')]);
    for (const r of [a, b]) {
      if (r.status === 'rejected' && r.reason instanceof LabelledFetchError) throw r.reason;
    }
    if (a.status === 'rejected') throw a.reason;
    if (b.status === 'rejected') throw b.reason;
    return [a.value, b.value];
  }

  return {
    provider,
    backend,
    media,
    throttle: (userId) => enforceThrottle(deps.store, env.THROTTLE_RPM, userId),
    failedAttempts: new FailedAttempts(deps.store, env.THROTTLE_RPM),
    async run(body, ctx) {
      const t0 = performance.now();
      const elapsed = () => Math.round((performance.now() - t0) * 10) / 10;
      let verified = false;
      try {
        if (!(await backend.verifyUser(body.user_id, body.api_key, ctx.signal)))
          throw new Unauthenticated('invalid user_id or api_key');
        await ctx.onVerified?.();
        const credits = await backend.checkCredits(body.user_id, ctx.signal);
        if (!credits.hasCredits) throw new PermissionDenied('no credits left');
        verified = true;

        const [person, garment] = await fetchBoth(body, ctx.signal);
        const generated = await provider.generateImage(
          [
            { bytes: person.bytes, mimeType: person.mimeType },
            { bytes: garment.bytes, mimeType: garment.mimeType },
          ],
          buildPrompt(body.prompt),
          ctx,
        );
        const stored = await media.save(generated.bytes);
        const latencyMs = elapsed();
        return {
          ok: true,
          imageUrl: stored.url,
          latencyMs,
          webhook: webhookFor(body, 'success', stored.url, latencyMs, provider.name),
        };
      } catch (err) {
        const latencyMs = elapsed();
        const error = asGatewayError(err);
        const internal =
          err instanceof LabelledFetchError
            ? `${err.field}: ${err.fetchError.internal}`
            : err instanceof GatewayError
              ? undefined
              : errSummary(err);
        return {
          ok: false,
          error,
          internal,
          latencyMs,
          webhook: verified
            ? webhookFor(body, 'failed', null, latencyMs, provider.name, error.detail)
            : undefined,
        };
      }
    },
  };
}

/** A refused fetch, its detail prefixed with the body field whose URL it was. */
class LabelledFetchError extends GatewayError {
  readonly field: string;
  readonly fetchError: SafeFetchError;
  constructor(field: string, cause: SafeFetchError) {
    super(cause.kind, `${field}: ${cause.detail}`);
    this.field = field;
    this.fetchError = cause;
  }
}

function asGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new InternalFailure('image generation failed');
}

function errSummary(err: unknown): string {
  const e = err as { name?: string; code?: string; message?: string };
  return `${e?.name ?? 'Error'}${e?.code ? ` ${e.code}` : ''}`;
}

function webhookFor(
  body: CreateImageBody,
  status: 'success' | 'failed',
  imageUrl: string | null,
  latencyMs: number,
  provider: string,
  error?: string,
): UsageWebhook {
  return {
    user_id: body.user_id,
    catalog_id: body.catalog_id,
    status,
    image_url: imageUrl,
    latency_ms: latencyMs,
    provider,
    ...(error ? { error } : {}),
  };
}
