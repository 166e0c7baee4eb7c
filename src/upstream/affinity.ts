/**
 * Resource affinity: which Google Cloud project must serve a request, and whether its client
 * may use what it references at all.
 *
 * A file, cached content, batch, operation or interaction belongs to the project of the key that
 * created it: Google answers another project's key with 403 "You do not have permission to
 * access the File … or it may not exist.". The gateway records each resource it creates (name →
 * project, key, client: store.putResource) and pins a later request that references it to keys
 * of that project. Resources are private to the client that made them: another client gets
 * Google's own refusal, and nothing is sent upstream.
 *
 * Every route that forwards a request body calls `affinityPin` (native generateContent,
 * streamGenerateContent, countTokens; batches; interactions; cached contents); routes that name a
 * resource in their path call `authorizeResource`.
 */
import type { FastifyRequest } from 'fastify';
import {
  type GatewayError,
  InvalidArgument,
  NotFound,
  PermissionDenied,
  StoreUnavailable,
} from '../errors/gateway-errors.ts';
import { secretEquals } from '../http/auth.ts';
import type { AppDeps } from '../http/deps.ts';
import { type Pin, type ResourceOwner, resourceKind, type StateStore } from '../store/types.ts';

/** Files live 48 hours at Google (from their creation). */
export const FILE_LIFETIME_MS = 48 * 3600 * 1000;

/** A Files API id: lowercase letters, digits and dashes at Google; a little wider here. */
const ID = '[A-Za-z0-9][A-Za-z0-9_-]{0,127}';
const BARE_FILE = new RegExp(`^files/(${ID})$`);
/** The path of a file's URI (`https://generativelanguage.googleapis.com/v1beta/files/abc`, a video's `…/files/abc:download`). */
const FILE_URI_PATH = new RegExp(`^(?:/[^?#]*)?/v1(?:alpha|beta)?/files/(${ID})(?::download)?$`);
const CACHE_NAME = new RegExp(`^cachedContents/(${ID})$`);
const INTERACTION_NAME = new RegExp(`^(?:interactions/)?(${ID})$`);

/** Keys whose string value may name a file: fileData.fileUri, an Interactions `uri`, a batch's input file. */
const FILE_KEYS = new Set(['fileUri', 'file_uri', 'uri', 'fileName', 'file_name']);
const CACHE_KEYS = new Set(['cachedContent', 'cached_content']);
const INTERACTION_KEYS = new Set(['previous_interaction_id', 'previousInteractionId']);
/** Bytes one of which any reference contains: a body without them is not walked. */
const MARKERS = ['files/', 'cachedContent', 'cached_content', 'nteraction_id', 'nteractionId'].map((s) =>
  Buffer.from(s),
);
/** Deeper than any real request; a deeper body is not searched further. */
const MAX_DEPTH = 64;

