import { OpenAiError } from '../../src/openai/errors.ts';

/** Shared by the unit tests of the OpenAI converters. */
export const MODEL = 'gemini-2.5-flash-lite';

export const user = (content: unknown) => ({ role: 'user', content });

/** The OpenAiError `fn` throws; fails the test when it throws nothing or something else. */
export function errorOf(fn: () => unknown): OpenAiError {
  try {
    fn();
  } catch (err) {
    if (err instanceof OpenAiError) return err;
    throw err;
  }
  throw new Error('expected an OpenAiError');
}
