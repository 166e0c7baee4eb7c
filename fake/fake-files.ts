/**
 * The fake's Files API, as Google serves it:
 * - resumable upload: `POST /upload/v1beta/files` with `X-Goog-Upload-Protocol: resumable` and
 *   `X-Goog-Upload-Command: start` answers `x-goog-upload-url`; the bytes follow there in chunks
 *   (`X-Goog-Upload-Command: upload` / `upload, finalize`, `X-Goog-Upload-Offset`), the last
 *   answer says `x-goog-upload-status: final` with `{"file": {…}}`;
 * - multipart upload (`X-Goog-Upload-Protocol: multipart`, `multipart/related`: metadata, then bytes);
 * - `GET /v1beta/files/{id}`, `DELETE /v1beta/files/{id}`, `GET /v1beta/files` (per project),
 *   `GET /v1beta/files/{id}:download?alt=media` (generated files only).
 * A file belongs to the project of the key that uploaded it: any other project's key gets 403
 * "You do not have permission to access the File <id> or it may not exist." (counted in
 * stats.permissionDenied), also when a generateContent request names it in `fileData.fileUri`.
 * Files are PROCESSING for `fileProcessingMs` after their upload, then ACTIVE, and live 48 hours.
 * Uploaded bytes are counted and hashed (sha256Hash), never kept: a 1 GB upload costs the fake
 * no memory.
 */
