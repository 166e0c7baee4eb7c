/**
 * The Files API through the pool (Google's paths, errors in Google's shape):
 *
 * - `POST /upload/v1beta/files`: a resumable upload's start (`X-Goog-Upload-Protocol:
 *   resumable`, `X-Goog-Upload-Command: start`) is sent upstream with a key from the pool; the
 *   answer's `x-goog-upload-url` is replaced by the gateway's own, whose `upload_id` is a signed
 *   session id bound to that key and to the client (upload-session.ts). The chunks that follow
 *   (`upload`, `upload, finalize`, `query`, `cancel`) go to Google's upload URL with that key.
 *   A multipart (or any other single-request) upload goes upstream in one call. Bytes stream
 *   through with backpressure: nothing holds a whole chunk, let alone a whole file.
 * - `GET /v1beta/files/{id}`, `DELETE /v1beta/files/{id}`, `GET /v1beta/files/{id}:download`:
 *   the owner client only (or an admin), with a key of the file's project.
 * - `GET /v1beta/files`: the caller's files, merged over the projects that hold them.
 *
 * Budgets: every call here spends the budget of calls for no model (`''`, the one model listing
 * uses), never a generation model's. An upload spends one request (its start or its single
 * call); its chunks ride on the session's key and spend nothing.
 *
 * A finished upload records `files/<id>` → (project, key, client) until the file's
 * expirationTime (48 hours): later requests that use the file are pinned to its project
 * (affinity.ts).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  authorizeResource,
  callerOf,
  FILE_LIFETIME_MS,
  ownersOf,
  recordResource,
} from '../../upstream/affinity.ts';
import type { UnaryAnswer, UpstreamAnswer } from '../../upstream/forwarder.ts';
import { createUpstreamAgent } from '../../upstream/http.ts';
import { type RawAnswer, RawUpstream } from '../../upstream/raw-upstream.ts';
import { UPLOAD_SESSION_TTL_MS, UploadSessions } from '../../upstream/upload-session.ts';
import { duringTransfer } from '../../util/transfer-gc.ts';
import type { AppDeps } from '../deps.ts';
import { HttpProblem } from '../problem.ts';

const FILE_ID = /^([A-Za-z0-9][A-Za-z0-9_-]{0,127})(:download)?$/;
const FILE_NAME = /^files\/[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
/** The metadata part of a resumable upload's start (a small JSON object). */
const MAX_START_BODY = 1024 * 1024;
/** Upstream list pages read per project, at most (100 files each). */
const MAX_LIST_PAGES = 50;
const JSON_TYPE = 'application/json; charset=UTF-8';

