/**
 * A fast, faithful fake of Google's Gemini API (generativelanguage.googleapis.com) for tests,
 * the benchmark and the demo. Plain node:http, keep-alive, precomputed buffers where possible.
 *
 * This module assembles it: the options, the routing table and startFakeGemini. Each concern is
 * a sibling module: the request (fake-gemini-request), keys (-keys), scripted failures
 * (-scripts), replies after the latency (-reply), stats (-stats), models.list/get (-models), the
 * actions (-generate, -stream, -response, -tokens, -embed, with what they share in -action),
 * and the stateful surfaces (fake-surfaces.ts) and Live API (fake-live.ts).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { FakeFileStore } from './fake-file-store.ts';
import { type ActionContext, actionContext, type ModelCall } from './fake-gemini-action.ts';
import { MODELS_BY_NAME } from './fake-gemini-content.ts';
import { batchEmbedContents, embedContent } from './fake-gemini-embed.ts';
import {
  ERR_BILLING,
  ERR_INVALID_JSON,
  ERR_LOCATION,
  ERR_METHOD_NOT_FOUND,
  errModelNotFound,
} from './fake-gemini-errors.ts';
import { generateContent } from './fake-gemini-generate.ts';
import { FakeKeyring, type FakeKeyState } from './fake-gemini-keys.ts';
import { type FakeLimits, LimitTracker } from './fake-gemini-limits.ts';
import { modelBody, modelsPage } from './fake-gemini-models.ts';
import { FakeReplier } from './fake-gemini-reply.ts';
import { type ReadRequest, readRequest } from './fake-gemini-request.ts';
import { answerScripted, type FakeFailure, FakeScripts, type ScriptOptions } from './fake-gemini-scripts.ts';
import { type FakeGeminiStats, FakeStatsRecorder } from './fake-gemini-stats.ts';
import { streamWriter } from './fake-gemini-stream.ts';
import { countTokens, tokenBiller } from './fake-gemini-tokens.ts';
import { createFakeLive, type FakeLiveControl } from './fake-live.ts';
import { errPermissionDenied, type FakeRequestContext, type FakeSurface, isObject } from './fake-surface.ts';
import { fakeSurfaces } from './fake-surfaces.ts';

export { embedText, FAKE_MODELS, fakePng, fakePngBase64, sampleFromSchema } from './fake-gemini-content.ts';
export { maskSecret } from './fake-gemini-errors.ts';
export type { FakeKeyState } from './fake-gemini-keys.ts';
export { QUOTA_IDS } from './fake-gemini-limits.ts';
export type { FakeFailure, ScriptOptions } from './fake-gemini-scripts.ts';
export type { FakeGeminiStats, RecordedRequest } from './fake-gemini-stats.ts';

export interface FakeGeminiOptions {
  host?: string;
  port?: number;
  keys?: Array<{ apiKey: string; project?: string }>;
  acceptAnyKey?: boolean;
  limits?: FakeLimits;
  /** Per-model quotas (per project, as Google counts them); `limits` serve the other models. */
  modelLimits?: Record<string, FakeLimits>;
  latencyMs?: number;
  chunkDelayMs?: number;
  streamChunks?: number;
  /**
   * Google's tokenizer is not the gateway's estimate: text tokens billed (usageMetadata, limits,
   * countTokens) are the fake's count times this (default 1). Tests use it to make the estimate
   * and the bill differ.
   */
  textTokenRatio?: number;
  /**
   * The largest page models.list returns (Google: `pageSize` defaults to 50 and is capped at
   * 1000; the answer carries `nextPageToken` while models remain). Tests lower it to page.
   */
  maxPageSize?: number;
  /**
   * Google refuses the caller's location (the egress IP's country): every request with a
   * working key answers 400 FAILED_PRECONDITION "User location is not supported for the API
   * use.". See setEgressRefused.
   */
  egressRefused?: boolean;
  now?: () => number;
  /** How long an uploaded file stays PROCESSING before it is ACTIVE (default 0). */
  fileProcessingMs?: number;
  /** Batches and long-running operations: how many polls until they are done (default 2). */
  jobs?: { pollsToFinish?: number };
  /** Concurrent Live API sessions per project (more: closed 1011); default none. */
  liveSessionsPerProject?: number;
}

