import type { KeyConfig, KeyLimits } from '../config/keys.ts';
import type {
  BudgetLimits,
  CircuitSettings,
  Outcome,
  Pin,
  PoolKeyRecord,
  Reservation,
  StateStore,
} from '../store/types.ts';
import { type Abortable, onAbort } from '../util/cancel.ts';
import { PacificCalendar } from '../util/pacific.ts';
import { withJobBudgets } from './job-budgets.ts';
import { normalizeModel } from './models.ts';

/** A reserved key: its budget is spent until `report` settles it. */
export interface Lease {
  keyId: string;
  apiKey: string;
  reservation: Reservation;
  /** How long the request waited in the queue for this key. */
  queuedMs: number;
}

export class PoolExhaustedError extends Error {
  /** Epoch ms when a key may free up; null when no configured key can serve the model at all. */
  readonly retryAtMs: number | null;
  readonly globalBackoff: boolean;
  constructor(retryAtMs: number | null, globalBackoff: boolean) {
    super(retryAtMs === null ? 'no usable key' : 'pool exhausted');
    this.retryAtMs = retryAtMs;
    this.globalBackoff = globalBackoff;
  }
}

/** The request left (client gone or deadline) while it waited in line for a key. */
export class QueueAbortedError extends Error {
  constructor() {
    super('the request was abandoned while it waited for a key');
  }
}

export interface KeyPoolOptions {
  queueMaxWaitMs: number;
  circuit: CircuitSettings;
  /** How long a half-open key is reserved for its single probe request. */
  probeLeaseMs?: number;
  now?: () => number;
  /** Longest single sleep while queued: other instances may free keys, or a rest may be reset. */
  maxPollMs?: number;
  /** Keys new to the store carry one request at a time until verified (store.syncKeys). */
  verifyKeys?: boolean;
}

/** What a request asks the pool for. */
interface Want {
  model: string;
  tokens: number;
  exclude: readonly string[];
  pin: Pin | undefined;
}

interface Waiter {
  want: Want;
  enqueuedAt: number;
  deadline: number;
  resolve: (lease: Lease) => void;
  reject: (err: Error) => void;
  /** Stops listening for the request's abort. */
  unsubscribe?: () => void;
}

/** Window in which bare 429s from distinct keys count as "every key at once". */
const THROTTLE_WINDOW_MS = 10_000;
const MIN_GLOBAL_BACKOFF_MS = 5_000;
const MAX_GLOBAL_BACKOFF_MS = 60_000;

/**
 * Where a key is chosen. Wraps the state store's atomic acquire with a FIFO wait queue
 * (requests that find no free key wait, in arrival order, up to queueMaxWaitMs) and holds
 * the key secrets, which never leave this process except towards Google.
 */
export class KeyPool {
  private secrets = new Map<string, string>();
  private configured: KeyConfig[] = [];
  /**
   * One FIFO line per model (and pin): a request some key can serve now never waits behind one
   * for another model, or for keys of one project only.
   */
  private readonly queues = new Map<string, Waiter[]>();
  private readonly draining = new Set<string>();
  private waiting = 0;
  /** Keys able to serve (enabled, not disabled), counted at most once a second for the throttle detector. */
  private servable = { count: 0, atMs: Number.NEGATIVE_INFINITY };
  private readonly calendar = new PacificCalendar();
  private readonly now: () => number;
  private readonly probeLeaseMs: number;
  private readonly maxPollMs: number;
  private readonly throttledAt = new Map<string, number>();
  private globalBackoffMs = MIN_GLOBAL_BACKOFF_MS;
  readonly store: StateStore;
  readonly options: KeyPoolOptions;

  constructor(store: StateStore, options: KeyPoolOptions) {
    this.store = store;
    this.options = options;
    this.now = options.now ?? Date.now;
    this.probeLeaseMs = options.probeLeaseMs ?? 30_000;
    this.maxPollMs = options.maxPollMs ?? 1_000;
  }

  /** Applies a (validated) key list; runtime state of keys that stay is kept. */
  async setKeys(keys: readonly KeyConfig[]): Promise<void> {
    await this.store.syncKeys(keys.map(toRecord), { unverified: this.options.verifyKeys === true });
    this.configured = [...keys];
    this.secrets = new Map(keys.map((k) => [k.id, k.apiKey]));
  }

