import { describe, expect, it } from 'vitest';
import { geminiModelsToOpenAi } from '../../src/openai/models.ts';

describe('models', () => {
  it('native pages → OpenAI list, ids without models/', () => {
    expect(
      geminiModelsToOpenAi([
        { models: [{ name: 'models/gemini-2.5-flash', displayName: 'Gemini 2.5 Flash' }, { bogus: true }] },
        { models: [{ name: 'models/text-embedding-004' }] },
      ]),
    ).toEqual({
      object: 'list',
      data: [
        {
          id: 'gemini-2.5-flash',
          object: 'model',
          created: 0,
          owned_by: 'google',
          display_name: 'Gemini 2.5 Flash',
        },
        { id: 'text-embedding-004', object: 'model', created: 0, owned_by: 'google' },
      ],
    });
  });
});
