import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type BatchJob, type GenerateVideosOperation, GoogleGenAI } from '@google/genai';
import { describe, expect, it } from 'vitest';
import { startFakeGemini } from '../../fake/fake-gemini.ts';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';
import { type Stack, type StackOptions, sharedRedisPair, stackPerTest } from '../helpers/stack.ts';
import { tempDirs } from '../helpers/temp.ts';

/**
 * Batches, Veo operations, Imagen and the 501 surfaces through the official SDK, against the fake
 * with four keys in two projects and two clients. A batch or an operation belongs to the project
 * of the key that made it (the fake answers another project's key with Google's 403): every poll
 * must go to that project (round robin alone would cross projects), and only the client that made
 * it may see it.
 */
const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdef01';
const KEYS = [
  { id: 'a1', api_key: 'AIzaFakeProjectAKey1xxxxxxxxxxxxxxxxxxx', project: 'proj-a' },
  { id: 'a2', api_key: 'AIzaFakeProjectAKey2xxxxxxxxxxxxxxxxxxx', project: 'proj-a' },
  { id: 'b1', api_key: 'AIzaFakeProjectBKey1xxxxxxxxxxxxxxxxxxx', project: 'proj-b' },
  { id: 'b2', api_key: 'AIzaFakeProjectBKey2xxxxxxxxxxxxxxxxxxx', project: 'proj-b' },
];
const MODEL = 'gemini-2.5-flash';
const VEO = 'veo-3.0-generate-001';

const tmp = tempDirs('gg-batches-');
const start = stackPerTest();
const redisUrl = redisTestUrl();

async function twoProjectStack(env: Record<string, string> = {}, extra: StackOptions = {}): Promise<Stack> {
  const dir = tmp();
  const file = join(dir, 'keys.json');
  await writeFile(file, JSON.stringify({ keys: KEYS }));
  const fake =
    extra.fakeInstance ??
    (await startFakeGemini({ keys: KEYS.map((k) => ({ apiKey: k.api_key, project: k.project })) }));
  const s = await start({
    ...extra,
    fakeInstance: fake,
    env: {
      GEMINI_API_KEYS: '',
      API_KEYS_FILE: file,
      CLIENT_API_KEYS_MAP: `${ALICE}:alice,${BOB}:bob`,
      ...env,
    },
  });
  if (!extra.fakeInstance) {
    const close = s.close;
    s.close = async () => {
      await close();
      await fake.close();
    };
  }
  return s;
}

function sdk(s: Stack, token = ALICE): GoogleGenAI {
  return new GoogleGenAI({ apiKey: token, httpOptions: { baseUrl: s.url } });
}

function inline(texts: string[]) {
  return texts.map((text) => ({ contents: [{ role: 'user', parts: [{ text }] }] }));
}

async function pollBatch(ai: GoogleGenAI, name: string, max = 10): Promise<{ job: BatchJob; polls: number }> {
  for (let polls = 1; polls <= max; polls++) {
    const job = await ai.batches.get({ name });
    if (
      job.state === 'JOB_STATE_SUCCEEDED' ||
      job.state === 'JOB_STATE_FAILED' ||
      job.state === 'JOB_STATE_CANCELLED'
    )
      return { job, polls };
  }
  throw new Error(`batch ${name} not finished after ${max} polls`);
}

function answerText(job: BatchJob, i: number): string | undefined {
  return job.dest?.inlinedResponses?.[i]?.response?.candidates?.[0]?.content?.parts?.[0]?.text;
}

async function budget(s: Stack, project: string, model: string) {
  const now = Date.now();
  const states = await s.gateway.store.budgetStates(now, s.gateway.pool.calendarAt(now).day);
  return states.find((b) => b.project === project && b.model === model);
}

/** The HTTP status of an SDK call (its ApiError carries it), 200 when it succeeds. */
async function statusOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (err) {
    const status = (err as { status?: unknown }).status;
    if (typeof status !== 'number') throw err;
    return status;
  }
}

