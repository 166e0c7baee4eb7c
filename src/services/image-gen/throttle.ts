import { RateLimited } from '../../errors/gateway-errors.ts';
import type { StateStore } from '../../store/types.ts';

/**
 * Per-user throttle: THROTTLE_RPM requests per fixed minute window, counted in the shared
 * store (so every instance sees the same count). rpm 0 disables it.
 */
export async function enforceThrottle(
  store: StateStore,
  rpm: number,
  subject: string,
  nowMs = Date.now(),
): Promise<void> {
  if (rpm <= 0) return;
  const { count, resetAtMs } = await store.hit(`throttle:create-image:${subject}`, 60_000, nowMs);
  if (count <= rpm) return;
  const retryAfter = Math.max(1, Math.ceil((resetAtMs - nowMs) / 1000));
  throw new RateLimited(`too many image requests: at most ${rpm} per minute, retry in ${retryAfter} s`, {
    retryAfterSeconds: retryAfter,
  });
}

/** Bound on the IPs remembered as locked (memory under an attack from many addresses). */
const MAX_LOCKED = 100_000;

/**
 * Failed attempts per client IP (a body that does not validate, an unknown user_id or a wrong
 * api_key): at most `limit` a minute. The per-user throttle counts only authenticated requests,
 * so a stranger sending a victim's user_id with a wrong api_key cannot lock the victim out; this
 * is what bounds guessing instead. Counted in the shared store; an IP whose count reaches the
 * limit is refused before any verification until its window ends. The store's counter cannot be
 * read without counting, so each instance remembers the refusal itself: with N instances an IP
 * gets at most limit + N - 1 verifications a window. limit 0 disables it (with THROTTLE_RPM).
 */
export class FailedAttempts {
  private readonly store: StateStore;
  private readonly limit: number;
  /** ip → end of its window (ms), for IPs at the limit. */
  private readonly locked = new Map<string, number>();

  constructor(store: StateStore, limit: number) {
    this.store = store;
    this.limit = limit;
  }

  /** 429 when the IP used up its failed attempts of the current window. */
  refuseIfLocked(ip: string, nowMs = Date.now()): void {
    const until = this.locked.get(ip);
    if (until === undefined) return;
    if (until <= nowMs) {
      this.locked.delete(ip);
      return;
    }
    const retryAfter = Math.max(1, Math.ceil((until - nowMs) / 1000));
    throw new RateLimited(
      `too many failed image requests from this address: at most ${this.limit} per minute, retry in ${retryAfter} s`,
      { retryAfterSeconds: retryAfter },
    );
  }

  /** Counts a failed attempt of `ip`. */
  async record(ip: string, nowMs = Date.now()): Promise<void> {
    if (this.limit <= 0) return;
    const { count, resetAtMs } = await this.store.hit(`throttle:create-image-failed:${ip}`, 60_000, nowMs);
    if (count < this.limit) return;
    if (this.locked.size >= MAX_LOCKED) {
      for (const [k, until] of this.locked) if (until <= nowMs) this.locked.delete(k);
      // Still full: forget the oldest (the store's count still holds them at the next failure).
      for (const k of this.locked.keys()) {
        if (this.locked.size < MAX_LOCKED) break;
        this.locked.delete(k);
      }
    }
    this.locked.set(ip, resetAtMs);
  }
}
