import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Dispatcher } from 'undici';
import type { KeyConfig } from '../config/keys.ts';
import type { KeyState, StateStore } from '../store/types.ts';
import { PacificCalendar } from '../util/pacific.ts';
import { classifyUpstream, EGRESS_REFUSED_REASON, isHealable } from './classify.ts';

/**
 * Keys verified before traffic. Each pool key is checked with a call that spends no generation
 * quota (`GET /v1beta/models?pageSize=1`) at start, for keys new to the pool, for every key
 * after the keys file changes, and, for keys disabled with a reason that heals, on a schedule.
 *
 * - 200: the key is marked verified in the store (it leaves the one-request-at-a-time rule that
 *   new keys start under) and, when it was disabled with a healable reason, re-enabled.
 * - Invalid, leaked, suspended (permanent reasons): the key is disabled with the reason before
 *   client traffic reaches it, and stays off until the keys file changes or an admin enables it.
 * - Healable reasons (SERVICE_DISABLED, BILLING, …: see isHealable): disabled, then re-checked
 *   every recheckMs; the key is re-enabled by itself when Google accepts it again.
 * - Google refusing the gateway's location: nothing is disabled (log, metric); checked again later.
 * - Network errors, timeouts, 5xx, bare 429s: the key stays unverified, checked again later
 *   (retryMs, doubling up to recheckMs).
 *
 * Keys an admin or the configuration disabled are left alone.
 */

/** What the verifier needs of the state store. */
export type VerifyStore = Pick<StateStore, 'markVerified' | 'setKeyEnabled' | 'keyStates' | 'keyHealth'>;

export type VerifyStatus =
  /** Not checked yet, being checked, or the last check could not conclude (it will be retried). */
  | 'pending'
  | 'verified'
  /** Disabled with a permanent reason (invalid, leaked, suspended). */
  | 'failed'
  /** Disabled with a healable reason: re-checked every recheckMs. */
  | 'healing'
  /** Disabled by an admin or in the configuration: not checked. */
  | 'skipped';

export type VerifyResult = 'verified' | 'disabled' | 'reenabled' | 'egress_refused' | 'unavailable';

export interface KeyVerification {
  id: string;
  status: VerifyStatus;
  /** The disable reason (failed, healing) or why the last check did not conclude (pending). */
  reason: string | null;
  checkedAtMs: number | null;
}

export interface VerifySummary {
  verified: number;
  pending: number;
  failed: number;
  healing: number;
  skipped: number;
}

export interface KeyVerifierOptions {
  /** GEMINI_BASE_URL. */
  baseUrl: string;
  /** The upstream agent (src/upstream/http.ts). */
  agent: Dispatcher;
  store: VerifyStore;
  /** Checks at most this many keys at once. */
  concurrency: number;
  /** Healable keys are re-checked this often; also the longest retry delay. */
  recheckMs: number;
  /** One check's time limit. */
  timeoutMs: number;
  /** First retry delay after a check that did not conclude (doubles up to recheckMs). Default 5 s. */
  retryMs?: number;
  logger?: Logger;
  /** A check's result (metrics). */
  onResult?: (result: VerifyResult) => void;
  /** Google refused the gateway's location during a check. */
  onEgressRefused?: () => void;
  now?: () => number;
}

/** The reason the admin API writes when it disables a key (with ": <why>" when one is given). */
export const ADMIN_REASON_PREFIX = 'disabled by admin';

/**
 * Reasons the gateway itself writes from Google's answers are UPPER_SNAKE (API_KEY_INVALID,
 * SERVICE_DISABLED…); an admin's ("disabled by admin: …") and the configuration's are prose.
 */
export function isAutomaticReason(reason: string | null | undefined): reason is string {
  return typeof reason === 'string' && /^[A-Z][A-Z0-9_]*$/.test(reason);
}

interface KeyRecord {
  status: VerifyStatus;
  reason: string | null;
  checkedAtMs: number | null;
  /** Consecutive checks that did not conclude. */
  misses: number;
  retry: NodeJS.Timeout | null;
}

