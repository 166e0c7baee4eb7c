import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { FakeGemini } from '../../fake/fake-gemini.ts';
import { fakePerTest, type Json, post } from '../helpers/fake.ts';

/** The fake's Interactions API and Live endpoint, as Google's ownership and close rules make them. */
const A = 'AIzaFakeProjA-key-00000000000000000001';
const A2 = 'AIzaFakeProjA-key-00000000000000000002';
const B = 'AIzaFakeProjB-key-00000000000000000001';
const start = fakePerTest();
const twoProjects = (extra = {}) =>
  start({
    keys: [
      { apiKey: A, project: 'proj-a' },
      { apiKey: A2, project: 'proj-a' },
      { apiKey: B, project: 'proj-b' },
    ],
    ...extra,
  });

async function get(fake: FakeGemini, path: string, key: string) {
  const res = await fetch(fake.url + path, { headers: { 'x-goog-api-key': key } });
  const text = await res.text();
  return { status: res.status, text, json: (text.startsWith('{') ? JSON.parse(text) : undefined) as Json };
}

describe('fake Interactions API', () => {
  it("keeps an interaction in its key's project: another project's key gets 404 for it and for its chain", async () => {
    const fake = await twoProjects();
    const first = await post(fake, '/v1beta/interactions', { model: 'gemini-2.5-flash', input: 'one' }, A);
    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({ status: 'completed', usage: { total_input_tokens: 1 } });
    const id = first.json.id as string;
    expect((await get(fake, `/v1beta/interactions/${id}`, A2)).status).toBe(200); // same project, other key
    expect((await get(fake, `/v1beta/interactions/${id}`, B)).json).toEqual({
      error: { code: 404, message: 'Requested entity was not found.', status: 'NOT_FOUND' },
    });
    const cross = await post(
      fake,
      '/v1beta/interactions',
      { model: 'gemini-2.5-flash', input: 'two', previous_interaction_id: id },
      B,
    );
    expect(cross.status).toBe(404);
    const chained = await post(
      fake,
      '/v1beta/interactions',
      { model: 'gemini-2.5-flash', input: 'two', previous_interaction_id: id },
      A2,
    );
    expect(chained.json.steps.at(-1).content[0].text).toBe('Fake interaction answer, turn 2: two');
    // The whole chain is billed as input again.
    expect(chained.json.usage.total_input_tokens).toBeGreaterThan(first.json.usage.total_input_tokens);
    const del = await fetch(`${fake.url}/v1beta/interactions/${id}`, {
      method: 'DELETE',
      headers: { 'x-goog-api-key': A },
    });
    expect(del.status).toBe(200);
    expect((await get(fake, `/v1beta/interactions/${id}`, A)).status).toBe(404);
    const unstored = await post(
      fake,
      '/v1beta/interactions',
      { model: 'gemini-2.5-flash', input: 'x', store: false },
      A,
    );
    expect((await get(fake, `/v1beta/interactions/${unstored.json.id}`, A)).status).toBe(404);
  });

  it('completes a background interaction after two polls, and cancels a running one', async () => {
    const fake = await twoProjects();
    const bg = await post(
      fake,
      '/v1beta/interactions',
      { model: 'gemini-2.5-flash', input: 'slow', background: true },
      A,
    );
    expect(bg.json.status).toBe('in_progress');
    expect((await get(fake, `/v1beta/interactions/${bg.json.id}`, A)).json.status).toBe('in_progress');
    expect((await get(fake, `/v1beta/interactions/${bg.json.id}`, A)).json.status).toBe('completed');
    const other = await post(
      fake,
      '/v1beta/interactions',
      { model: 'gemini-2.5-flash', input: 'stop', background: true },
      A,
    );
    expect((await post(fake, `/v1beta/interactions/${other.json.id}/cancel`, '', B)).status).toBe(404);
    const cancelled = await post(fake, `/v1beta/interactions/${other.json.id}/cancel`, '', A);
    expect(cancelled.json.status).toBe('cancelled');
    expect((await post(fake, `/v1beta/interactions/${other.json.id}:cancel`, '', A)).status).toBe(400);
  });

  it('streams events with ids, and replays the ones after last_event_id', async () => {
    const fake = await twoProjects({ streamChunks: 2 });
    const res = await fetch(`${fake.url}/v1beta/interactions`, {
      method: 'POST',
      headers: { 'x-goog-api-key': A, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gemini-2.5-flash', input: 'stream it', stream: true }),
    });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const events = (await res.text())
      .split('\n\n')
      .filter(Boolean)
      .map((e) =>
        JSON.parse(
          e
            .split('\n')
            .find((l) => l.startsWith('data: '))!
            .slice(6),
        ),
      );
    expect(events.map((e) => e.event_type)).toEqual([
      'interaction.created',
      'interaction.status_update',
      'step.start',
      'step.delta',
      'step.delta',
      'step.stop',
      'interaction.completed',
    ]);
    expect(new Set(events.map((e) => e.event_id)).size).toBe(events.length);
    const id = events[0].interaction.id;
    const again = await get(
      fake,
      `/v1beta/interactions/${id}?stream=true&last_event_id=${events[3].event_id}`,
      A,
    );
    expect(again.text.match(/event: [a-z._]+/g)).toEqual([
      'event: step.delta',
      'event: step.stop',
      'event: interaction.completed',
    ]);
    expect((await get(fake, `/v1beta/interactions/${id}?stream=true`, B)).status).toBe(404);
  });
});

const LIVE_PATH = '/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent';

/** A socket to the fake's Live endpoint that sends `setup`; resolves with its messages and close. */
function liveSession(fake: FakeGemini, query: string, model = 'gemini-live-2.5-flash-preview', turns = 0) {
  return new Promise<{ binary: boolean[]; messages: Json[]; code: number; reason: string }>((resolve) => {
    const ws = new WebSocket(`${fake.url.replace('http', 'ws')}/${LIVE_PATH}${query}`);
    const messages: Json[] = [];
    const binary: boolean[] = [];
    let done = 0;
    ws.on('open', () => ws.send(JSON.stringify({ setup: { model: `models/${model}` } })));
    ws.on('message', (data, isBinary) => {
      const m = JSON.parse(data.toString());
      messages.push(m);
      binary.push(isBinary);
      if (m.setupComplete && turns === 0) ws.close(1000);
      else if (m.setupComplete || m.serverContent?.turnComplete) {
        if (m.serverContent?.turnComplete) done++;
        if (done === turns) ws.close(1000);
        else
          ws.send(
            JSON.stringify({
              clientContent: {
                turns: [{ role: 'user', parts: [{ text: `t${done + 1}` }] }],
                turnComplete: true,
              },
            }),
          );
      }
    });
    ws.on('close', (code, reason) => resolve({ binary, messages, code, reason: reason.toString() }));
  });
}

describe('fake Live API', () => {
  it('answers setup and turns in binary frames, with usage', async () => {
    const fake = await twoProjects();
    const s = await liveSession(fake, `?key=${A}`, undefined, 2);
    expect(s.code).toBe(1000);
    expect(s.binary.every(Boolean)).toBe(true);
    expect(s.messages[0]).toEqual({ setupComplete: {} });
    const ends = s.messages.filter((m) => m.serverContent?.turnComplete);
    expect(ends).toHaveLength(2);
    expect(ends[1].usageMetadata.promptTokenCount).toBeGreaterThan(ends[0].usageMetadata.promptTokenCount);
    expect(s.messages.some((m) => m.serverContent?.generationComplete)).toBe(true);
    expect(fake.live.sessions[0]).toMatchObject({
      project: 'proj-a',
      turns: 2,
      closedBy: { side: 'client', code: 1000 },
    });
  });

  it('closes like Google: no key 1008, an invalid key 1007, a model that is not Live 1008, a full project 1011', async () => {
    const fake = await twoProjects({ liveSessionsPerProject: 1, acceptAnyKey: false });
    expect((await liveSession(fake, '')).code).toBe(1008);
    expect((await liveSession(fake, '?key=AIzaUnknown')).code).toBe(1007);
    expect((await liveSession(fake, `?key=${A}`, 'gemini-2.5-flash')).code).toBe(1008);
    // Header keys work too; a second session of project A is over its limit.
    const held = new WebSocket(`${fake.url.replace('http', 'ws')}${LIVE_PATH}`, {
      headers: { 'x-goog-api-key': A },
    });
    await new Promise<void>((resolve) => {
      held.on('open', () => held.send(JSON.stringify({ setup: { model: 'gemini-live-2.5-flash-preview' } })));
      held.on('message', () => resolve());
    });
    const full = await liveSession(fake, `?key=${A2}`);
    expect(full.code).toBe(1011);
    expect(full.reason).toMatch(/concurrent sessions/);
    expect((await liveSession(fake, `?key=${B}`)).code).toBe(1000);
    held.close();
  });
});
