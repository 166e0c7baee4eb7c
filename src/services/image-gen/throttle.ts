import { HttpProblem } from '../../http/problem.ts';
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
  throw new HttpProblem(429, `too many image requests: at most ${rpm} per minute, retry in ${retryAfter} s`, {
    headers: { 'retry-after': String(retryAfter) },
  });
}