export async function filesRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  // Uploads read their own bodies: the request stream is handed to the handler as it is, so
  // bytes flow through with backpressure and no body limit applies to them (Google's is 2 GB).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

  // Uploads are long transfers: their own connection pool, closed with the app.
  const agent = createUpstreamAgent(deps.env.UPSTREAM_TIMEOUT_MS);
  app.addHook('onClose', async () => {
    await agent.close();
  });
  const raw = new RawUpstream({
    baseUrl: deps.env.GEMINI_BASE_URL,
    agent,
    pool: deps.pool,
    maxAttempts: deps.env.MAX_ATTEMPTS,
    attemptTimeoutMs: deps.env.UPSTREAM_TIMEOUT_MS,
    scrubber: deps.forwarder.scrubber,
    observer: deps.metrics,
  });
  const sessions = new UploadSessions(deps.env.UPLOAD_SESSION_SECRET, deps.env.CLIENT_API_KEYS_MAP.keys());
  const config = { googleErrors: true };

  /** Records a file the caller just uploaded with `keyId`. */
  const recordFile = async (answerBody: Buffer | null, keyId: string, client: string): Promise<void> => {
    const file = fileOf(answerBody);
    if (!file) return;
    const expires = Date.parse(String(file.expirationTime ?? ''));
    await recordResource(
      deps,
      file.name,
      keyId,
      client,
      Number.isFinite(expires) ? expires : Date.now() + FILE_LIFETIME_MS,
    );
  };

  app.post('/upload/v1beta/files', { config }, async (request, reply) => {
    const body = (request.body as Readable | undefined) ?? Readable.from([]);
    const uploadId = (request.query as Record<string, unknown>).upload_id;
    if (typeof uploadId === 'string') return continueUpload(request, reply, body, uploadId);
    const protocol = headerOf(request.headers, 'x-goog-upload-protocol').toLowerCase();
    const command = headerOf(request.headers, 'x-goog-upload-command').toLowerCase();
    if (protocol === 'resumable' && command !== 'start') {
      body.resume();
      throw new HttpProblem(400, 'a resumable upload starts with X-Goog-Upload-Command: start', {
        googleStatus: 'INVALID_ARGUMENT',
      });
    }
    const caller = callerOf(request, deps);
    if (protocol === 'resumable') {
      const meta = await readSmall(body, MAX_START_BODY);
      const answer = await raw.call({
        method: 'POST',
        target: `/upload/v1beta/files${forwardedQuery(request)}`,
        headers: { ...uploadHeaders(request.headers), 'content-type': 'application/json' },
        body: meta,
        model: '',
        signal: request.cancellation ?? undefined,
        deadlineMs: request.deadlineMs,
      });
      const upstreamUrl = headerOf(answer.headers, 'x-goog-upload-url');
      if (answer.status >= 300) return relay(request, reply, answer);
      if (!upstreamUrl)
        throw new HttpProblem(502, 'the upstream did not answer an upload URL', {
          googleStatus: 'UNAVAILABLE',
        });
      const session = sessions.create(answer.keyId, caller.client);
      await recordSession(deps, session.record, answer, caller.client, upstreamUrl);
      const url = `${request.protocol}://${request.host}/upload/v1beta/files?upload_id=${session.id}&upload_protocol=resumable`;
      reply.header('x-goog-upload-url', url);
      if (headerOf(answer.headers, 'x-goog-upload-control-url'))
        reply.header('x-goog-upload-control-url', url);
      return relay(request, reply, answer);
    }
    // Multipart (or a plain media upload): one call upstream, its body streamed through.
    const answer = await duringTransfer(() =>
      raw.call({
        method: 'POST',
        target: `/upload/v1beta/files${forwardedQuery(request)}`,
        headers: { ...uploadHeaders(request.headers), ...bodyHeaders(request.headers) },
        body,
        model: '',
        signal: request.cancellation ?? undefined,
        deadlineMs: request.deadlineMs,
      }),
    );
    if (answer.status < 300) await recordFile(answer.body, answer.keyId, caller.client);
    return relay(request, reply, answer);
  });

  /** A chunk (or query, or cancel) of an upload this gateway started, with the session's key. */
  async function continueUpload(
    request: FastifyRequest,
    reply: FastifyReply,
    body: Readable,
    uploadId: string,
  ): Promise<FastifyReply> {
    const caller = callerOf(request, deps);
    const record = sessions.recordOf(uploadId);
    const [owner] = record ? await ownersOf(deps.store, [record]) : [null];
    if (!record || !owner?.detail || owner.client !== caller.client || !sessions.verify(uploadId, owner)) {
      body.resume();
      throw new HttpProblem(404, 'No upload session with this id (it may have expired or been finished).', {
        googleStatus: 'NOT_FOUND',
      });
    }
    const key = deps.pool.keys.find((k) => k.id === owner.keyId);
    if (!key) {
      body.resume();
      throw new HttpProblem(
        503,
        'the key this upload was started with is not in this gateway instance pool; start the upload again',
        { googleStatus: 'UNAVAILABLE' },
      );
    }
    const command = headerOf(request.headers, 'x-goog-upload-command').toLowerCase();
    const target = owner.detail;
    const started = Date.now();
    const answer = await duringTransfer(() =>
      raw.direct(
        {
          method: 'POST',
          target,
          headers: { ...uploadHeaders(request.headers), ...bodyHeaders(request.headers) },
          body,
          model: '',
          signal: request.cancellation ?? undefined,
          deadlineMs: request.deadlineMs,
        },
        key.id,
        key.apiKey,
      ),
    );
    request.upstream = { keyId: key.id, ms: Date.now() - started, attempts: 1, queuedMs: 0 };
    const status = headerOf(answer.headers, 'x-goog-upload-status').toLowerCase();
    if (answer.status < 300 && status === 'final') {
      await recordFile(answer.body, key.id, caller.client);
      await deps.store.deleteResource(record).catch(() => {});
    } else if (command.includes('cancel') && answer.status < 300) {
      await deps.store.deleteResource(record).catch(() => {});
    }
    return relay(request, reply, answer);
  }

  app.get('/v1beta/files', { config }, async (request, reply) => {
    const caller = callerOf(request, deps);
    const q = request.query as Record<string, unknown>;
    const mine = await listOwned(deps, 'files', caller.admin ? null : caller.client);
    const found: Record<string, unknown>[] = [];
    for (const [project, names] of byProject(mine)) {
      const failed = await listUpstream(deps, request, '/v1beta/files', 'files', project, names, found);
      if (failed) return sendAnswer(request, reply, failed);
    }
    found.sort((a, b) => String(b.createTime ?? '').localeCompare(String(a.createTime ?? '')));
    return reply.type(JSON_TYPE).send(page(found, 'files', q.pageSize, q.pageToken, 10, 100));
  });

  const one = async (request: FastifyRequest, reply: FastifyReply) => {
    const target = (request.params as { '*': string })['*'];
    const m = FILE_ID.exec(target);
    if (!m) throw new HttpProblem(404, 'Method not found.', { googleStatus: 'NOT_FOUND' });
    const id = m[1]!;
    const download = m[2] !== undefined;
    const name = `files/${id}`;
    const owner = await authorizeResource(deps, request, name);
    const pin = { project: owner.project };
    if (download) {
      if (request.method !== 'GET')
        throw new HttpProblem(404, 'Method not found.', { googleStatus: 'NOT_FOUND' });
      const started = Date.now();
      const answer = await raw.call({
        method: 'GET',
        target: `/v1beta/files/${id}:download${forwardedQuery(request)}`,
        headers: {},
        model: '',
        pin,
        signal: request.cancellation ?? undefined,
        deadlineMs: request.deadlineMs,
        streamAnswer: true,
      });
      request.upstream = { keyId: answer.keyId, ms: Date.now() - started, attempts: 1, queuedMs: 0 };
      // The bytes flow after the handler returns: collections run until the answer is out.
      if (answer.stream)
        void duringTransfer(() => new Promise<void>((done) => reply.raw.once('close', done)));
      return relay(request, reply, answer);
    }
    const answer = await deps.forwarder.forward({
      method: request.method === 'DELETE' ? 'DELETE' : 'GET',
      path: `/v1beta/files/${id}`,
      search: forwardedQuery(request),
      model: '',
      estimatedTokens: 0,
      stream: false,
      pin,
      signal: request.cancellation ?? undefined,
      deadlineMs: request.deadlineMs,
    });
    // Deleted (or already gone at Google): the record goes too.
    if (
      request.method === 'DELETE' &&
      (answer.status < 300 || answer.status === 403 || answer.status === 404)
    )
      await deps.store.deleteResource(name).catch(() => {});
    return sendAnswer(request, reply, answer);
  };
  app.get('/v1beta/files/*', { config, compress: false }, one);
  app.delete('/v1beta/files/*', { config }, one);
}

