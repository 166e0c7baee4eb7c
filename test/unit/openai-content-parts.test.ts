import { describe, expect, it } from 'vitest';
import { openAiToGemini } from '../../src/openai/chat-request.ts';
import { parseDataUrl } from '../../src/openai/content-parts.ts';
import { errorOf, MODEL, user } from '../helpers/openai.ts';

describe('openAiToGemini: content parts', () => {
  it('image_url data: URLs become inlineData (base64 and percent-encoded)', () => {
    const call = openAiToGemini({
      model: MODEL,
      messages: [
        user([
          { type: 'text', text: 'What is this?' },
          { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,/9j/4AAQ' } },
          { type: 'image_url', image_url: 'data:image/png;base64,iVBORw0K' },
          { type: 'image_url', image_url: { url: 'data:text/plain,hello%20world' } },
        ]),
      ],
    });
    expect(call.request.contents[0]!.parts).toEqual([
      { text: 'What is this?' },
      { inlineData: { mimeType: 'image/jpeg', data: '/9j/4AAQ' } },
      { inlineData: { mimeType: 'image/png', data: 'iVBORw0K' } },
      { inlineData: { mimeType: 'text/plain', data: Buffer.from('hello world').toString('base64') } },
    ]);
  });

  it('refuses remote image URLs (not fetched) and malformed data: URLs with the param named', () => {
    const remote = errorOf(() =>
      openAiToGemini({
        model: MODEL,
        messages: [user([{ type: 'image_url', image_url: { url: 'http://example.com/cat.png' } }])],
      }),
    );
    expect(remote).toMatchObject({
      status: 400,
      code: 'unsupported_image_url',
      param: 'messages[0].content[0].image_url.url',
    });
    expect(remote.message).toContain('data: URL');
    for (const url of [
      'data:image/png;base64,@@@',
      'data:;base64,AAAA',
      'ftp://x/y.png',
      'data:image/png;base64',
    ]) {
      const e = errorOf(() =>
        openAiToGemini({ model: MODEL, messages: [user([{ type: 'image_url', image_url: { url } }])] }),
      );
      expect(e.status, url).toBe(400);
      expect(e.param, url).toBe('messages[0].content[0].image_url.url');
    }
    expect(parseDataUrl('data:IMAGE/PNG;base64, AA BB\n==', 'p')).toEqual({
      mimeType: 'image/png',
      data: 'AABB==',
    });
  });

  it('input_audio and inline files; file ids and unknown part types are refused', () => {
    const call = openAiToGemini({
      model: MODEL,
      messages: [
        user([
          { type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } },
          { type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0=', filename: 'a.pdf' } },
          { type: 'file', file: { file_data: 'JVBERi0=', filename: 'b.pdf' } },
        ]),
      ],
    });
    expect(call.request.contents[0]!.parts).toEqual([
      { inlineData: { mimeType: 'audio/wav', data: 'UklGRg==' } },
      { inlineData: { mimeType: 'application/pdf', data: 'JVBERi0=' } },
      { inlineData: { mimeType: 'application/pdf', data: 'JVBERi0=' } },
    ]);
    const fileId = errorOf(() =>
      openAiToGemini({ model: MODEL, messages: [user([{ type: 'file', file: { file_id: 'file-123' } }])] }),
    );
    expect(fileId).toMatchObject({
      status: 400,
      code: 'unsupported_file',
      param: 'messages[0].content[0].file',
    });
    const unknown = errorOf(() =>
      openAiToGemini({ model: MODEL, messages: [user([{ type: 'video', video: {} }])] }),
    );
    expect(unknown).toMatchObject({ status: 400, param: 'messages[0].content[0].type' });
  });

  it('the ;base64 marker of a data: URL is case-insensitive', () => {
    expect(parseDataUrl('data:image/png;BASE64,iVBORw0K')).toEqual({
      mimeType: 'image/png',
      data: 'iVBORw0K',
    });
  });
});
