/**
 * A fast, faithful fake of Google's Gemini API (generativelanguage.googleapis.com) for tests,
 * the benchmark and the demo. Plain node:http, keep-alive, precomputed buffers where possible.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { FakeFileStore } from './fake-file-store.ts';
import {
  type Answer,
  buildAnswer,
  contentText,
  countRequestTokens,
  DEFAULT_EMBEDDING_DIMENSIONS,
  embedText,
  FAKE_MODELS,
  IMAGE_OUTPUT_TOKENS,
  MODELS_BY_NAME,
  modelJson,
  type TokenCount,
  textTokens,
} from './fake-gemini-content.ts';
import {
  ERR_BAD_REQUEST,
  ERR_BARE_429,
  ERR_BILLING,
  ERR_EMPTY_EMBED,
  ERR_INTERNAL,
  ERR_INVALID_JSON,
  ERR_INVALID_KEY,
  ERR_LEAKED,
  ERR_LOCATION,
  ERR_METHOD_NOT_FOUND,
  ERR_NO_CONTENTS,
  ERR_NO_KEY,
  ERR_OVERLOADED,
  type ErrorReply,
  err429,
  errModelNotFound,
  errorBody,
  errServiceDisabled,
  errSuspended,
  MIDSTREAM_ERROR_JSON,
  maskSecret,
} from './fake-gemini-errors.ts';
import { type FakeLimits, LimitTracker, QUOTA_IDS, type QuotaFamily } from './fake-gemini-limits.ts';
import { createFakeLive, type FakeLiveControl } from './fake-live.ts';
import { errPermissionDenied, type FakeRequestContext, type FakeSurface } from './fake-surface.ts';
import { fakeSurfaces } from './fake-surfaces.ts';

export { embedText, FAKE_MODELS, fakePng, fakePngBase64, sampleFromSchema } from './fake-gemini-content.ts';
export { maskSecret } from './fake-gemini-errors.ts';
export { QUOTA_IDS } from './fake-gemini-limits.ts';

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

export type FakeFailure =
  | { kind: 'overloaded' }
  | { kind: 'internal' }
  | { kind: 'rate_limit'; quotaId?: string; retryDelay?: string; bare?: boolean }
  | { kind: 'invalid_key' }
  | { kind: 'leaked' }
  | { kind: 'suspended' }
  | { kind: 'service_disabled' }
  /** 400 FAILED_PRECONDITION "User location is not supported for the API use." */
  | { kind: 'location' }
  /** 429 "Your prepayment credits are depleted. …" (no QuotaFailure). */
  | { kind: 'billing' }
  | { kind: 'hang' }
  /** Headers and the start of a 200 body, then silence. */
  | { kind: 'stall' }
  | { kind: 'reset' }
  | { kind: 'midstream_error' }
  /** A stream whose connection breaks after its first chunk (no error event: the socket dies). */
  | { kind: 'midstream_break' }
  /** A 200 stream that ends without a single chunk. */
  | { kind: 'empty_stream' }
  | { kind: 'bad_request' }
  /** A 200 answer whose text is exactly `text` (e.g. not the JSON a responseSchema asked for). */
  | { kind: 'text_answer'; text: string }
  /** A malformed 200 answer: batchEmbedContents with one embedding fewer than it was asked for. */
  | { kind: 'missing_embedding' }
  /**
   * An answer that echoes `secret` (default: the key the request came with), as a careless
   * upstream might. Status 200 (the default): in the model's text, and a stream carries it cut
   * in two across two writes, the first not ending at a line break. Any other status: in the
   * error's message.
   */
  | { kind: 'echo'; status?: number; secret?: string }
  /**
   * A normal stream each of whose chunks is written in two parts, cut inside the digits of its
   * promptTokenCount (`"promptTokenCount": 12` | `34, …`).
   */
  | { kind: 'split_usage' };

export interface RecordedRequest {
  method: string;
  path: string;
  search: string;
  headers: Record<string, string>;
  apiKey: string | null;
  body: unknown;
}

