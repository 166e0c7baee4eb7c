import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiError, createPartFromUri, type File as GenAIFile, GoogleGenAI } from '@google/genai';
import { describe, expect, it } from 'vitest';
import { FakeFiles } from '../../fake/fake-files.ts';
import { type FakeGemini, type FakeGeminiOptions, startFakeGemini } from '../../fake/fake-gemini.ts';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';
import { type Stack, type StackOptions, sharedRedisPair, stackPerTest } from '../helpers/stack.ts';
import { tempDirs } from '../helpers/temp.ts';

/**
 * The Files API and cached contents through the official SDK, against the fake with four keys in
 * two projects and two clients. A file or a cache belongs to the project of the key that made it
 * (the fake answers any other project's key with Google's 403): every later use must go to that
 * project, although round robin alone would cross projects within four calls; and only the
 * client that made it may see or use it.
 */
const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdef01';
const ADMIN = 'admin-token-0123456789abcdef';
const KEYS = [
  { id: 'a1', api_key: 'AIzaFakeProjectAKey1xxxxxxxxxxxxxxxxxxx', project: 'proj-a' },
  { id: 'a2', api_key: 'AIzaFakeProjectAKey2xxxxxxxxxxxxxxxxxxx', project: 'proj-a' },
  { id: 'b1', api_key: 'AIzaFakeProjectBKey1xxxxxxxxxxxxxxxxxxx', project: 'proj-b' },
  { id: 'b2', api_key: 'AIzaFakeProjectBKey2xxxxxxxxxxxxxxxxxxx', project: 'proj-b' },
];
const PROJECT_OF = new Map(KEYS.map((k) => [k.api_key, k.project]));
const MODEL = 'gemini-2.5-flash';

const tmp = tempDirs('gg-files-');
const start = stackPerTest();
const redisUrl = redisTestUrl();

