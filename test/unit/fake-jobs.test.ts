import { afterEach, describe, expect, it } from 'vitest';
import { type FakeGemini, startFakeGemini } from '../../fake/fake-gemini.ts';
import { GOOGLE_ORIGIN } from '../../fake/fake-operations.ts';
import { batchBudget, JOB_BUDGET_NAME, withJobBudgets } from '../../src/pool/job-budgets.ts';

/** The fake's batches and long-running operations keep Google's ownership rule. */
const KEY_A = 'AIzaFakeJobsProjectAxxxxxxxxxxxxxxxxxxxx';
const KEY_A2 = 'AIzaFakeJobsProjectA2xxxxxxxxxxxxxxxxxxx';
const KEY_B = 'AIzaFakeJobsProjectBxxxxxxxxxxxxxxxxxxxx';
let fake: FakeGemini | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

async function start(): Promise<FakeGemini> {
  fake = await startFakeGemini({
    keys: [
      { apiKey: KEY_A, project: 'a' },
      { apiKey: KEY_A2, project: 'a' },
      { apiKey: KEY_B, project: 'b' },
    ],
  });
  return fake;
}

// biome-ignore lint/suspicious/noExplicitAny: Google's JSON answers, inspected field by field
type Json = any;
async function call(f: FakeGemini, key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${f.url}${path}`, {
    method,
    headers: { 'x-goog-api-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: Json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, type: res.headers.get('content-type') };
}

const BATCH = {
  batch: {
    displayName: 'b',
    inputConfig: {
      requests: {
        requests: [{ request: { contents: [{ parts: [{ text: 'hi' }] }] }, metadata: { key: 'r1' } }],
      },
    },
  },
};

describe('fake batches', () => {
  it('move PENDING → RUNNING → SUCCEEDED over polls by their project, with inline responses', async () => {
    const f = await start();
    const created = await call(
      f,
      KEY_A,
      'POST',
      '/v1beta/models/gemini-2.5-flash:batchGenerateContent',
      BATCH,
    );
    expect(created.status).toBe(200);
    expect(created.json.metadata.state).toBe('BATCH_STATE_PENDING');
    const name: string = created.json.name;
    const first = await call(f, KEY_A2, 'GET', `/v1beta/${name}`);
    expect(first.json.metadata.state).toBe('BATCH_STATE_RUNNING');
    expect(first.json.done).toBeUndefined();
    const second = await call(f, KEY_A, 'GET', `/v1beta/${name}`);
    expect(second.json.done).toBe(true);
    expect(second.json.metadata.state).toBe('BATCH_STATE_SUCCEEDED');
    const out = second.json.metadata.output.inlinedResponses.inlinedResponses;
    expect(out[0].response.candidates[0].content.parts[0].text).toBe('Fake answer to: hi');
    expect(out[0].metadata).toEqual({ key: 'r1' });
    expect(second.json.response.inlinedResponses.inlinedResponses).toEqual(out);
  });

  it('refuse another project’s key with Google’s 403, counted; lists are per project', async () => {
    const f = await start();
    const { json } = await call(
      f,
      KEY_A,
      'POST',
      '/v1beta/models/gemini-2.5-flash:batchGenerateContent',
      BATCH,
    );
    const id = String(json.name).slice('batches/'.length);
    for (const [method, path] of [
      ['GET', `/v1beta/batches/${id}`],
      ['POST', `/v1beta/batches/${id}:cancel`],
      ['DELETE', `/v1beta/batches/${id}`],
    ] as const) {
      const r = await call(f, KEY_B, method, path, method === 'POST' ? {} : undefined);
      expect(r.status).toBe(403);
      expect(r.json.error).toMatchObject({
        status: 'PERMISSION_DENIED',
        message: `You do not have permission to access the Batch ${id} or it may not exist.`,
      });
    }
    expect(f.stats.permissionDenied).toBe(3);
    expect((await call(f, KEY_B, 'GET', '/v1beta/batches')).json.operations).toEqual([]);
    expect(
      (await call(f, KEY_A2, 'GET', '/v1beta/batches')).json.operations.map((o: Json) => o.name),
    ).toEqual([json.name]);
    expect((await call(f, KEY_A, 'DELETE', `/v1beta/batches/${id}`)).status).toBe(200);
    expect((await call(f, KEY_A, 'GET', `/v1beta/batches/${id}`)).status).toBe(404);
  });

  it('refuse an input file of another project', async () => {
    const f = await start();
    const file = f.files.add({
      project: 'a',
      mimeType: 'application/jsonl',
      bytes: Buffer.from('{"request":{}}\n'),
      source: 'UPLOADED',
    });
    const body = { batch: { inputConfig: { fileName: file.name } } };
    const r = await call(f, KEY_B, 'POST', '/v1beta/models/gemini-2.5-flash:batchGenerateContent', body);
    expect(r.status).toBe(403);
    expect(f.stats.permissionDenied).toBe(1);
    expect(
      (await call(f, KEY_A, 'POST', '/v1beta/models/gemini-2.5-flash:batchGenerateContent', body)).status,
    ).toBe(200);
  });
});

describe('fake Veo and Imagen', () => {
  it('a video operation is done after polls by its project; its video downloads for that project only', async () => {
    const f = await start();
    const op = await call(f, KEY_A, 'POST', '/v1beta/models/veo-3.0-generate-001:predictLongRunning', {
      instances: [{ prompt: 'a dog' }],
    });
    expect(op.json.name).toMatch(/^models\/veo-3\.0-generate-001\/operations\/[a-z0-9]+$/);
    const denied = await call(f, KEY_B, 'GET', `/v1beta/${op.json.name}`);
    expect(denied.status).toBe(403);
    expect(denied.json.error.status).toBe('PERMISSION_DENIED');
    expect((await call(f, KEY_A, 'GET', `/v1beta/${op.json.name}`)).json.done).toBeUndefined();
    const done = await call(f, KEY_A2, 'GET', `/v1beta/${op.json.name}`);
    expect(done.json.done).toBe(true);
    const uri: string = done.json.response.generateVideoResponse.generatedSamples[0].video.uri;
    expect(uri.startsWith(`${GOOGLE_ORIGIN}/v1beta/files/`)).toBe(true);
    const path = `${new URL(uri).pathname}?alt=media`;
    const video = await call(f, KEY_A, 'GET', path);
    expect(video.status).toBe(200);
    expect(video.type).toBe('video/mp4');
    expect(video.text).toContain('a dog');
    expect((await call(f, KEY_B, 'GET', path)).status).toBe(403);
    expect(f.stats.permissionDenied).toBe(2);
  });

  it('Imagen predict answers inline PNGs; unknown media models get Google’s 404', async () => {
    const f = await start();
    const r = await call(f, KEY_B, 'POST', '/v1beta/models/imagen-4.0-generate-001:predict', {
      instances: [{ prompt: 'x' }],
      parameters: { sampleCount: 3 },
    });
    expect(r.json.predictions).toHaveLength(3);
    expect(Buffer.from(r.json.predictions[0].bytesBase64Encoded, 'base64').subarray(1, 4).toString()).toBe(
      'PNG',
    );
    expect(
      (await call(f, KEY_B, 'POST', '/v1beta/models/gemini-2.5-flash:predict', { instances: [{}] })).status,
    ).toBe(404);
    expect(
      (
        await call(f, KEY_B, 'POST', '/v1beta/models/imagen-4.0-generate-001:predictLongRunning', {
          instances: [{}],
        })
      ).status,
    ).toBe(404);
  });
});

describe('job budgets', () => {
  it('are named apart from every model, and restricted keys serve their models’ batches', () => {
    expect(batchBudget('models/gemini-2.5-flash')).toBe('batch:gemini-2.5-flash');
    expect(JOB_BUDGET_NAME.test('batch:gemini-2.5-flash')).toBe(true);
    expect(JOB_BUDGET_NAME.test('batch:manage')).toBe(true);
    expect(JOB_BUDGET_NAME.test('operations:poll')).toBe(true);
    expect(JOB_BUDGET_NAME.test('batch:')).toBe(false);
    expect(JOB_BUDGET_NAME.test('gemini-2.5-flash')).toBe(false);
    expect(withJobBudgets([])).toEqual([]);
    expect(withJobBudgets(['gemini-2.5-flash'])).toEqual([
      'gemini-2.5-flash',
      'batch:gemini-2.5-flash',
      'batch:manage',
      'operations:poll',
    ]);
  });
});