/**
 * A key's standing at Google. invalid, leaked, suspended and service_disabled refuse every call,
 * models.list included; billing (a prepaid project without credits) refuses only the calls
 * that spend (generateContent, streamGenerateContent, embedContent, batchEmbedContents).
 */
export type FakeKeyState = 'ok' | 'invalid' | 'leaked' | 'suspended' | 'service_disabled' | 'billing';

export interface FakeGeminiStats {
  requests: number;
  byKey: Map<string, number>;
  byStatus: Map<number, number>;
  rateLimited: number;
  /** 403 PERMISSION_DENIED answers for another project's resource (a file, batch, operation, ...). */
  permissionDenied: number;
  log: RecordedRequest[];
}

export interface FakeGemini {
  readonly url: string;
  close(): Promise<void>;
  addKey(apiKey: string, project?: string): void;
  setKeyState(apiKey: string, state: FakeKeyState): void;
  /** Refuse (or accept again) the caller's location, for every key (see egressRefused). */
  setEgressRefused(refused: boolean): void;
  script(failure: FakeFailure, opts?: { apiKey?: string; method?: string; times?: number }): void;
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

interface KeyEntry {
  project: string;
  state: FakeKeyState;
}

interface Script {
  failure: FakeFailure;
  apiKey: string | undefined;
  method: string | undefined;
  remaining: number;
}

type Action =
  | 'generateContent'
  | 'streamGenerateContent'
  | 'countTokens'
  | 'embedContent'
  | 'batchEmbedContents';
const ACTIONS = new Set<string>([
  'generateContent',
  'streamGenerateContent',
  'countTokens',
  'embedContent',
  'batchEmbedContents',
]);

type Route =
  | { kind: 'list' }
  | { kind: 'get'; model: string; version: string }
  | { kind: 'action'; model: string; version: string; action: Action };

const LOG_SIZE = 1000;
const JSON_TYPE = 'application/json; charset=UTF-8';
const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };
const ARRAY_STREAM_HEADERS = { 'content-type': JSON_TYPE };
const EMPTY_OBJECT = Object.freeze({});
/** Between the two writes of a frame cut in two: long enough for them to arrive as two chunks. */
const SPLIT_WRITE_GAP_MS = 25;
const STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

/** A frame cut inside the digits of its promptTokenCount (before them, for a single digit). */
function splitInPromptCount(frame: string): string[] {
  const m = /"promptTokenCount"\s*:\s*(\d+)/.exec(frame);
  if (m === null) return [frame];
  const digitsAt = m.index + m[0].length - m[1]!.length;
  const cut = digitsAt + Math.floor(m[1]!.length / 2);
  return [frame.slice(0, cut), frame.slice(cut)];
}

const MODELS_LIST_BODY = Buffer.from(JSON.stringify({ models: FAKE_MODELS.map(modelJson) }));
const DEFAULT_PAGE_SIZE = 50;

/** One page of models.list: `pageToken` is the offset this fake handed out as nextPageToken. */
function modelsPage(search: string, maxPageSize: number): Buffer {
  const q = new URLSearchParams(search);
  const asked = Number(q.get('pageSize') ?? DEFAULT_PAGE_SIZE);
  const size = Math.min(maxPageSize, asked > 0 ? asked : DEFAULT_PAGE_SIZE);
  const from = Number(q.get('pageToken') ?? 0) || 0;
  if (from === 0 && size >= FAKE_MODELS.length) return MODELS_LIST_BODY;
  const models = FAKE_MODELS.slice(from, from + size).map(modelJson);
  const next = from + size < FAKE_MODELS.length ? { nextPageToken: String(from + size) } : {};
  return Buffer.from(JSON.stringify({ models, ...next }));
}
const MODEL_BODIES = new Map(FAKE_MODELS.map((m) => [m.name, Buffer.from(JSON.stringify(modelJson(m)))]));