import { createHash, type Hash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { FakeFileStore, type FakeStoredFile, fileId } from './fake-file-store.ts';
import type { ErrorReply } from './fake-gemini-errors.ts';
import { errorBody } from './fake-gemini-errors.ts';
import { errInvalid, type FakeRequestContext, type FakeSurface, isObject } from './fake-surface.ts';

export const FILE_TTL_MS = 48 * 3600 * 1000;
const GRANULARITY = 8 * 1024 * 1024;
/** The largest file Google takes (2 GB). */
const MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024;
/** A multipart upload is read whole by the fake (tests send small ones). */
const MAX_MULTIPART_BYTES = 64 * 1024 * 1024;
const EMPTY = Buffer.alloc(0);

export interface FakeFilesOptions {
  /** How long an uploaded file stays PROCESSING (default 0: ACTIVE at once). */
  fileProcessingMs?: number;
  now?: () => number;
}

/** What the fake knows of a file beyond the shared store's record. */
interface FileMeta {
  sizeBytes: number;
  sha256Hash: string;
  createdMs: number;
  activeAtMs: number;
  expiresAtMs: number;
}

interface UploadSession {
  project: string;
  declaredSize: number | null;
  mimeType: string;
  displayName?: string;
  name?: string;
  received: number;
  hash: Hash;
  /** A chunk is being received: another one for the same session waits its turn (Google: 409). */
  busy: boolean;
}

const FILE_PATH = /^\/(v1beta|v1)\/files\/([a-z0-9-]+)(:download)?$/;
/** A Files API URI (`…/v1beta/files/abc`) or name (`files/abc`) in a request. */
const FILE_REF =
  /^(?:https?:\/\/[^/]+(?:\/[^?#]*)?\/v1(?:alpha|beta)?\/)?files\/([a-z0-9-]+)(?::download)?(?:\?.*)?$/;

export class FakeFiles implements FakeSurface {
  readonly store: FakeFileStore;
  private readonly meta = new Map<string, FileMeta>();
  private readonly sessions = new Map<string, UploadSession>();
  private readonly processingMs: number;
  private readonly now: () => number;
  /** Bytes received by uploads, in all. */
  uploadedBytes = 0;

  constructor(store: FakeFileStore = new FakeFileStore(), opts: FakeFilesOptions = {}) {
    this.store = store;
    this.processingMs = Math.max(0, opts.fileProcessingMs ?? 0);
    this.now = opts.now ?? Date.now;
  }

  matches(_method: string, path: string): boolean {
    return path === '/upload/v1beta/files' || path === '/v1beta/files' || FILE_PATH.test(path);
  }

  /** Uploads read their own bodies (streamed and discarded, never buffered by the fake). */
  streamsBody(method: string, path: string): boolean {
    return method === 'POST' && path === '/upload/v1beta/files';
  }

  reset(): void {
    this.meta.clear();
    this.sessions.clear();
  }

  handle(ctx: FakeRequestContext) {
    if (ctx.path === '/upload/v1beta/files') {
      void this.upload(ctx).catch(() => {
        if (!ctx.res.headersSent) ctx.sendError(errInvalid('Upload failed.'));
      });
      return;
    }
    if (ctx.path === '/v1beta/files') {
      if (ctx.method !== 'GET') return ctx.sendError(methodNotFound());
      return this.list(ctx);
    }
    const m = FILE_PATH.exec(ctx.path)!;
    const name = `files/${m[2]}`;
    const file = this.live(name);
    if (!file || file.project !== ctx.project) return ctx.denyPermission('File', m[2]!);
    if (m[3]) {
      if (ctx.method !== 'GET') return ctx.sendError(methodNotFound());
      if (ctx.query.get('alt') !== 'media') return ctx.sendError(errInvalid('Download requires alt=media.'));
      if (file.source !== 'GENERATED')
        return ctx.sendError(
          errInvalid(`Only generated files can be downloaded. File ${m[2]} was uploaded.`),
        );
      return ctx.sendBytes(200, file.mimeType, file.bytes);
    }
    if (ctx.method === 'GET') return ctx.send(200, JSON.stringify(this.json(file, ctx.req)));
    if (ctx.method === 'DELETE') {
      this.store.delete(name);
      this.meta.delete(name);
      return ctx.send(200, '{}');
    }
    return ctx.sendError(methodNotFound());
  }

  /**
   * The refusal for a generate request that names a file its project may not use: another
   * project's or an unknown one (403, `permission` true: count it), or one still PROCESSING (400).
   */
  refuseUse(
    project: string,
    _model: string,
    body: unknown,
  ): { reply: ErrorReply; permission: boolean; id: string } | null {
    for (const ref of fileRefs(body)) {
      const file = this.live(`files/${ref}`);
      if (!file || file.project !== project)
        return {
          reply: {
            status: 403,
            body: errorBody(
              403,
              'PERMISSION_DENIED',
              `You do not have permission to access the File ${ref} or it may not exist.`,
            ),
          },
          permission: true,
          id: ref,
        };
      if (this.stateOf(file) !== 'ACTIVE')
        return {
          reply: {
            status: 400,
            body: errorBody(
              400,
              'FAILED_PRECONDITION',
              `The File ${ref} is not in an ACTIVE state and usage is not allowed.`,
            ),
          },
          permission: false,
          id: ref,
        };
    }
    return null;
  }

  /** A generated file (a Veo video, a batch's results) of `project`, downloadable by it. */
  addGenerated(project: string, mimeType: string, bytes: Buffer, displayName?: string): FakeStoredFile {
    const file = this.store.add({ project, mimeType, bytes, source: 'GENERATED', displayName });
    this.remember(file.name, bytes.length, createHash('sha256').update(bytes).digest('base64'), 0);
    return file;
  }

  /** The file when it exists and has not expired (an expired one is forgotten). */
  live(name: string): FakeStoredFile | undefined {
    const file = this.store.get(name);
    if (!file) return undefined;
    const meta = this.meta.get(name);
    if (meta && meta.expiresAtMs <= this.now()) {
      this.store.delete(name);
      this.meta.delete(name);
      return undefined;
    }
    return file;
  }

  private remember(name: string, sizeBytes: number, sha256Hash: string, processingMs: number): void {
    const now = this.now();
    this.meta.set(name, {
      sizeBytes,
      sha256Hash,
      createdMs: now,
      activeAtMs: now + processingMs,
      expiresAtMs: now + FILE_TTL_MS,
    });
  }

  private stateOf(file: FakeStoredFile): 'PROCESSING' | 'ACTIVE' {
    const meta = this.meta.get(file.name);
    return meta && meta.activeAtMs > this.now() ? 'PROCESSING' : 'ACTIVE';
  }

  /** Google's File resource. */
  json(file: FakeStoredFile, req: IncomingMessage): Record<string, unknown> {
    const meta = this.meta.get(file.name);
    const created = meta ? new Date(meta.createdMs).toISOString() : file.createTime;
    const id = file.name.slice('files/'.length);
    const out: Record<string, unknown> = { name: file.name };
    if (file.displayName) out.displayName = file.displayName;
    out.mimeType = file.mimeType;
    out.sizeBytes = String(meta?.sizeBytes ?? file.bytes.length);
    out.createTime = created;
    out.updateTime = created;
    out.expirationTime = new Date(
      (meta?.createdMs ?? Date.parse(file.createTime)) + FILE_TTL_MS,
    ).toISOString();
    out.sha256Hash = meta?.sha256Hash ?? createHash('sha256').update(file.bytes).digest('base64');
    out.uri = `${origin(req)}/v1beta/files/${id}`;
    if (file.source === 'GENERATED') out.downloadUri = `${origin(req)}/v1beta/files/${id}:download?alt=media`;
    out.state = this.stateOf(file);
    out.source = file.source;
    return out;
  }

  private list(ctx: FakeRequestContext) {
    const asked = Number(ctx.query.get('pageSize') ?? 10);
    const size = Math.min(100, asked > 0 ? Math.floor(asked) : 10);
    const from = Number(ctx.query.get('pageToken') ?? 0) || 0;
    const all = this.store
      .list(ctx.project)
      .filter((f) => this.live(f.name))
      .reverse();
    const page = all.slice(from, from + size).map((f) => this.json(f, ctx.req));
    const out: Record<string, unknown> = {};
    if (page.length > 0) out.files = page;
    if (from + size < all.length) out.nextPageToken = String(from + size);
    ctx.send(200, JSON.stringify(out));
  }

  private async upload(ctx: FakeRequestContext): Promise<void> {
    const uploadId = ctx.query.get('upload_id');
    if (uploadId !== null) return this.chunk(ctx, uploadId);
    const protocol = header(ctx.req, 'x-goog-upload-protocol').toLowerCase();
    if (protocol === 'resumable') {
      if (header(ctx.req, 'x-goog-upload-command').toLowerCase() !== 'start')
        return drainThen(ctx.req, () => ctx.sendError(errInvalid('The first command must be start.')));
      const body = await readJson(ctx.req, 1024 * 1024);
      const file = isObject(body) && isObject(body.file) ? body.file : {};
      const declared = Number(header(ctx.req, 'x-goog-upload-header-content-length'));
      const mimeType =
        header(ctx.req, 'x-goog-upload-header-content-type') ||
        (typeof file.mimeType === 'string' ? file.mimeType : '');
      if (!mimeType) return ctx.sendError(errInvalid('The mime type of the file is not specified.'));
      if (Number.isFinite(declared) && declared > MAX_FILE_BYTES)
        return ctx.sendError(errInvalid('File size exceeds the 2 GB limit.'));
      const id = randomBytes(24).toString('base64url');
      this.sessions.set(id, {
        project: ctx.project,
        declaredSize: Number.isFinite(declared) && declared >= 0 ? declared : null,
        mimeType,
        displayName: typeof file.displayName === 'string' ? file.displayName : undefined,
        name: typeof file.name === 'string' ? file.name : undefined,
        received: 0,
        hash: createHash('sha256'),
        busy: false,
      });
      const url = `${origin(ctx.req)}/upload/v1beta/files?upload_id=${id}&upload_protocol=resumable`;
      ctx.res.setHeader('x-goog-upload-url', url);
      ctx.res.setHeader('x-goog-upload-control-url', url);
      ctx.res.setHeader('x-goog-upload-status', 'active');
      ctx.res.setHeader('x-goog-upload-chunk-granularity', String(GRANULARITY));
      return ctx.send(200, '');
    }
    if (protocol === 'multipart') return this.multipart(ctx);
    return drainThen(ctx.req, () =>
      ctx.sendError(errInvalid('Upload protocol must be resumable or multipart (X-Goog-Upload-Protocol).')),
    );
  }

  private async chunk(ctx: FakeRequestContext, uploadId: string): Promise<void> {
    const session = this.sessions.get(uploadId);
    if (!session)
      return drainThen(ctx.req, () =>
        ctx.sendError({ status: 404, body: errorBody(404, 'NOT_FOUND', 'Upload session not found.') }),
      );
    // The session is its project's: another project's key may not continue it.
    if (session.project !== ctx.project)
      return drainThen(ctx.req, () => ctx.denyPermission('File', 'upload session'));
    const command = header(ctx.req, 'x-goog-upload-command')
      .toLowerCase()
      .split(',')
      .map((c) => c.trim())
      .filter(Boolean);
    if (command.includes('cancel')) {
      this.sessions.delete(uploadId);
      ctx.res.setHeader('x-goog-upload-status', 'cancelled');
      return drainThen(ctx.req, () => ctx.send(200, ''));
    }
    if (command.includes('query')) {
      ctx.res.setHeader('x-goog-upload-status', 'active');
      ctx.res.setHeader('x-goog-upload-size-received', String(session.received));
      return drainThen(ctx.req, () => ctx.send(200, ''));
    }
    if (!command.includes('upload') && !command.includes('finalize'))
      return drainThen(ctx.req, () => ctx.sendError(errInvalid('Unknown X-Goog-Upload-Command.')));
    const offset = Number(header(ctx.req, 'x-goog-upload-offset') || '0');
    if (offset !== session.received || session.busy) {
      ctx.res.setHeader('x-goog-upload-status', 'active');
      ctx.res.setHeader('x-goog-upload-size-received', String(session.received));
      return drainThen(ctx.req, () =>
        ctx.sendError(errInvalid(`Invalid offset ${offset}: ${session.received} bytes were received.`)),
      );
    }
    session.busy = true;
    try {
      for await (const piece of ctx.req as AsyncIterable<Buffer>) {
        session.received += piece.length;
        this.uploadedBytes += piece.length;
        session.hash.update(piece);
        if (session.received > MAX_FILE_BYTES) {
          this.sessions.delete(uploadId);
          ctx.res.setHeader('connection', 'close');
          return ctx.sendError(errInvalid('File size exceeds the 2 GB limit.'));
        }
      }
    } finally {
      session.busy = false;
    }
    if (!command.includes('finalize')) {
      ctx.res.setHeader('x-goog-upload-status', 'active');
      ctx.res.setHeader('x-goog-upload-size-received', String(session.received));
      return ctx.send(200, '');
    }
    if (session.declaredSize !== null && session.received !== session.declaredSize) {
      ctx.res.setHeader('x-goog-upload-status', 'active');
      return ctx.sendError(
        errInvalid(`The file has ${session.received} bytes; ${session.declaredSize} were announced.`),
      );
    }
    this.sessions.delete(uploadId);
    const file = this.finish(session.project, session.mimeType, session.received, session.hash, {
      displayName: session.displayName,
      name: session.name,
    });
    ctx.res.setHeader('x-goog-upload-status', 'final');
    ctx.send(200, JSON.stringify({ file: this.json(file, ctx.req) }));
  }

  private async multipart(ctx: FakeRequestContext): Promise<void> {
    const type = header(ctx.req, 'content-type');
    const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(type);
    if (!/^multipart\//i.test(type) || !boundary)
      return drainThen(ctx.req, () =>
        ctx.sendError(errInvalid('A multipart upload needs a multipart body.')),
      );
    const whole = await readAll(ctx.req, MAX_MULTIPART_BYTES);
    if (whole === null) return ctx.sendError(errInvalid('Multipart body too large for this fake.'));
    const parts = splitMultipart(whole, boundary[1] ?? boundary[2]!);
    if (parts.length < 2) return ctx.sendError(errInvalid('A multipart upload has metadata and media.'));
    let meta: unknown;
    try {
      meta = JSON.parse(parts[0]!.body.toString('utf8'));
    } catch {
      return ctx.sendError(errInvalid('Invalid JSON payload received.'));
    }
    const fileMeta = isObject(meta) && isObject(meta.file) ? meta.file : {};
    const media = parts[1]!;
    const mimeType =
      (typeof fileMeta.mimeType === 'string' ? fileMeta.mimeType : '') ||
      media.contentType ||
      'application/octet-stream';
    const hash = createHash('sha256').update(media.body);
    this.uploadedBytes += media.body.length;
    const file = this.finish(ctx.project, mimeType, media.body.length, hash, {
      displayName: typeof fileMeta.displayName === 'string' ? fileMeta.displayName : undefined,
      name: typeof fileMeta.name === 'string' ? fileMeta.name : undefined,
    });
    ctx.res.setHeader('x-goog-upload-status', 'final');
    ctx.send(200, JSON.stringify({ file: this.json(file, ctx.req) }));
  }

  private finish(
    project: string,
    mimeType: string,
    size: number,
    hash: Hash,
    o: { displayName?: string; name?: string },
  ): FakeStoredFile {
    const wanted =
      o.name && /^files\/[a-z0-9-]{1,40}$/.test(o.name) && !this.live(o.name) ? o.name : undefined;
    const file = this.store.add({
      name: wanted ?? `files/${fileId()}`,
      project,
      mimeType,
      bytes: EMPTY,
      source: 'UPLOADED',
      displayName: o.displayName,
    });
    this.remember(file.name, size, hash.digest('base64'), this.processingMs);
    return file;
  }
}

function methodNotFound(): ErrorReply {
  return { status: 404, body: errorBody(404, 'NOT_FOUND', 'Method not found.') };
}

function header(req: IncomingMessage, name: string): string {
  const v = req.headers[name];
  return typeof v === 'string' ? v : Array.isArray(v) ? (v[0] ?? '') : '';
}

function origin(req: IncomingMessage): string {
  return `http://${req.headers.host ?? '127.0.0.1'}`;
}

/** Reads (and throws away) what is left of the request, then answers. */
function drainThen(req: IncomingMessage, answer: () => void) {
  if (req.readableEnded) return answer();
  req.on('end', answer);
  req.on('error', () => {});
  req.resume();
}

async function readAll(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > limit) {
      req.resume();
      return null;
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const raw = await readAll(req, limit);
  if (raw === null || raw.length === 0) return undefined;
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** The parts of a multipart body: each one's Content-Type and bytes. */
export function splitMultipart(body: Buffer, boundary: string): Array<{ contentType: string; body: Buffer }> {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: Array<{ contentType: string; body: Buffer }> = [];
  let at = body.indexOf(delimiter);
  while (at >= 0) {
    const start = at + delimiter.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const next = body.indexOf(delimiter, start);
    if (next < 0) break;
    const part = body.subarray(start, next);
    const headerEnd = part.indexOf('\r\n\r\n');
    if (headerEnd >= 0) {
      const head = part.subarray(0, headerEnd).toString('utf8');
      let content = part.subarray(headerEnd + 4);
      if (content.subarray(-2).toString() === '\r\n') content = content.subarray(0, -2);
      const ct = /content-type:\s*([^\r\n]+)/i.exec(head)?.[1]?.trim() ?? '';
      parts.push({ contentType: ct, body: content });
    }
    at = next;
  }
  return parts;
}

/** The ids of the Files API files a request names (fileData.fileUri, file_data.file_uri, anywhere). */
export function fileRefs(body: unknown): string[] {
  const out = new Set<string>();
  const walk = (v: unknown, depth: number): void => {
    if (depth > 64 || typeof v !== 'object' || v === null) return;
    if (Array.isArray(v)) {
      for (const x of v) walk(x, depth + 1);
      return;
    }
    for (const [k, x] of Object.entries(v)) {
      if (typeof x === 'string') {
        if (k === 'fileUri' || k === 'file_uri') {
          const m = FILE_REF.exec(x);
          if (m) out.add(m[1]!);
        }
      } else walk(x, depth + 1);
    }
  };
  walk(body, 0);
  return [...out];
}