describe('batches through the pool', () => {
  it('creates inline batches, polls each to success on its own project, and reads the results', async () => {
    const s = await twoProjectStack();
    const ai = sdk(s);
    const names: string[] = [];
    for (let i = 0; i < 4; i++) {
      const job = await ai.batches.create({
        model: MODEL,
        src: inline([`question ${i}.1`, `question ${i}.2`]),
        config: { displayName: `batch ${i}` },
      });
      expect(job.name).toMatch(/^batches\/[a-z0-9]+$/);
      expect(job.state).toBe('JOB_STATE_PENDING');
      names.push(job.name!);
    }
    // Created by round robin: both projects hold some of them.
    const owners = await s.gateway.store.getResources(names, Date.now());
    expect(new Set(owners.map((o) => o?.project))).toEqual(new Set(['proj-a', 'proj-b']));
    expect(owners.every((o) => o?.client === 'alice')).toBe(true);

    for (const [i, name] of names.entries()) {
      const { job } = await pollBatch(ai, name);
      expect(job.state).toBe('JOB_STATE_SUCCEEDED');
      expect(job.displayName).toBe(`batch ${i}`);
      expect(answerText(job, 0)).toBe(`Fake answer to: question ${i}.1`);
      expect(answerText(job, 1)).toBe(`Fake answer to: question ${i}.2`);
    }
    // A few more polls of finished batches, each on its owner's keys.
    for (const name of names) for (let i = 0; i < 3; i++) await ai.batches.get({ name });
    expect(s.fake.stats.permissionDenied).toBe(0);
    const polls = s.fake.stats.log.filter((r) => r.method === 'GET' && r.path.startsWith('/v1beta/batches/'));
    expect(polls.length).toBeGreaterThanOrEqual(names.length * 4);
    const projectOfKey = new Map(KEYS.map((k) => [k.api_key, k.project]));
    for (const r of polls) {
      const owner = owners[names.indexOf(r.path.slice('/v1beta/'.length))];
      expect(projectOfKey.get(r.apiKey!)).toBe(owner?.project);
    }
  });

  it('spends the batch budgets, never the model’s interactive budget', async () => {
    const s = await twoProjectStack();
    const ai = sdk(s);
    const job = await ai.batches.create({ model: MODEL, src: inline(['a', 'b', 'c']) });
    await pollBatch(ai, job.name!);
    await ai.batches.list();
    for (const project of ['proj-a', 'proj-b'])
      expect((await budget(s, project, MODEL))?.requestsThisMinute ?? 0).toBe(0);
    const [owner] = await s.gateway.store.getResources([job.name!], Date.now());
    expect((await budget(s, owner!.project, `batch:${MODEL}`))?.requestsThisMinute).toBe(1);
    expect((await budget(s, owner!.project, 'batch:manage'))?.requestsThisMinute).toBeGreaterThanOrEqual(3);
    // An interactive call still spends the model's budget.
    await ai.models.generateContent({ model: MODEL, contents: 'hi' });
    const spent = await Promise.all(['proj-a', 'proj-b'].map((p) => budget(s, p, MODEL)));
    expect(spent.reduce((n, b) => n + (b?.requestsThisMinute ?? 0), 0)).toBe(1);
  });

  it('the batch budget has its own limits (model_limits may name batch:<model>), also on keys restricted to models', async () => {
    const dir = tmp();
    const file = join(dir, 'keys.json');
    await writeFile(
      file,
      JSON.stringify({
        defaults: { model_limits: { [`batch:${MODEL}`]: { requests_per_minute: 1 } } },
        // A key restricted to the model serves its batches and their polls too.
        keys: [{ ...KEYS[0], models: [MODEL] }],
      }),
    );
    const fake = await startFakeGemini({ keys: [{ apiKey: KEYS[0]!.api_key, project: 'proj-a' }] });
    const s = await start({
      fakeInstance: fake,
      env: {
        GEMINI_API_KEYS: '',
        API_KEYS_FILE: file,
        CLIENT_API_KEYS_MAP: `${ALICE}:alice`,
        QUEUE_MAX_WAIT_MS: '0',
      },
    });
    try {
      const ai = sdk(s);
      const job = await ai.batches.create({ model: MODEL, src: inline(['one']) });
      expect((await pollBatch(ai, job.name!)).job.state).toBe('JOB_STATE_SUCCEEDED');
      expect(await statusOf(ai.batches.create({ model: MODEL, src: inline(['two']) }))).toBe(429);
      // The interactive budget is untouched by it.
      expect((await ai.models.generateContent({ model: MODEL, contents: 'hi' })).text).toBe(
        'Fake answer to: hi',
      );
      expect(fake.stats.log.filter((r) => r.path.endsWith(':batchGenerateContent'))).toHaveLength(1);
    } finally {
      await fake.close();
    }
  });

  it('lists only the caller’s batches, merged over both projects', async () => {
    const s = await twoProjectStack();
    const alice = sdk(s);
    const bob = sdk(s, BOB);
    const mine = new Set<string>();
    for (let i = 0; i < 4; i++)
      mine.add((await alice.batches.create({ model: MODEL, src: inline([`a${i}`]) })).name!);
    const bobs = (await bob.batches.create({ model: MODEL, src: inline(['b']) })).name!;
    const listed = new Set<string>();
    for await (const job of await alice.batches.list({ config: { pageSize: 3 } })) listed.add(job.name!);
    expect(listed).toEqual(mine);
    const bobListed: string[] = [];
    for await (const job of await bob.batches.list()) bobListed.push(job.name!);
    expect(bobListed).toEqual([bobs]);
    expect(s.fake.stats.permissionDenied).toBe(0);
  });

  it('another client cannot see, poll, cancel or delete a batch, and nothing goes upstream', async () => {
    const s = await twoProjectStack();
    const alice = sdk(s);
    const bob = sdk(s, BOB);
    const name = (await alice.batches.create({ model: MODEL, src: inline(['secret']) })).name!;
    const before = s.fake.stats.requests;
    expect(await statusOf(bob.batches.get({ name }))).toBe(404);
    expect(await statusOf(bob.batches.cancel({ name }))).toBe(404);
    expect(await statusOf(bob.batches.delete({ name }))).toBe(404);
    // A batch the gateway never made is refused the same way.
    expect(await statusOf(alice.batches.get({ name: 'batches/unknown123' }))).toBe(404);
    expect(s.fake.stats.requests).toBe(before);
    const res = await fetch(`${s.url}/v1beta/${name}`, { headers: { 'x-goog-api-key': BOB } });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { status: string } }).error.status).toBe('NOT_FOUND');
    // Still alice's, intact.
    expect((await pollBatch(alice, name)).job.state).toBe('JOB_STATE_SUCCEEDED');
  });

  it('cancels and deletes with the owning project’s keys; a deleted batch is forgotten', async () => {
    const s = await twoProjectStack();
    const ai = sdk(s);
    const names: string[] = [];
    for (let i = 0; i < 2; i++)
      names.push((await ai.batches.create({ model: MODEL, src: inline([`c${i}`]) })).name!);
    for (const name of names) {
      await ai.batches.cancel({ name });
      expect((await ai.batches.get({ name })).state).toBe('JOB_STATE_CANCELLED');
      await ai.batches.delete({ name });
      expect(await statusOf(ai.batches.get({ name }))).toBe(404);
    }
    expect(await s.gateway.store.getResources(names, Date.now())).toEqual([null, null]);
    expect(s.fake.stats.permissionDenied).toBe(0);
  });

  it('embedding batches (asyncBatchEmbedContent) too', async () => {
    const s = await twoProjectStack();
    const ai = sdk(s);
    const names: string[] = [];
    for (let i = 0; i < 3; i++) {
      const job = await ai.batches.createEmbeddings({
        model: 'gemini-embedding-001',
        src: { inlinedRequests: { contents: [`embed ${i}`, `more ${i}`] } },
      });
      names.push(job.name!);
    }
    for (const name of names) {
      const { job } = await pollBatch(ai, name);
      expect(job.dest?.inlinedEmbedContentResponses).toHaveLength(2);
    }
    expect(s.fake.stats.permissionDenied).toBe(0);
  });

  it('a batch whose input is a file goes to the file’s project, and its results file is the caller’s', async () => {
    const s = await twoProjectStack();
    const lines = ['x', 'y'].map((t, i) =>
      JSON.stringify({ key: `k${i}`, request: { contents: [{ parts: [{ text: t }] }] } }),
    );
    const input = s.fake.files.add({
      project: 'proj-b',
      mimeType: 'application/jsonl',
      bytes: Buffer.from(lines.join('\n')),
      source: 'UPLOADED',
    });
    // As if alice had uploaded it through the gateway with key b1.
    await s.gateway.store.putResource({
      name: input.name,
      owner: { project: 'proj-b', keyId: 'b1', client: 'alice' },
      expiresAtMs: Date.now() + 3600_000,
    });
    const ai = sdk(s);
    const names: string[] = [];
    for (let i = 0; i < 4; i++)
      names.push((await ai.batches.create({ model: MODEL, src: input.name })).name!);
    expect((await s.gateway.store.getResources(names, Date.now())).map((o) => o?.project)).toEqual(
      Array(4).fill('proj-b'),
    );
    const { job } = await pollBatch(ai, names[0]!);
    const results = job.dest?.fileName;
    expect(results).toMatch(/^files\/[a-z0-9]+$/);
    const [resultsOwner] = await s.gateway.store.getResources([results!], Date.now());
    expect(resultsOwner).toMatchObject({ project: 'proj-b', client: 'alice' });
    expect(s.fake.stats.permissionDenied).toBe(0);

    // Bob may not use alice's file: refused by the gateway, nothing upstream.
    const before = s.fake.stats.requests;
    expect(await statusOf(sdk(s, BOB).batches.create({ model: MODEL, src: input.name }))).toBe(403);
    expect(s.fake.stats.requests).toBe(before);
  });

  it('without affinity (AFFINITY=off) polls cross projects and Google refuses them: pinning is what keeps them right', async () => {
    const s = await twoProjectStack({ AFFINITY: 'off' });
    const ai = sdk(s);
    const names: string[] = [];
    for (let i = 0; i < 2; i++)
      names.push((await ai.batches.create({ model: MODEL, src: inline([`q${i}`]) })).name!);
    const statuses: number[] = [];
    for (const name of names)
      for (let i = 0; i < 4; i++) statuses.push(await statusOf(ai.batches.get({ name })));
    expect(statuses).toContain(403);
    expect(s.fake.stats.permissionDenied).toBeGreaterThan(0);
    // Google's refusal of a resource is no dead key: every key still serves.
    const now = Date.now();
    const keys = await s.gateway.store.keyStates(now, s.gateway.pool.calendarAt(now).day);
    expect(keys.every((k) => k.disabledReason === null)).toBe(true);
  });
});

