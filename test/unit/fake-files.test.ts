import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { FakeGemini } from '../../fake/fake-gemini.ts';
import { classifyUpstream } from '../../src/pool/classify.ts';
import { fakePerTest, type Json, post } from '../helpers/fake.ts';

/** The fake's Files API and cached contents follow Google's ownership rule (project of the key). */
const start = fakePerTest();
const A = 'AIzaFakeFilesProjectA-000000000000001';
const A2 = 'AIzaFakeFilesProjectA-000000000000002';
const B = 'AIzaFakeFilesProjectB-000000000000001';
const keys = [
  { apiKey: A, project: 'pa' },
  { apiKey: A2, project: 'pa' },
  { apiKey: B, project: 'pb' },
];

async function startUpload(fake: FakeGemini, key: string, size: number): Promise<string> {
  const res = await fetch(`${fake.url}/upload/v1beta/files`, {
    method: 'POST',
    headers: {
      'x-goog-api-key': key,
      'content-type': 'application/json',
      'x-goog-upload-protocol': 'resumable',
      'x-goog-upload-command': 'start',
      'x-goog-upload-header-content-length': String(size),
      'x-goog-upload-header-content-type': 'text/plain',
    },
    body: JSON.stringify({ file: { displayName: 'notes' } }),
  });
  expect(res.status).toBe(200);
  expect(res.headers.get('x-goog-upload-status')).toBe('active');
  return res.headers.get('x-goog-upload-url')!;
}

function chunk(url: string, key: string, command: string, offset: number, body: string) {
  return fetch(url, {
    method: 'POST',
    headers: {
      'x-goog-api-key': key,
      'x-goog-upload-command': command,
      'x-goog-upload-offset': String(offset),
    },
    body,
  });
}

async function uploadText(fake: FakeGemini, key: string, text: string): Promise<Json> {
  const url = await startUpload(fake, key, text.length);
  const res = await chunk(url, key, 'upload, finalize', 0, text);
  expect(res.headers.get('x-goog-upload-status')).toBe('final');
  return ((await res.json()) as Json).file;
}

const get = async (fake: FakeGemini, path: string, key: string) => {
  const res = await fetch(fake.url + path, { headers: { 'x-goog-api-key': key } });
  return { status: res.status, json: (await res.json()) as Json };
};

describe('fake Files API', () => {
  it('takes a resumable upload in chunks at the right offsets and describes the file as Google does', async () => {
    const fake = await start({ keys });
    const url = await startUpload(fake, A, 11);
    const first = await chunk(url, A, 'upload', 0, 'hello ');
    expect(first.headers.get('x-goog-upload-size-received')).toBe('6');
    // A chunk at the wrong offset is refused, the session unharmed.
    expect((await chunk(url, A, 'upload', 3, 'xxx')).status).toBe(400);
    // Another key of the same project may continue it; another project's may not.
    expect((await chunk(url, B, 'upload, finalize', 6, 'world')).status).toBe(403);
    const done = await chunk(url, A2, 'upload, finalize', 6, 'world');
    expect(done.headers.get('x-goog-upload-status')).toBe('final');
    const file = ((await done.json()) as Json).file;
    expect(file).toMatchObject({
      displayName: 'notes',
      mimeType: 'text/plain',
      sizeBytes: '11',
      state: 'ACTIVE',
      source: 'UPLOADED',
      sha256Hash: createHash('sha256').update('hello world').digest('base64'),
      uri: `${fake.url}/v1beta/${file.name}`,
    });
    expect(Date.parse(file.expirationTime) - Date.parse(file.createTime)).toBe(48 * 3600 * 1000);
    expect(fake.stats.permissionDenied).toBe(1);
  });

  it('serves a file to its project only, lists per project, and refuses another project’s file in generateContent', async () => {
    const fake = await start({ keys });
    const file = await uploadText(fake, A, 'alpha');
    const id = file.name.slice(6);
    expect((await get(fake, `/v1beta/${file.name}`, A2)).status).toBe(200);
    const denied = await get(fake, `/v1beta/${file.name}`, B);
    expect(denied.status).toBe(403);
    expect(denied.json.error).toEqual({
      code: 403,
      message: `You do not have permission to access the File ${id} or it may not exist.`,
      status: 'PERMISSION_DENIED',
    });
    // The gateway reads that answer as the request's fault, not the key's.
    expect(classifyUpstream(403, denied.json, Date.now()).kind).toBe('client_error');
    expect((await get(fake, '/v1beta/files', A)).json.files.map((f: Json) => f.name)).toEqual([file.name]);
    expect((await get(fake, '/v1beta/files', B)).json).toEqual({});

    const body = {
      contents: [{ parts: [{ fileData: { fileUri: file.uri, mimeType: 'text/plain' } }, { text: 'q' }] }],
    };
    expect((await post(fake, '/v1beta/models/gemini-2.5-flash:generateContent', body, A2)).status).toBe(200);
    const other = await post(fake, '/v1beta/models/gemini-2.5-flash:generateContent', body, B);
    expect(other.status).toBe(403);
    expect((await post(fake, '/v1beta/models/gemini-2.5-flash:countTokens', body, B)).status).toBe(403);
    expect(fake.stats.permissionDenied).toBe(3);

    const del = await fetch(`${fake.url}/v1beta/${file.name}`, {
      method: 'DELETE',
      headers: { 'x-goog-api-key': A },
    });
    expect(del.status).toBe(200);
    expect((await get(fake, `/v1beta/${file.name}`, A)).status).toBe(403);
  });

  it('keeps a file PROCESSING for fileProcessingMs: generateContent is refused with FAILED_PRECONDITION until ACTIVE', async () => {
    const fake = await start({ keys, fileProcessingMs: 150 });
    const file = await uploadText(fake, A, 'slow');
    expect(file.state).toBe('PROCESSING');
    const body = { contents: [{ parts: [{ fileData: { fileUri: file.uri } }] }] };
    const early = await post(fake, '/v1beta/models/gemini-2.5-flash:generateContent', body, A);
    expect(early.status).toBe(400);
    expect(early.json.error.status).toBe('FAILED_PRECONDITION');
    expect(classifyUpstream(400, early.json, Date.now()).kind).toBe('client_error');
    await new Promise((r) => setTimeout(r, 200));
    expect((await get(fake, `/v1beta/${file.name}`, A)).json.state).toBe('ACTIVE');
    expect((await post(fake, '/v1beta/models/gemini-2.5-flash:generateContent', body, A)).status).toBe(200);
  });
});