interface Inflight {
  force: boolean;
  promise: Promise<void>;
}

const MODELS_PATH = '/v1beta/models?pageSize=1';

export class KeyVerifier {
  private readonly o: KeyVerifierOptions;
  private readonly now: () => number;
  private readonly origin: string;
  private readonly basePath: string;
  private readonly retryMs: number;
  private readonly calendar = new PacificCalendar();
  private configs = new Map<string, KeyConfig>();
  private readonly records = new Map<string, KeyRecord>();
  private readonly inflight = new Map<string, Inflight>();
  private readonly waiting: Array<() => void> = [];
  private active = 0;
  private sweepTimer: NodeJS.Timeout | null = null;
  private readonly stopper = new AbortController();

  constructor(options: KeyVerifierOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
    const base = new URL(options.baseUrl);
    this.origin = base.origin;
    this.basePath = base.pathname.replace(/\/$/, '');
    this.retryMs = Math.min(options.retryMs ?? 5_000, options.recheckMs);
  }

  /**
   * Checks every key of `keys` and starts the heal schedule. Resolves when each key's first
   * check has ended (whatever its result); never rejects.
   */
  start(keys: readonly KeyConfig[]): Promise<void> {
    this.setConfigs(keys);
    if (!this.sweepTimer && !this.stopped) {
      this.sweepTimer = setInterval(() => void this.sweep(), this.o.recheckMs);
      this.sweepTimer.unref();
    }
    return this.run([...this.configs.keys()], false);
  }

  /**
   * The key list changed (admin add or remove, reload): keys new to it, or whose secret or
   * `enabled` changed, are checked. Resolves when those checks have ended.
   */
  keysChanged(keys: readonly KeyConfig[]): Promise<void> {
    const before = this.configs;
    this.setConfigs(keys);
    const changed = [...this.configs.values()]
      .filter((k) => {
        const old = before.get(k.id);
        return !old || old.apiKey !== k.apiKey || (!old.enabled && k.enabled);
      })
      .map((k) => k.id);
    return this.run(changed, false);
  }

  /**
   * Checks every key again, those disabled with a permanent reason included (the keys file
   * changed: its owner may have fixed them). Keys an admin disabled stay alone.
   */
  reverifyAll(): Promise<void> {
    return this.run([...this.configs.keys()], true);
  }

  stop(): void {
    this.stopper.abort();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    for (const r of this.records.values()) this.clearRetry(r);
    for (const wake of this.waiting.splice(0)) wake();
  }

  status(id: string): KeyVerification | undefined {
    const r = this.records.get(id);
    return r ? { id, status: r.status, reason: r.reason, checkedAtMs: r.checkedAtMs } : undefined;
  }

  list(): KeyVerification[] {
    return [...this.records.keys()].map((id) => this.status(id)!);
  }

  summary(): VerifySummary {
    const s: VerifySummary = { verified: 0, pending: 0, failed: 0, healing: 0, skipped: 0 };
    for (const r of this.records.values()) s[r.status] += 1;
    return s;
  }

  /**
   * The heal schedule: keys disabled with a healable reason (by a check or by traffic) are
   * checked again, and so are keys someone enabled after a check had disabled or skipped them.
   */
  async sweep(): Promise<void> {
    if (this.stopped) return;
    const states = await this.readStates();
    if (!states) return;
    const ids: string[] = [];
    for (const [id, key] of this.configs) {
      const rec = this.records.get(id)!;
      const st = states.get(id);
      if (!key.enabled || !st) continue;
      if (!st.enabled) {
        if (isHealable(st.disabledReason)) ids.push(id);
        else this.note(rec, isAutomaticReason(st.disabledReason) ? 'failed' : 'skipped', st.disabledReason);
      } else if (rec.status === 'failed' || rec.status === 'healing' || rec.status === 'skipped') {
        ids.push(id);
      } else if (rec.status === 'pending' && !rec.retry && !this.inflight.has(id)) {
        ids.push(id);
      }
    }
    await this.run(ids, false, states);
  }

