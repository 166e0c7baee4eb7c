import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { CallerRateLimiter, type RateLimitSettings } from '../../src/http/rate-limit.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { StateStore } from '../../src/store/types.ts';

const settings = (over: Partial<RateLimitSettings> = {}): RateLimitSettings => ({
  ipPerMinute: 0,
  ipBurst: 0,
  clientPerMinute: 0,
  perClient: new Map(),
  ...over,
});

function limiter(s: RateLimitSettings, clock: { t: number }, store: StateStore = new MemoryStore()) {
  return new CallerRateLimiter(store, s, { now: () => clock.t });
}

describe('CallerRateLimiter', () => {
  it('per IP: the minute window and the one-second burst window must both admit', async () => {
    const clock = { t: 1_000_000_000_000 };
    const l = limiter(settings({ ipPerMinute: 5, ipBurst: 2 }), clock);
    const allowed = async () => (await l.checkIp('1.2.3.4')).allowed;
    expect([await allowed(), await allowed(), await allowed()]).toEqual([true, true, false]);
    clock.t += 1000; // next second: the burst window admits again
    expect([await allowed(), await allowed()]).toEqual([true, true]);
    clock.t += 1000;
    // 5 admitted (+1 refused) this minute: the minute window refuses now, whatever the burst.
    const d = await l.checkIp('1.2.3.4');
    expect(d.allowed).toBe(false);
    expect(d.binding?.scope).toBe('ip_minute');
    expect(d.binding?.resetAtMs).toBe(clock.t - (clock.t % 60_000) + 60_000);
    expect((await l.checkIp('5.6.7.8')).allowed).toBe(true);
  });

  it('reports the window with the least room left', async () => {
    const clock = { t: 1_000_000_000_000 };
    const l = limiter(settings({ ipPerMinute: 100, ipBurst: 10 }), clock);
    const d = await l.checkIp('9.9.9.9');
    expect(d.binding).toMatchObject({ scope: 'ip_burst', limit: 10, count: 1 });
  });

  it('per client: the default, or the client’s own limit; 0 is unlimited', async () => {
    const clock = { t: 1_000_000_000_000 };
    const l = limiter(
      settings({
        clientPerMinute: 1,
        perClient: new Map([
          ['big', 3],
          ['free', 0],
        ]),
      }),
      clock,
    );
    expect((await l.checkClient('small')).allowed).toBe(true);
    expect((await l.checkClient('small')).allowed).toBe(false);
    for (let i = 0; i < 3; i++) expect((await l.checkClient('big')).allowed).toBe(true);
    expect((await l.checkClient('big')).allowed).toBe(false);
    for (let i = 0; i < 10; i++) expect((await l.checkClient('free')).allowed).toBe(true);
  });

  it('counts refusals by scope and applies new limits on update', async () => {
    const clock = { t: 1_000_000_000_000 };
    const l = limiter(settings({ ipPerMinute: 1 }), clock);
    const refusals: string[] = [];
    l.onRefusal = (scope) => refusals.push(scope);
    await l.checkIp('a');
    await l.checkIp('a');
    expect(refusals).toEqual(['ip_minute']);
    l.update(settings({ ipPerMinute: 10 }));
    expect((await l.checkIp('a')).allowed).toBe(true);
    l.update(settings());
    expect((await l.checkIp('a')).binding).toBeNull();
  });

  it('admits when the store fails (fail open) instead of failing the request', async () => {
    const broken = {
      hit: () => Promise.reject(new Error('ECONNREFUSED')),
    } as unknown as StateStore;
    const lines: string[] = [];
    const clock = { t: 1_000_000_000_000 };
    const l = new CallerRateLimiter(broken, settings({ ipPerMinute: 1 }), {
      now: () => clock.t,
      logger: pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) }),
    });
    expect((await l.checkIp('x')).allowed).toBe(true);
    expect((await l.checkIp('x')).allowed).toBe(true);
    // It says so, once per 10 s of outage rather than once per request.
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ msg: expect.stringContaining('admitted unchecked') });
    clock.t += 10_001;
    await l.checkIp('x');
    expect(lines).toHaveLength(2);
  });
});