describe('fake cached contents', () => {
  it('belong to their project: get, patch, delete, list and use by another project are refused', async () => {
    const fake = await start({ keys });
    const created = await post(
      fake,
      '/v1beta/cachedContents',
      {
        model: 'models/gemini-2.5-flash',
        contents: [{ role: 'user', parts: [{ text: 'context' }] }],
        ttl: '60s',
      },
      A,
    );
    expect(created.status).toBe(200);
    const cache = created.json;
    expect(cache.name).toMatch(/^cachedContents\/[a-z0-9]+$/);
    expect(cache.model).toBe('models/gemini-2.5-flash');
    expect(Date.parse(cache.expireTime) - Date.parse(cache.createTime)).toBe(60_000);
    expect((await get(fake, `/v1beta/${cache.name}`, A2)).status).toBe(200);
    const denied = await get(fake, `/v1beta/${cache.name}`, B);
    expect(denied.status).toBe(403);
    expect(denied.json.error.message).toBe('CachedContent not found (or permission denied)');
    expect(classifyUpstream(403, denied.json, Date.now()).kind).toBe('client_error');
    expect((await get(fake, '/v1beta/cachedContents', B)).json).toEqual({});

    const use = { contents: [{ parts: [{ text: 'q' }] }], cachedContent: cache.name };
    expect((await post(fake, '/v1beta/models/gemini-2.5-flash:generateContent', use, A2)).status).toBe(200);
    expect((await post(fake, '/v1beta/models/gemini-2.5-flash:generateContent', use, B)).status).toBe(403);
    // Google's rules for cached requests: the same model, no systemInstruction beside it.
    expect((await post(fake, '/v1beta/models/gemini-2.5-flash-lite:generateContent', use, A)).status).toBe(
      400,
    );
    const withSystem = { ...use, systemInstruction: { parts: [{ text: 'x' }] } };
    expect((await post(fake, '/v1beta/models/gemini-2.5-flash:generateContent', withSystem, A)).status).toBe(
      400,
    );

    const patch = await fetch(`${fake.url}/v1beta/${cache.name}?updateMask=ttl`, {
      method: 'PATCH',
      headers: { 'x-goog-api-key': A, 'content-type': 'application/json' },
      body: JSON.stringify({ ttl: '3600s' }),
    });
    const patched = (await patch.json()) as Json;
    expect(Date.parse(patched.expireTime) - Date.now()).toBeGreaterThan(3500_000);
    expect(fake.stats.permissionDenied).toBe(2);
  });

  it('refuses a cache made from another project’s file', async () => {
    const fake = await start({ keys });
    const file = await uploadText(fake, A, 'alpha');
    const res = await post(
      fake,
      '/v1beta/cachedContents',
      { model: 'models/gemini-2.5-flash', contents: [{ parts: [{ fileData: { fileUri: file.uri } }] }] },
      B,
    );
    expect(res.status).toBe(403);
    expect(res.json.error.message).toContain('You do not have permission to access the File');
  });
});
