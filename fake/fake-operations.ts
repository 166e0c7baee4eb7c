/**
 * The fake's media models, as Google serves them through the Gemini API:
 *
 * - Imagen: `POST /v1beta/models/imagen-…:predict` with `{instances: [{prompt}], parameters:
 *   {sampleCount?}}` answers at once `{predictions: [{mimeType: "image/png", bytesBase64Encoded}]}`.
 * - Veo: `POST /v1beta/models/veo-…:predictLongRunning` answers a long-running operation
 *   `{name: "models/veo-…/operations/<id>"}`; `GET /v1beta/models/veo-…/operations/<id>` polls it,
 *   and after `pollsToFinish` polls it is `done` with `response.generateVideoResponse.
 *   generatedSamples[].video.uri`, a generated file of the operation's project, named as Google
 *   names it (`https://generativelanguage.googleapis.com/v1beta/files/<id>:download?alt=media`,
 *   downloadable from this fake at the same path: fake-files.ts).
 *
 * An operation belongs to the project of the key that started it: another project's key gets
 * 403 PERMISSION_DENIED (counted in stats.permissionDenied).
 */
import { randomBytes } from 'node:crypto';
import type { FakeFileStore } from './fake-file-store.ts';
import { fakePngBase64 } from './fake-gemini-content.ts';
import { errModelNotFound } from './fake-gemini-errors.ts';
import {
  errInvalid,
  errNotFound,
  type FakeRequestContext,
  type FakeSurface,
  isObject,
} from './fake-surface.ts';

export interface FakeOperationOptions {
  /** Polls (GET by the owning project) after which a video operation is done; default 2. */
  pollsToFinish?: number;
}

interface VideoOperation {
  name: string;
  project: string;
  model: string;
  prompt: string;
  samples: number;
  polls: number;
  /** Generated files, once done. */
  videos: string[] | null;
}

const ROUTE = /^\/(v1beta|v1)\/models\/([^/:]+)(?::(predict|predictLongRunning)|\/operations\/([^/:]+))$/;
const IMAGE_MODEL = /^imagen-/;
/** Where Google's generated-file URIs point, whatever host the API was called on. */
export const GOOGLE_ORIGIN = 'https://generativelanguage.googleapis.com';
const VIDEO_MODEL = /^veo-/;

export function fakeOperations(files: FakeFileStore, options: FakeOperationOptions = {}): FakeSurface {
  const operations = new Map<string, VideoOperation>();
  const pollsToFinish = Math.max(1, options.pollsToFinish ?? 2);

  function predict(ctx: FakeRequestContext, version: string, model: string) {
    if (!IMAGE_MODEL.test(model)) return ctx.sendError(errModelNotFound(model, version, 'predict'));
    const instances = isObject(ctx.body) ? ctx.body.instances : undefined;
    if (!Array.isArray(instances) || instances.length === 0 || !isObject(instances[0]))
      return ctx.sendError(errInvalid('* instances: instances is not specified\n'));
    const parameters = isObject(ctx.body) && isObject(ctx.body.parameters) ? ctx.body.parameters : {};
    const count = Math.min(4, Math.max(1, Number(parameters.sampleCount ?? 1) || 1));
    const image = fakePngBase64();
    const predictions = Array.from({ length: count }, () => ({
      mimeType: 'image/png',
      bytesBase64Encoded: image,
    }));
    ctx.send(200, JSON.stringify({ predictions }));
  }

  function start(ctx: FakeRequestContext, version: string, model: string) {
    if (!VIDEO_MODEL.test(model))
      return ctx.sendError(errModelNotFound(model, version, 'predictLongRunning'));
    const instances = isObject(ctx.body) ? ctx.body.instances : undefined;
    const first = Array.isArray(instances) ? instances[0] : undefined;
    if (!isObject(first)) return ctx.sendError(errInvalid('* instances: instances is not specified\n'));
    // A video to extend must be one the caller's project generated.
    const source = isObject(first.video) ? first.video.uri : undefined;
    if (typeof source === 'string') {
      const id = /files\/([a-z0-9-]+)/.exec(source)?.[1];
      const file = id === undefined ? undefined : files.get(`files/${id}`);
      if (file === undefined || file.project !== ctx.project) return ctx.denyPermission('File', id ?? source);
    }
    const parameters = isObject(ctx.body) && isObject(ctx.body.parameters) ? ctx.body.parameters : {};
    const name = `models/${model}/operations/${operationId()}`;
    operations.set(name, {
      name,
      project: ctx.project,
      model,
      prompt: typeof first.prompt === 'string' ? first.prompt : '',
      samples: Math.min(
        4,
        Math.max(1, Number(parameters.sampleCount ?? parameters.numberOfVideos ?? 1) || 1),
      ),
      polls: 0,
      videos: null,
    });
    ctx.send(200, JSON.stringify({ name }));
  }

  function poll(ctx: FakeRequestContext, model: string, id: string) {
    const op = operations.get(`models/${model}/operations/${id}`);
    if (op === undefined) return ctx.sendError(errNotFound());
    if (op.project !== ctx.project) return ctx.denyPermission('Operation', id);
    op.polls += 1;
    if (op.videos === null && op.polls >= pollsToFinish) {
      op.videos = Array.from({ length: op.samples }, (_, i) => {
        const file = files.add({
          project: op.project,
          mimeType: 'video/mp4',
          bytes: fakeMp4(`${op.prompt} #${i}`),
          source: 'GENERATED',
        });
        return file.name;
      });
    }
    if (op.videos === null) return ctx.send(200, JSON.stringify({ name: op.name }));
    // Google's URI names its own host; the SDK downloads by the file id through its base URL.
    const generatedSamples = op.videos.map((f) => ({
      video: { uri: `${GOOGLE_ORIGIN}/v1beta/${f}:download?alt=media` },
    }));
    ctx.send(
      200,
      JSON.stringify({
        name: op.name,
        done: true,
        response: {
          '@type': 'type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse',
          generateVideoResponse: { generatedSamples },
        },
      }),
    );
  }

  return {
    matches: (method, path) => {
      const m = ROUTE.exec(path);
      if (m === null) return false;
      return m[3] !== undefined ? method === 'POST' : method === 'GET';
    },
    handle(ctx) {
      const [, version, model, action, id] = ROUTE.exec(ctx.path)!;
      if (id !== undefined) return poll(ctx, model!, id);
      if (ctx.bodyInvalid || !isObject(ctx.body))
        return ctx.sendError(errInvalid('Invalid JSON payload received.'));
      if (action === 'predict') return predict(ctx, version!, model!);
      return start(ctx, version!, model!);
    },
    reset: () => operations.clear(),
  };
}

function operationId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let id = '';
  for (const b of randomBytes(12)) id += alphabet[b % alphabet.length];
  return id;
}

/** A few bytes that start like an MP4 file (an `ftyp` box), then the prompt. */
export function fakeMp4(text: string): Buffer {
  const ftyp = Buffer.from([0, 0, 0, 0x18, 0x66, 0x74, 0x79, 0x70, 0x69, 0x73, 0x6f, 0x6d, 0, 0, 2, 0]);
  return Buffer.concat([ftyp, Buffer.from('isomiso2mp41'), Buffer.from(text, 'utf8')]);
}