/** `files/abc` for `files/abc` or a file URI whose path ends in `/v1beta/files/abc` (any host); else null. */
export function fileNameOf(value: string): string | null {
  const bare = BARE_FILE.exec(value);
  if (bare) return `files/${bare[1]}`;
  if (!/^https?:\/\//i.test(value)) return null;
  let path: string;
  try {
    path = new URL(value).pathname;
  } catch {
    return null;
  }
  const m = FILE_URI_PATH.exec(path);
  return m ? `files/${m[1]}` : null;
}

/** `cachedContents/x` (the only form Google accepts), else null. */
export function cacheNameOf(value: string): string | null {
  return CACHE_NAME.test(value) ? value : null;
}

/** `interactions/<id>` for an id (with or without the prefix), else null. */
export function interactionNameOf(value: string): string | null {
  const m = INTERACTION_NAME.exec(value);
  return m ? `interactions/${m[1]}` : null;
}

/**
 * Every resource a request body references, each name once, in order of appearance:
 * `fileData.fileUri` / `file_data.file_uri` anywhere (full URIs or `files/x`), an Interactions
 * content `uri`, a batch's input file (`fileName` / `file_name`), `cachedContent` /
 * `cached_content`, and `previous_interaction_id` (→ `interactions/<id>`). With `raw` (the
 * body's bytes), a body that contains none of the marker strings is not walked at all: the
 * common request costs one byte search.
 */
export function referencedResources(body: unknown, raw?: Buffer): string[] {
  if (raw !== undefined && !MARKERS.some((m) => raw.includes(m))) return [];
  const found = new Set<string>();
  const walk = (value: unknown, depth: number): void => {
    if (depth > MAX_DEPTH || typeof value !== 'object' || value === null) return;
    if (Array.isArray(value)) {
      for (const v of value) walk(v, depth + 1);
      return;
    }
    for (const key in value as Record<string, unknown>) {
      const v = (value as Record<string, unknown>)[key];
      if (typeof v !== 'string') {
        walk(v, depth + 1);
        continue;
      }
      const name = FILE_KEYS.has(key)
        ? fileNameOf(v)
        : CACHE_KEYS.has(key)
          ? cacheNameOf(v)
          : INTERACTION_KEYS.has(key)
            ? interactionNameOf(v)
            : null;
      if (name !== null) found.add(name);
    }
  };
  walk(body, 0);
  return [...found];
}

/** Who asks: the client (gateway client name) and whether an admin token came along. */
export interface Caller {
  client: string;
  admin: boolean;
}

export type AffinityDecision =
  /** Nothing the gateway knows: any key may serve (Google judges unknown resources itself). */
  | { kind: 'none' }
  /** Only keys of this project can serve. */
  | { kind: 'pin'; pin: { project: string } }
  /** Answer this, send nothing upstream. */
  | { kind: 'refuse'; problem: GatewayError };

/**
 * Google's answer for a resource its caller may not use, which is also its answer for one that
 * does not exist: a client learns nothing about another client's resources.
 */
export function resourceRefusal(name: string): GatewayError {
  const kind = resourceKind(name);
  const id = name.slice(name.lastIndexOf('/') + 1);
  if (kind === 'files')
    return new PermissionDenied(`You do not have permission to access the File ${id} or it may not exist.`);
  if (kind === 'cachedContents')
    return new PermissionDenied('CachedContent not found (or permission denied)');
  return new NotFound('Requested entity was not found.');
}

/**
 * The decision for a request that references `names`, whose owners (store.getResources, same
 * order; null = unknown to the gateway or expired) are `owners`. Pure.
 * - none known: no pin;
 * - one known resource of another client (and the caller is no admin): Google's refusal;
 * - known resources of two projects: a 400 (no key of either project can read the other's);
 * - otherwise: pin to the one project (unknown names ride along; Google judges them).
 */
export function decideAffinity(
  names: readonly string[],
  owners: readonly (ResourceOwner | null)[],
  caller: Caller,
): AffinityDecision {
  const projects = new Map<string, string>();
  for (let i = 0; i < names.length; i++) {
    const owner = owners[i];
    if (!owner) continue;
    if (owner.client !== caller.client && !caller.admin)
      return { kind: 'refuse', problem: resourceRefusal(names[i]!) };
    if (!projects.has(owner.project)) projects.set(owner.project, names[i]!);
  }
  if (projects.size === 0) return { kind: 'none' };
  if (projects.size > 1) {
    const which = [...projects.values()].join(', ');
    return {
      kind: 'refuse',
      problem: new InvalidArgument(
        `This request uses resources created with keys of different Google Cloud projects (${which}). ` +
          'Google serves a file, cached content, batch or interaction only to keys of the project that ' +
          'created it, so no key can serve them together: create them again so that one references the ' +
          'other (a cache made from the file, say), or use them in separate requests.',
      ),
    };
  }
  return { kind: 'pin', pin: { project: projects.keys().next().value! } };
}

/** The store failed (Redis gone): the owners are unknown, so nothing is sent. */
function storeDown(): StoreUnavailable {
  return new StoreUnavailable();
}

/** store.getResources, a failure of the store answered as a 503. */
export async function ownersOf(
  store: StateStore,
  names: readonly string[],
  nowMs = Date.now(),
): Promise<(ResourceOwner | null)[]> {
  if (names.length === 0) return [];
  try {
    return await store.getResources(names, nowMs);
  } catch {
    throw storeDown();
  }
}

/** Whether the request carries the admin token (X-Admin-Token: ADMIN_TOKEN): admins see every client's resources. */
export function isAdminRequest(request: FastifyRequest, adminToken: string | undefined): boolean {
  if (!adminToken) return false;
  const presented = request.headers['x-admin-token'];
  return typeof presented === 'string' && presented !== '' && secretEquals(presented, adminToken);
}

export function callerOf(request: FastifyRequest, deps: Pick<AppDeps, 'env'>): Caller {
  return {
    client: request.clientName ?? 'anonymous',
    admin: isAdminRequest(request, deps.env.ADMIN_TOKEN),
  };
}

/** Whether AFFINITY=off (a test-only switch): refusals stay, pins are dropped. */
function affinityOff(deps: Pick<AppDeps, 'env'>): boolean {
  return deps.env.AFFINITY === 'off';
}

/**
 * The pin for a request that references `names` (plus whatever `body` references): undefined
 * when none is known to the gateway; throws the refusal to answer (another client's
 * resource, two projects, the store down). With AFFINITY=off the client checks stay and the
 * pin is dropped: a test shows what happens without affinity.
 */
export async function affinityPin(
  deps: Pick<AppDeps, 'env' | 'store'>,
  request: FastifyRequest,
  body: unknown,
  opts: { raw?: Buffer; names?: readonly string[] } = {},
): Promise<Pin | undefined> {
  // The common request references nothing: no set or array is built for it.
  const found = referencedResources(body, opts.raw);
  const names = opts.names?.length ? [...new Set([...opts.names, ...found])] : found;
  if (names.length === 0) return undefined;
  const owners = await ownersOf(deps.store, names);
  const decision = decideAffinity(names, owners, callerOf(request, deps));
  if (decision.kind === 'refuse') throw decision.problem;
  if (decision.kind === 'none' || affinityOff(deps)) return undefined;
  return decision.pin;
}

/**
 * A route that names one resource in its path (GET/DELETE a file or cache, an operation, a
 * batch): its owner when the caller may use it; otherwise throws Google's refusal. A resource
 * unknown to the gateway (never made through it, expired, deleted) is refused too: a client
 * sees only what it created through the gateway.
 */
export async function authorizeResource(
  deps: Pick<AppDeps, 'env' | 'store'>,
  request: FastifyRequest,
  name: string,
): Promise<ResourceOwner> {
  const [owner] = await ownersOf(deps.store, [name]);
  const caller = callerOf(request, deps);
  if (!owner || (owner.client !== caller.client && !caller.admin)) throw resourceRefusal(name);
  return owner;
}

/**
 * Records a resource the caller just created with key `keyId` (its project is the key's), until
 * `expiresAtMs`. A store failure is thrown: the resource exists at Google, but without its
 * record no later request would be pinned to its project.
 */
export async function recordResource(
  deps: Pick<AppDeps, 'store' | 'pool'>,
  name: string,
  keyId: string,
  client: string,
  expiresAtMs: number,
): Promise<void> {
  const project = deps.pool.keys.find((k) => k.id === keyId)?.project ?? keyId;
  try {
    await deps.store.putResource({ name, owner: { project, keyId, client }, expiresAtMs });
  } catch {
    throw storeDown();
  }
}
