import { describe, expect, it } from 'vitest';
import type { FakeGemini, FakeKeyState } from '../../fake/fake-gemini.ts';
import { classifyUpstream } from '../../src/pool/classify.ts';
import { fakePerTest, type Json, KEY, post } from '../helpers/fake.ts';

/** The fake's answers that key verification and the egress check rely on, exactly as Google's. */

const start = fakePerTest();
const GEN = '/v1beta/models/gemini-2.5-flash:generateContent';
const userText = (text: string) => ({ contents: [{ role: 'user', parts: [{ text }] }] });
const LOCATION = {
  error: {
    code: 400,
    message: 'User location is not supported for the API use.',
    status: 'FAILED_PRECONDITION',
  },
};
const BILLING = {
  error: {
    code: 429,
    message:
      'Your prepayment credits are depleted. Please go to AI Studio at https://ai.studio/projects to manage your project and billing.',
    status: 'RESOURCE_EXHAUSTED',
  },
};

async function list(fake: FakeGemini, apiKey = KEY): Promise<{ status: number; text: string; json: Json }> {
  const res = await fetch(`${fake.url}/v1beta/models?pageSize=1`, { headers: { 'x-goog-api-key': apiKey } });
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) };
}

describe('fake Gemini: answers key verification depends on', () => {
  it('models.list with pageSize=1 answers one model for a working key', async () => {
    const fake = await start({ keys: [{ apiKey: KEY }] });
    const r = await list(fake);
    expect(r.status).toBe(200);
    expect(r.json.models).toHaveLength(1);
    expect(typeof r.json.nextPageToken).toBe('string');
  });

  it('models.list answers invalid, leaked, suspended and service-disabled keys exactly like generateContent', async () => {
    const fake = await start({ keys: [{ apiKey: KEY, project: 'proj-1' }] });
    for (const state of ['invalid', 'leaked', 'suspended', 'service_disabled'] as FakeKeyState[]) {
      fake.setKeyState(KEY, state);
      const l = await list(fake);
      const g = await post(fake, GEN, userText('x'));
      expect(l.status, state).toBe(g.status);
      expect(l.json, state).toEqual(g.json);
      expect(l.text, state).not.toContain(KEY);
      expect(classifyUpstream(l.status, l.json, 0), state).toMatchObject({ kind: 'disable' });
    }
    // A key Google does not know at all.
    const stranger = await list(fake, 'AIzaUnknown00000000000000000000000');
    expect(stranger.status).toBe(400);
    expect(classifyUpstream(stranger.status, stranger.json, 0)).toEqual({
      kind: 'disable',
      reason: 'API_KEY_INVALID',
    });
  });

  it('a refused egress location: Google’s exact 400 FAILED_PRECONDITION body, listing included', async () => {
    const fake = await start({ keys: [{ apiKey: KEY }], egressRefused: true });
    const l = await list(fake);
    expect(l.status).toBe(400);
    expect(l.json).toEqual(LOCATION);
    const g = await post(fake, GEN, userText('x'));
    expect(g.status).toBe(400);
    expect(g.json).toEqual(LOCATION);
    // A dead key still says so first.
    fake.setKeyState(KEY, 'leaked');
    expect((await list(fake)).status).toBe(403);
    fake.setKeyState(KEY, 'ok');
    fake.setEgressRefused(false);
    expect((await post(fake, GEN, userText('x'))).status).toBe(200);
    // As a scripted one-off.
    fake.script({ kind: 'location' });
    const once = await post(fake, GEN, userText('x'));
    expect(once.json).toEqual(LOCATION);
    expect((await post(fake, GEN, userText('x'))).status).toBe(200);
  });

  it('depleted prepayment credits: Google’s 429 without QuotaFailure, on the calls that spend', async () => {
    const fake = await start({ keys: [{ apiKey: KEY }] });
    fake.setKeyState(KEY, 'billing');
    const g = await post(fake, GEN, userText('x'));
    expect(g.status).toBe(429);
    expect(g.json).toEqual(BILLING);
    const stream = await post(
      fake,
      '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse',
      userText('x'),
    );
    expect(stream.json).toEqual(BILLING);
    const embed = await post(fake, '/v1beta/models/gemini-embedding-001:embedContent', {
      content: { parts: [{ text: 'x' }] },
    });
    expect(embed.json).toEqual(BILLING);
    // Calls that spend nothing still answer.
    expect((await post(fake, '/v1beta/models/gemini-2.5-flash:countTokens', userText('x'))).status).toBe(200);
    expect((await list(fake)).status).toBe(200);
    // As a scripted one-off.
    fake.setKeyState(KEY, 'ok');
    fake.script({ kind: 'billing' });
    expect((await list(fake)).json).toEqual(BILLING);
  });

  it('scripted suspended and service_disabled answers never name the key', async () => {
    const fake = await start({ keys: [{ apiKey: KEY }] });
    fake.script({ kind: 'suspended' });
    const s = await list(fake);
    expect(s.status).toBe(403);
    expect(s.text).not.toContain(KEY);
    expect(classifyUpstream(s.status, s.json, 0)).toEqual({ kind: 'disable', reason: 'SUSPENDED' });
    fake.script({ kind: 'service_disabled' });
    const d = await list(fake);
    expect(d.status).toBe(403);
    expect(d.text).not.toContain(KEY);
    expect(classifyUpstream(d.status, d.json, 0)).toEqual({ kind: 'disable', reason: 'SERVICE_DISABLED' });
  });
});
