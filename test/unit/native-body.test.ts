import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BIG_BODY_BYTES, parseNativeJson, readBody } from '../../src/http/native-body.ts';
import { HttpProblem } from '../../src/http/problem.ts';
import { estimateInputTokens } from '../../src/pool/estimate.ts';
import { referencedResources } from '../../src/upstream/affinity.ts';

/** The native proxy's body reader and parser (src/http/native-body.ts). */

function read(chunks: Buffer[], limit: number, contentLength?: number) {
  const payload = new PassThrough();
  const req = { headers: contentLength === undefined ? {} : { 'content-length': String(contentLength) } };
  const result = new Promise<{ err: Error | null; body?: Buffer }>((resolve) =>
    readBody(req as unknown as IncomingMessage, payload, limit, (err, body) => resolve({ err, body })),
  );
  for (const c of chunks) payload.write(c);
  payload.end();
  return result;
}

describe('readBody', () => {
  it('fills one buffer of the declared length; joins chunks when no length is declared', async () => {
    const parts = [Buffer.from('{"a":'), Buffer.from('1}')];
    expect((await read(parts, 100, 7)).body?.toString()).toBe('{"a":1}');
    expect((await read(parts, 100)).body?.toString()).toBe('{"a":1}');
  });

  it('a declared length over the limit is refused before a byte is read, in Google’s words', async () => {
    const { err } = await read([], 10, 11);
    expect(err).toBeInstanceOf(HttpProblem);
    expect(err).toMatchObject({ status: 413, detail: 'Request payload size exceeds the limit: 10 bytes.' });
  });

  it('bytes past the limit are refused as they arrive (chunked)', async () => {
    const { err, body } = await read([Buffer.alloc(6), Buffer.alloc(6)], 10);
    expect(body).toBeUndefined();
    expect(err).toMatchObject({ status: 413 });
  });

  it('more or fewer bytes than declared: a Content-Length error (400)', async () => {
    expect((await read([Buffer.alloc(8)], 100, 5)).err).toMatchObject({
      code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH',
    });
    expect((await read([Buffer.alloc(3)], 100, 5)).err).toMatchObject({
      code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH',
    });
  });
});

describe('parseNativeJson', () => {
  const body = (dataChars: number) => ({
    contents: [
      {
        parts: [
          { text: 'describe these' },
          { inlineData: { mimeType: 'image/png', data: 'A'.repeat(dataChars) } },
          { fileData: { mimeType: 'video/mp4', fileUri: 'files/abc123' } },
        ],
      },
    ],
    cachedContent: 'cachedContents/xyz',
    generationConfig: { temperature: 0.2 },
  });

  it('a small body parses whole', () => {
    const raw = Buffer.from(JSON.stringify(body(100)));
    expect(parseNativeJson(raw)).toEqual(body(100));
  });

  it('a large body leaves inline data out of the parsed JSON, and nothing the estimate or affinity reads', () => {
    const whole = body(BIG_BODY_BYTES + 10);
    const raw = Buffer.from(JSON.stringify(whole));
    const parsed = parseNativeJson(raw) as ReturnType<typeof body>;
    expect(parsed.contents[0]!.parts[1]).toEqual({ inlineData: { mimeType: 'image/png', data: '' } });
    expect(estimateInputTokens(parsed)).toBe(estimateInputTokens(whole));
    expect(referencedResources(parsed, raw)).toEqual(referencedResources(whole, raw));
    expect(parsed.generationConfig).toEqual({ temperature: 0.2 });
  });

  it('invalid JSON throws', () => {
    expect(() => parseNativeJson(Buffer.from('{"a":'))).toThrow();
  });
});
