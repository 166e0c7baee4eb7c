import { describe, expect, it } from 'vitest';
import { toProblem } from '../../src/http/errors.ts';
import type { ResourceOwner } from '../../src/store/types.ts';
import {
  cacheNameOf,
  decideAffinity,
  fileNameOf,
  interactionNameOf,
  referencedResources,
  resourceRefusal,
} from '../../src/upstream/affinity.ts';
import { UploadSessions } from '../../src/upstream/upload-session.ts';

const owner = (project: string, client = 'alice'): ResourceOwner => ({
  project,
  keyId: `${project}-k1`,
  client,
});
const alice = { client: 'alice', admin: false };

describe('fileNameOf', () => {
  it('reads bare names and file URIs on any host, with or without :download', () => {
    expect(fileNameOf('files/abc-123')).toBe('files/abc-123');
    expect(fileNameOf('https://generativelanguage.googleapis.com/v1beta/files/abc123')).toBe('files/abc123');
    expect(fileNameOf('http://127.0.0.1:8000/v1beta/files/xyz')).toBe('files/xyz');
    expect(fileNameOf('https://generativelanguage.googleapis.com/v1beta/files/vid1:download?alt=media')).toBe(
      'files/vid1',
    );
  });

  it('ignores what is not a Files API file', () => {
    expect(fileNameOf('https://example.com/a.png')).toBeNull();
    expect(fileNameOf('https://www.youtube.com/watch?v=abc')).toBeNull();
    expect(fileNameOf('gs://bucket/files/abc')).toBeNull();
    expect(fileNameOf('files/')).toBeNull();
    expect(fileNameOf('files/a/b')).toBeNull();
    expect(fileNameOf('https://host/v1beta/files/abc/extra')).toBeNull();
  });

  it('reads cache and interaction names', () => {
    expect(cacheNameOf('cachedContents/c1')).toBe('cachedContents/c1');
    expect(cacheNameOf('c1')).toBeNull();
    expect(interactionNameOf('v1_abc')).toBe('interactions/v1_abc');
    expect(interactionNameOf('interactions/v1_abc')).toBe('interactions/v1_abc');
  });
});

describe('referencedResources', () => {
  it('finds files, caches, interactions and batch input files anywhere, each once, in order', () => {
    const body = {
      cachedContent: 'cachedContents/c1',
      contents: [
        {
          role: 'user',
          parts: [{ text: 'see files/not-a-ref' }, { fileData: { fileUri: 'files/a', mimeType: 'x' } }],
        },
        {
          role: 'user',
          parts: [{ file_data: { file_uri: 'https://generativelanguage.googleapis.com/v1beta/files/b' } }],
        },
        { role: 'user', parts: [{ fileData: { fileUri: 'files/a' } }] },
      ],
      generateContentRequest: { contents: [{ parts: [{ fileData: { fileUri: 'files/c' } }] }] },
      batch: { input_config: { file_name: 'files/d' } },
      previous_interaction_id: 'int9',
      input: [{ type: 'image', uri: 'https://generativelanguage.googleapis.com/v1beta/files/e' }],
    };
    expect(referencedResources(body)).toEqual([
      'cachedContents/c1',
      'files/a',
      'files/b',
      'files/c',
      'files/d',
      'interactions/int9',
      'files/e',
    ]);
  });

  it('does not walk a body whose bytes hold no reference marker', () => {
    const body = { contents: [{ parts: [{ fileData: { fileUri: 'files/a' } }] }] };
    // The raw bytes decide: a body without "files/" etc. is not searched.
    expect(referencedResources(body, Buffer.from('{"contents":[{"parts":[{"text":"hi"}]}]}'))).toEqual([]);
    expect(referencedResources(body, Buffer.from(JSON.stringify(body)))).toEqual(['files/a']);
  });

  it('ignores other string fields and non-string references', () => {
    expect(
      referencedResources({
        name: 'files/a',
        contents: [{ parts: [{ text: 'files/b' }] }],
        cachedContent: 3,
      }),
    ).toEqual([]);
  });
});

