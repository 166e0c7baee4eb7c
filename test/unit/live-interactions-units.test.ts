import { describe, expect, it } from 'vitest';
import { parseEnv } from '../../src/config/env.ts';
import { keyFromEntry, parseKeysFile } from '../../src/config/keys.ts';
import { tierLimits } from '../../src/config/tiers.ts';
import { InteractionIdScan, recordingStream } from '../../src/http/routes/interactions.ts';
import { classifyClose } from '../../src/live/live-proxy.ts';
import { DEFAULT_LIVE_SESSIONS, liveSessionLimit } from '../../src/live/session-limit.ts';
import type { StreamAnswer } from '../../src/upstream/forwarder.ts';

const ENV = { DEFAULT_RPM: 60, DEFAULT_RPD: 1440, DEFAULT_TPM: 32_000 };
const LIVE = 'gemini-live-2.5-flash-preview';

describe('Live session limits per (project, model)', () => {
  it("take the key's live_sessions, else the file's defaults, else the tier table, else the default", () => {
    const tableSessions = tierLimits('tier1')[LIVE]?.liveSessions;
    expect(tableSessions).toBeGreaterThan(0);
    const own = keyFromEntry({ id: 'k', api_key: 'AIza-1', live_sessions: 7, tier: 'tier1' }, ENV, {
      live_sessions: 2,
    });
    expect(liveSessionLimit(own, LIVE)).toBe(7);
    const fromDefaults = keyFromEntry({ id: 'k', api_key: 'AIza-1', tier: 'tier1' }, ENV, {
      live_sessions: 2,
    });
    expect(liveSessionLimit(fromDefaults, LIVE)).toBe(2);
    const fromTier = keyFromEntry({ id: 'k', api_key: 'AIza-1', tier: 'tier1' }, ENV);
    expect(liveSessionLimit(fromTier, LIVE)).toBe(tableSessions);
    // A model the table gives no session count, and a key without tier or number: the default.
    expect(liveSessionLimit(fromTier, 'gemini-2.5-flash')).toBe(DEFAULT_LIVE_SESSIONS);
    const plain = keyFromEntry({ id: 'k', api_key: 'AIza-1' }, ENV);
    expect(plain.liveSessions).toBeUndefined();
    expect(liveSessionLimit(plain, LIVE)).toBe(DEFAULT_LIVE_SESSIONS);
  });

  it('is read from a keys file, and a bad value stops start-up naming the field', () => {
    const env = parseEnv({ GEMINI_API_KEYS: 'AIza-env', CLIENT_API_KEYS_MAP: 't:n' });
    const { keys } = parseKeysFile(
      JSON.stringify({ defaults: { live_sessions: 4 }, keys: [{ id: 'a', api_key: 'AIza-a' }] }),
      'keys.json',
      env,
    );
    expect(liveSessionLimit(keys[0], LIVE)).toBe(4);
    expect(() =>
      parseKeysFile(
        JSON.stringify({ keys: [{ id: 'a', api_key: 'AIza-a', live_sessions: 0 }] }),
        'keys.json',
        env,
      ),
    ).toThrow(/live_sessions/);
  });
});

describe("Google's close of a Live session before it opened", () => {
  it('blames the key only for key problems, spills on a full project, and passes the session’s own faults on', () => {
    expect(classifyClose(1007, 'API key not valid. Please pass a valid API key.')).toMatchObject({
      kind: 'retry',
      outcome: { kind: 'disable', reason: 'API_KEY_INVALID' },
    });
    expect(classifyClose(1007, 'Invalid JSON payload received. Unknown name "foo"')).toEqual({
      kind: 'refused',
      code: 1007,
      reason: 'Invalid JSON payload received. Unknown name "foo"',
    });
    expect(
      classifyClose(1008, 'Your API key was reported as leaked. Please use another API key.'),
    ).toMatchObject({
      outcome: { kind: 'disable', reason: 'LEAKED' },
    });
    expect(classifyClose(1008, 'models/x is not found for API version v1beta')).toMatchObject({
      kind: 'refused',
    });
    expect(classifyClose(1008, 'User location is not supported for the API use.')).toEqual({
      kind: 'egress',
    });
    expect(
      classifyClose(1011, 'You exceeded your current quota: too many concurrent sessions for this project.'),
    ).toMatchObject({ kind: 'project_full' });
    expect(classifyClose(1011, 'You exceeded your current quota, please check your plan')).toMatchObject({
      outcome: { kind: 'rest', reason: 'LIVE_QUOTA' },
    });
    expect(classifyClose(1011, 'Internal error encountered.')).toMatchObject({
      outcome: { kind: 'failure', reason: 'LIVE_INTERNAL' },
    });
    expect(classifyClose(1006, '')).toMatchObject({ outcome: { kind: 'failure' } });
  });
});

describe('the interaction id of a created stream', () => {
  const events =
    'event: interaction.created\ndata: {"event_type":"interaction.created","event_id":"e1","interaction":{"id":"v1_abc","status":"in_progress"}}\n\n' +
    'event: step.delta\ndata: {"event_type":"step.delta","delta":{"type":"text","text":"hi"}}\n\n';

  it('is found in whichever chunk completes its event, however the stream is cut', () => {
    for (let cut = 1; cut < events.length; cut += 7) {
      const scan = new InteractionIdScan();
      const first = scan.push(Buffer.from(events.slice(0, cut)));
      const second = scan.push(Buffer.from(events.slice(cut)));
      expect([first, second].filter(Boolean)).toEqual(['v1_abc']);
      expect(scan.done).toBe(true);
    }
  });

  it('is recorded before the chunk that names it goes on', async () => {
    const order: string[] = [];
    const chunks = [Buffer.from(events.slice(0, 40)), Buffer.from(events.slice(40))];
    const answer = {
      first: chunks[0]!,
      rest: {
        next: async () => {
          const v = chunks.splice(1, 1)[0];
          return v ? { done: false, value: v } : { done: true, value: undefined };
        },
      },
      finish: () => {},
      abort: () => {},
    } as unknown as StreamAnswer;
    const wrapped = await recordingStream(answer, async (id) => {
      order.push(`record ${id}`);
    });
    order.push('first out');
    const next = await wrapped.rest.next();
    order.push(`chunk out ${next.done ? 'done' : next.value.length}`);
    expect(order).toEqual(['first out', 'record v1_abc', `chunk out ${events.length - 40}`]);
  });
});
