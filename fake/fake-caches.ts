/**
 * The fake's cached contents (context caching), as Google serves them:
 * `POST /v1beta/cachedContents` (`{model, contents?, systemInstruction?, tools?, ttl | expireTime,
 * displayName?}`), `GET/PATCH/DELETE /v1beta/cachedContents/{id}` (PATCH changes `ttl` or
 * `expireTime` only), `GET /v1beta/cachedContents` (the key's project's caches). A cache belongs
 * to the project of the key that made it: another project's key gets 403 PERMISSION_DENIED
 * "CachedContent not found (or permission denied)" (counted in stats.permissionDenied), also
 * when generateContent names it in `cachedContent`. A cache's files must be its project's. A
 * cache lives until its expireTime (default: one hour).
 */
import { randomBytes } from 'node:crypto';
import type { FakeFiles } from './fake-files.ts';
import { countRequestTokens, MODELS_BY_NAME } from './fake-gemini-content.ts';
import { type ErrorReply, errModelNotFound, errorBody } from './fake-gemini-errors.ts';
import { errInvalid, type FakeRequestContext, type FakeSurface, isObject } from './fake-surface.ts';

const DEFAULT_TTL_MS = 3600 * 1000;
const ROUTE = /^\/(v1beta|v1)\/cachedContents(?:\/([a-z0-9-]+))?$/;
const DENIED_MESSAGE = 'CachedContent not found (or permission denied)';

interface Cache {
  name: string;
  project: string;
  /** `models/<id>`. */
  model: string;
  displayName?: string;
  createdMs: number;
  updatedMs: number;
  expiresMs: number;
  tokens: number;
}

export interface FakeCachesOptions {
  now?: () => number;
}

export class FakeCaches implements FakeSurface {
  private readonly caches = new Map<string, Cache>();
  private readonly files: FakeFiles;
  private readonly now: () => number;

  constructor(files: FakeFiles, opts: FakeCachesOptions = {}) {
    this.files = files;
    this.now = opts.now ?? Date.now;
  }

  matches(_method: string, path: string): boolean {
    return ROUTE.test(path);
  }

  reset(): void {
    this.caches.clear();
  }

  /** The live cache, or undefined (an expired one is forgotten). */
  live(name: string): Cache | undefined {
    const c = this.caches.get(name);
    if (c && c.expiresMs <= this.now()) {
      this.caches.delete(name);
      return undefined;
    }
    return c;
  }

  handle(ctx: FakeRequestContext) {
    const m = ROUTE.exec(ctx.path)!;
    const id = m[2];
    if (id === undefined) {
      if (ctx.method === 'POST') return this.create(ctx);
      if (ctx.method === 'GET') return this.list(ctx);
      return ctx.sendError(methodNotFound());
    }
    const cache = this.live(`cachedContents/${id}`);
    if (!cache || cache.project !== ctx.project) return this.deny(ctx, id);
    switch (ctx.method) {
      case 'GET':
        return ctx.send(200, JSON.stringify(json(cache)));
      case 'DELETE':
        this.caches.delete(cache.name);
        return ctx.send(200, '{}');
      case 'PATCH': {
        if (!isObject(ctx.body)) return ctx.sendError(errInvalid('Invalid JSON payload received.'));
        const expires = expiryOf(ctx.body, this.now());
        if (expires === 'invalid') return ctx.sendError(errInvalid('Invalid ttl or expire_time.'));
        if (expires === null)
          return ctx.sendError(errInvalid('Only ttl or expire_time can be updated on a CachedContent.'));
        cache.expiresMs = expires;
        cache.updatedMs = this.now();
        return ctx.send(200, JSON.stringify(json(cache)));
      }
      default:
        return ctx.sendError(methodNotFound());
    }
  }

  /**
   * The refusal for a generate request whose `cachedContent` its project may not use (another
   * project's, unknown, or expired: 403, `permission` true), or that breaks Google's rules for
   * cached requests (another model, systemInstruction/tools beside it: 400).
   */
  refuseUse(
    project: string,
    model: string,
    body: Record<string, unknown>,
  ): { reply: ErrorReply; permission: boolean } | null {
    const ref = body.cachedContent ?? body.cached_content;
    if (typeof ref !== 'string') return null;
    const cache = this.live(ref);
    if (!cache || cache.project !== project)
      return {
        reply: { status: 403, body: errorBody(403, 'PERMISSION_DENIED', DENIED_MESSAGE) },
        permission: true,
      };
    if (cache.model !== `models/${model}`)
      return {
        reply: errInvalid(
          `Model used by GenerateContent request (models/${model}) and CachedContent (${cache.model}) has to be the same.`,
        ),
        permission: false,
      };
    const beside = ['systemInstruction', 'system_instruction', 'tools', 'toolConfig', 'tool_config'];
    if (beside.some((k) => body[k] !== undefined))
      return {
        reply: errInvalid(
          'CachedContent can not be used with GenerateContent request setting system_instruction, tools or tool_config.\n\nProposed fix: move those values to CachedContent from GenerateContent request.',
        ),
        permission: false,
      };
    return null;
  }

