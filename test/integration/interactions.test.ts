import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GoogleGenAI } from '@google/genai';
import { describe, expect, it } from 'vitest';
import { type FakeGemini, startFakeGemini } from '../../fake/fake-gemini.ts';
import { type Stack, stackPerTest } from '../helpers/stack.ts';
import { tempDirs } from '../helpers/temp.ts';

/**
 * The Interactions API through the official SDK (`ai.interactions`), against the fake with four
 * keys in two projects and two clients. An interaction belongs to the project of the key that
 * created it (the fake answers another project's key with Google's 404), so a chain continued
 * with previous_interaction_id, a poll, a cancel or a resumed stream must each go to that
 * project, where round robin alone would cross projects.
 */
const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdef01';
const KEYS = [
  { id: 'a1', api_key: 'AIzaFakeProjectAKey1xxxxxxxxxxxxxxxxxxx', project: 'proj-a' },
  { id: 'a2', api_key: 'AIzaFakeProjectAKey2xxxxxxxxxxxxxxxxxxx', project: 'proj-a' },
  { id: 'b1', api_key: 'AIzaFakeProjectBKey1xxxxxxxxxxxxxxxxxxx', project: 'proj-b' },
  { id: 'b2', api_key: 'AIzaFakeProjectBKey2xxxxxxxxxxxxxxxxxxx', project: 'proj-b' },
];
const PROJECT_OF = new Map(KEYS.map((k) => [k.api_key, k.project]));
const MODEL = 'gemini-2.5-flash';

const tmp = tempDirs('gg-interactions-');
const start = stackPerTest();

async function twoProjectStack(env: Record<string, string> = {}): Promise<Stack> {
  const dir = tmp();
  const file = join(dir, 'keys.json');
  await writeFile(file, JSON.stringify({ keys: KEYS }));
  const fake = await startFakeGemini({
    keys: KEYS.map((k) => ({ apiKey: k.api_key, project: k.project })),
    streamChunks: 4,
  });
  const s = await start({
    fakeInstance: fake,
    env: {
      GEMINI_API_KEYS: '',
      API_KEYS_FILE: file,
      CLIENT_API_KEYS_MAP: `${ALICE}:alice,${BOB}:bob`,
      ...env,
    },
  });
  const close = s.close;
  s.close = async () => {
    await close();
    await fake.close();
  };
  return s;
}

function sdk(s: Stack, token = ALICE): GoogleGenAI {
  // No retries: a refusal must show at once, and counts of upstream calls stay exact.
  return new GoogleGenAI({ apiKey: token, httpOptions: { baseUrl: s.url, retryOptions: { attempts: 1 } } });
}

/** The HTTP status of an SDK call (its error carries it), 200 when it succeeds. */
async function statusOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (err) {
    const e = err as { status?: unknown; statusCode?: unknown };
    const status = e.status ?? e.statusCode;
    if (typeof status !== 'number') throw err;
    return status;
  }
}

/** The fake's calls under /interactions, with the project of the key each came with. */
function interactionCalls(fake: FakeGemini) {
  return fake.stats.log
    .filter((r) => r.path.includes('/interactions'))
    .map((r) => ({
      method: r.method,
      path: r.path,
      search: r.search,
      project: PROJECT_OF.get(r.apiKey ?? ''),
    }));
}

async function budget(s: Stack, project: string, model: string) {
  const now = Date.now();
  const states = await s.gateway.store.budgetStates(now, s.gateway.pool.calendarAt(now).day);
  return states.find((b) => b.project === project && b.model === model);
}

