import { describe, expect, it } from 'vitest';
import { openAiToGemini } from '../../src/openai/chat-request.ts';
import { errorOf, MODEL, user } from '../helpers/openai.ts';

describe('openAiToGemini: messages', () => {
  it('maps roles: system/developer → systemInstruction, user → user, assistant → model', () => {
    const call = openAiToGemini({
      model: MODEL,
      messages: [
        { role: 'system', content: 'Rule one.' },
        { role: 'developer', content: [{ type: 'text', text: 'Rule two.' }] },
        user('Hi'),
        { role: 'assistant', content: 'Hello!' },
        user('Bye'),
      ],
    });
    expect(call).toMatchObject({ model: MODEL, stream: false, includeUsage: false });
    expect(call.request).toEqual({
      contents: [
        { role: 'user', parts: [{ text: 'Hi' }] },
        { role: 'model', parts: [{ text: 'Hello!' }] },
        { role: 'user', parts: [{ text: 'Bye' }] },
      ],
      systemInstruction: { parts: [{ text: 'Rule one.' }, { text: 'Rule two.' }] },
    });
  });

  it('refuses bodies without a conversation', () => {
    expect(errorOf(() => openAiToGemini('nope')).status).toBe(400);
    expect(errorOf(() => openAiToGemini({ model: MODEL })).param).toBe('messages');
    expect(errorOf(() => openAiToGemini({ model: MODEL, messages: [] })).param).toBe('messages');
    const onlySystem = errorOf(() =>
      openAiToGemini({ model: MODEL, messages: [{ role: 'system', content: 's' }] }),
    );
    expect(onlySystem).toMatchObject({ status: 400, param: 'messages', code: 'missing_messages' });
    const role = errorOf(() =>
      openAiToGemini({ model: MODEL, messages: [{ role: 'wizard', content: 'x' }] }),
    );
    expect(role).toMatchObject({ param: 'messages[0].role' });
    expect(role.message).toContain('wizard');
    const sysImage = errorOf(() =>
      openAiToGemini({
        model: MODEL,
        messages: [
          {
            role: 'system',
            content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AA==' } }],
          },
          user('x'),
        ],
      }),
    );
    expect(sysImage.param).toBe('messages[0].content[0]');
  });

  it('a tool result that is a JSON scalar goes up as that value, not as its text', () => {
    const call = openAiToGemini({
      model: MODEL,
      messages: [
        user('count?'),
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'a', type: 'function', function: { name: 'count', arguments: '{}' } },
            { id: 'b', type: 'function', function: { name: 'check', arguments: '{}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'a', content: '42' },
        { role: 'tool', tool_call_id: 'b', content: 'true' },
      ],
    });
    expect(call.request.contents[2]).toEqual({
      role: 'user',
      parts: [
        { functionResponse: { name: 'count', response: { result: 42 } } },
        { functionResponse: { name: 'check', response: { result: true } } },
      ],
    });
  });
});