export interface FakeGemini {
  readonly url: string;
  close(): Promise<void>;
  addKey(apiKey: string, project?: string): void;
  setKeyState(apiKey: string, state: FakeKeyState): void;
  /** Refuse (or accept again) the caller's location, for every key (see egressRefused). */
  setEgressRefused(refused: boolean): void;
  script(failure: FakeFailure, opts?: ScriptOptions): void;
  setLatency(ms: number): void;
  readonly stats: FakeGeminiStats;
  resetStats(): void;
  /** The stateful surfaces (batches, operations, ...: fake-surfaces.ts). */
  readonly surfaces: readonly FakeSurface[];
  /** The files every surface shares (uploads, generated videos, batch results), by project. */
  readonly files: FakeFileStore;
  /** The Live API's WebSocket sessions (fake-live.ts). */
  readonly live: FakeLiveControl;
}

// ---------------------------------------------------------------------------------------------
// The routing table: models.list, models.get and each model action. Any other path is asked of
// the stateful surfaces (fake-surfaces.ts), then answered 404.

/** The actions of /{version}/models/{model}:{action}, and who serves each. */
const ACTIONS = {
  generateContent: (ctx, call) => generateContent(ctx, call, false),
  streamGenerateContent: (ctx, call) => generateContent(ctx, call, true),
  countTokens,
  embedContent,
  batchEmbedContents,
} satisfies Record<string, (ctx: ActionContext, call: ModelCall) => void>;

type Action = keyof typeof ACTIONS;

type Route =
  | { kind: 'list' }
  | { kind: 'get'; model: string; version: string }
  | { kind: 'action'; model: string; version: string; action: Action };

function isAction(name: string): name is Action {
  return Object.hasOwn(ACTIONS, name);
}

function parseRoute(method: string, path: string): Route | null {
  let rest: string;
  let version: string;
  if (path.startsWith('/v1beta/')) {
    version = 'v1beta';
    rest = path.slice(8);
  } else if (path.startsWith('/v1/')) {
    version = 'v1';
    rest = path.slice(4);
  } else return null;
  if (rest === 'models' || rest === 'models/') return method === 'GET' ? { kind: 'list' } : null;
  if (!rest.startsWith('models/')) return null;
  const name = rest.slice(7);
  const colon = name.lastIndexOf(':');
  if (colon < 0) {
    if (method !== 'GET' || name === '' || name.includes('/')) return null;
    return { kind: 'get', model: name, version };
  }
  const action = name.slice(colon + 1);
  const model = name.slice(0, colon);
  if (method !== 'POST' || !isAction(action) || model === '' || model.includes('/')) return null;
  return { kind: 'action', model, version, action };
}

const EMPTY_OBJECT = Object.freeze({});

