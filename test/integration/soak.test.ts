import { afterAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from '../helpers/stack.ts';

/**
 * A bounded burst with upstream 429s (short rests, so requests queue for keys) and clients that
 * give up mid-way: every answer is 200 or a JSON 429, nothing 5xx, and the queue drains to zero.
 */
let stack: Stack | undefined;
afterAll(async () => {
  await stack?.close();
});

describe('burst with rests and abandoned requests', () => {
  it('answers every request that stays with 200 or 429, never 5xx, and leaves nobody queued', async () => {
    stack = await startStack({
      keys: 3,
      env: { QUEUE_MAX_WAIT_MS: '2000', MAX_ATTEMPTS: '6', DEFAULT_RPM: '1000' },
    });
    const s = stack;
    s.fake.script({ kind: 'rate_limit', retryDelay: '0.2s' }, { method: 'generateContent', times: 40 });
    const statuses: number[] = [];
    let abandoned = 0;
    const total = 240;
    let next = 0;
    const worker = async () => {
      while (next < total) {
        const i = next++;
        const controller = new AbortController();
        const leave = i % 4 === 0;
        if (leave) setTimeout(() => controller.abort(), 5 + (i % 50));
        try {
          const res = await fetch(`${s.url}/v1beta/models/gemini-2.5-flash-lite:generateContent`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-goog-api-key': s.token },
            body: JSON.stringify({ contents: [{ parts: [{ text: `soak ${i}` }] }] }),
            signal: controller.signal,
          });
          const body = await res.text();
          statuses.push(res.status);
          if (res.status !== 200) expect(() => JSON.parse(body)).not.toThrow();
        } catch (err) {
          if (!leave) throw err;
          abandoned += 1;
        }
      }
    };
    await Promise.all(Array.from({ length: 30 }, worker));
    expect(statuses.length + abandoned).toBe(total);
    expect(statuses.filter((x) => x >= 500)).toEqual([]);
    expect(statuses.every((x) => x === 200 || x === 429)).toBe(true);
    expect(statuses.filter((x) => x === 200).length).toBeGreaterThan(total / 2);
    await new Promise((r) => setTimeout(r, 100));
    expect(s.gateway.pool.queueLength).toBe(0);
    const now = Date.now();
    const states = await s.gateway.store.keyStates(now, s.gateway.pool.calendarAt(now).day);
    expect(states.every((k) => k.enabled && k.circuit === 'closed')).toBe(true);
  });
});
