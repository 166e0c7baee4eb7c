import { hash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ANONYMOUS, type Client, envClients } from '../clients/client.ts';
import { HttpProblem } from './problem.ts';

/**
 * Where ClientAuth finds clients (a ClientRegistry). `version` grows with every change it knows
 * of; `shared`: admin-made clients may change on other instances, so a request of one (and an
 * unknown token) first asks the store whether anything changed (refresh: one read).
 */
export interface ClientDirectory {
  readonly version: number;
  readonly shared: boolean;
  lookup(digest: string): Client | undefined;
  refresh(): Promise<void>;
}

/** A fixed token → name map as a directory (tests, and gateways built without a registry). */
export function staticDirectory(tokens: ReadonlyMap<string, string>): ClientDirectory {
  const byDigest = new Map(envClients(tokens).map((c) => [c.tokenSha256, c]));
  return {
    version: 1,
    shared: false,
    lookup: (d) => byDigest.get(d),
    refresh: async () => {},
  };
}

interface Remembered {
  token: string;
  client: Client;
  version: number;
}

/**
 * The gateway's own client tokens. A client sends its token as x-goog-api-key, ?key=,
 * Authorization: Bearer, or X-API-Key (whichever its SDK uses). Tokens are looked up by their
 * SHA-256 digest, so a lookup's timing says nothing about a token's prefix.
 *
 * A keep-alive connection usually presents the same token on every request: the last token
 * accepted on a connection is remembered, with the directory's version, and compared in constant
 * time, which saves hashing the same token again on every request. A change to the clients (a
 * version this connection's entry is not of) makes the next request look its token up again.
 * Behind a reverse proxy one connection carries many clients' requests; the constant-time
 * comparison is why that still tells nobody anything.
 *
 * Clients of CLIENT_API_KEYS_MAP and CLIENTS_FILE are answered synchronously. An admin-made
 * client with a shared store (Redis) is answered after one store read (the clients' version),
 * so that a token deleted or rotated on any instance is refused at once.
 */
export class ClientAuth {
  private readonly directory: ClientDirectory;
  private readonly lastOnConnection = new WeakMap<object, Remembered>();
  readonly anonymous: boolean;

  constructor(directory: ClientDirectory | ReadonlyMap<string, string>, allowAnonymous: boolean) {
    if (directory instanceof Map) {
      this.directory = staticDirectory(directory);
      this.anonymous = allowAnonymous && directory.size === 0;
    } else {
      this.directory = directory as ClientDirectory;
      this.anonymous = allowAnonymous;
    }
  }

  /** The client's name (tests); a promise when the store must be asked. */
  authenticate(request: FastifyRequest): string | Promise<string> {
    const c = this.identify(request);
    return c instanceof Promise ? c.then((x) => x.name) : c.name;
  }

  /**
   * The request's client, or a promise of it; throws (or rejects with) a 401 HttpProblem. With
   * ALLOW_ANONYMOUS, a request without a known token is ANONYMOUS.
   */
  identify(request: FastifyRequest): Client | Promise<Client> {
    const token = presentedToken(request);
    if (token === undefined) {
      if (this.anonymous) return ANONYMOUS;
      throw new HttpProblem(
        401,
        'missing client token: send it as x-goog-api-key, Authorization: Bearer, X-API-Key or ?key=',
        {
          headers: { 'www-authenticate': 'Bearer' },
          googleStatus: 'UNAUTHENTICATED',
        },
      );
    }
    const dir = this.directory;
    const connection = request.raw.socket;
    const last = this.lastOnConnection.get(connection);
    if (last !== undefined && last.version === dir.version && sameString(token, last.token)) {
      if (dir.shared && last.client.source === 'admin') return this.fresh(connection, token, last);
      return usable(last.client);
    }
    const client = dir.lookup(digest(token));
    if (client === undefined) {
      // Maybe made on another instance a moment ago.
      if (dir.shared) return this.afterRefresh(connection, token);
      if (this.anonymous) return ANONYMOUS;
      throw invalidToken();
    }
    const entry = { token, client, version: dir.version };
    this.lastOnConnection.set(connection, entry);
    if (dir.shared && client.source === 'admin') return this.fresh(connection, token, entry);
    return usable(client);
  }

  /** An admin-made client of a shared store: valid only as the store has it now. */
  private async fresh(connection: object, token: string, entry: Remembered): Promise<Client> {
    await this.refreshed();
    if (entry.version === this.directory.version) return usable(entry.client);
    return this.lookupAgain(connection, token);
  }

  private async afterRefresh(connection: object, token: string): Promise<Client> {
    await this.refreshed();
    return this.lookupAgain(connection, token);
  }

  private lookupAgain(connection: object, token: string): Client {
    const client = this.directory.lookup(digest(token));
    if (client === undefined) {
      this.lastOnConnection.delete(connection);
      if (this.anonymous) return ANONYMOUS;
      throw invalidToken();
    }
    this.lastOnConnection.set(connection, { token, client, version: this.directory.version });
    return usable(client);
  }

  private async refreshed(): Promise<void> {
    try {
      await this.directory.refresh();
    } catch {
      // Whether the token is still valid cannot be known: refused, never admitted blind.
      throw new HttpProblem(503, 'client tokens cannot be checked now (the state store is unreachable)', {
        headers: { 'retry-after': '1' },
        googleStatus: 'UNAVAILABLE',
      });
    }
  }
}

function invalidToken(): HttpProblem {
  return new HttpProblem(401, 'invalid client token', {
    headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
    googleStatus: 'UNAUTHENTICATED',
  });
}

/** A known client that may call now: a disabled or expired one is a 401. */
function usable(client: Client): Client {
  if (!client.enabled)
    throw new HttpProblem(401, `client "${client.name}" is disabled`, {
      headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
      googleStatus: 'UNAUTHENTICATED',
    });
  if (client.expiresAtMs !== null && Date.now() >= client.expiresAtMs)
    throw new HttpProblem(401, `the token of client "${client.name}" has expired`, {
      headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
      googleStatus: 'UNAUTHENTICATED',
    });
  return client;
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