export async function startFakeGemini(opts: FakeGeminiOptions = {}): Promise<FakeGemini> {
  const keyring = new FakeKeyring(opts.keys ?? [], opts.acceptAnyKey ?? opts.keys === undefined);
  const limits = new LimitTracker({ ...opts.limits }, opts.now ?? Date.now, { ...opts.modelLimits });
  const chunkDelayMs = Math.max(0, opts.chunkDelayMs ?? 0);
  const streamChunks = Math.max(1, Math.floor(opts.streamChunks ?? 3));
  const maxPageSize = Math.max(1, opts.maxPageSize ?? 1000);
  let egressRefused = opts.egressRefused ?? false;
  const scripts = new FakeScripts();
  const sockets = new Set<Socket>();
  let closed = false;
  const files = new FakeFileStore();
  const surfaces = fakeSurfaces(opts, files);
  const recorder = new FakeStatsRecorder();
  const reply = new FakeReplier(Math.max(0, opts.latencyMs ?? 0), (status) => recorder.countStatus(status));
  const actions = actionContext({
    reply,
    stream: streamWriter(reply, chunkDelayMs),
    streamChunks,
    billedTokens: tokenBiller(opts.textTokenRatio ?? 1),
    recorder,
    limits,
    surfaces,
  });

  function handle(req: IncomingMessage, res: ServerResponse, raw: Buffer | null) {
    const request = readRequest(req, raw);
    const { method, path, apiKey } = request;
    const headers = req.headers as Record<string, string>;
    recorder.record({ method, path, search: request.search, headers, apiKey, body: request.body });

    const route = parseRoute(method, path);
    // A path of a stateful surface (fake-surface.ts) is served by its module, after the key checks.
    const surface = route === null ? surfaces.find((s) => s.matches(method, path)) : undefined;
    if (route === null && surface === undefined) return reply.sendError(res, ERR_METHOD_NOT_FOUND);

    // Scripted failures come first: "the next N matching requests fail this way".
    if (route !== null && scripts.pending) {
      const failure = scripts.take(path, apiKey);
      if (failure !== null) {
        const call = {
          req,
          res,
          apiKey,
          body: request.body,
          model: route.kind === 'list' ? 'gemini-2.5-flash' : route.model,
          streaming: route.kind === 'action' && route.action === 'streamGenerateContent',
          sse: request.query?.get('alt') === 'sse',
        };
        return answerScripted(actions, limits.limits, call, failure);
      }
    }

    // Authentication and the key's state.
    const key = keyring.admitCall(apiKey);
    if ('status' in key) return reply.sendError(res, key);
    // The caller's location is checked for every working key, listing included.
    if (egressRefused) return reply.sendError(res, ERR_LOCATION);
    if (route === null) return surface!.handle(surfaceContext(req, res, raw, request, key.project));

    if (route.kind === 'list') return reply.send(res, 200, modelsPage(request.search, maxPageSize));
    if (route.kind === 'get') {
      const b = modelBody(route.model);
      return b
        ? reply.send(res, 200, b)
        : reply.sendError(res, errModelNotFound(route.model, route.version, 'get'));
    }

    const action = route.action;
    const needed = action === 'streamGenerateContent' ? 'generateContent' : action;
    const info = MODELS_BY_NAME.get(route.model);
    if (info === undefined || !info.methods.includes(needed)) {
      return reply.sendError(res, errModelNotFound(route.model, route.version, needed));
    }
    const { body } = request;
    if (request.bodyInvalid || (body !== undefined && !isObject(body)))
      return reply.sendError(res, ERR_INVALID_JSON);
    if (key.state === 'billing' && action !== 'countTokens') return reply.sendError(res, ERR_BILLING);
    ACTIONS[action](actions, {
      res,
      project: key.project,
      model: route.model,
      body: (body ?? EMPTY_OBJECT) as Record<string, unknown>,
      sse: request.query?.get('alt') === 'sse',
    });
  }

  /** What a surface is handed: the request, its key's project, and the fake's ways to answer. */
  function surfaceContext(
    req: IncomingMessage,
    res: ServerResponse,
    raw: Buffer | null,
    request: ReadRequest,
    project: string,
  ): FakeRequestContext {
    return {
      method: request.method,
      path: request.path,
      search: request.search,
      query: request.query ?? new URLSearchParams(),
      apiKey: request.apiKey!, // an admitted key: never null
      project,
      body: request.body,
      bodyInvalid: request.bodyInvalid,
      raw,
      req,
      res,
      send: (status, b) => reply.send(res, status, b),
      sendBytes: (status, contentType, b) => reply.sendBytes(res, status, contentType, b),
      sendError: (e) => reply.sendError(res, e),
      denyPermission: (kind, id, message) => {
        recorder.stats.permissionDenied++;
        reply.sendError(res, errPermissionDenied(kind, id, message));
      },
    };
  }

  const server = createServer((req, res) => {
    if (req.method === 'GET' || req.method === 'HEAD') {
      // No body expected: answer without waiting for chunks (the 'end' event still has to fire).
      req.resume();
      req.on('end', () => handle(req, res, null));
      return;
    }
    const bare = (req.url ?? '/').split('?')[0]!;
    // A surface that reads the body itself (an upload: streamed and discarded, never held whole).
    if (surfaces.some((s) => s.streamsBody?.(req.method ?? '', bare))) return handle(req, res, null);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 0;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  // The Live API (fake-live.ts): its WebSocket upgrade is logged, and its key checked, like any call.
  const live = createFakeLive({
    authenticate: (apiKey) => keyring.admitLive(apiKey),
    record: (req, apiKey) => {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      recorder.record({
        method: 'GET',
        path: q < 0 ? url : url.slice(0, q),
        search: q < 0 ? '' : url.slice(q),
        headers: req.headers as Record<string, string>,
        apiKey,
        body: undefined,
      });
    },
    sessionsPerProject: opts.liveSessionsPerProject,
    streamChunks,
  });
  server.on('upgrade', (req, socket, head) => {
    if (!live.upgrade(req, socket, head)) socket.destroy();
  });

  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  return {
    url,
    stats: recorder.stats,
    close(): Promise<void> {
      if (closed) return Promise.resolve();
      closed = true;
      reply.cancelAll();
      live.close();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
      });
    },
    addKey(apiKey: string, project?: string): void {
      keyring.add(apiKey, project);
    },
    setKeyState(apiKey: string, state: FakeKeyState): void {
      keyring.setState(apiKey, state);
    },
    script(failure: FakeFailure, o?: ScriptOptions): void {
      scripts.add(failure, o);
    },
    setEgressRefused(refused: boolean): void {
      egressRefused = refused;
    },
    setLatency(ms: number): void {
      reply.latencyMs = Math.max(0, ms);
    },
    resetStats(): void {
      recorder.reset();
    },
    surfaces,
    files,
    live,
  };
}