  private get stopped(): boolean {
    return this.stopper.signal.aborted;
  }

  private setConfigs(keys: readonly KeyConfig[]): void {
    this.configs = new Map(keys.map((k) => [k.id, k]));
    for (const [id, rec] of this.records) {
      if (this.configs.has(id)) continue;
      this.clearRetry(rec);
      this.records.delete(id);
    }
    for (const id of this.configs.keys()) {
      if (!this.records.has(id))
        this.records.set(id, { status: 'pending', reason: null, checkedAtMs: null, misses: 0, retry: null });
    }
  }

  /** Checks `ids` (one read of the store for all of them); resolves when every check has ended. */
  private async run(ids: string[], force: boolean, known?: Map<string, KeyState>): Promise<void> {
    if (ids.length === 0 || this.stopped) return;
    const states = known ?? (await this.readStates());
    await Promise.all(ids.map((id) => this.schedule(id, force, states?.get(id))));
  }

  /** One check per key at a time; a forced request after a plain one runs once more. */
  private schedule(id: string, force: boolean, state: KeyState | undefined): Promise<void> {
    const existing = this.inflight.get(id);
    if (existing && (existing.force || !force)) return existing.promise;
    const entry: Inflight = { force, promise: Promise.resolve() };
    entry.promise = (existing?.promise ?? Promise.resolve())
      .then(() => this.limited(() => this.check(id, force, existing ? undefined : state)))
      .finally(() => {
        if (this.inflight.get(id) === entry) this.inflight.delete(id);
      });
    this.inflight.set(id, entry);
    return entry.promise;
  }

  private async limited(fn: () => Promise<void>): Promise<void> {
    while (this.active >= Math.max(1, this.o.concurrency) && !this.stopped)
      await new Promise<void>((wake) => this.waiting.push(wake));
    if (this.stopped) return;
    this.active += 1;
    try {
      await fn();
    } finally {
      this.active -= 1;
      this.waiting.shift()?.();
    }
  }

  /** One key's check. Never throws. `state`: the key's state when the round began, if read. */
  private async check(id: string, force: boolean, state: KeyState | undefined): Promise<void> {
    const key = this.configs.get(id);
    const rec = this.records.get(id);
    if (!key || !rec || this.stopped) return;
    this.clearRetry(rec);
    if (!key.enabled) return this.note(rec, 'skipped', 'disabled in configuration');
    if (state && !state.enabled) {
      const reason = state.disabledReason;
      if (!isAutomaticReason(reason)) return this.note(rec, 'skipped', reason);
      if (!isHealable(reason) && !force) return this.note(rec, 'failed', reason);
    }

    let status: number;
    let body: unknown;
    try {
      ({ status, body } = await this.call(key.apiKey));
    } catch (err) {
      if (this.stopped) return;
      const code = (err as { code?: unknown } | null)?.code;
      const timeout =
        code === 'UND_ERR_HEADERS_TIMEOUT' ||
        code === 'UND_ERR_BODY_TIMEOUT' ||
        (err as Error)?.name === 'TimeoutError';
      return this.inconclusive(key, rec, timeout ? 'TIMEOUT' : 'NETWORK_ERROR');
    }
    if (this.stopped) return;
    const verdict = classifyUpstream(status, body, this.now());
    try {
      switch (verdict.kind) {
        case 'success':
        case 'rest': // a quota 429: Google knows the key and its project
          return await this.passed(key, rec);
        case 'disable':
          return await this.refused(key, rec, verdict.reason);
        case 'egress_refused':
          this.o.onEgressRefused?.();
          return this.inconclusive(key, rec, EGRESS_REFUSED_REASON, this.o.recheckMs);
        case 'throttled':
        case 'retry':
          return this.inconclusive(key, rec, verdict.reason);
        case 'client_error':
          return this.inconclusive(key, rec, `HTTP_${status}`);
      }
    } catch (err) {
      // The store failed: nothing is known to be written; try again later.
      this.o.logger?.warn(
        { key_id: key.id, err: (err as Error).message },
        'key verification: state store failed',
      );
      return this.inconclusive(key, rec, 'STORE_ERROR');
    }
  }