describe('Veo operations and Imagen through the pool', () => {
  it('starts videos, polls each operation to completion on its project, and downloads the videos', async () => {
    const s = await twoProjectStack();
    const ai = sdk(s);
    const ops: GenerateVideosOperation[] = [];
    for (let i = 0; i < 4; i++)
      ops.push(await ai.models.generateVideos({ model: VEO, prompt: `a cat ${i}` }));
    for (const op of ops) expect(op.name).toMatch(new RegExp(`^models/${VEO}/operations/[a-z0-9]+$`));
    const owners = await s.gateway.store.getResources(
      ops.map((o) => o.name!),
      Date.now(),
    );
    expect(new Set(owners.map((o) => o?.project))).toEqual(new Set(['proj-a', 'proj-b']));

    const dir = tmp();
    for (const [i, first] of ops.entries()) {
      let op = first;
      for (let polls = 0; !op.done; polls++) {
        expect(polls).toBeLessThan(10);
        op =
          i % 2 === 0
            ? await ai.operations.getVideosOperation({ operation: op })
            : await ai.operations.get({ operation: op });
      }
      // Google's URI, as Google sends it: the SDK downloads by its file id through the gateway.
      const video = op.response?.generatedVideos?.[0];
      const id =
        /^https:\/\/generativelanguage\.googleapis\.com\/v1beta\/files\/([a-z0-9]+):download\?alt=media$/.exec(
          video?.video?.uri ?? '',
        )?.[1];
      expect(id).toBeDefined();
      const file = `files/${id}`;
      const [fileOwner] = await s.gateway.store.getResources([file], Date.now());
      expect(fileOwner).toMatchObject({ project: owners[i]!.project, client: 'alice' });

      // The SDK's download, and a plain GET of the URI with the client token.
      const path = join(dir, `video-${i}.mp4`);
      await ai.files.download({ file: video!, downloadPath: path });
      const bytes = await readFile(path);
      expect(bytes.subarray(4, 8).toString('latin1')).toBe('ftyp');
      expect(bytes.toString('utf8')).toContain(`a cat ${i}`);
      const res = await fetch(`${s.url}/v1beta/${file}:download?alt=media`, {
        headers: { 'x-goog-api-key': ALICE },
      });
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer())).toEqual(bytes);
    }
    expect(s.fake.stats.permissionDenied).toBe(0);
  });

  it('extending a generated video goes to the video’s project; another client may not extend it', async () => {
    const s = await twoProjectStack();
    const ai = sdk(s);
    let op = await ai.models.generateVideos({ model: VEO, prompt: 'source' });
    while (!op.done) op = await ai.operations.getVideosOperation({ operation: op });
    const source = op.response!.generatedVideos![0]!.video!;
    const [sourceOwner] = await s.gateway.store.getResources([op.name!], Date.now());
    const names: string[] = [];
    for (let i = 0; i < 4; i++)
      names.push((await ai.models.generateVideos({ model: VEO, prompt: `more ${i}`, video: source })).name!);
    const owners = await s.gateway.store.getResources(names, Date.now());
    expect(owners.map((o) => o?.project)).toEqual(Array(4).fill(sourceOwner!.project));
    expect(s.fake.stats.permissionDenied).toBe(0);
    const before = s.fake.stats.requests;
    expect(
      await statusOf(sdk(s, BOB).models.generateVideos({ model: VEO, prompt: 'steal', video: source })),
    ).toBe(403);
    expect(s.fake.stats.requests).toBe(before);
  });

  it('another client cannot poll an operation or download its video (nothing sent upstream)', async () => {
    const s = await twoProjectStack();
    const alice = sdk(s);
    const bob = sdk(s, BOB);
    let op = await alice.models.generateVideos({ model: VEO, prompt: 'private' });
    const before = s.fake.stats.requests;
    expect(await statusOf(bob.operations.getVideosOperation({ operation: op }))).toBe(404);
    expect(s.fake.stats.requests).toBe(before);
    while (!op.done) op = await alice.operations.getVideosOperation({ operation: op });
    const uri = op.response!.generatedVideos![0]!.video!.uri!;
    const path = new URL(uri).pathname;
    const after = s.fake.stats.requests;
    const res = await fetch(`${s.url}${path}?alt=media`, { headers: { 'x-goog-api-key': BOB } });
    expect([403, 404]).toContain(res.status);
    expect(s.fake.stats.requests).toBe(after);
  });

  it('Imagen :predict is a pooled call on the model’s budget; images come back inline', async () => {
    const s = await twoProjectStack();
    const res = await fetch(`${s.url}/v1beta/models/imagen-4.0-generate-001:predict`, {
      method: 'POST',
      headers: { 'x-goog-api-key': ALICE, 'content-type': 'application/json' },
      body: JSON.stringify({ instances: [{ prompt: 'a red square' }], parameters: { sampleCount: 2 } }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      predictions: Array<{ mimeType: string; bytesBase64Encoded: string }>;
    };
    expect(body.predictions).toHaveLength(2);
    const png = Buffer.from(body.predictions[0]!.bytesBase64Encoded, 'base64');
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    const spent = await Promise.all(['proj-a', 'proj-b'].map((p) => budget(s, p, 'imagen-4.0-generate-001')));
    expect(spent.reduce((n, b) => n + (b?.requestsThisMinute ?? 0), 0)).toBe(1);
    // The pool key went upstream, never the client's token.
    const sent = s.fake.stats.log.find((r) => r.path.endsWith(':predict'));
    expect(KEYS.map((k) => k.api_key)).toContain(sent?.apiKey);
  });
});

