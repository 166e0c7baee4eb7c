/**
 * What this instance spent in the last minute and today, per (project, model) budget, with the
 * rests and disables it learned: kept beside the Redis store so that a Redis that loses its data
 * (restarted empty, flushed, failed over to a stale replica) can be re-seeded (reseed.lua). Each
 * instance adds only its own journal, so together they give back what every budget had spent.
 * Times of requests and token seconds are Redis's clock (as the acquire script booked them).
 */

const MINUTE_MS = 60_000;
/** Budgets held before the first sweep of idle ones (and the least count a sweep waits for). */
const MIN_SWEEP = 1024;

interface JournalBudget {
  /** Booking times of admitted requests, oldest first (Redis clock). */
  log: number[];
  /** Token second -> tokens (reservations, then settled). */
  tokens: Map<number, number>;
  day: string;
  dayCount: number;
  restUntilMs: number;
  restReason: string;
  /** The token second last booked: older seconds are dropped when a new one starts. */
  lastSlot: number;
}

export class UsageJournal {
  private readonly budgets = new Map<string, Map<string, JournalBudget>>();
  private readonly disabled = new Map<string, string>();
  private count = 0;
  private sweepAt = MIN_SWEEP;

  admitted(project: string, model: string, atMs: number, slot: number, tokens: number, day: string): void {
    if (this.count >= this.sweepAt) this.sweep(atMs, slot, day);
    const b = this.budget(project, model);
    const log = b.log;
    while (log.length > 0 && log[0]! <= atMs - MINUTE_MS) log.shift();
    log.push(atMs);
    if (slot !== b.lastSlot) {
      b.lastSlot = slot;
      for (const sec of b.tokens.keys()) if (sec <= slot - 60) b.tokens.delete(sec);
    }
    b.tokens.set(slot, (b.tokens.get(slot) ?? 0) + tokens);
    if (day > b.day) {
      b.day = day;
      b.dayCount = 0;
    }
    if (day === b.day) b.dayCount += 1;
  }

  /** A reservation's tokens corrected by `delta` (never below zero). */
  settled(project: string, model: string, slot: number, delta: number): void {
    const b = this.budgets.get(project)?.get(model);
    const t = b?.tokens.get(slot);
    if (b && t !== undefined) b.tokens.set(slot, Math.max(0, t + delta));
  }

  /** A reservation never sent upstream: its request and day count given back. */
  returned(project: string, model: string, atMs: number, day: string): void {
    const b = this.budgets.get(project)?.get(model);
    if (!b) return;
    const i = b.log.lastIndexOf(atMs);
    if (i >= 0) b.log.splice(i, 1);
    if (b.day === day && b.dayCount > 0) b.dayCount -= 1;
    if (isIdle(b, atMs, Math.floor(atMs / 1000), day)) {
      const models = this.budgets.get(project)!;
      models.delete(model);
      this.count -= 1;
      if (models.size === 0) this.budgets.delete(project);
    }
  }

  rested(project: string, model: string, untilMs: number, reason: string): void {
    const b = this.budget(project, model);
    if (untilMs > b.restUntilMs) {
      b.restUntilMs = untilMs;
      b.restReason = reason;
    }
  }

  keyEnabled(keyId: string, enabled: boolean, reason: string): void {
    if (enabled) this.disabled.delete(keyId);
    else this.disabled.set(keyId, reason);
  }

  /**
   * Takes in another journal's spend (what FailoverStore's local mode spent, once added to
   * Redis): request times merged in order, tokens and day counts added, the later rest kept.
   */
  absorb(other: UsageJournal): void {
    for (const [project, models] of other.budgets) {
      for (const [model, o] of models) {
        const b = this.budget(project, model);
        if (o.log.length > 0) b.log = [...b.log, ...o.log].sort((x, y) => x - y);
        for (const [sec, n] of o.tokens) b.tokens.set(sec, (b.tokens.get(sec) ?? 0) + n);
        b.lastSlot = Math.max(b.lastSlot, o.lastSlot);
        if (o.day > b.day) {
          b.day = o.day;
          b.dayCount = o.dayCount;
        } else if (o.day === b.day) b.dayCount += o.dayCount;
        if (o.restUntilMs > b.restUntilMs) {
          b.restUntilMs = o.restUntilMs;
          b.restReason = o.restReason;
        }
      }
    }
    for (const [id, reason] of other.disabled) this.disabled.set(id, reason);
  }

  /**
   * reseed.lua's journal text: a line per budget with something in the last minute, today or a
   * rest still running (`nowMs`: this instance's clock, for rests; `redisNowMs`: for the log),
   * and a line per disabled key. `lastMinuteOnly`: the day's counts are only the requests of the
   * last minute (what a Redis that came back as another server may have lost).
   */
  text(nowMs: number, redisNowMs: number, day: string, lastMinuteOnly = false): string {
    let out = '';
    for (const [project, models] of this.budgets) {
      for (const [model, b] of models) {
        const log = b.log.filter((t) => t > redisNowMs - MINUTE_MS);
        let tokens = '';
        for (const [sec, n] of b.tokens)
          if (sec > Math.floor(redisNowMs / 1000) - 60 && n > 0) tokens += `,${sec}:${n}`;
        const count = b.day !== day ? 0 : lastMinuteOnly ? Math.min(log.length, b.dayCount) : b.dayCount;
        const rest = b.restUntilMs > nowMs ? b.restUntilMs : 0;
        if (log.length === 0 && tokens === '' && count === 0 && rest === 0) continue;
        out += `b\t${project}\t${model}\t${day}\t${count}\t${rest}\t${clean(b.restReason)}\t${log.length ? `,${log.join(',')}` : ''}\t${tokens}\n`;
      }
    }
    for (const [id, reason] of this.disabled) out += `d\t${id}\t${clean(reason)}\n`;
    return out;
  }

  /**
   * Drops the budgets with nothing to re-seed (as text() would skip them): made-up model names,
   * whose reservations came back, would otherwise pile up. Runs when the count doubles.
   */
  private sweep(atMs: number, slot: number, day: string): void {
    this.count = 0;
    for (const [project, models] of this.budgets) {
      for (const [model, b] of models) {
        if (isIdle(b, atMs, slot, day)) models.delete(model);
        else this.count += 1;
      }
      if (models.size === 0) this.budgets.delete(project);
    }
    this.sweepAt = Math.max(MIN_SWEEP, 2 * this.count);
  }

  private budget(project: string, model: string): JournalBudget {
    let models = this.budgets.get(project);
    if (!models) {
      models = new Map();
      this.budgets.set(project, models);
    }
    let b = models.get(model);
    if (!b) {
      b = { log: [], tokens: new Map(), day: '', dayCount: 0, restUntilMs: 0, restReason: '', lastSlot: -1 };
      models.set(model, b);
      this.count += 1;
    }
    return b;
  }
}

/** Nothing to re-seed (text() would skip it); `atMs` and `sec`: Redis's clock. */
function isIdle(b: JournalBudget, atMs: number, sec: number, day: string): boolean {
  if (b.log.length > 0 && b.log[b.log.length - 1]! > atMs - MINUTE_MS) return false;
  if ((b.dayCount > 0 && b.day >= day) || b.restUntilMs > atMs) return false;
  for (const [s, n] of b.tokens) if (n > 0 && s > sec - 60) return false;
  return true;
}

function clean(reason: string): string {
  return reason.replace(/[\t\n\r]/g, ' ');
}