describe('interactions through the pool', () => {
  it('continues a chain of six turns on the project that owns it, with zero refusals', async () => {
    const s = await twoProjectStack();
    const ai = sdk(s);
    // Independent interactions spread over both projects (round robin)...
    const loose = [];
    for (let i = 0; i < 4; i++)
      loose.push(await ai.interactions.create({ model: MODEL, input: `loose ${i}` }));
    const owners = await s.gateway.store.getResources(
      loose.map((x) => `interactions/${x.id}`),
      Date.now(),
    );
    expect(new Set(owners.map((o) => o?.project))).toEqual(new Set(['proj-a', 'proj-b']));
    expect(owners.every((o) => o?.client === 'alice')).toBe(true);

    // ...so a chain that round robin spread would cross projects: every turn must stay on one.
    s.fake.resetStats();
    let previous: string | undefined;
    const texts: string[] = [];
    for (let turn = 1; turn <= 6; turn++) {
      const r = await ai.interactions.create({
        model: MODEL,
        input: `message ${turn}`,
        ...(previous ? { previous_interaction_id: previous } : {}),
      });
      expect(r.status).toBe('completed');
      texts.push(r.output_text ?? '');
      previous = r.id;
    }
    // The fake numbers a chain's turns: each answer saw the whole chain before it.
    expect(texts).toEqual([1, 2, 3, 4, 5, 6].map((n) => `Fake interaction answer, turn ${n}: message ${n}`));
    const calls = interactionCalls(s.fake);
    expect(calls).toHaveLength(6);
    expect(new Set(calls.map((c) => c.project)).size).toBe(1);
    expect(s.fake.stats.byStatus.get(404) ?? 0).toBe(0);
    expect(s.fake.stats.byStatus.get(403) ?? 0).toBe(0);
    // Each create spent the model's budget of that project (not the other's).
    const project = calls[0]!.project!;
    const other = project === 'proj-a' ? 'proj-b' : 'proj-a';
    expect((await budget(s, project, MODEL))?.requestsThisMinute).toBe(6 + loose.length / 2);
    expect((await budget(s, other, MODEL))?.requestsThisMinute).toBe(loose.length / 2);
  });

  it('without affinity (AFFINITY=off) the same chain crosses projects and fails: the pin is what makes it work', async () => {
    const s = await twoProjectStack({ AFFINITY: 'off' });
    const ai = sdk(s);
    let failures = 0;
    let previous: string | undefined;
    for (let turn = 1; turn <= 6; turn++) {
      try {
        const r = await ai.interactions.create({
          model: MODEL,
          input: `message ${turn}`,
          ...(previous ? { previous_interaction_id: previous } : {}),
        });
        previous = r.id;
      } catch (err) {
        expect((err as { status?: number }).status).toBe(404);
        failures++;
      }
    }
    expect(failures).toBeGreaterThan(0);
    expect(s.fake.stats.byStatus.get(404) ?? 0).toBe(failures);
  });

  it('resumes a stream after its last event id, on the owning project, and records the interaction before its first event', async () => {
    const s = await twoProjectStack();
    const ai = sdk(s);
    const stream = await ai.interactions.create({ model: MODEL, input: 'tell me a story', stream: true });
    const seen: Array<{ event_type: string; event_id?: string; id?: string; text?: string }> = [];
    let id: string | undefined;
    for await (const e of stream) {
      const event = e as unknown as {
        event_type: string;
        event_id?: string;
        interaction?: { id: string };
        delta?: { text?: string };
      };
      id ??= event.interaction?.id;
      seen.push({ event_type: event.event_type, event_id: event.event_id, text: event.delta?.text });
      // The interaction is the caller's as soon as its first event is out.
      if (seen.length === 1) {
        const [owner] = await s.gateway.store.getResources([`interactions/${id}`], Date.now());
        expect(owner?.client).toBe('alice');
      }
      if (seen.length === 4) break; // the connection drops after the first delta
    }
    expect(seen.map((e) => e.event_type)).toEqual([
      'interaction.created',
      'interaction.status_update',
      'step.start',
      'step.delta',
    ]);
    s.fake.resetStats();
    const rest = await ai.interactions.get(id!, { stream: true, last_event_id: seen[3]!.event_id });
    const after: string[] = [];
    let text = seen[3]!.text ?? '';
    for await (const e of rest) {
      const event = e as unknown as { event_type: string; delta?: { text?: string } };
      after.push(event.event_type);
      text += event.delta?.text ?? '';
    }
    expect(after).toEqual(['step.delta', 'step.delta', 'step.delta', 'step.stop', 'interaction.completed']);
    expect(text).toBe('Fake interaction answer, turn 1: tell me a story');
    // The resume went to the interaction's project with its event id (and never with a token).
    const [owner] = await s.gateway.store.getResources([`interactions/${id}`], Date.now());
    const calls = interactionCalls(s.fake);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.project).toBe(owner!.project);
    const q = new URLSearchParams(calls[0]!.search);
    expect(q.get('last_event_id')).toBe(seen[3]!.event_id);
    expect(q.get('stream')).toBe('true');
    expect(q.has('key')).toBe(false);
  });

  it('polls a background interaction to completion, and cancels another, each on its project', async () => {
    const s = await twoProjectStack();
    const ai = sdk(s);
    const created = await ai.interactions.create({ model: MODEL, input: 'think hard', background: true });
    expect(created.status).toBe('in_progress');
    let polls = 0;
    let done = created;
    while (done.status === 'in_progress' && polls < 10) {
      polls++;
      done = await ai.interactions.get(created.id);
    }
    expect(done.status).toBe('completed');
    expect(polls).toBeGreaterThanOrEqual(1);
    expect(done.output_text).toBe('Fake interaction answer, turn 1: think hard');

    const other = await ai.interactions.create({ model: MODEL, input: 'never mind', background: true });
    const cancelled = await ai.interactions.cancel(other.id);
    expect(cancelled.status).toBe('cancelled');

    const owners = await s.gateway.store.getResources(
      [`interactions/${created.id}`, `interactions/${other.id}`],
      Date.now(),
    );
    const byPath = interactionCalls(s.fake);
    for (const [i, id] of [created.id, other.id].entries()) {
      const calls = byPath.filter((c) => c.path.includes(id));
      expect(calls.length).toBeGreaterThan(0);
      expect(calls.every((c) => c.project === owners[i]!.project)).toBe(true);
    }
    expect(s.fake.stats.byStatus.get(404) ?? 0).toBe(0);
    // Polls and cancels spend the projects' operations:poll budgets, not the model's.
    const a = (await budget(s, 'proj-a', 'operations:poll'))?.requestsThisMinute ?? 0;
    const b = (await budget(s, 'proj-b', 'operations:poll'))?.requestsThisMinute ?? 0;
    expect(a + b).toBe(polls + 1);
  });

  it("a second client can neither get, cancel, delete nor continue the first one's interaction (nothing goes upstream)", async () => {
    const s = await twoProjectStack();
    const alice = sdk(s, ALICE);
    const bob = sdk(s, BOB);
    const mine = await alice.interactions.create({ model: MODEL, input: 'secret plans', background: true });
    const before = s.fake.stats.requests;
    expect(await statusOf(bob.interactions.get(mine.id))).toBe(404);
    expect(await statusOf(bob.interactions.cancel(mine.id))).toBe(404);
    expect(await statusOf(bob.interactions.delete(mine.id))).toBe(404);
    expect(
      await statusOf(
        bob.interactions.create({ model: MODEL, input: 'and then?', previous_interaction_id: mine.id }),
      ),
    ).toBe(404);
    // An id the gateway never saw is refused the same way.
    expect(await statusOf(bob.interactions.get('v1_nothing-here'))).toBe(404);
    expect(s.fake.stats.requests).toBe(before);

    // Its owner still has it, deletes it, and then it is gone for the gateway too.
    expect((await alice.interactions.get(mine.id)).id).toBe(mine.id);
    await alice.interactions.delete(mine.id);
    const afterDelete = s.fake.stats.requests;
    expect(await statusOf(alice.interactions.get(mine.id))).toBe(404);
    expect(s.fake.stats.requests).toBe(afterDelete);
  });

  it("refuses a chain of another client in raw HTTP too, in Google's error shape", async () => {
    const s = await twoProjectStack();
    const created = await sdk(s).interactions.create({ model: MODEL, input: 'hello' });
    const res = await fetch(`${s.url}/v1beta/interactions`, {
      method: 'POST',
      headers: { 'x-goog-api-key': BOB, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, input: 'hi', previous_interaction_id: created.id }),
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({
      error: { code: 404, message: 'Requested entity was not found.', status: 'NOT_FOUND' },
    });
    // `{id}:cancel` is Google's REST form of cancel: served like `/cancel`.
    const bg = await sdk(s).interactions.create({ model: MODEL, input: 'long job', background: true });
    const cancel = await fetch(`${s.url}/v1beta/interactions/${bg.id}:cancel`, {
      method: 'POST',
      headers: { 'x-goog-api-key': ALICE },
    });
    expect(cancel.status).toBe(200);
    expect(((await cancel.json()) as { status: string }).status).toBe('cancelled');
  });
});