const ID_PREFIX = randomBytes(9).toString('base64url');
let idCounter = 0;
function responseId(): string {
  idCounter = (idCounter + 1) % 0x7fffffff;
  return ID_PREFIX + idCounter.toString(36);
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
  if (method !== 'POST' || !ACTIONS.has(action) || model === '' || model.includes('/')) return null;
  return { kind: 'action', model, version, action: action as Action };
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

interface Chunk {
  parts: unknown[];
  candidatesTokens: number;
  last: boolean;
}

/** Splits an answer into stream chunks (text pieces, then the image if any); tokens are cumulative. */
function answerChunks(answer: Answer): Chunk[] {
  const chunks: Chunk[] = [];
  let chars = 0;
  for (const t of answer.textPieces) {
    chars += t.length;
    chunks.push({ parts: [{ text: t }], candidatesTokens: Math.ceil(chars / 4), last: false });
  }
  if (answer.image !== null) {
    chunks.push({
      parts: [{ inlineData: { mimeType: 'image/png', data: answer.image } }],
      candidatesTokens: IMAGE_OUTPUT_TOKENS,
      last: false,
    });
  }
  if (answer.calls !== undefined) {
    const tokens = Math.ceil(chars / 4) + answer.calls.tokens;
    chunks.push({ parts: answer.calls.parts, candidatesTokens: tokens, last: false });
  }
  if (chunks.length === 0) chunks.push({ parts: [{ text: '' }], candidatesTokens: 0, last: false });
  chunks[chunks.length - 1]!.last = true;
  return chunks;
}

/**
 * Thinking tokens the fake reports (thoughtsTokenCount, every chunk of a stream alike): a request
 * whose generationConfig.thinkingConfig.thinkingBudget is above 0 "thinks" 7 + prompt % 29 tokens,
 * at most the budget. Others report none (as Google omits the field).
 */
function thinkingTokens(req: Record<string, unknown>, promptTokens: number): number {
  const cfg = (req.generationConfig ?? req.generation_config) as Record<string, unknown> | undefined;
  const thinking = (cfg?.thinkingConfig ?? cfg?.thinking_config) as Record<string, unknown> | undefined;
  const budget = thinking?.thinkingBudget ?? thinking?.thinking_budget;
  if (typeof budget !== 'number' || budget <= 0) return 0;
  return Math.min(Math.floor(budget), 7 + (promptTokens % 29));
}

function responseJson(
  parts: unknown[],
  last: boolean,
  prompt: TokenCount,
  candidatesTokens: number,
  model: string,
  id: string,
): string {
  const promptTokensDetails: unknown[] = [{ modality: 'TEXT', tokenCount: prompt.text }];
  if (prompt.images > 0) promptTokensDetails.push({ modality: 'IMAGE', tokenCount: prompt.images });
  const candidate: Record<string, unknown> = { content: { parts, role: 'model' } };
  if (last) candidate.finishReason = 'STOP';
  candidate.index = 0;
  const thoughts = prompt.thoughts ?? 0;
  return JSON.stringify({
    candidates: [candidate],
    usageMetadata: {
      promptTokenCount: prompt.total,
      candidatesTokenCount: candidatesTokens,
      totalTokenCount: prompt.total + candidatesTokens + thoughts,
      promptTokensDetails,
      ...(thoughts > 0 ? { thoughtsTokenCount: thoughts } : {}),
    },
    modelVersion: model,
    responseId: id,
  });
}

export async function startFakeGemini(opts: FakeGeminiOptions = {}): Promise<FakeGemini> {
  const keys = new Map<string, KeyEntry>();
  for (const k of opts.keys ?? []) keys.set(k.apiKey, { project: k.project ?? k.apiKey, state: 'ok' });
  const acceptAnyKey = opts.acceptAnyKey ?? opts.keys === undefined;
  const limits = new LimitTracker({ ...opts.limits }, opts.now ?? Date.now, { ...opts.modelLimits });
  const chunkDelayMs = Math.max(0, opts.chunkDelayMs ?? 0);
  const streamChunks = Math.max(1, Math.floor(opts.streamChunks ?? 3));
  let latencyMs = Math.max(0, opts.latencyMs ?? 0);
  const textTokenRatio = opts.textTokenRatio ?? 1;
  const maxPageSize = Math.max(1, opts.maxPageSize ?? 1000);
  let egressRefused = opts.egressRefused ?? false;
  const billedTokens = (req: Record<string, unknown>): TokenCount => {
    const count = countRequestTokens(req);
    const thoughts = thinkingTokens(req, count.total);
    if (textTokenRatio === 1) return thoughts > 0 ? { ...count, thoughts } : count;
    const text = Math.ceil(count.text * textTokenRatio);
    return { total: text + count.images, text, images: count.images, ...(thoughts > 0 ? { thoughts } : {}) };
  };
  const scripts: Script[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();
  let closed = false;
  const files = new FakeFileStore();
  const surfaces = fakeSurfaces(opts, files);

  let log: RecordedRequest[] = [];
  const stats: FakeGeminiStats = {
    requests: 0,
    byKey: new Map(),
    byStatus: new Map(),
    rateLimited: 0,
    permissionDenied: 0,
    get log(): RecordedRequest[] {
      if (log.length > LOG_SIZE) log.splice(0, log.length - LOG_SIZE);
      return log;
    },
  };

  function countStatus(status: number): void {
    stats.byStatus.set(status, (stats.byStatus.get(status) ?? 0) + 1);
  }

  /** Runs `fn` after the configured latency (immediately when 0). */
  function later(fn: () => void, ms = latencyMs): void {
    if (ms <= 0) {
      fn();
      return;
    }
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  }

  function sendBody(res: ServerResponse, status: number, body: Buffer | string): void {
    later(() => {
      if (res.destroyed) return;
      countStatus(status);
      res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  }

  function sendError(res: ServerResponse, err: ErrorReply): void {
    sendBody(res, err.status, err.body);
  }

  function findScript(path: string, apiKey: string | null): FakeFailure | null {
    for (let i = 0; i < scripts.length; i++) {
      const s = scripts[i]!;
      if (s.apiKey !== undefined && s.apiKey !== apiKey) continue;
      if (s.method !== undefined && !path.includes(s.method)) continue;
      if (--s.remaining <= 0) scripts.splice(i, 1);
      return s.failure;
    }
    return null;
  }

  function scripted429(f: { quotaId?: string; retryDelay?: string }, model: string): ErrorReply {
    const quotaId = f.quotaId ?? QUOTA_IDS.generate.rpm;
    const ids = quotaId.startsWith('Embed') ? QUOTA_IDS.embed : QUOTA_IDS.generate;
    const tokens = quotaId.includes('Token');
    const perDay = quotaId.includes('PerDay');
    const l = limits.limits;
    const limit = tokens ? (l.tpm ?? 250000) : perDay ? (l.rpd ?? 20) : (l.rpm ?? 15);
    return err429(
      [{ quotaMetric: tokens ? ids.tokens : ids.requests, quotaId, model, limit }],
      0,
      f.retryDelay ?? '23s',
    );
  }

  /** Streams the answer as SSE (`data: {json}\r\n\r\n`) or as one progressively written JSON array. */
  function stream(
    res: ServerResponse,
    sse: boolean,
    answer: Answer,
    prompt: TokenCount,
    model: string,
    failure: 'none' | 'midstream_error' | 'midstream_break' | 'empty_stream' | 'split_usage',
  ): void {
    const id = responseId();
    let chunks = answerChunks(answer);
    if (failure === 'empty_stream') chunks = [];
    else if (failure !== 'none' && failure !== 'split_usage') chunks = [{ ...chunks[0]!, last: false }];
    let frames: string[] = [];
    for (let i = 0; i < chunks.length; i++) {
      const c = chunks[i]!;
      const json = responseJson(c.parts, c.last, prompt, c.candidatesTokens, model, id);
      frames.push(sse ? `data: ${json}\r\n\r\n` : `${i === 0 ? '[' : '\r\n,'}${json}`);
    }
    // Each frame in two writes, far enough apart to arrive as two chunks.
    if (failure === 'split_usage') frames = frames.flatMap(splitInPromptCount);
    const delayMs = failure === 'split_usage' ? Math.max(chunkDelayMs, SPLIT_WRITE_GAP_MS) : chunkDelayMs;
    if (failure === 'midstream_error')
      frames.push(sse ? `data: ${MIDSTREAM_ERROR_JSON}\r\n\r\n` : `\r\n,${MIDSTREAM_ERROR_JSON}`);
    const tail = failure === 'empty_stream' || sse ? '' : '\r\n]';
    // After the last frame: end the answer, or (midstream_break) let the frames reach the
    // client, then cut the connection.
    const finish = () => {
      if (failure === 'midstream_break') later(() => res.socket?.destroy(), 30);
      else res.end(tail);
    };
    later(() => {
      if (res.destroyed) return;
      countStatus(200);
      res.writeHead(200, sse ? SSE_HEADERS : ARRAY_STREAM_HEADERS);
      if (delayMs === 0 || frames.length === 0) {
        for (const f of frames) res.write(f);
        finish();
        return;
      }
      let i = 0;
      const next = (): void => {
        if (res.destroyed) return;
        res.write(frames[i++]!);
        if (i >= frames.length) finish();
        else later(next, delayMs);
      };
      next();
    });
  }

  function handle(req: IncomingMessage, res: ServerResponse, raw: Buffer | null) {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    let path = q < 0 ? url : url.slice(0, q);
    const search = q < 0 ? '' : url.slice(q);
    if (path.includes('%')) {
      try {
        path = decodeURIComponent(path);
      } catch {
        // keep it raw
      }
    }
    const query = search.length > 1 ? new URLSearchParams(search) : null;
    const headerKey = req.headers['x-goog-api-key'];
    const apiKey =
      (typeof headerKey === 'string' && headerKey !== '' ? headerKey : query?.get('key')) || null;

    let body: unknown;
    let bodyInvalid = false;
    if (raw !== null && raw.length > 0) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        bodyInvalid = true;
        body = raw.toString('utf8');
      }
    }

    stats.requests++;
    if (apiKey !== null) stats.byKey.set(apiKey, (stats.byKey.get(apiKey) ?? 0) + 1);
    log.push({ method, path, search, headers: req.headers as Record<string, string>, apiKey, body });
    if (log.length >= 2 * LOG_SIZE) log.splice(0, log.length - LOG_SIZE);

    const route = parseRoute(method, path);
    // A path of a stateful surface (fake-surface.ts) is served by its module, after the key checks.
    const surface = route === null ? surfaces.find((s) => s.matches(method, path)) : undefined;
    if (route === null && surface === undefined) return sendError(res, ERR_METHOD_NOT_FOUND);
    const model = route === null ? '' : route.kind === 'list' ? 'gemini-2.5-flash' : route.model;

    // Scripted failures come first: "the next N matching requests fail this way".
    if (route !== null && scripts.length > 0) {
      const failure = findScript(path, apiKey);
      if (failure !== null) {
        switch (failure.kind) {
          case 'overloaded':
            return sendError(res, ERR_OVERLOADED);
          case 'internal':
            return sendError(res, ERR_INTERNAL);
          case 'rate_limit':
            return sendError(res, failure.bare ? ERR_BARE_429 : scripted429(failure, model));
          case 'invalid_key':
            return sendError(res, ERR_INVALID_KEY);
          case 'leaked':
            return sendError(res, ERR_LEAKED);
          case 'suspended':
            return sendError(res, errSuspended(apiKey ?? '', maskSecret(apiKey ?? '')));
          case 'service_disabled':
            return sendError(res, errServiceDisabled(apiKey === null ? 'project' : maskSecret(apiKey)));
          case 'location':
            return sendError(res, ERR_LOCATION);
          case 'billing':
            return sendError(res, ERR_BILLING);
          case 'bad_request':
            return sendError(res, ERR_BAD_REQUEST);
          case 'text_answer': {
            const prompt = isObj(body) ? billedTokens(body).total : 0;
            const answer = {
              candidates: [
                {
                  content: { role: 'model', parts: [{ text: failure.text }] },
                  finishReason: 'STOP',
                  index: 0,
                },
              ],
              usageMetadata: {
                promptTokenCount: prompt,
                candidatesTokenCount: 1,
                totalTokenCount: prompt + 1,
              },
              modelVersion: model,
              responseId: 'scripted-text-answer',
            };
            return sendBody(res, 200, Buffer.from(JSON.stringify(answer)));
          }
          case 'missing_embedding': {
            const asked = isObj(body) && Array.isArray(body.requests) ? body.requests.length : 1;
            const embeddings = Array.from({ length: Math.max(0, asked - 1) }, () => ({
              values: embedText('', DEFAULT_EMBEDDING_DIMENSIONS),
            }));
            return sendBody(res, 200, Buffer.from(JSON.stringify({ embeddings })));
          }
          case 'hang':
            return; // the socket is destroyed by close() or by the client
          case 'stall':
            res.writeHead(200, { 'content-type': JSON_TYPE });
            res.write('{"candidates": [');
            return;
          case 'reset':
            req.socket.resetAndDestroy();
            return;
          case 'echo': {
            const secret = failure.secret ?? apiKey ?? '';
            const status = failure.status ?? 200;
            if (status !== 200) {
              const message = `Request failed for API key ${secret}; please try again.`;
              return sendError(res, {
                status,
                body: errorBody(status, STATUS_NAMES[status] ?? 'UNKNOWN', message),
              });
            }
            const text = `Your key is ${secret}, isn't it?`;
            const prompt = isObj(body) ? billedTokens(body) : { total: 0, text: 0, images: 0 };
            const json = responseJson([{ text }], true, prompt, 8, model, responseId());
            if (route.kind !== 'action' || route.action !== 'streamGenerateContent')
              return sendBody(res, 200, json);
            const sse = query?.get('alt') === 'sse';
            const whole = sse ? `data: ${json}\r\n\r\n` : `[${json}]`;
            const cut = whole.indexOf(secret) + Math.floor(secret.length / 2);
            return later(() => {
              if (res.destroyed) return;
              countStatus(200);
              res.writeHead(200, sse ? SSE_HEADERS : ARRAY_STREAM_HEADERS);
              res.write(whole.slice(0, cut));
              later(() => res.end(whole.slice(cut)), SPLIT_WRITE_GAP_MS);
            });
          }
          case 'midstream_error':
          case 'midstream_break':
          case 'empty_stream':
          case 'split_usage':
            if (route.kind === 'action' && route.action === 'streamGenerateContent' && isObj(body)) {
              const prompt = billedTokens(body);
              const answer = buildAnswer(route.model, body, streamChunks);
              return stream(res, query?.get('alt') === 'sse', answer, prompt, route.model, failure.kind);
            }
            return sendError(res, ERR_INTERNAL);
        }
      }
    }

    // Authentication and the key's state.
    if (apiKey === null) return sendError(res, ERR_NO_KEY);
    let entry = keys.get(apiKey);
    if (entry === undefined) {
      if (!acceptAnyKey) return sendError(res, ERR_INVALID_KEY);
      entry = { project: apiKey, state: 'ok' };
      keys.set(apiKey, entry);
    }
    if (entry.state !== 'ok' && entry.state !== 'billing') {
      const project = entry.project === apiKey ? maskSecret(apiKey) : entry.project;
      switch (entry.state) {
        case 'invalid':
          return sendError(res, ERR_INVALID_KEY);
        case 'leaked':
          return sendError(res, ERR_LEAKED);
        case 'suspended':
          return sendError(res, errSuspended(apiKey, project));
        case 'service_disabled':
          return sendError(res, errServiceDisabled(project));
      }
    }
    // The caller's location is checked for every working key, listing included.
    if (egressRefused) return sendError(res, ERR_LOCATION);
    if (route === null) {
      const ctx: FakeRequestContext = {
        method,
        path,
        search,
        query: query ?? new URLSearchParams(),
        apiKey,
        project: entry.project,
        body,
        bodyInvalid,
        raw,
        req,
        res,
        send: (status, b) => sendBody(res, status, b),
        sendBytes: (status, contentType, b) =>
          later(() => {
            if (res.destroyed) return;
            countStatus(status);
            res.writeHead(status, { 'content-type': contentType, 'content-length': b.length });
            res.end(b);
          }),
        sendError: (e) => sendError(res, e),
        denyPermission: (kind, id, message) => {
          stats.permissionDenied++;
          sendError(res, errPermissionDenied(kind, id, message));
        },
      };
      return surface!.handle(ctx);
    }

    if (route.kind === 'list') return sendBody(res, 200, modelsPage(search, maxPageSize));
    if (route.kind === 'get') {
      const b = MODEL_BODIES.get(route.model);
      return b ? sendBody(res, 200, b) : sendError(res, errModelNotFound(route.model, route.version, 'get'));
    }

    const action = route.action;
    const needed = action === 'streamGenerateContent' ? 'generateContent' : action;
    const info = MODELS_BY_NAME.get(route.model);
    if (info === undefined || !info.methods.includes(needed)) {
      return sendError(res, errModelNotFound(route.model, route.version, needed));
    }
    if (bodyInvalid || (body !== undefined && !isObj(body))) return sendError(res, ERR_INVALID_JSON);
    const req0 = (body ?? EMPTY_OBJECT) as Record<string, unknown>;
    if (entry.state === 'billing' && action !== 'countTokens') return sendError(res, ERR_BILLING);

    switch (action) {
      case 'generateContent':
      case 'streamGenerateContent': {
        if (!Array.isArray(req0.contents) || req0.contents.length === 0)
          return sendError(res, ERR_NO_CONTENTS);
        if (refusedUse(res, entry.project, route.model, req0)) return;
        const prompt = billedTokens(req0);
        if (!admit(res, entry.project, route.model, prompt.total, 'generate')) return;
        const answer = buildAnswer(route.model, req0, action === 'streamGenerateContent' ? streamChunks : 1);
        if (action === 'streamGenerateContent') {
          return stream(res, query?.get('alt') === 'sse', answer, prompt, route.model, 'none');
        }
        const text = answer.textPieces.join('');
        const parts: unknown[] = [];
        if (answer.textPieces.length > 0) parts.push({ text });
        if (answer.image !== null) parts.push({ inlineData: { mimeType: 'image/png', data: answer.image } });
        if (answer.calls !== undefined) parts.push(...answer.calls.parts);
        const candidates =
          (answer.image !== null ? IMAGE_OUTPUT_TOKENS : textTokens(text)) + (answer.calls?.tokens ?? 0);
        return sendBody(res, 200, responseJson(parts, true, prompt, candidates, route.model, responseId()));
      }
      case 'countTokens': {
        const inner = isObj(req0.generateContentRequest) ? req0.generateContentRequest : req0;
        if (refusedUse(res, entry.project, route.model, inner)) return;
        const t = billedTokens(inner);
        const details: unknown[] = [{ modality: 'TEXT', tokenCount: t.text }];
        if (t.images > 0) details.push({ modality: 'IMAGE', tokenCount: t.images });
        return sendBody(res, 200, JSON.stringify({ totalTokens: t.total, promptTokensDetails: details }));
      }
      case 'embedContent': {
        if (!isObj(req0.content)) return sendError(res, ERR_EMPTY_EMBED);
        const text = contentText(req0.content);
        if (!admit(res, entry.project, route.model, textTokens(text), 'embed')) return;
        const dims =
          typeof req0.outputDimensionality === 'number'
            ? req0.outputDimensionality
            : DEFAULT_EMBEDDING_DIMENSIONS;
        return sendBody(res, 200, JSON.stringify({ embedding: { values: embedText(text, dims) } }));
      }
      case 'batchEmbedContents': {
        const requests = req0.requests;
        if (!Array.isArray(requests) || requests.length === 0) {
          return sendError(res, {
            status: 400,
            body: errorBody(
              400,
              'INVALID_ARGUMENT',
              '* BatchEmbedContentsRequest.requests: requests is not specified\n',
            ),
          });
        }
        let tokens = 0;
        const texts: string[] = [];
        for (const r of requests) {
          const text = isObj(r) ? contentText(r.content) : '';
          texts.push(text);
          tokens += textTokens(text);
        }
        if (!admit(res, entry.project, route.model, tokens, 'embed')) return;
        const embeddings = texts.map((text, i) => {
          const r = requests[i];
          const dims =
            isObj(r) && typeof r.outputDimensionality === 'number'
              ? r.outputDimensionality
              : DEFAULT_EMBEDDING_DIMENSIONS;
          return { values: embedText(text, dims) };
        });
        return sendBody(res, 200, JSON.stringify({ embeddings }));
      }
    }
  }

  /** A file or cache (a surface's resource) the project may not use: answered, true. */
  function refusedUse(
    res: ServerResponse,
    project: string,
    model: string,
    body: Record<string, unknown>,
  ): boolean {
    for (const s of surfaces) {
      const refusal = s.refuseUse?.(project, model, body);
      if (!refusal) continue;
      if (refusal.permission) stats.permissionDenied++;
      sendError(res, refusal.reply);
      return true;
    }
    return false;
  }

  /** Applies options.limits; answers the 429 itself and returns false when refused. */
  function admit(
    res: ServerResponse,
    project: string,
    model: string,
    tokens: number,
    family: QuotaFamily,
  ): boolean {
    const refusal = limits.admit(project, model, tokens, family);
    if (refusal === null) return true;
    stats.rateLimited++;
    sendError(res, err429(refusal.violations, refusal.retryDelayMs));
    return false;
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
    authenticate: (apiKey) => {
      if (apiKey === null) return ERR_NO_KEY;
      const entry =
        keys.get(apiKey) ?? (acceptAnyKey ? { project: apiKey, state: 'ok' as const } : undefined);
      if (entry === undefined) return ERR_INVALID_KEY;
      const project = entry.project === apiKey ? maskSecret(apiKey) : entry.project;
      if (entry.state === 'invalid') return ERR_INVALID_KEY;
      if (entry.state === 'leaked') return ERR_LEAKED;
      if (entry.state === 'suspended') return errSuspended(apiKey, project);
      if (entry.state === 'service_disabled') return errServiceDisabled(project);
      return { project: entry.project };
    },
    record: (req, apiKey) => {
      stats.requests++;
      if (apiKey !== null) stats.byKey.set(apiKey, (stats.byKey.get(apiKey) ?? 0) + 1);
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      log.push({
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
    stats,
    close(): Promise<void> {
      if (closed) return Promise.resolve();
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      live.close();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
      });
    },
    addKey(apiKey: string, project?: string): void {
      const e = keys.get(apiKey);
      if (e) e.project = project ?? e.project;
      else keys.set(apiKey, { project: project ?? apiKey, state: 'ok' });
    },
    setKeyState(apiKey: string, state: FakeKeyState): void {
      const e = keys.get(apiKey);
      if (e) e.state = state;
      else keys.set(apiKey, { project: apiKey, state });
    },
    script(failure: FakeFailure, o?: { apiKey?: string; method?: string; times?: number }): void {
      const times = o?.times ?? 1;
      if (times <= 0) return;
      scripts.push({ failure, apiKey: o?.apiKey, method: o?.method, remaining: times });
    },
    setEgressRefused(refused: boolean): void {
      egressRefused = refused;
    },
    setLatency(ms: number): void {
      latencyMs = Math.max(0, ms);
    },
    resetStats(): void {
      stats.requests = 0;
      stats.byKey.clear();
      stats.byStatus.clear();
      stats.rateLimited = 0;
      stats.permissionDenied = 0;
      log = [];
    },
    surfaces,
    files,
    live,
  };
}