  get keys(): readonly KeyConfig[] {
    return this.configured;
  }

  /**
   * Reserves a key for `model` (or '' for any), waiting in line up to the queue limit. `pin`:
   * only keys of that project (or that key), for a request that uses a project's resource.
   */
  acquire(
    requested: string,
    tokens: number,
    exclude: readonly string[],
    signal?: Abortable,
    pin?: Pin,
  ): Promise<Lease> {
    const want: Want = { model: normalizeModel(requested), tokens, exclude, pin };
    const line = lineOf(want);
    const enqueuedAt = this.now();
    // Nobody waiting in this line: try at once, without the queue's bookkeeping.
    if (!this.queues.get(line)?.length) {
      return this.tryAcquire(want, enqueuedAt).then((outcome) => {
        if ('lease' in outcome) return outcome.lease;
        if (!this.canWait(outcome.error, enqueuedAt + this.options.queueMaxWaitMs)) throw outcome.error;
        return this.enqueue(want, line, enqueuedAt, signal);
      });
    }
    return this.enqueue(want, line, enqueuedAt, signal);
  }

  /**
   * Settles a lease with its outcome. Never rejects: callers fire and forget it, and when the
   * store fails here (Redis gone between the acquire and the answer) the reservation stands,
   * which errs on the safe side; the next acquire reports the outage.
   */
  async report(lease: Lease, outcome: Outcome): Promise<void> {
    const now = this.now();
    try {
      if (outcome.kind === 'success') {
        this.globalBackoffMs = MIN_GLOBAL_BACKOFF_MS;
        // The common case: nothing to reset, only the token estimate to correct.
        if (lease.reservation.clean) {
          const actual = outcome.actualTokens;
          if (actual !== undefined && actual !== lease.reservation.tokens) {
            await this.store.settleTokens(lease.reservation, actual);
          }
          return;
        }
      }
      await this.store.report(lease.reservation, outcome, now, this.options.circuit);
    } catch {
      /* the reservation stands (see above) */
    }
  }

  /**
   * A bare 429 (no quota details) rests only the key's project briefly. When such 429s come
   * from every usable key within a few seconds, Google is throttling our IP, not the keys:
   * all instances back off together, with a growing delay.
   */
  async noteThrottled(keyId: string): Promise<void> {
    // Never rejects, like report(): without the store, each key's own short rest still applies.
    const now = this.now();
    this.throttledAt.set(keyId, now);
    let recent = 0;
    for (const [id, at] of this.throttledAt) {
      if (at > now - THROTTLE_WINDOW_MS) recent += 1;
      else this.throttledAt.delete(id);
    }
    const usable = await this.servableKeys(now);
    if (usable > 1 && recent >= usable) {
      await this.store.setGlobalBackoff(now + this.globalBackoffMs, now).catch(() => {});
      this.globalBackoffMs = Math.min(this.globalBackoffMs * 2, MAX_GLOBAL_BACKOFF_MS);
      this.throttledAt.clear();
    }
  }

  /**
   * Keys that can serve (enabled and not disabled at run time): a dead key sends no 429, so
   * counting it would keep the detector from ever firing. Read from the store at most once a second.
   */
  private async servableKeys(now: number): Promise<number> {
    if (now - this.servable.atMs >= 1000) {
      try {
        const states = await this.store.keyStates(now, this.calendar.at(now).day);
        this.servable = { count: states.filter((s) => s.enabled).length, atMs: now };
      } catch {
        this.servable = { count: this.configured.filter((k) => k.enabled).length, atMs: now };
      }
    }
    return this.servable.count;
  }

  get queueLength(): number {
    return this.waiting;
  }

  calendarAt(ms: number): { day: string; nextDayMs: number } {
    return this.calendar.at(ms);
  }

  private canWait(err: PoolExhaustedError, deadline: number): boolean {
    return this.options.queueMaxWaitMs > 0 && err.retryAtMs !== null && err.retryAtMs <= deadline;
  }

