import type { FastifyInstance } from 'fastify';
import { OPERATION_POLL_BUDGET } from '../../pool/job-budgets.ts';
import type { Pin, ResourceOwner } from '../../store/types.ts';
import {
  affinityPin,
  authorizeResource,
  callerOf,
  FILE_LIFETIME_MS,
  recordResource,
  resourceRefusal,
} from '../../upstream/affinity.ts';
import type { UnaryAnswer } from '../../upstream/forwarder.ts';
import type { AppDeps } from '../deps.ts';
import {
  answerJson,
  checkedId,
  checkedModel,
  forwardedQuery,
  keepRawJson,
  objectBody,
  sendUpstream,
  unary,
} from './job-http.ts';

/**
 * Media models and long-running operations through the pool:
 *
 * - Imagen `POST /v1beta/models/{m}:predict`: a pooled call on the model's own budget (the tier
 *   table has Imagen rows); the images come back inline (`predictions[].bytesBase64Encoded`).
 * - Veo `POST /v1beta/models/{m}:predictLongRunning`: a pooled call on the model's budget that
 *   starts an operation `models/{m}/operations/{id}`, recorded as the caller's, with the key's
 *   project (a video to extend, `instances[].video.uri`, pins it to that video's project).
 * - `GET /v1beta/models/{m}/operations/{id}` polls it with a key of its project, for its client
 *   only (another client, or an operation the gateway does not know, gets Google's 404; nothing
 *   goes upstream), on the per-project budget `operations:poll`. When it is done, every generated
 *   video (`generatedSamples[].video.uri`, a file) is recorded as the operation client's, in its
 *   project, so `GET /v1beta/files/{id}:download?alt=media` serves it (Google's URI names
 *   Google's host: the SDK's files.download takes the file id from it and asks its base URL).
 */

/** An operation not seen done within this time is forgotten (Veo takes minutes; videos live 2 days). */
export const OPERATION_OWNERSHIP_MS = 7 * 24 * 3600 * 1000;

export async function longRunningRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  keepRawJson(app);
  const config = { googleErrors: true };
  const bodyLimit = deps.env.NATIVE_MAX_BODY_SIZE;
  const pinOf = (owner: ResourceOwner): Pin | undefined =>
    deps.env.AFFINITY === 'off' ? undefined : { project: owner.project };

  for (const version of ['v1beta', 'v1']) {
    for (const method of ['predict', 'predictLongRunning'] as const) {
      app.post(
        `/${version}/models/:model(^[^/:]+)::${method}`,
        { config, bodyLimit },
        async (request, reply) => {
          const model = checkedModel((request.params as { model: string }).model, method);
          const body = objectBody(request);
          // A video to extend (instances[].video.uri) or an image file decides the project.
          const pin = await affinityPin(deps, request, body.json, { raw: body.raw });
          const answer = unary(
            await deps.forwarder.forward({
              method: 'POST',
              path: `/${version}/models/${model}:${method}`,
              search: forwardedQuery(request),
              body: body.raw,
              model,
              estimatedTokens: promptTokens(body.json),
              stream: false,
              signal: request.cancellation ?? undefined,
              deadlineMs: request.deadlineMs,
              pin,
            }),
          );
          if (method === 'predictLongRunning' && answer.status === 200 && answer.keyId !== null) {
            const name = answerJson(answer)?.name;
            if (typeof name === 'string' && name.startsWith(`models/${model}/operations/`)) {
              await recordResource(
                deps,
                name,
                answer.keyId,
                callerOf(request, deps).client,
                Date.now() + OPERATION_OWNERSHIP_MS,
              );
            }
          }
          return sendUpstream(request, reply, answer);
        },
      );
    }

    app.get(`/${version}/models/:model/operations/:id`, { config }, async (request, reply) => {
      const params = request.params as { model: string; id: string };
      const name = `models/${params.model}/operations/${params.id}`;
      checkedId(params.id, () => resourceRefusal(name));
      checkedId(params.model, () => resourceRefusal(name));
      const owner = await authorizeResource(deps, request, name);
      const answer = unary(
        await deps.forwarder.forward({
          method: 'GET',
          path: `/${version}/${name}`,
          search: forwardedQuery(request),
          model: OPERATION_POLL_BUDGET,
          estimatedTokens: 0,
          stream: false,
          signal: request.cancellation ?? undefined,
          deadlineMs: request.deadlineMs,
          pin: pinOf(owner),
        }),
      );
      if (answer.status === 200) await recordGeneratedVideos(deps, answer, owner);
      return sendUpstream(request, reply, answer);
    });
  }
}

/**
 * A done operation's videos (`generatedSamples[].video.uri`, Google's file URIs): each file is
 * recorded with the operation's owner, so the Files routes serve its download (`GET
 * /v1beta/files/{id}:download?alt=media`, what the SDK's files.download sends to its base URL)
 * with a key of the operation's project, to its client only. The answer is passed on as Google
 * sent it.
 */
async function recordGeneratedVideos(
  deps: AppDeps,
  answer: UnaryAnswer,
  owner: ResourceOwner,
): Promise<void> {
  const json = answerJson(answer);
  if (json?.done !== true) return;
  const samples = (json.response as { generateVideoResponse?: { generatedSamples?: unknown } } | undefined)
    ?.generateVideoResponse?.generatedSamples;
  if (!Array.isArray(samples)) return;
  const files = new Set<string>();
  for (const sample of samples) {
    const uri = (sample as { video?: { uri?: unknown } } | null)?.video?.uri;
    const file = typeof uri === 'string' ? generatedFileName(uri) : null;
    if (file !== null) files.add(file);
  }
  for (const name of files) {
    await deps.store
      .putResource({ name, owner: { ...owner }, expiresAtMs: Date.now() + FILE_LIFETIME_MS })
      .catch(() => {});
  }
}

/** `files/abc` for a generated file's URI (`https://…/v1beta/files/abc:download?alt=media`), else null. */
export function generatedFileName(uri: string): string | null {
  let path: string;
  try {
    path = new URL(uri).pathname;
  } catch {
    return null;
  }
  const m = /\/v1(?:alpha|beta)?\/files\/([A-Za-z0-9][A-Za-z0-9_-]{0,127})(?::download)?$/.exec(path);
  return m ? `files/${m[1]}` : null;
}

/** A quarter token per character of the prompts (`instances[].prompt`); media models bill per image or video. */
function promptTokens(body: Record<string, unknown>): number {
  const instances = Array.isArray(body.instances) ? body.instances : [];
  let chars = 0;
  for (const i of instances) {
    const prompt = (i as { prompt?: unknown } | null)?.prompt;
    if (typeof prompt === 'string') chars += prompt.length;
  }
  return Math.ceil(chars / 4);
}