  /** Tokens a cache holds (billed as cachedContentTokenCount), 0 for none. */
  tokensOf(name: unknown): number {
    return typeof name === 'string' ? (this.caches.get(name)?.tokens ?? 0) : 0;
  }

  private deny(ctx: FakeRequestContext, id: string): void {
    // denyPermission counts the refusal; Google's message for caches is its own.
    ctx.denyPermission('CachedContent', id, DENIED_MESSAGE);
  }

  private create(ctx: FakeRequestContext) {
    const body = ctx.body;
    if (ctx.bodyInvalid || !isObject(body))
      return ctx.sendError(errInvalid('Invalid JSON payload received.'));
    const modelName = typeof body.model === 'string' ? body.model : '';
    if (!modelName) return ctx.sendError(errInvalid('* CachedContent.model: model is required'));
    const model = modelName.startsWith('models/') ? modelName.slice(7) : modelName;
    const info = MODELS_BY_NAME.get(model);
    if (info === undefined || !info.methods.includes('generateContent'))
      return ctx.sendError(errModelNotFound(model, 'v1beta', 'createCachedContent'));
    const refusal = this.files.refuseUse(ctx.project, model, body);
    if (refusal) {
      return refusal.permission ? ctx.denyPermission('File', refusal.id) : ctx.sendError(refusal.reply);
    }
    const now = this.now();
    const expires = expiryOf(body, now);
    if (expires === 'invalid') return ctx.sendError(errInvalid('Invalid ttl or expire_time.'));
    const cache: Cache = {
      name: `cachedContents/${randomBytes(8).toString('hex')}`,
      project: ctx.project,
      model: `models/${model}`,
      displayName: typeof body.displayName === 'string' ? body.displayName : undefined,
      createdMs: now,
      updatedMs: now,
      expiresMs: expires ?? now + DEFAULT_TTL_MS,
      tokens: countRequestTokens(body).total,
    };
    this.caches.set(cache.name, cache);
    ctx.send(200, JSON.stringify(json(cache)));
  }

  private list(ctx: FakeRequestContext) {
    const asked = Number(ctx.query.get('pageSize') ?? 100);
    const size = Math.min(1000, asked > 0 ? Math.floor(asked) : 100);
    const from = Number(ctx.query.get('pageToken') ?? 0) || 0;
    const all = [...this.caches.values()].filter((c) => c.project === ctx.project && this.live(c.name));
    const page = all.slice(from, from + size).map(json);
    const out: Record<string, unknown> = {};
    if (page.length > 0) out.cachedContents = page;
    if (from + size < all.length) out.nextPageToken = String(from + size);
    ctx.send(200, JSON.stringify(out));
  }
}

function json(c: Cache): Record<string, unknown> {
  const out: Record<string, unknown> = { name: c.name, model: c.model };
  if (c.displayName) out.displayName = c.displayName;
  out.createTime = new Date(c.createdMs).toISOString();
  out.updateTime = new Date(c.updatedMs).toISOString();
  out.expireTime = new Date(c.expiresMs).toISOString();
  out.usageMetadata = { totalTokenCount: c.tokens };
  return out;
}

/** The expiry a body asks for (`ttl: "300s"` or `expireTime`), null when it names none. */
function expiryOf(body: Record<string, unknown>, now: number): number | null | 'invalid' {
  const ttl = body.ttl;
  const at = body.expireTime ?? body.expire_time;
  if (typeof ttl === 'string') {
    const m = /^(\d+(?:\.\d+)?)s$/.exec(ttl.trim());
    return m ? now + Math.round(Number(m[1]) * 1000) : 'invalid';
  }
  if (typeof at === 'string') {
    const ms = Date.parse(at);
    return Number.isFinite(ms) ? ms : 'invalid';
  }
  return null;
}

function methodNotFound(): ErrorReply {
  return { status: 404, body: errorBody(404, 'NOT_FOUND', 'Method not found.') };
}
