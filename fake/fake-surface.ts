/**
 * The fake's stateful surfaces (batches, long-running operations, generated files, ...): each is
 * a module of its own that startFakeGemini asks, for a path its fixed routes do not know, whether
 * it serves it. A surface answers after the key was checked (invalid, leaked, ... keys are
 * refused as for every call), with the project of the key, so it can apply Google's ownership
 * rule: a resource belongs to the project of the key that made it, and another project's key
 * gets 403 PERMISSION_DENIED.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ErrorReply, errorBody } from './fake-gemini-errors.ts';

export interface FakeRequestContext {
  method: string;
  /** Decoded path, without the query. */
  path: string;
  /** The raw query string ('' or '?…'). */
  search: string;
  query: URLSearchParams;
  apiKey: string;
  /** The project of the key the request came with. */
  project: string;
  /** The parsed JSON body; undefined without one. */
  body: unknown;
  /** The body was not JSON. */
  bodyInvalid: boolean;
  raw: Buffer | null;
  req: IncomingMessage;
  res: ServerResponse;
  /** Sends a JSON answer (after the fake's latency). */
  send(status: number, body: Buffer | string): void;
  /** Sends raw bytes with a content type (downloads). */
  sendBytes(status: number, contentType: string, body: Buffer): void;
  sendError(err: ErrorReply): void;
  /**
   * Google's 403 for another project's resource ("You do not have permission to access the
   * <Kind> <id> or it may not exist."), counted in stats.permissionDenied. `message`: the
   * kind's own wording when Google has one (caches: "CachedContent not found (or permission denied)").
   */
  denyPermission(kind: string, id: string, message?: string): void;
}

export interface FakeSurface {
  /** Whether the surface serves this method and path (asked before the key is checked). */
  matches(method: string, path: string): boolean;
  handle(ctx: FakeRequestContext): void;
  /** Forgets every resource (resetStats does not; tests call it through FakeGemini.resetState). */
  reset?(): void;
  /** The surface reads this request's body itself from ctx.req (an upload: streamed, never held whole). */
  streamsBody?(method: string, path: string): boolean;
  /**
   * A refusal for a generate request (generateContent, streamGenerateContent, countTokens) that
   * uses one of the surface's resources its project may not use (`permission`: a 403 counted in
   * stats.permissionDenied), or null.
   */
  refuseUse?(
    project: string,
    model: string,
    body: Record<string, unknown>,
  ): { reply: ErrorReply; permission: boolean } | null;
}

/** Google's 403 for a resource of another project (or one that does not exist). */
export function errPermissionDenied(kind: string, id: string, message?: string): ErrorReply {
  return {
    status: 403,
    body: errorBody(
      403,
      'PERMISSION_DENIED',
      message ?? `You do not have permission to access the ${kind} ${id} or it may not exist.`,
    ),
  };
}

export function errNotFound(message = 'Requested entity was not found.'): ErrorReply {
  return { status: 404, body: errorBody(404, 'NOT_FOUND', message) };
}

export function errInvalid(message: string): ErrorReply {
  return { status: 400, body: errorBody(400, 'INVALID_ARGUMENT', message) };
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