/** The caller's live resources of a kind (every client's for an admin). */
export async function listOwned(
  deps: Pick<AppDeps, 'store'>,
  kind: string,
  client: string | null,
): Promise<Array<{ name: string; project: string }>> {
  try {
    const owned = await deps.store.listResources(kind, client, Date.now());
    return owned.map((r) => ({ name: r.name, project: r.owner.project }));
  } catch {
    throw new HttpProblem(503, 'the gateway cannot reach its state store; retry shortly', {
      headers: { 'retry-after': '1' },
      googleStatus: 'UNAVAILABLE',
    });
  }
}

export function byProject(owned: Array<{ name: string; project: string }>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const r of owned) {
    let set = out.get(r.project);
    if (!set) {
      set = new Set();
      out.set(r.project, set);
    }
    set.add(r.name);
  }
  return out;
}

/**
 * Pages through Google's list of one project (`field`: `files`, `cachedContents`) with a key of
 * that project, keeping the entries named in `names`. Returns the upstream answer when it fails.
 */
export async function listUpstream(
  deps: Pick<AppDeps, 'forwarder'>,
  request: FastifyRequest,
  path: string,
  field: string,
  project: string,
  names: Set<string>,
  into: Record<string, unknown>[],
): Promise<UpstreamAnswer | null> {
  let token: string | undefined;
  let left = names.size;
  for (let i = 0; i < MAX_LIST_PAGES && left > 0; i++) {
    const params = new URLSearchParams({ pageSize: field === 'files' ? '100' : '1000' });
    if (token) params.set('pageToken', token);
    const answer = await deps.forwarder.forward({
      method: 'GET',
      path,
      search: `?${params}`,
      model: '',
      estimatedTokens: 0,
      stream: false,
      pin: { project },
      signal: request.cancellation ?? undefined,
      deadlineMs: request.deadlineMs,
    });
    if (answer.kind !== 'unary' || answer.status >= 300) return answer;
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(answer.body.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new HttpProblem(502, 'the upstream answered a list that is not JSON', {
        googleStatus: 'UNAVAILABLE',
      });
    }
    const entries = Array.isArray(json[field]) ? (json[field] as unknown[]) : [];
    for (const e of entries) {
      if (typeof e === 'object' && e !== null && names.has(String((e as { name?: unknown }).name))) {
        into.push(e as Record<string, unknown>);
        left -= 1;
      }
    }
    token = typeof json.nextPageToken === 'string' && json.nextPageToken ? json.nextPageToken : undefined;
    if (!token) break;
  }
  return null;
}