  private async tryAcquire(
    want: Want,
    enqueuedAt: number,
  ): Promise<{ lease: Lease } | { error: PoolExhaustedError }> {
    const now = this.now();
    const { day, nextDayMs } = this.calendar.at(now);
    let skip = want.exclude;
    for (;;) {
      const result = await this.store.acquire({
        model: want.model,
        estimatedTokens: want.tokens,
        nowMs: now,
        day,
        nextDayMs,
        exclude: skip,
        circuitProbeLeaseMs: this.probeLeaseMs,
        pin: want.pin,
      });
      if (!result.ok) return { error: new PoolExhaustedError(result.retryAtMs, result.globalBackoff) };
      const keyId = result.reservation.keyId;
      const apiKey = this.secrets.get(keyId);
      if (apiKey !== undefined) {
        return { lease: { keyId, apiKey, reservation: result.reservation, queuedMs: now - enqueuedAt } };
      }
      // A key another instance added, whose secret this one does not hold (secrets are not
      // shared through the store): give its budget back and choose among the others.
      await this.store.report(result.reservation, { kind: 'unused' }, now, this.options.circuit);
      skip = [...skip, keyId];
    }
  }

  private enqueue(want: Want, lineName: string, enqueuedAt: number, signal?: Abortable): Promise<Lease> {
    return new Promise<Lease>((resolve, reject) => {
      const waiter: Waiter = {
        want,
        enqueuedAt,
        deadline: enqueuedAt + this.options.queueMaxWaitMs,
        resolve,
        reject,
      };
      let queue = this.queues.get(lineName);
      if (!queue) {
        queue = [];
        this.queues.set(lineName, queue);
      }
      const line = queue;
      if (signal) {
        if (signal.aborted) return reject(new QueueAbortedError());
        waiter.unsubscribe = onAbort(signal, () => {
          const i = line.indexOf(waiter);
          if (i >= 0) {
            line.splice(i, 1);
            this.waiting -= 1;
          }
          reject(new QueueAbortedError());
        });
      }
      line.push(waiter);
      this.waiting += 1;
      void this.drain(lineName, line);
    });
  }

  /** Serves a line's waiters strictly in arrival order: only the head of the line may take a key. */
  private async drain(lineName: string, queue: Waiter[]): Promise<void> {
    if (this.draining.has(lineName)) return;
    this.draining.add(lineName);
    try {
      while (queue.length > 0) {
        const head = queue[0]!;
        let outcome: Awaited<ReturnType<KeyPool['tryAcquire']>>;
        try {
          outcome = await this.tryAcquire(head.want, head.enqueuedAt);
        } catch (err) {
          this.settleHead(queue, head, () => head.reject(err as Error));
          continue;
        }
        if (queue[0] !== head) {
          // Its client left while the key was being reserved: the key's budget goes back.
          if ('lease' in outcome) void this.report(outcome.lease, { kind: 'unused' });
          continue;
        }
        if ('lease' in outcome) {
          this.settleHead(queue, head, () => head.resolve(outcome.lease));
          continue;
        }
        const now = this.now();
        if (!this.canWait(outcome.error, head.deadline) || now >= head.deadline) {
          this.settleHead(queue, head, () => head.reject(outcome.error));
          continue;
        }
        const wake = Math.min(outcome.error.retryAtMs!, head.deadline, now + this.maxPollMs);
        await sleep(Math.max(1, wake - now));
      }
    } finally {
      this.draining.delete(lineName);
      if (this.queues.get(lineName) === queue && queue.length === 0) this.queues.delete(lineName);
    }
  }

  private settleHead(queue: Waiter[], head: Waiter, settle: () => void): void {
    if (queue[0] === head) {
      queue.shift();
      this.waiting -= 1;
    }
    head.unsubscribe?.();
    settle();
  }
}

/** The wait line of a request: its model, and its pin when it has one. */
function lineOf(want: Want): string {
  if (!want.pin) return want.model;
  return 'keyId' in want.pin ? `${want.model}\nk:${want.pin.keyId}` : `${want.model}\np:${want.pin.project}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function toRecord(k: KeyConfig): PoolKeyRecord {
  const modelLimits: Record<string, BudgetLimits> = {};
  for (const [model, l] of Object.entries(k.modelLimits)) modelLimits[model] = budgetOf(l);
  return {
    id: k.id,
    project: k.project,
    // A key restricted to models serves their batches and polls too (job-budgets.ts).
    models: withJobBudgets(k.models),
    enabled: k.enabled,
    ...budgetOf(k.limits),
    modelLimits,
  };
}

function budgetOf(l: KeyLimits): BudgetLimits {
  return { rpm: l.requestsPerMinute, rpd: l.requestsPerDay, tpm: l.tokensPerMinute };
}