describe('decideAffinity', () => {
  it('pins nothing when no reference is known', () => {
    expect(decideAffinity([], [], alice)).toEqual({ kind: 'none' });
    expect(decideAffinity(['files/a'], [null], alice)).toEqual({ kind: 'none' });
  });

  it('pins to the one project of the caller’s resources (unknown ones ride along)', () => {
    expect(
      decideAffinity(['files/a', 'files/x', 'cachedContents/c'], [owner('p1'), null, owner('p1')], alice),
    ).toEqual({
      kind: 'pin',
      pin: { project: 'p1' },
    });
  });

  it('refuses another client’s file with Google’s 403 and its cache likewise', () => {
    const d = decideAffinity(['files/abc'], [owner('p1', 'bob')], alice);
    expect(d.kind).toBe('refuse');
    if (d.kind !== 'refuse') return;
    expect(toProblem(d.problem).status).toBe(403);
    expect(toProblem(d.problem).googleStatus).toBe('PERMISSION_DENIED');
    expect(toProblem(d.problem).detail).toBe(
      'You do not have permission to access the File abc or it may not exist.',
    );
    const c = decideAffinity(['cachedContents/c'], [owner('p1', 'bob')], alice);
    expect(c.kind === 'refuse' && toProblem(c.problem).detail).toBe(
      'CachedContent not found (or permission denied)',
    );
    const i = decideAffinity(['interactions/i'], [owner('p1', 'bob')], alice);
    expect(i.kind === 'refuse' && toProblem(i.problem).status).toBe(404);
  });

  it('lets an admin use any client’s resources', () => {
    expect(decideAffinity(['files/a'], [owner('p2', 'bob')], { client: 'root', admin: true })).toEqual({
      kind: 'pin',
      pin: { project: 'p2' },
    });
  });

  it('refuses resources of two projects with a clear 400', () => {
    const d = decideAffinity(['files/a', 'cachedContents/c'], [owner('p1'), owner('p2')], alice);
    expect(d.kind).toBe('refuse');
    if (d.kind !== 'refuse') return;
    expect(toProblem(d.problem).status).toBe(400);
    expect(toProblem(d.problem).googleStatus).toBe('INVALID_ARGUMENT');
    expect(toProblem(d.problem).detail).toContain('files/a');
    expect(toProblem(d.problem).detail).toContain('cachedContents/c');
    expect(toProblem(d.problem).detail).toContain('different Google Cloud projects');
  });

  it('refuses another client before judging projects', () => {
    const d = decideAffinity(['files/a', 'files/b'], [owner('p1'), owner('p2', 'bob')], alice);
    expect(d.kind === 'refuse' && toProblem(d.problem).status).toBe(403);
  });
});

describe('resourceRefusal', () => {
  it('answers an operation or batch as Google’s NOT_FOUND', () => {
    const p = toProblem(resourceRefusal('batches/b1'));
    expect([p.status, p.googleStatus]).toEqual([404, 'NOT_FOUND']);
  });
});

describe('UploadSessions', () => {
  it('signs ids for a key and a client; a tampered id, another key or client fails', () => {
    const s = new UploadSessions(undefined, ['tok-a', 'tok-b']);
    const { id, record } = s.create('k1', 'alice');
    expect(record).toMatch(/^uploads\/[A-Za-z0-9_-]{22}$/);
    expect(s.recordOf(id)).toBe(record);
    const bound = { project: 'p', keyId: 'k1', client: 'alice' };
    expect(s.verify(id, bound)).toBe(true);
    expect(s.verify(id, { ...bound, keyId: 'k2' })).toBe(false);
    expect(s.verify(id, { ...bound, client: 'bob' })).toBe(false);
    const flipped = id.slice(0, -1) + (id.endsWith('A') ? 'B' : 'A');
    expect(s.verify(flipped, bound)).toBe(false);
    expect(s.recordOf('not-an-id')).toBeNull();
  });

  it('is verified by another instance with the same client tokens, not with others', () => {
    const { id } = new UploadSessions(undefined, ['tok-a', 'tok-b']).create('k1', 'alice');
    const bound = { project: 'p', keyId: 'k1', client: 'alice' };
    expect(new UploadSessions(undefined, ['tok-b', 'tok-a']).verify(id, bound)).toBe(true);
    expect(new UploadSessions(undefined, ['tok-c']).verify(id, bound)).toBe(false);
    const configured = new UploadSessions('a-configured-secret-1234', ['x']).create('k1', 'alice').id;
    expect(new UploadSessions('a-configured-secret-1234', ['y']).verify(configured, bound)).toBe(true);
  });
});