/** One page of a merged list: `pageToken` is the offset the previous page handed out. */
export function page(
  all: Record<string, unknown>[],
  field: string,
  pageSize: unknown,
  pageToken: unknown,
  defaultSize: number,
  maxSize: number,
): Record<string, unknown> {
  const asked = Number(pageSize);
  const size = Math.min(maxSize, Number.isFinite(asked) && asked > 0 ? Math.floor(asked) : defaultSize);
  const from = /^\d+$/.test(String(pageToken ?? '')) ? Number(pageToken) : 0;
  const out: Record<string, unknown> = {};
  const slice = all.slice(from, from + size);
  if (slice.length > 0) out[field] = slice;
  if (from + size < all.length) out.nextPageToken = String(from + size);
  return out;
}

async function recordSession(
  deps: AppDeps,
  record: string,
  answer: RawAnswer,
  client: string,
  upstreamUrl: string,
): Promise<void> {
  try {
    await deps.store.putResource({
      name: record,
      owner: { project: answer.project, keyId: answer.keyId, client, detail: upstreamUrl },
      expiresAtMs: Date.now() + UPLOAD_SESSION_TTL_MS,
    });
  } catch {
    throw new HttpProblem(503, 'the gateway cannot reach its state store; retry shortly', {
      headers: { 'retry-after': '1' },
      googleStatus: 'UNAVAILABLE',
    });
  }
}

/** A file resource from an upload's answer (`{"file": {...}}`, or the file itself). */
function fileOf(body: Buffer | null): { name: string; expirationTime?: unknown } | null {
  if (!body || body.length === 0) return null;
  try {
    const json = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    const file = (typeof json.file === 'object' && json.file !== null ? json.file : json) as Record<
      string,
      unknown
    >;
    return typeof file.name === 'string' && FILE_NAME.test(file.name)
      ? { name: file.name, expirationTime: file.expirationTime }
      : null;
  } catch {
    return null;
  }
}

function headerOf(headers: IncomingHttpHeaders, name: string): string {
  const v = headers[name];
  return typeof v === 'string' ? v : Array.isArray(v) ? (v[0] ?? '') : '';
}

/** The client's upload protocol headers (`x-goog-upload-*`), passed on as they are. */
function uploadHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers))
    if (name.startsWith('x-goog-upload-') && typeof value === 'string') out[name] = value;
  return out;
}

/** The body's own headers: its type and, when the client gave one, its length. */
function bodyHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {
    'content-type': headerOf(headers, 'content-type') || 'application/octet-stream',
  };
  const length = headerOf(headers, 'content-length');
  if (/^\d+$/.test(length)) out['content-length'] = length;
  return out;
}

/** The client's query string minus its token (`key`) and the gateway's own upload id. */
function forwardedQuery(request: FastifyRequest): string {
  const q = request.url.indexOf('?');
  if (q < 0) return '';
  const params = new URLSearchParams(request.url.slice(q + 1));
  params.delete('key');
  params.delete('upload_id');
  const s = params.toString();
  return s ? `?${s}` : '';
}

/** Reads a small body whole (a resumable upload's metadata). */
async function readSmall(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      body.resume();
      throw new HttpProblem(413, 'the upload metadata is larger than 1 MB', {
        googleStatus: 'INVALID_ARGUMENT',
      });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Relays an upload or download answer: status, upload protocol headers, type and body. */
function relay(request: FastifyRequest, reply: FastifyReply, answer: RawAnswer): FastifyReply {
  request.upstream ??= { keyId: answer.keyId, ms: 0, attempts: 1, queuedMs: 0 };
  reply.code(answer.status);
  for (const [name, value] of Object.entries(answer.headers)) {
    if (!name.startsWith('x-goog-upload-') || typeof value !== 'string') continue;
    // The upload URL is the gateway's own (set by the route); Google's never reaches the client.
    if (name === 'x-goog-upload-url' || name === 'x-goog-upload-control-url') continue;
    reply.header(name, value);
  }
  const type = headerOf(answer.headers, 'content-type');
  if (type) reply.header('content-type', type);
  if (answer.stream) {
    const length = headerOf(answer.headers, 'content-length');
    if (/^\d+$/.test(length)) reply.header('content-length', length);
    return reply.send(answer.stream);
  }
  return reply.send(answer.body ?? Buffer.alloc(0));
}

export function sendAnswer(
  request: FastifyRequest,
  reply: FastifyReply,
  answer: UpstreamAnswer,
): FastifyReply {
  request.upstream = {
    keyId: answer.keyId,
    ms: answer.upstreamMs,
    attempts: answer.attempts,
    queuedMs: answer.queuedMs,
  };
  reply.code(answer.status).header('content-type', answer.contentType);
  return reply.send((answer as UnaryAnswer).body);
}
