import { hash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HttpProblem } from './problem.ts';
import { routeOf } from './route.ts';

/**
 * The gateway's own client tokens. A client sends its token as x-goog-api-key, ?key=,
 * Authorization: Bearer, or X-API-Key (whichever its SDK uses). Tokens are looked up by their
 * SHA-256 digest, so a lookup's timing says nothing about a token's prefix.
 *
 * A keep-alive connection usually presents the same token on every request: the last token
 * accepted on a connection is remembered and compared in constant time, which saves the digest
 * (about 1.5% of the proxy's CPU). Behind a reverse proxy one connection carries many clients'
 * requests; the constant-time comparison is why that still tells nobody anything.
 */
export class ClientAuth {
  private readonly byDigest = new Map<string, string>();
  private readonly lastOnConnection = new WeakMap<object, { token: string; name: string }>();
  readonly anonymous: boolean;

  constructor(tokens: Map<string, string>, allowAnonymous: boolean) {
    for (const [token, name] of tokens) this.byDigest.set(digest(token), name);
    this.anonymous = allowAnonymous && tokens.size === 0;
  }

  /** Client name for a token, or undefined. */
  nameFor(token: string): string | undefined {
    return this.byDigest.get(digest(token));
  }

  authenticate(request: FastifyRequest): string {
    if (this.anonymous) return 'anonymous';
    const token = presentedToken(request);
    if (token === undefined) {
      throw new HttpProblem(
        401,
        'missing client token: send it as x-goog-api-key, Authorization: Bearer, X-API-Key or ?key=',
        {
          headers: { 'www-authenticate': 'Bearer' },
          googleStatus: 'UNAUTHENTICATED',
        },
      );
    }
    const connection = request.raw.socket;
    const last = this.lastOnConnection.get(connection);
    if (last !== undefined && sameString(token, last.token)) return last.name;
    const name = this.nameFor(token);
    if (name === undefined) {
      throw new HttpProblem(401, 'invalid client token', {
        headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
        googleStatus: 'UNAUTHENTICATED',
      });
    }
    this.lastOnConnection.set(connection, { token, name });
    return name;
  }
}

export function presentedToken(request: FastifyRequest): string | undefined {
  const h = request.headers;
  const goog = h['x-goog-api-key'];
  if (typeof goog === 'string' && goog) return goog;
  const auth = h.authorization;
  if (typeof auth === 'string' && /^Bearer\s+/i.test(auth))
    return auth.replace(/^Bearer\s+/i, '').trim() || undefined;
  const apiKey = h['x-api-key'];
  if (typeof apiKey === 'string' && apiKey) return apiKey;
  const q = request.query as Record<string, unknown> | undefined;
  if (q && typeof q.key === 'string' && q.key) return q.key;
  return undefined;
}

function digest(token: string): string {
  return hash('sha256', token);
}

/** String equality in time that depends on the length only, not on where the strings differ. */
export function sameString(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** Constant-time comparison of a presented secret with the expected one. */
export function secretEquals(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  const a = hash('sha256', presented, 'buffer');
  const b = hash('sha256', expected, 'buffer');
  return timingSafeEqual(a, b);
}

export function installClientAuth(app: FastifyInstance, auth: ClientAuth): void {
  // A callback hook: authentication is synchronous, no promise per request.
  app.addHook('onRequest', (request, _reply, done) => {
    const route = routeOf(request);
    if (route.url === undefined || route.config?.clientAuth === false) return done();
    try {
      request.clientName = auth.authenticate(request);
    } catch (err) {
      return done(err as Error);
    }
    done();
  });
}

/** The admin token as presented: `Authorization: Bearer <token>` or `X-Admin-Token: <token>`. */
export function presentedAdminToken(request: FastifyRequest): string | undefined {
  const header = request.headers['x-admin-token'];
  if (typeof header === 'string' && header) return header;
  const auth = request.headers.authorization;
  if (typeof auth === 'string' && /^Bearer\s+/i.test(auth))
    return auth.replace(/^Bearer\s+/i, '').trim() || undefined;
  return undefined;
}

/**
 * Guards every route of the plugin it is installed in with a shared secret (ADMIN_TOKEN,
 * METRICS_TOKEN), compared in constant time. 401 without it or with a wrong one.
 */
export function installTokenGuard(
  app: FastifyInstance,
  expected: string,
  realm: string,
  present: (request: FastifyRequest) => string | undefined = presentedAdminToken,
): void {
  app.addHook('onRequest', async (request) => {
    const token = present(request);
    if (token === undefined) {
      throw new HttpProblem(401, `missing ${realm} token`, {
        headers: { 'www-authenticate': `Bearer realm="${realm}"` },
      });
    }
    if (!secretEquals(token, expected)) {
      throw new HttpProblem(401, `invalid ${realm} token`, {
        headers: { 'www-authenticate': `Bearer realm="${realm}", error="invalid_token"` },
      });
    }
  });
}