describe('surfaces the gateway does not carry', () => {
  it('tunedModels, generatedFiles and fileSearchStores answer 501 UNIMPLEMENTED naming the feature', async () => {
    const s = await twoProjectStack();
    const before = s.fake.stats.requests;
    const cases: Array<[string, string, string]> = [
      ['GET', '/v1beta/tunedModels', 'tunedModels'],
      ['POST', '/v1beta/tunedModels/my-model:generateContent', 'tunedModels'],
      ['GET', '/v1beta/generatedFiles', 'generatedFiles'],
      ['POST', '/v1beta/fileSearchStores', 'fileSearchStores'],
      ['GET', '/v1beta/fileSearchStores/store-1/documents', 'fileSearchStores'],
      ['POST', '/upload/v1beta/fileSearchStores/store-1:uploadToFileSearchStore', 'fileSearchStores'],
    ];
    for (const [method, path, feature] of cases) {
      const res = await fetch(`${s.url}${path}`, {
        method,
        headers: { 'x-goog-api-key': ALICE, 'content-type': 'application/json' },
        body: method === 'POST' ? '{}' : undefined,
      });
      expect(res.status, path).toBe(501);
      const body = (await res.json()) as { error: { code: number; status: string; message: string } };
      expect(body.error.status).toBe('UNIMPLEMENTED');
      expect(body.error.message).toContain(feature);
    }
    // Through the SDK too.
    expect(await statusOf(sdk(s).fileSearchStores.create({ config: { displayName: 'x' } }))).toBe(501);
    expect(s.fake.stats.requests).toBe(before);
  });
});

