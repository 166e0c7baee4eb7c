/** Free-tier style quotas of the fake Gemini, per project AND per model. */
import type { QuotaViolation } from './fake-gemini-errors.ts';

export interface FakeLimits {
  rpm?: number;
  rpd?: number;
  tpm?: number;
}

export type QuotaFamily = 'generate' | 'embed';

interface Bucket {
  // rolling 60 s window of request timestamps (a queue: entries from `rpmHead` on)
  rpmTimes: number[];
  rpmHead: number;
  // rolling 60 s window of input tokens
  tpmTimes: number[];
  tpmTokens: number[];
  tpmHead: number;
  tpmSum: number;
  // requests in the current Pacific calendar day
  day: string;
  dayCount: number;
}

const WINDOW_MS = 60_000;

const IDS = {
  generate: {
    requests: 'generativelanguage.googleapis.com/generate_content_free_tier_requests',
    tokens: 'generativelanguage.googleapis.com/generate_content_free_tier_input_token_count',
    rpm: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier',
    rpd: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier',
    tpm: 'GenerateContentInputTokensPerModelPerMinute-FreeTier',
  },
  embed: {
    requests: 'generativelanguage.googleapis.com/embed_content_free_tier_requests',
    tokens: 'generativelanguage.googleapis.com/embed_content_free_tier_input_token_count',
    rpm: 'EmbedContentRequestsPerMinutePerProjectPerModel-FreeTier',
    rpd: 'EmbedContentRequestsPerDayPerProjectPerModel-FreeTier',
    tpm: 'EmbedContentInputTokensPerModelPerMinute-FreeTier',
  },
} as const;

export const QUOTA_IDS = IDS;

const pacific = new Intl.DateTimeFormat('en-CA', {
  timeZone: 'America/Los_Angeles',
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  hourCycle: 'h23',
});

interface PacificMinute {
  minute: number;
  day: string;
  /** ms from the start of this UTC minute to the next Pacific midnight */
  msToMidnight: number;
}
let pacificCache: PacificMinute = { minute: Number.NaN, day: '', msToMidnight: 0 };

/** The Pacific calendar day of `now` (Pacific offsets are whole hours, so one lookup per minute). */
export function pacificDay(now: number): PacificMinute {
  const minute = Math.floor(now / 60_000);
  if (minute === pacificCache.minute) return pacificCache;
  const parts: Record<string, string> = {};
  for (const p of pacific.formatToParts(minute * 60_000)) parts[p.type] = p.value;
  const minutesIntoDay = Number(parts.hour) * 60 + Number(parts.minute);
  pacificCache = {
    minute,
    day: `${parts.year}-${parts.month}-${parts.day}`,
    msToMidnight: (24 * 60 - minutesIntoDay) * 60_000,
  };
  return pacificCache;
}

export interface LimitRefusal {
  violations: QuotaViolation[];
  retryDelayMs: number;
}

export class LimitTracker {
  readonly limits: FakeLimits;
  /** Limits of named models (Google's differ per model); `limits` serve every other model. */
  readonly modelLimits: Readonly<Record<string, FakeLimits>>;
  readonly now: () => number;
  private readonly buckets = new Map<string, Bucket>();

  constructor(limits: FakeLimits, now: () => number, modelLimits: Record<string, FakeLimits> = {}) {
    this.limits = limits;
    this.modelLimits = modelLimits;
    this.now = now;
  }

  get enabled(): boolean {
    return [this.limits, ...Object.values(this.modelLimits)].some(
      (l) => l.rpm !== undefined || l.rpd !== undefined || l.tpm !== undefined,
    );
  }

  reset(): void {
    this.buckets.clear();
  }

  /** Admits the request (and records it) or returns why not; a refused request is not recorded. */
  admit(project: string, model: string, tokens: number, family: QuotaFamily): LimitRefusal | null {
    const { rpm, rpd, tpm } = this.modelLimits[model] ?? this.limits;
    if (rpm === undefined && rpd === undefined && tpm === undefined) return null;
    const now = this.now();
    const id = `${project}\u0000${model}`;
    let b = this.buckets.get(id);
    if (!b) {
      b = {
        rpmTimes: [],
        rpmHead: 0,
        tpmTimes: [],
        tpmTokens: [],
        tpmHead: 0,
        tpmSum: 0,
        day: '',
        dayCount: 0,
      };
      this.buckets.set(id, b);
    }
    const ids = IDS[family];
    const violations: QuotaViolation[] = [];
    let delay = 0;

    const cutoff = now - WINDOW_MS;
    if (rpm !== undefined) {
      while (b.rpmHead < b.rpmTimes.length && b.rpmTimes[b.rpmHead]! <= cutoff) b.rpmHead++;
      if (b.rpmHead > 1024 && b.rpmHead * 2 > b.rpmTimes.length) {
        b.rpmTimes = b.rpmTimes.slice(b.rpmHead);
        b.rpmHead = 0;
      }
      if (b.rpmTimes.length - b.rpmHead >= rpm) {
        violations.push({ quotaMetric: ids.requests, quotaId: ids.rpm, model, limit: rpm });
        const oldest = b.rpmTimes[b.rpmHead];
        delay = oldest === undefined ? WINDOW_MS : oldest + WINDOW_MS - now;
      }
    }
    if (tpm !== undefined) {
      while (b.tpmHead < b.tpmTimes.length && b.tpmTimes[b.tpmHead]! <= cutoff) {
        b.tpmSum -= b.tpmTokens[b.tpmHead]!;
        b.tpmHead++;
      }
      if (b.tpmHead > 1024 && b.tpmHead * 2 > b.tpmTimes.length) {
        b.tpmTimes = b.tpmTimes.slice(b.tpmHead);
        b.tpmTokens = b.tpmTokens.slice(b.tpmHead);
        b.tpmHead = 0;
      }
      if (b.tpmSum + tokens > tpm) {
        violations.push({ quotaMetric: ids.tokens, quotaId: ids.tpm, model, limit: tpm });
        let d = WINDOW_MS;
        if (tokens <= tpm) {
          let sum = b.tpmSum;
          for (let i = b.tpmHead; i < b.tpmTimes.length; i++) {
            sum -= b.tpmTokens[i]!;
            if (sum + tokens <= tpm) {
              d = b.tpmTimes[i]! + WINDOW_MS - now;
              break;
            }
          }
        }
        delay = Math.max(delay, d);
      }
    }
    if (rpd !== undefined) {
      const p = pacificDay(now);
      if (b.day !== p.day) {
        b.day = p.day;
        b.dayCount = 0;
      }
      if (b.dayCount >= rpd) {
        violations.push({ quotaMetric: ids.requests, quotaId: ids.rpd, model, limit: rpd });
        delay = Math.max(delay, p.msToMidnight - (now % 60_000));
      }
    }
    if (violations.length > 0) return { violations, retryDelayMs: Math.max(0, delay) };

    if (rpm !== undefined) b.rpmTimes.push(now);
    if (tpm !== undefined) {
      b.tpmTimes.push(now);
      b.tpmTokens.push(tokens);
      b.tpmSum += tokens;
    }
    if (rpd !== undefined) b.dayCount++;
    return null;
  }
}
