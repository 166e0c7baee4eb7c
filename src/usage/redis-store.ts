import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { FIELDS, type Field, zeroCounts } from './counts.ts';
import {
  type DayRow,
  HOURLY_RETENTION_HOURS,
  type HourRow,
  type UsageBatch,
  type UsageEntry,
  type UsageStore,
} from './store.ts';

/** Short field codes in Redis (one hash field per client, model and counter). */
const CODE: Record<Field, string> = {
  requests: 'r',
  prompt_tokens: 'p',
  output_tokens: 'o',
  cached_tokens: 'c',
  thought_tokens: 't',
  errors: 'e',
  long_prompt_tokens: 'lp',
  long_output_tokens: 'lo',
  long_cached_tokens: 'lc',
  long_thought_tokens: 'lt',
  image_output_tokens: 'oi',
};
const FIELD_OF = new Map(Object.entries(CODE).map(([f, c]) => [c, f as Field]));

/**
 * One flush, atomically and exactly once. ARGV: the instance's sequence key, the batch's sequence
 * number, that key's TTL, the key whose hash comes back (today's per-client tokens), then per hash
 * to increment: its key, its TTL in seconds, the number of fields, and field/increment pairs.
 * A batch whose number is not above the last one applied for the instance was applied already
 * (its answer was lost, say to a timeout): it adds nothing the second time.
 */
const FLUSH_LUA = `
local last = tonumber(redis.call('GET', ARGV[1]) or '0')
local seq = tonumber(ARGV[2])
local applied = 0
if seq > last then
  applied = 1
  redis.call('SET', ARGV[1], ARGV[2], 'EX', ARGV[3])
  local a = 5
  while a <= #ARGV do
    local key = ARGV[a]
    local ttl = ARGV[a + 1]
    local n = tonumber(ARGV[a + 2])
    a = a + 3
    for i = 1, n do
      redis.call('HINCRBY', key, ARGV[a], ARGV[a + 1])
      a = a + 2
    end
    redis.call('EXPIRE', key, ttl)
  end
end
return {applied, redis.call('HGETALL', ARGV[4])}
`;

type FlushRedis = Redis & { ggUsageFlush(...args: (string | number)[]): Promise<[number, string[]]> };

const DAY_S = 86_400;

/**
 * Usage in Redis, shared by every instance on it. Per Pacific day a hash `{prefix}usage:d:{day}`
 * with one field per client, model and counter (`client\tmodel\tcode`, HINCRBY); per UTC hour the
 * same in `usage:h:{hour}` (kept 8 days, for the 24-hour view); per day the tokens of each client
 * in `usage:t:{day}` (the `tokens_per_day` client limits read it). Each key expires its retention
 * after its last write. A flush is one script call (one round trip) per batch.
 */
export class RedisUsageStore implements UsageStore {
  readonly kind = 'redis';
  readonly shared = true;
  private readonly redis: FlushRedis;
  private readonly p: string;
  private readonly seqKey: string;
  private readonly retentionS: number;

  constructor(redis: Redis, prefix: string, retentionDays: number) {
    redis.defineCommand('ggUsageFlush', { numberOfKeys: 0, lua: FLUSH_LUA });
    this.redis = redis as FlushRedis;
    this.p = `${prefix}usage:`;
    // One per process: a restarted instance starts a new sequence.
    this.seqKey = `${this.p}seq:${randomUUID()}`;
    // Two days over the retention: a day's hash is written for the last time a little after it ends.
    this.retentionS = (retentionDays + 2) * DAY_S;
  }

  async write(batch: UsageBatch, today: string): Promise<Map<string, number>> {
    const hashes = new Map<string, { ttl: number; fields: Map<string, number> }>();
    const add = (key: string, ttl: number, field: string, n: number) => {
      if (n === 0) return;
      let h = hashes.get(key);
      if (!h) {
        h = { ttl, fields: new Map() };
        hashes.set(key, h);
      }
      h.fields.set(field, (h.fields.get(field) ?? 0) + n);
    };
    for (const e of batch.entries) {
      const name = `${e.client}\t${e.model}\t`;
      for (const f of FIELDS) {
        add(this.dayKey(e.day), this.retentionS, name + CODE[f], e.counts[f]);
        add(this.hourKey(e.hour), HOURLY_RETENTION_HOURS * 3600, name + CODE[f], e.counts[f]);
      }
      add(this.totalsKey(e.day), 3 * DAY_S, e.client, tokensOf(e));
    }
    const args: (string | number)[] = [this.seqKey, batch.seq, 7 * DAY_S, this.totalsKey(today)];
    for (const [key, h] of hashes) {
      args.push(key, h.ttl, h.fields.size);
      for (const [field, n] of h.fields) args.push(field, n);
    }
    const [, totals] = await this.redis.ggUsageFlush(...args);
    return pairsToMap(totals);
  }

  async tokensByClient(day: string): Promise<Map<string, number>> {
    const h = await this.redis.hgetall(this.totalsKey(day));
    return new Map(Object.entries(h).map(([c, n]) => [c, Number(n)]));
  }

  async days(days: readonly string[]): Promise<DayRow[]> {
    const hashes = await Promise.all(days.map((d) => this.redis.hgetall(this.dayKey(d))));
    const out: DayRow[] = [];
    days.forEach((day, i) => {
      for (const r of parseHash(hashes[i]!)) out.push({ day, ...r });
    });
    return out;
  }

  async hours(hours: readonly number[]): Promise<HourRow[]> {
    const hashes = await Promise.all(hours.map((h) => this.redis.hgetall(this.hourKey(h))));
    const out: HourRow[] = [];
    hours.forEach((hour, i) => {
      for (const r of parseHash(hashes[i]!)) out.push({ hour, ...r });
    });
    return out;
  }

  /** Keys expire by themselves. */
  async trim(): Promise<void> {}

  /** The connection is the state store's: closed with it. */
  async close(): Promise<void> {}

  private dayKey(day: string): string {
    return `${this.p}d:${day}`;
  }
  private hourKey(hour: number): string {
    return `${this.p}h:${hour}`;
  }
  private totalsKey(day: string): string {
    return `${this.p}t:${day}`;
  }
}

function tokensOf(e: UsageEntry): number {
  return e.counts.prompt_tokens + e.counts.output_tokens + e.counts.thought_tokens;
}

function pairsToMap(pairs: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i + 1 < pairs.length; i += 2) m.set(pairs[i]!, Number(pairs[i + 1]));
  return m;
}

/** A day's or an hour's hash as rows per (client, model). */
function parseHash(h: Record<string, string>) {
  const rows = new Map<string, { client: string; model: string; counts: ReturnType<typeof zeroCounts> }>();
  for (const [field, value] of Object.entries(h)) {
    const codeAt = field.lastIndexOf('\t');
    const modelAt = field.lastIndexOf('\t', codeAt - 1);
    if (codeAt < 0 || modelAt < 0) continue;
    const f = FIELD_OF.get(field.slice(codeAt + 1));
    if (f === undefined) continue;
    const key = field.slice(0, codeAt);
    let row = rows.get(key);
    if (!row) {
      row = {
        client: field.slice(0, modelAt),
        model: field.slice(modelAt + 1, codeAt),
        counts: zeroCounts(),
      };
      rows.set(key, row);
    }
    row.counts[f] = Number(value);
  }
  return [...rows.values()].sort((a, b) =>
    a.client === b.client ? (a.model < b.model ? -1 : 1) : a.client < b.client ? -1 : 1,
  );
}
