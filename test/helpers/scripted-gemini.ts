import type { GeminiCaller } from '../../src/upstream/gemini-caller.ts';
import type { GenerateContentRequest, GenerateContentResponse } from '../../src/upstream/gemini-types.ts';

/** A finished Gemini answer with one text part, as the services receive it. */
export function answer(text: string, finishReason = 'STOP'): GenerateContentResponse {
  return {
    candidates: [{ content: { role: 'model', parts: [{ text }] }, finishReason }],
    usageMetadata: { promptTokenCount: 10, candidatesTokenCount: 5, totalTokenCount: 15 },
  };
}

/**
 * A GeminiCaller for unit tests of the services: answers from a list, in order, and records
 * what it was sent.
 */
export function scripted(...answers: GenerateContentResponse[]) {
  const calls: Array<{ model: string; request: GenerateContentRequest }> = [];
  const gemini: GeminiCaller = {
    async generateContent(model, request) {
      calls.push({ model, request });
      const next = answers.shift();
      if (!next) throw new Error('no more scripted answers');
      return next;
    },
  };
  return { gemini, calls };
}