if (!redisUrl) warnSkipped('batches and operations across two instances');

describe.skipIf(!redisUrl)('two gateway instances on one Redis', () => {
  it('a batch or an operation made through one instance is polled through the other', async () => {
    const fake = await startFakeGemini({
      keys: KEYS.map((k) => ({ apiKey: k.api_key, project: k.project })),
    });
    try {
      const [a, b] = await sharedRedisPair((opts) => twoProjectStack(opts.env, opts), redisUrl!, {
        fakeInstance: fake,
      });
      const names: string[] = [];
      for (let i = 0; i < 3; i++)
        names.push((await sdk(a).batches.create({ model: MODEL, src: inline([`r${i}`]) })).name!);
      for (const [i, name] of names.entries()) {
        const { job } = await pollBatch(sdk(b), name);
        expect(answerText(job, 0)).toBe(`Fake answer to: r${i}`);
      }
      const listed: string[] = [];
      for await (const job of await sdk(b).batches.list()) listed.push(job.name!);
      expect(new Set(listed)).toEqual(new Set(names));
      expect(await statusOf(sdk(b, BOB).batches.get({ name: names[0]! }))).toBe(404);

      let op = await sdk(a).models.generateVideos({ model: VEO, prompt: 'shared' });
      while (!op.done) op = await sdk(b).operations.getVideosOperation({ operation: op });
      const uri = op.response?.generatedVideos?.[0]?.video?.uri;
      expect(uri).toMatch(/\/v1beta\/files\/[a-z0-9]+:download/);
      // Recorded through B, downloadable through A.
      const res = await fetch(`${a.url}${new URL(uri!).pathname}?alt=media`, {
        headers: { 'x-goog-api-key': ALICE },
      });
      expect(res.status).toBe(200);
      expect(fake.stats.permissionDenied).toBe(0);
    } finally {
      await fake.close();
    }
  });
});
