import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { ClientBudget } from '../clients/budget.ts';
import { ANONYMOUS, type Client } from '../clients/client.ts';
import { noteClient } from '../clients/models.ts';
import type { StateStore } from '../store/types.ts';
import type { ClientAuth } from './auth.ts';
import { HttpProblem } from './problem.ts';
import { routeOf } from './route.ts';

/**
 * Caller rate limits (not the pool keys' budgets). Counters are fixed windows in the state
 * store (store.hit), so every instance sharing a Redis counts together.
 *
 * Per client IP, two windows must both admit a request:
 *  - a 1-second window of BURST_RATE_LIMIT requests (how many may arrive at once), and
 *  - a 60-second window of GLOBAL_RATE_LIMIT requests (the sustained rate).
 * The short window also keeps a caller from spending a whole minute's allowance in the last
 * second of one window and the first of the next. By default (IP_LIMIT_SCOPE=unauthenticated)
 * they apply only to requests without a valid client token: an authenticated backend calling
 * from one address is governed by its client's limits instead (installCallerGate). Per client
 * (token), a 60-second window of its own requests_per_minute, else CLIENT_RATE_LIMITS[name] or
 * CLIENT_RATE_LIMIT requests (src/clients/budget.ts). 0 switches a limit off.
 *
 * When the store fails or does not answer within REDIS_COMMAND_TIMEOUT_MS (every command of the
 * gateway's Redis clients is bounded by it), the limits fail open: the request goes on unchecked
 * (one warning per 10 s). The caller limits protect the gateway, not Google's quotas: pool
 * requests still need the store for their key (503 while it is down), so failing closed here
 * would only turn away requests that need no store (application answers from the cache, docs).
 */
export interface RateLimitSettings {
  /** Requests per minute per IP (GLOBAL_RATE_LIMIT); 0 = off. */
  ipPerMinute: number;
  /** Requests per second per IP (BURST_RATE_LIMIT); 0 = off. */
  ipBurst: number;
  /** Requests per minute per client without its own limit (CLIENT_RATE_LIMIT); 0 = off. */
  clientPerMinute: number;
  /** Per-client requests per minute by client name (CLIENT_RATE_LIMITS). */
  perClient: ReadonlyMap<string, number>;
}

export type RateLimitScope = 'ip_burst' | 'ip_minute' | 'client';

interface WindowResult {
  scope: RateLimitScope;
  limit: number;
  windowMs: number;
  count: number;
  resetAtMs: number;
}

export interface RateLimitDecision {
  allowed: boolean;
  /** The window that refused the request, or else the one with the least room left. */
  binding: WindowResult | null;
}

const MINUTE_MS = 60_000;
const SECOND_MS = 1_000;
const STORE_WARN_INTERVAL_MS = 10_000;

export class CallerRateLimiter {
  private settings: RateLimitSettings;
  private readonly store: StateStore;
  private readonly logger?: Logger;
  private lastStoreWarn = 0;
  private readonly now: () => number;
  onRefusal?: (scope: RateLimitScope) => void;

  constructor(
    store: StateStore,
    settings: RateLimitSettings,
    opts: { logger?: Logger; now?: () => number } = {},
  ) {
    this.store = store;
    this.settings = settings;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
  }

  /** Applies new limits (configuration reload); counters already running are kept. */
  update(settings: RateLimitSettings): void {
    this.settings = settings;
  }

  get current(): RateLimitSettings {
    return this.settings;
  }

  clientLimit(name: string): number {
    return this.settings.perClient.get(name) ?? this.settings.clientPerMinute;
  }

  /** Whether any per-IP window is on (checked before doing any work per request). */
  get ipLimited(): boolean {
    return this.settings.ipBurst > 0 || this.settings.ipPerMinute > 0;
  }

  checkIp(ip: string): Promise<RateLimitDecision> {
    const s = this.settings;
    const windows: Array<[RateLimitScope, number, number, string]> = [];
    if (s.ipBurst > 0) windows.push(['ip_burst', s.ipBurst, SECOND_MS, `rl:ip:s:${ip}`]);
    if (s.ipPerMinute > 0) windows.push(['ip_minute', s.ipPerMinute, MINUTE_MS, `rl:ip:m:${ip}`]);
    return this.check(windows);
  }

  checkClient(name: string): Promise<RateLimitDecision> {
    const limit = this.clientLimit(name);
    return this.check(limit > 0 ? [['client', limit, MINUTE_MS, `rl:client:${name}`]] : []);
  }

  private async check(windows: Array<[RateLimitScope, number, number, string]>): Promise<RateLimitDecision> {
    if (windows.length === 0) return { allowed: true, binding: null };
    const now = this.now();
    let results: WindowResult[];
    try {
      results = await Promise.all(
        windows.map(async ([scope, limit, windowMs, name]) => {
          const hit = await this.store.hit(name, windowMs, now);
          return { scope, limit, windowMs, count: hit.count, resetAtMs: hit.resetAtMs };
        }),
      );
    } catch (err) {
      // The store being down must not take the gateway down with it: fail open, say so.
      if (now - this.lastStoreWarn > STORE_WARN_INTERVAL_MS) {
        this.lastStoreWarn = now;
        this.logger?.warn(
          { err: String(err) },
          'rate limit counters unavailable; requests admitted unchecked',
        );
      }
      return { allowed: true, binding: null };
    }
    const refused = results.find((r) => r.count > r.limit);
    if (refused) {
      this.onRefusal?.(refused.scope);
      return { allowed: false, binding: refused };
    }
    let tightest = results[0]!;
    for (const r of results) if (r.limit - r.count < tightest.limit - tightest.count) tightest = r;
    return { allowed: true, binding: tightest };
  }
}

