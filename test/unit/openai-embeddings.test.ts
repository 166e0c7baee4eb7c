import { describe, expect, it } from 'vitest';
import {
  embeddingToBase64,
  geminiEmbeddingsToOpenAi,
  openAiEmbeddingsToGemini,
} from '../../src/openai/embeddings.ts';
import { errorOf } from '../helpers/openai.ts';

describe('embeddings', () => {
  it('input (string or list), dimensions → batchEmbedContents requests', () => {
    expect(openAiEmbeddingsToGemini({ model: 'models/text-embedding-004', input: 'hi' })).toEqual({
      model: 'text-embedding-004',
      request: { requests: [{ model: 'models/text-embedding-004', content: { parts: [{ text: 'hi' }] } }] },
      encoding: 'float',
      inputs: ['hi'],
    });
    const many = openAiEmbeddingsToGemini({
      model: 'gemini-embedding-001',
      input: ['a', 'b'],
      dimensions: 256,
      encoding_format: 'base64',
    });
    expect(many.encoding).toBe('base64');
    expect(many.request.requests.map((r) => [r.content.parts[0]!.text, r.outputDimensionality])).toEqual([
      ['a', 256],
      ['b', 256],
    ]);
  });

  it('refuses token arrays, empty lists and unknown encodings', () => {
    expect(errorOf(() => openAiEmbeddingsToGemini({ model: 'm', input: [1, 2, 3] }))).toMatchObject({
      status: 400,
      param: 'input[0]',
      code: 'unsupported_input',
    });
    expect(errorOf(() => openAiEmbeddingsToGemini({ model: 'm', input: [] })).param).toBe('input');
    expect(
      errorOf(() => openAiEmbeddingsToGemini({ model: 'm', input: 'x', encoding_format: 'hex' })).param,
    ).toBe('encoding_format');
  });

  it('answer → OpenAI list, as floats or base64 float32', () => {
    const res = { embeddings: [{ values: [0.5, -0.25] }, { values: [1, 0] }] };
    expect(geminiEmbeddingsToOpenAi(res, 'm', 'float', 7, 2)).toEqual({
      object: 'list',
      data: [
        { object: 'embedding', index: 0, embedding: [0.5, -0.25] },
        { object: 'embedding', index: 1, embedding: [1, 0] },
      ],
      model: 'm',
      usage: { prompt_tokens: 7, total_tokens: 7 },
    });
    const b64 = geminiEmbeddingsToOpenAi(res, 'm', 'base64', 7).data[0]!.embedding as string;
    expect(b64).toBe(embeddingToBase64([0.5, -0.25]));
    const buf = Buffer.from(b64, 'base64');
    expect([buf.readFloatLE(0), buf.readFloatLE(4)]).toEqual([0.5, -0.25]);
    expect(errorOf(() => geminiEmbeddingsToOpenAi(res, 'm', 'float', 1, 3)).status).toBe(502);
    expect(errorOf(() => geminiEmbeddingsToOpenAi({}, 'm', 'float', 1)).status).toBe(502);
  });
});