async function twoProjectStack(
  env: Record<string, string> = {},
  fakeOpts: Partial<FakeGeminiOptions> = {},
  extra: StackOptions = {},
): Promise<Stack> {
  const file = join(tmp(), 'keys.json');
  await writeFile(file, JSON.stringify({ keys: KEYS }));
  const fake =
    extra.fakeInstance ??
    (await startFakeGemini({
      keys: KEYS.map((k) => ({ apiKey: k.api_key, project: k.project })),
      ...fakeOpts,
    }));
  const s = await start({
    ...extra,
    fakeInstance: fake,
    env: {
      GEMINI_API_KEYS: '',
      API_KEYS_FILE: file,
      CLIENT_API_KEYS_MAP: `${ALICE}:alice,${BOB}:bob`,
      ADMIN_TOKEN: ADMIN,
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

/** The projects of the keys the fake saw on requests whose path contains `part`. */
function projectsSeen(fake: FakeGemini, part: string): string[] {
  return fake.stats.log
    .filter((r) => r.path.includes(part))
    .map((r) => PROJECT_OF.get(r.apiKey ?? '') ?? '?');
}

function fakeFiles(fake: FakeGemini): FakeFiles {
  return fake.surfaces.find((x): x is FakeFiles => x instanceof FakeFiles)!;
}

async function upload(
  ai: GoogleGenAI,
  bytes: Buffer,
  mimeType: string,
  displayName: string,
): Promise<GenAIFile> {
  return ai.files.upload({ file: new Blob([bytes], { type: mimeType }), config: { mimeType, displayName } });
}

async function generateWith(ai: GoogleGenAI, file: GenAIFile, text = 'describe it') {
  return ai.models.generateContent({
    model: MODEL,
    contents: [{ role: 'user', parts: [createPartFromUri(file.uri!, file.mimeType!), { text }] }],
  });
}

async function statusOf(
  p: Promise<unknown> | (() => Promise<unknown>),
): Promise<{ status: number; message: string }> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    if (err instanceof ApiError) return { status: err.status, message: err.message };
    throw err;
  }
  return { status: 200, message: '' };
}

describe('Files API through the gateway', () => {
  it('uploads a small and a 20 MB file and uses each in six generate calls in a row, on its own project only', async () => {
    const s = await twoProjectStack();
    const ai = sdk(s);
    const big = randomBytes(20 * 1024 * 1024 + 12345);
    const small = await upload(ai, Buffer.from('hello, files'), 'text/plain', 'small');
    const large = await upload(ai, big, 'application/pdf', 'large');
    expect(small.name).toMatch(/^files\/[a-z0-9]+$/);
    expect(small.state).toBe('ACTIVE');
    // The bytes arrived whole and in order (the fake hashes what it receives, never keeps it).
    expect(large.sizeBytes).toBe(String(big.length));
    expect(large.sha256Hash).toBe(createHash('sha256').update(big).digest('base64'));
    // The SDK sends 8 MB chunks: three chunks, all with the key that started the upload.
    const uploadKeys = s.fake.stats.log.filter((r) => r.path === '/upload/v1beta/files').map((r) => r.apiKey);
    expect(uploadKeys.length).toBeGreaterThanOrEqual(2 + 4);

    for (const file of [small, large]) {
      s.fake.resetStats();
      for (let i = 0; i < 6; i++) {
        const r = await generateWith(ai, file, `turn ${i}`);
        expect(r.text).toBeTruthy();
      }
      const stream = await ai.models.generateContentStream({
        model: MODEL,
        contents: [createPartFromUri(file.uri!, file.mimeType!)],
      });
      for await (const _chunk of stream) {
        /* drained */
      }
      await ai.models.countTokens({ model: MODEL, contents: [createPartFromUri(file.uri!, file.mimeType!)] });
      expect(s.fake.stats.permissionDenied).toBe(0);
      const projects = projectsSeen(s.fake, `/models/${MODEL}:`);
      expect(projects).toHaveLength(8);
      // Every call on the one project that holds the file, both of its keys taking turns.
      expect(new Set(projects).size).toBe(1);
      const keys = new Set(
        s.fake.stats.log.filter((r) => r.path.includes(':generateContent')).map((r) => r.apiKey),
      );
      expect(keys.size).toBe(2);
    }
  });

  it('without affinity (AFFINITY=off, a test switch) the same calls meet Google’s 403 and no key is disabled', async () => {
    const s = await twoProjectStack({ AFFINITY: 'off' });
    const ai = sdk(s);
    const file = await upload(ai, Buffer.from('hello, files'), 'text/plain', 'small');
    s.fake.resetStats();
    const results = [];
    for (let i = 0; i < 6; i++) results.push(await statusOf(generateWith(ai, file)));
    const refused = results.filter((r) => r.status === 403);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]!.message).toContain('You do not have permission to access the File');
    expect(s.fake.stats.permissionDenied).toBe(refused.length);
    // A resource refusal is the request's fault: every key stays in service.
    const states = await s.gateway.store.keyStates(Date.now(), '2000-01-01');
    expect(states.every((k) => k.disabledReason === null)).toBe(true);
  });

  it('gets, lists and deletes the caller’s files; a PROCESSING file is refused until ACTIVE without harm to the key', async () => {
    const s = await twoProjectStack({}, { fileProcessingMs: 400 });
    const ai = sdk(s);
    const files: GenAIFile[] = [];
    for (let i = 0; i < 3; i++) files.push(await upload(ai, Buffer.from(`file ${i}`), 'text/plain', `f${i}`));
    expect(files[0]!.state).toBe('PROCESSING');
    const early = await statusOf(generateWith(ai, files[0]!));
    expect(early.status).toBe(400);
    expect(early.message).toContain('not in an ACTIVE state');
    let got = await ai.files.get({ name: files[0]!.name! });
    for (let i = 0; i < 50 && got.state !== 'ACTIVE'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      got = await ai.files.get({ name: files[0]!.name! });
    }
    expect(got.state).toBe('ACTIVE');
    expect((await generateWith(ai, got)).text).toBeTruthy();
    const states = await s.gateway.store.keyStates(Date.now(), '2000-01-01');
    expect(states.every((k) => k.disabledReason === null)).toBe(true);

    // Bob's own file, in whatever project: not in Alice's list.
    const bobs = await upload(sdk(s, BOB), Buffer.from('bob'), 'text/plain', 'bob');
    const listed: string[] = [];
    for await (const f of await ai.files.list({ config: { pageSize: 2 } })) listed.push(f.name!);
    expect(listed.sort()).toEqual(files.map((f) => f.name!).sort());
    expect(listed).not.toContain(bobs.name);

    await ai.files.delete({ name: files[1]!.name! });
    const after: string[] = [];
    for await (const f of await ai.files.list()) after.push(f.name!);
    expect(after.sort()).toEqual([files[0]!.name!, files[2]!.name!].sort());
    expect((await statusOf(ai.files.get({ name: files[1]!.name! }))).status).toBe(403);
  });

  it('a second client cannot get, list, use, delete or continue the first client’s file (Google’s 403, nothing sent)', async () => {
    const s = await twoProjectStack();
    const ai = sdk(s);
    const file = await upload(ai, Buffer.from('private'), 'text/plain', 'alice-only');
    const bob = sdk(s, BOB);
    const before = s.fake.stats.requests;
    const denied = `You do not have permission to access the File ${file.name!.slice(6)} or it may not exist.`;
    for (const attempt of [
      () => bob.files.get({ name: file.name! }),
      () => bob.files.delete({ name: file.name! }),
      () => generateWith(bob, file),
      () =>
        bob.models.countTokens({ model: MODEL, contents: [createPartFromUri(file.uri!, file.mimeType!)] }),
    ]) {
      const r = await statusOf(attempt);
      expect(r.status).toBe(403);
      expect(r.message).toContain(denied);
    }
    const bobList: string[] = [];
    for await (const f of await bob.files.list()) bobList.push(f.name!);
    expect(bobList).toEqual([]);
    // Google's shape on the wire.
    const res = await fetch(`${s.url}/v1beta/files/${file.name!.slice(6)}`, {
      headers: { 'x-goog-api-key': BOB },
    });
    const body = (await res.json()) as { error: { code: number; message: string; status: string } };
    expect(res.status).toBe(403);
    expect(body.error).toMatchObject({ code: 403, status: 'PERMISSION_DENIED', message: denied });

    // An upload session is its client's: Bob cannot continue Alice's.
    const started = await fetch(`${s.url}/upload/v1beta/files`, {
      method: 'POST',
      headers: {
        'x-goog-api-key': ALICE,
        'content-type': 'application/json',
        'x-goog-upload-protocol': 'resumable',
        'x-goog-upload-command': 'start',
        'x-goog-upload-header-content-length': '5',
        'x-goog-upload-header-content-type': 'text/plain',
      },
      body: JSON.stringify({ file: { displayName: 'x' } }),
    });
    const url = started.headers.get('x-goog-upload-url')!;
    expect(url.startsWith(`${s.url}/upload/v1beta/files?upload_id=`)).toBe(true);
    const afterStart = s.fake.stats.requests;
    const chunk = (token: string, target = url) =>
      fetch(target, {
        method: 'POST',
        headers: {
          'x-goog-api-key': token,
          'x-goog-upload-command': 'upload, finalize',
          'x-goog-upload-offset': '0',
        },
        body: 'hello',
      });
    expect((await chunk(BOB)).status).toBe(404);
    // A forged id (its signature changed) is refused too.
    const forged = url.replace(
      /(upload_id=[^.]+\.)(.)/,
      (_m, a: string, c: string) => a + (c === 'A' ? 'B' : 'A'),
    );
    expect((await chunk(ALICE, forged)).status).toBe(404);
    expect(s.fake.stats.requests).toBe(afterStart);
    expect(before).toBe(afterStart - 1);
    // Alice finishes it.
    const done = await chunk(ALICE);
    expect(done.status).toBe(200);
    expect(done.headers.get('x-goog-upload-status')).toBe('final');

    // An admin sees Alice's file.
    const asAdmin = await fetch(`${s.url}/v1beta/files/${file.name!.slice(6)}`, {
      headers: { 'x-goog-api-key': BOB, 'x-admin-token': ADMIN },
    });
    expect(asAdmin.status).toBe(200);
  });

  it('takes a multipart upload and pins its file; resources of two projects in one request are a clear 400', async () => {
    const s = await twoProjectStack();
    const boundary = 'gg-boundary-123';
    const part = (type: string, body: string) => `--${boundary}\r\nContent-Type: ${type}\r\n\r\n${body}\r\n`;
    const res = await fetch(`${s.url}/upload/v1beta/files`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${ALICE}`,
        'x-goog-upload-protocol': 'multipart',
        'content-type': `multipart/related; boundary=${boundary}`,
      },
      body: `${part('application/json; charset=UTF-8', JSON.stringify({ file: { displayName: 'mp' } }))}${part('text/plain', 'multipart bytes')}--${boundary}--\r\n`,
    });
    expect(res.status).toBe(200);
    const file = ((await res.json()) as { file: GenAIFile }).file;
    expect(file.sizeBytes).toBe('15');
    const ai = sdk(s);
    s.fake.resetStats();
    for (let i = 0; i < 6; i++) await generateWith(ai, file);
    expect(s.fake.stats.permissionDenied).toBe(0);

    // Files of both projects (uploads land round robin): one request cannot use them together.
    const uploaded: GenAIFile[] = [file];
    for (let i = 0; i < 4; i++) uploaded.push(await upload(ai, Buffer.from(`f${i}`), 'text/plain', `f${i}`));
    const byProject = new Map<string, GenAIFile>();
    for (const f of uploaded) {
      const r = await s.gateway.store.getResources([f.name!], Date.now());
      byProject.set(r[0]!.project, f);
    }
    expect([...byProject.keys()].sort()).toEqual(['proj-a', 'proj-b']);
    const [fa, fb] = [...byProject.values()];
    const sent = s.fake.stats.requests;
    const r = await statusOf(
      ai.models.generateContent({
        model: MODEL,
        contents: [createPartFromUri(fa!.uri!, fa!.mimeType!), createPartFromUri(fb!.uri!, fb!.mimeType!)],
      }),
    );
    expect(r.status).toBe(400);
    expect(r.message).toContain('different Google Cloud projects');
    expect(s.fake.stats.requests).toBe(sent);
  });

  it('downloads a generated file with a key of its project, for its client only', async () => {
    const s = await twoProjectStack();
    const video = randomBytes(300_000);
    const generated = fakeFiles(s.fake).addGenerated('proj-b', 'video/mp4', video);
    // Recorded as Alice's, as a finished video operation records it.
    await s.gateway.store.putResource({
      name: generated.name,
      owner: { project: 'proj-b', keyId: 'b1', client: 'alice' },
      expiresAtMs: Date.now() + 60_000,
    });
    const id = generated.name.slice(6);
    s.fake.resetStats();
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${s.url}/v1beta/files/${id}:download?alt=media`, {
        headers: { 'x-goog-api-key': ALICE },
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('video/mp4');
      expect(Buffer.from(await res.arrayBuffer()).equals(video)).toBe(true);
    }
    expect(new Set(projectsSeen(s.fake, ':download'))).toEqual(new Set(['proj-b']));
    const bob = await fetch(`${s.url}/v1beta/files/${id}:download?alt=media`, {
      headers: { 'x-goog-api-key': BOB },
    });
    expect(bob.status).toBe(403);
    expect(s.fake.stats.requests).toBe(3);
  });
});

describe('cached contents through the gateway', () => {
  it('creates a cache from a file in the file’s project, uses it six times, updates, lists and deletes it', async () => {
    const s = await twoProjectStack();
    const ai = sdk(s);
    const file = await upload(ai, randomBytes(3 * 1024 * 1024), 'application/pdf', 'doc');
    const [fileOwner] = await s.gateway.store.getResources([file.name!], Date.now());
    s.fake.resetStats();
    const cache = await ai.caches.create({
      model: MODEL,
      config: {
        contents: [{ role: 'user', parts: [createPartFromUri(file.uri!, file.mimeType!)] }],
        systemInstruction: 'You answer about the document.',
        ttl: '300s',
        displayName: 'doc cache',
      },
    });
    expect(cache.name).toMatch(/^cachedContents\//);
    expect(projectsSeen(s.fake, '/cachedContents')).toEqual([fileOwner!.project]);
    const [cacheOwner] = await s.gateway.store.getResources([cache.name!], Date.now());
    expect(cacheOwner).toMatchObject({ project: fileOwner!.project, client: 'alice' });

    s.fake.resetStats();
    for (let i = 0; i < 6; i++) {
      const r = await ai.models.generateContent({
        model: MODEL,
        contents: `question ${i}`,
        config: { cachedContent: cache.name! },
      });
      expect(r.text).toBeTruthy();
    }
    expect(s.fake.stats.permissionDenied).toBe(0);
    expect(new Set(projectsSeen(s.fake, ':generateContent'))).toEqual(new Set([fileOwner!.project]));

    const updated = await ai.caches.update({ name: cache.name!, config: { ttl: '7200s' } });
    expect(Date.parse(updated.expireTime!)).toBeGreaterThan(Date.now() + 3600_000);
    const [record] = await s.gateway.store.listResources('cachedContents', 'alice', Date.now());
    expect(record!.expiresAtMs).toBe(Date.parse(updated.expireTime!));
    expect((await ai.caches.get({ name: cache.name! })).displayName).toBe('doc cache');

    const listed: string[] = [];
    for await (const c of await ai.caches.list()) listed.push(c.name!);
    expect(listed).toEqual([cache.name]);

    await ai.caches.delete({ name: cache.name! });
    expect((await statusOf(ai.caches.get({ name: cache.name! }))).status).toBe(403);
    expect(s.fake.stats.permissionDenied).toBe(0);
  });

  it('pins a cache made without files to the project it landed on; without affinity its uses fail', async () => {
    for (const affinity of ['on', 'off']) {
      const s = await twoProjectStack({ AFFINITY: affinity });
      const ai = sdk(s);
      const cache = await ai.caches.create({
        model: MODEL,
        config: { contents: [{ role: 'user', parts: [{ text: 'a long shared context' }] }] },
      });
      s.fake.resetStats();
      const results = [];
      for (let i = 0; i < 6; i++)
        results.push(
          await statusOf(
            ai.models.generateContent({
              model: MODEL,
              contents: 'q',
              config: { cachedContent: cache.name! },
            }),
          ),
        );
      if (affinity === 'on') {
        expect(results.every((r) => r.status === 200)).toBe(true);
        expect(s.fake.stats.permissionDenied).toBe(0);
      } else {
        const refused = results.filter((r) => r.status === 403);
        expect(refused.length).toBeGreaterThan(0);
        expect(refused[0]!.message).toContain('CachedContent not found (or permission denied)');
        expect(s.fake.stats.permissionDenied).toBe(refused.length);
      }
      await s.close();
    }
  });

  it('a second client cannot get, list, use, update or delete the first client’s cache (nothing sent)', async () => {
    const s = await twoProjectStack();
    const cache = await sdk(s).caches.create({
      model: MODEL,
      config: { contents: [{ role: 'user', parts: [{ text: 'alice context' }] }] },
    });
    const bob = sdk(s, BOB);
    const before = s.fake.stats.requests;
    for (const attempt of [
      () => bob.caches.get({ name: cache.name! }),
      () => bob.caches.update({ name: cache.name!, config: { ttl: '60s' } }),
      () => bob.caches.delete({ name: cache.name! }),
      () =>
        bob.models.generateContent({ model: MODEL, contents: 'q', config: { cachedContent: cache.name! } }),
    ]) {
      const r = await statusOf(attempt);
      expect(r.status).toBe(403);
      expect(r.message).toContain('CachedContent not found (or permission denied)');
    }
    const listed: string[] = [];
    for await (const c of await bob.caches.list()) listed.push(c.name!);
    expect(listed).toEqual([]);
    expect(s.fake.stats.requests).toBe(before);
    // Still Alice's, unharmed.
    expect((await sdk(s).caches.get({ name: cache.name! })).name).toBe(cache.name);
  });
});

if (!redisUrl) warnSkipped('files and caches across two instances');

describe.skipIf(!redisUrl)('two gateway instances on one Redis', () => {
  async function pair(): Promise<[Stack, Stack]> {
    const fake = await startFakeGemini({
      keys: KEYS.map((k) => ({ apiKey: k.api_key, project: k.project })),
    });
    const [a, b] = await sharedRedisPair((opts) => twoProjectStack(opts.env, {}, opts), redisUrl!, {
      fakeInstance: fake,
    });
    const close = b.close;
    b.close = async () => {
      await close();
      await fake.close();
    };
    return [a, b];
  }

  it('a file uploaded and a cache made through one instance are used through the other', async () => {
    const [a, b] = await pair();
    const file = await upload(sdk(a), randomBytes(9 * 1024 * 1024), 'application/pdf', 'shared');
    const cache = await sdk(a).caches.create({
      model: MODEL,
      config: { contents: [{ role: 'user', parts: [createPartFromUri(file.uri!, file.mimeType!)] }] },
    });
    b.fake.resetStats();
    for (let i = 0; i < 6; i++) await generateWith(sdk(b), file, `turn ${i}`);
    for (let i = 0; i < 6; i++)
      await sdk(b).models.generateContent({
        model: MODEL,
        contents: 'q',
        config: { cachedContent: cache.name! },
      });
    expect(b.fake.stats.permissionDenied).toBe(0);
    expect(new Set(projectsSeen(b.fake, ':generateContent')).size).toBe(1);
    expect((await sdk(b).files.get({ name: file.name! })).name).toBe(file.name);
    const listed: string[] = [];
    for await (const f of await sdk(b).files.list()) listed.push(f.name!);
    expect(listed).toEqual([file.name]);
    // And the other client sees none of it through either instance.
    expect((await statusOf(() => sdk(b, BOB).files.get({ name: file.name! }))).status).toBe(403);
  });

  it('an upload started on one instance continues and finishes on the other', async () => {
    const [a, b] = await pair();
    const bytes = randomBytes(3 * 1024 * 1024 + 7);
    const cut = 2 * 1024 * 1024;
    const started = await fetch(`${a.url}/upload/v1beta/files`, {
      method: 'POST',
      headers: {
        'x-goog-api-key': ALICE,
        'content-type': 'application/json',
        'x-goog-upload-protocol': 'resumable',
        'x-goog-upload-command': 'start',
        'x-goog-upload-header-content-length': String(bytes.length),
        'x-goog-upload-header-content-type': 'application/octet-stream',
      },
      body: JSON.stringify({ file: { displayName: 'split' } }),
    });
    expect(started.status).toBe(200);
    // As the SDK does: the upload URL's host and port replaced by those of the base URL in use.
    const onA = new URL(started.headers.get('x-goog-upload-url')!);
    const onB = new URL(onA);
    onB.host = new URL(b.url).host;
    const send = (url: URL, command: string, offset: number, body: Buffer) =>
      fetch(url, {
        method: 'POST',
        headers: {
          'x-goog-api-key': ALICE,
          'x-goog-upload-command': command,
          'x-goog-upload-offset': String(offset),
          'content-type': 'application/octet-stream',
        },
        body,
      });
    const first = await send(onB, 'upload', 0, bytes.subarray(0, cut));
    expect(first.status).toBe(200);
    expect(first.headers.get('x-goog-upload-status')).toBe('active');
    const last = await send(onA, 'upload, finalize', cut, bytes.subarray(cut));
    expect(last.status).toBe(200);
    expect(last.headers.get('x-goog-upload-status')).toBe('final');
    const file = ((await last.json()) as { file: GenAIFile }).file;
    expect(file.sha256Hash).toBe(createHash('sha256').update(bytes).digest('base64'));
    // Every request of the upload went upstream with the one key that started it.
    const keys = new Set(
      a.fake.stats.log.filter((r) => r.path === '/upload/v1beta/files').map((r) => r.apiKey),
    );
    expect(keys.size).toBe(1);
    a.fake.resetStats();
    for (let i = 0; i < 6; i++) await generateWith(sdk(b), file);
    expect(a.fake.stats.permissionDenied).toBe(0);
    // The finished session is gone: its id no longer takes bytes.
    expect((await send(onB, 'upload, finalize', 0, Buffer.from('x'))).status).toBe(404);
  });
});