export function exempt(request: FastifyRequest): boolean {
  const route = routeOf(request);
  if (route.config?.rateLimit === false) return true;
  const url = route.url;
  return url !== undefined && (url === '/docs' || url.startsWith('/docs/'));
}

function secondsUntil(ms: number, now: number): number {
  return Math.max(1, Math.ceil((ms - now) / 1000));
}

function setHeaders(reply: FastifyReply, d: RateLimitDecision, now: number): void {
  const b = d.binding;
  if (!b) return;
  reply.header('ratelimit-limit', String(b.limit));
  reply.header('ratelimit-remaining', String(Math.max(0, b.limit - b.count)));
  reply.header('ratelimit-reset', String(secondsUntil(b.resetAtMs, now)));
}

function refuse(d: RateLimitDecision, now: number, what: string): HttpProblem {
  const b = d.binding!;
  const reset = secondsUntil(b.resetAtMs, now);
  const per = b.windowMs === SECOND_MS ? 'second' : 'minute';
  return new HttpProblem(
    429,
    `${what} rate limit exceeded (${b.limit} requests per ${per}); retry in ${reset} s`,
    {
      title: 'Too Many Requests',
      googleStatus: 'RESOURCE_EXHAUSTED',
      headers: {
        'retry-after': String(reset),
        'ratelimit-limit': String(b.limit),
        'ratelimit-remaining': '0',
        'ratelimit-reset': String(reset),
      },
    },
  );
}

export type IpLimitScope = 'unauthenticated' | 'all';

export interface CallerGateOptions {
  auth: ClientAuth;
  /** Per-IP limits (and CLIENT_RATE_LIMIT(S), through the budget); none: no caller limits. */
  limiter?: CallerRateLimiter;
  /** Clients' own budgets; none: no client limits. */
  budget?: ClientBudget;
  /**
   * IP_LIMIT_SCOPE: 'unauthenticated' (default): the per-IP limits apply to requests without a
   * valid client token (no token, a wrong one, routes without client auth, unknown paths,
   * anonymous callers); a client's requests are governed by its own limits. 'all': to everyone.
   */
  ipScope: IpLimitScope;
}

interface GateState {
  auth: ClientAuth;
  limiter: CallerRateLimiter | undefined;
  budget: ClientBudget | undefined;
  ipForAll: boolean;
}

type Done = (err?: Error) => void;

/**
 * Who may call, and how much, in one onRequest hook: client authentication, then the per-IP
 * limits (for whom IP_LIMIT_SCOPE says), then the client's own budget. A request with a wrong
 * token is counted against its IP before it gets its 401, so guessing is limited too; a client's
 * requests from one address (a backend) are not throttled by the per-IP defaults.
 *
 * The common case (a client of CLIENT_API_KEYS_MAP or CLIENTS_FILE without limits, per-IP limits
 * not applying) is synchronous: no promise per request.
 */
export function installCallerGate(app: FastifyInstance, opts: CallerGateOptions): void {
  const state: GateState = {
    auth: opts.auth,
    limiter: opts.limiter,
    budget: opts.budget,
    ipForAll: opts.ipScope === 'all',
  };
  app.addHook('onRequest', (request, reply, done) => {
    const route = routeOf(request);
    if (route.url === undefined || route.config?.clientAuth === false)
      return afterAuth(state, request, reply, done, undefined, undefined);
    let client: Client | Promise<Client>;
    try {
      client = state.auth.identify(request);
    } catch (err) {
      return afterAuth(state, request, reply, done, undefined, err as Error);
    }
    if (client instanceof Promise)
      client.then(
        (c) => afterAuth(state, request, reply, done, c, undefined),
        (err: Error) => afterAuth(state, request, reply, done, undefined, err),
      );
    else afterAuth(state, request, reply, done, client, undefined);
  });
}

function afterAuth(
  state: GateState,
  request: FastifyRequest,
  reply: FastifyReply,
  done: Done,
  client: Client | undefined,
  authError: Error | undefined,
): void {
  if (client !== undefined) {
    request.clientName = client.name;
    noteClient(request, client);
  }
  const limiter = state.limiter;
  const authenticated = client !== undefined && client !== ANONYMOUS;
  if (limiter?.ipLimited && (state.ipForAll || !authenticated) && !exempt(request)) {
    limiter.checkIp(request.ip ?? 'unknown').then((d) => {
      const now = Date.now();
      if (!d.allowed) return done(refuse(d, now, 'per-IP'));
      setHeaders(reply, d, now);
      if (authError) return done(authError);
      afterIp(state, request, reply, done, client);
    }, done);
    return;
  }
  if (authError) done(authError);
  else afterIp(state, request, reply, done, client);
}

function afterIp(
  state: GateState,
  request: FastifyRequest,
  reply: FastifyReply,
  done: Done,
  client: Client | undefined,
): void {
  // Anonymous callers keep CLIENT_RATE_LIMIT as one client, as before.
  if (client === undefined || state.budget === undefined || exempt(request)) {
    done();
    return;
  }
  const check = state.budget.admit(client, reply);
  if (check === undefined) done();
  else check.then((refusal) => done(refusal ?? undefined), done);
}
