import type { FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { RateLimited } from '../errors/gateway-errors.ts';
import type { StateStore } from '../store/types.ts';
import type { Client } from './client.ts';

/** A Pacific calendar day and when the next begins (KeyPool.calendarAt). */
export type Calendar = (nowMs: number) => { day: string; nextDayMs: number };

export type ClientBudgetScope = 'client' | 'client_day' | 'client_tokens';

const MINUTE_MS = 60_000;
/** Day counters outlive their day a little (an instance whose clock is behind still finds them). */
const DAY_COUNTER_GRACE_MS = 3_600_000;
const STORE_WARN_INTERVAL_MS = 10_000;

/**
 * A client's own budget (its `limits`), checked before anything goes upstream:
 *  - requests_per_minute: a 60-second window (the store's fixed-window counter, shared by every
 *    instance on one Redis); without its own, CLIENT_RATE_LIMITS[name] or CLIENT_RATE_LIMIT;
 *  - requests_per_day: requests admitted in the Pacific day (refused ones are given back);
 *  - tokens_per_day: prompt + output tokens of the Pacific day, as the usage accounting reports
 *    them through recordTokens after each answer. A request is refused once the day's sum has
 *    reached the limit (the request that crosses it is served: its size is known only afterwards).
 * A client over any of them gets a 429 whose body says it is the client's budget, not the pool's.
 * Like the caller limits, a store that fails admits the request (one warning per 10 s).
 */
export class ClientBudget {
  private readonly store: StateStore;
  private readonly calendar: Calendar;
  private readonly defaultRpm: (name: string) => number;
  private readonly find: (name: string) => Client | undefined;
  private readonly logger?: Logger;
  private lastWarn = 0;
  onRefusal?: (scope: ClientBudgetScope) => void;

  constructor(opts: {
    store: StateStore;
    calendar: Calendar;
    /** Requests per minute of a client without its own (CLIENT_RATE_LIMITS / CLIENT_RATE_LIMIT); 0 = none. */
    defaultRpm: (name: string) => number;
    /** The client of a name (the registry), for recordTokens. */
    find: (name: string) => Client | undefined;
    logger?: Logger;
  }) {
    this.store = opts.store;
    this.calendar = opts.calendar;
    this.defaultRpm = opts.defaultRpm;
    this.find = opts.find;
    this.logger = opts.logger;
  }

  /**
   * THE call for the usage accounting: after each answer, the tokens it cost the client
   * (prompt + output, as usageMetadata reports them). Counted only for clients with a
   * tokens_per_day limit; never throws, never waits for the store (the promise is for tests).
   */
  recordTokens(clientName: string, tokens: number, nowMs = Date.now()): Promise<void> {
    const limit = this.find(clientName)?.limits.tokensPerDay;
    if (!limit || !(tokens > 0)) return Promise.resolve();
    const { day, nextDayMs } = this.calendar(nowMs);
    return this.store
      .addToCounter(tokensKey(clientName, day), Math.round(tokens), nextDayMs + DAY_COUNTER_GRACE_MS)
      .then(
        () => {},
        (err: unknown) => this.warn(err, nowMs),
      );
  }

  /** What the client has spent today, where it is counted (a limit of that kind is set). */
  async today(
    client: Client,
    nowMs = Date.now(),
  ): Promise<{ requests: number | null; tokens: number | null }> {
    const { day } = this.calendar(nowMs);
    const [requests, tokens] = await Promise.all([
      client.limits.requestsPerDay ? this.store.readCounter(requestsKey(client.name, day), nowMs) : null,
      client.limits.tokensPerDay ? this.store.readCounter(tokensKey(client.name, day), nowMs) : null,
    ]);
    return { requests, tokens };
  }

  /** undefined: nothing to check (no promise made); else a refusal (null: admitted). */
  admit(client: Client, reply: FastifyReply): Promise<RateLimited | null> | undefined {
    const l = client.limits;
    const rpm = l.requestsPerMinute ?? this.defaultRpm(client.name);
    const rpd = l.requestsPerDay ?? 0;
    const tpd = l.tokensPerDay ?? 0;
    if (rpm <= 0 && rpd <= 0 && tpd <= 0) return undefined;
    return this.check(client.name, rpm, rpd, tpd, reply);
  }

  private async check(
    name: string,
    rpm: number,
    rpd: number,
    tpd: number,
    reply: FastifyReply,
  ): Promise<RateLimited | null> {
    const now = Date.now();
    const cal = rpd > 0 || tpd > 0 ? this.calendar(now) : null;
    const dayEnd = cal ? cal.nextDayMs + DAY_COUNTER_GRACE_MS : 0;
    let minute: { count: number; resetAtMs: number } | null;
    let requests: number | null;
    let tokens: number | null;
    try {
      [minute, requests, tokens] = await Promise.all([
        rpm > 0 ? this.store.hit(`rl:client:${name}`, MINUTE_MS, now) : null,
        rpd > 0 ? this.store.addToCounter(requestsKey(name, cal!.day), 1, dayEnd) : null,
        tpd > 0 ? this.store.readCounter(tokensKey(name, cal!.day), now) : null,
      ]);
    } catch (err) {
      this.warn(err, now);
      return null;
    }
    let refusal: RateLimited | null = null;
    if (minute && minute.count > rpm) {
      this.onRefusal?.('client');
      refusal = refuse(name, 'requests_per_minute', rpm, minute.resetAtMs, now, true);
    } else if (requests !== null && requests > rpd) {
      this.onRefusal?.('client_day');
      refusal = refuse(name, 'requests_per_day', rpd, cal!.nextDayMs, now, true);
    } else if (tokens !== null && tokens >= tpd) {
      this.onRefusal?.('client_tokens');
      refusal = refuse(name, 'tokens_per_day', tpd, cal!.nextDayMs, now, false);
    }
    if (refusal) {
      // A refused request does not count into the day.
      if (requests !== null)
        void this.store.addToCounter(requestsKey(name, cal!.day), -1, dayEnd).catch(() => {});
      return refusal;
    }
    if (minute) {
      // Report whichever limit (an IP limit set before, or this one) has less room left.
      const remaining = Math.max(0, rpm - minute.count);
      const shown = Number(reply.getHeader('ratelimit-remaining') ?? Number.POSITIVE_INFINITY);
      if (remaining < shown) {
        reply.header('ratelimit-limit', String(rpm));
        reply.header('ratelimit-remaining', String(remaining));
        reply.header('ratelimit-reset', String(secondsUntil(minute.resetAtMs, now)));
      }
    }
    return null;
  }

  private warn(err: unknown, now: number): void {
    if (now - this.lastWarn <= STORE_WARN_INTERVAL_MS) return;
    this.lastWarn = now;
    this.logger?.warn(
      { err: String(err) },
      'client budget counters unavailable; requests admitted unchecked',
    );
  }
}

const requestsKey = (name: string, day: string) => `client:rpd:${name}:${day}`;
const tokensKey = (name: string, day: string) => `client:tpd:${name}:${day}`;

function secondsUntil(ms: number, now: number): number {
  return Math.max(1, Math.ceil((ms - now) / 1000));
}

/** The client's own budget refused the request: 429, said to be the client's, not the pool's. */
function refuse(
  name: string,
  what: 'requests_per_minute' | 'requests_per_day' | 'tokens_per_day',
  limit: number,
  resetAtMs: number,
  now: number,
  requestLimit: boolean,
): RateLimited {
  const reset = secondsUntil(resetAtMs, now);
  return new RateLimited(
    `client "${name}" is over its own budget (${what} ${limit}): this is the client's limit, not the key pool's; retry in ${reset} s`,
    {
      retryAfterSeconds: reset,
      requestLimit: requestLimit ? limit : undefined,
      extra: { budget: 'client', client: name, limit: what },
    },
  );
}