  private async call(apiKey: string): Promise<{ status: number; body: unknown }> {
    // A controller per call, released when the call ends: AbortSignal.any over the verifier's
    // long-lived stop signal keeps every call's signal alive as long as the verifier runs, so
    // memory would grow with every key checked.
    const controller = new AbortController();
    const abort = () => controller.abort();
    const timer = setTimeout(
      () => controller.abort(new DOMException('the verification call timed out', 'TimeoutError')),
      this.o.timeoutMs,
    );
    this.stopper.signal.addEventListener('abort', abort, { once: true });
    try {
      const res = await this.o.agent.request({
        origin: this.origin,
        path: `${this.basePath}${MODELS_PATH}`,
        method: 'GET',
        headers: { 'x-goog-api-key': apiKey },
        headersTimeout: this.o.timeoutMs,
        bodyTimeout: this.o.timeoutMs,
        signal: controller.signal,
      });
      return { status: res.statusCode, body: parseJson(await res.body.text()) };
    } finally {
      clearTimeout(timer);
      this.stopper.signal.removeEventListener('abort', abort);
    }
  }

  /** Google accepts the key: verified, and re-enabled when a check or traffic had disabled it. */
  private async passed(key: KeyConfig, rec: KeyRecord): Promise<void> {
    const current = await this.o.store.keyHealth(key.id);
    let reenabled = false;
    if (current && !current.enabled && isAutomaticReason(current.disabledReason)) {
      await this.o.store.setKeyEnabled(key.id, true, null, this.now());
      reenabled = true;
      this.o.logger?.info(
        { key_id: key.id, was: current.disabledReason },
        'key verification passed; key re-enabled',
      );
    } else if (current && !current.enabled) {
      // Disabled by an admin while it was checked: theirs to enable.
      await this.o.store.markVerified(key.id);
      return this.note(rec, 'skipped', current.disabledReason);
    }
    await this.o.store.markVerified(key.id);
    this.note(rec, 'verified', null);
    this.o.onResult?.(reenabled ? 'reenabled' : 'verified');
  }

  /** Google refuses the key itself: disabled with the reason (unless an admin disabled it meanwhile). */
  private async refused(key: KeyConfig, rec: KeyRecord, reason: string): Promise<void> {
    const healable = isHealable(reason);
    // One key's state, not every key's: a round over 1,000 keys would otherwise read 1,000,000.
    const current = await this.o.store.keyHealth(key.id);
    if (current && !current.enabled && !isAutomaticReason(current.disabledReason))
      return this.note(rec, 'skipped', current.disabledReason);
    if (!current || current.enabled || current.disabledReason !== reason) {
      await this.o.store.setKeyEnabled(key.id, false, reason, this.now());
      this.o.logger?.warn(
        { key_id: key.id, reason, heals: healable },
        healable
          ? 'key verification failed; key disabled until a re-check passes'
          : 'key verification failed; key disabled until the keys file changes or an admin enables it',
      );
    }
    this.note(rec, healable ? 'healing' : 'failed', reason);
    this.o.onResult?.('disabled');
  }

  /** No answer about the key itself: it stays unverified and is checked again later. */
  private inconclusive(key: KeyConfig, rec: KeyRecord, reason: string, delayMs?: number): void {
    rec.misses += 1;
    const delay = delayMs ?? Math.min(this.o.recheckMs, this.retryMs * 2 ** Math.min(rec.misses - 1, 20));
    this.note(rec, 'pending', reason, false);
    if (reason !== EGRESS_REFUSED_REASON) {
      // Said once per streak: an outage would otherwise repeat it for every key and retry.
      const log = rec.misses === 1 ? this.o.logger?.warn : this.o.logger?.debug;
      log?.call(
        this.o.logger,
        { key_id: key.id, reason, retry_in_ms: delay },
        'key verification inconclusive; the key stays unverified',
      );
    }
    this.o.onResult?.(reason === EGRESS_REFUSED_REASON ? 'egress_refused' : 'unavailable');
    if (this.stopped) return;
    rec.retry = setTimeout(() => {
      rec.retry = null;
      void this.run([key.id], false);
    }, delay);
    rec.retry.unref();
  }

  private note(rec: KeyRecord, status: VerifyStatus, reason: string | null, concluded = true): void {
    rec.status = status;
    rec.reason = reason;
    rec.checkedAtMs = this.now();
    if (concluded) rec.misses = 0;
  }

  private clearRetry(rec: KeyRecord): void {
    if (rec.retry) clearTimeout(rec.retry);
    rec.retry = null;
  }

  /** The store's key states by id (one read for a round); null when the store fails. */
  private async readStates(): Promise<Map<string, KeyState> | null> {
    const now = this.now();
    try {
      const states = await this.o.store.keyStates(now, this.calendar.at(now).day);
      return new Map(states.map((s) => [s.id, s]));
    } catch {
      return null;
    }
  }
}

/**
 * Google refusing the gateway's egress location: a metric per refusal, and a warn line at most
 * once a minute (every request would say the same).
 */
export class EgressRefusals {
  private lastLogMs = Number.NEGATIVE_INFINITY;
  private unlogged = 0;
  private readonly logger: Logger | undefined;
  private readonly counter: Counter<'source'> | undefined;
  private readonly now: () => number;
  /** When Google last refused the egress (epoch ms), or null. */
  lastAtMs: number | null = null;

  constructor(opts: { logger?: Logger; counter?: Counter<'source'>; now?: () => number } = {}) {
    this.logger = opts.logger;
    this.counter = opts.counter;
    this.now = opts.now ?? Date.now;
  }

  note(source: 'request' | 'verification'): void {
    const now = this.now();
    this.lastAtMs = now;
    this.counter?.inc({ source });
    this.unlogged += 1;
    if (now - this.lastLogMs < 60_000) return;
    this.logger?.warn(
      { source, refusals: this.unlogged, reason: EGRESS_REFUSED_REASON },
      'Google refuses the gateway\'s egress location ("User location is not supported for the API use."); no key is at fault and none is disabled: route the egress through a supported region',
    );
    this.lastLogMs = now;
    this.unlogged = 0;
  }
}

export interface VerifyMetrics {
  verifications: Counter<'result'>;
  egressRefused: Counter<'source'>;
}

/** The verifier's metrics, registered in `registry`; `summary` feeds the per-status gauge. */
export function registerVerifyMetrics(
  registry: Registry,
  summary: () => VerifySummary | null,
): VerifyMetrics {
  const registers = [registry];
  new Gauge({
    name: 'gateway_keys_verification',
    // Every worker (WORKERS > 1) verifies the same keys: the group shows one view, not their sum.
    aggregator: 'max',
    help: 'Pool keys of this instance by verification status (verified, pending, failed, healing, skipped).',
    labelNames: ['status'],
    registers,
    collect() {
      const s = summary();
      if (!s) return;
      for (const [status, n] of Object.entries(s)) this.set({ status }, n);
    },
  });
  return {
    verifications: new Counter({
      name: 'gateway_key_verifications_total',
      help: 'Key verification checks (models.list), by result: verified, reenabled, disabled, egress_refused, unavailable.',
      labelNames: ['result'],
      registers,
    }),
    egressRefused: new Counter({
      name: 'gateway_egress_refused_total',
      help: "Answers in which Google refused the gateway's egress location, by source: request, verification.",
      labelNames: ['source'],
      registers,
    }),
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
