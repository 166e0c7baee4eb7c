import { z } from 'zod';
import type { Env } from '../../config/env.ts';
import { InvalidInput, PayloadTooLarge } from '../../errors/gateway-errors.ts';
import type { CallContext, GeminiCaller } from '../../upstream/gemini-caller.ts';
import type { GenerateContentRequest } from '../../upstream/gemini-types.ts';
import { generateText, resolveModel, type TokenUsage } from './gemini.ts';

/** POST /v1/generate body. */
export const generateInput = z.object({
  prompt: z.string().min(1, 'prompt must not be empty'),
  model: z.string().optional(),
  system: z.string().optional(),
  temperature: z.number().min(0).max(2).optional(),
  max_tokens: z.number().int().min(1).max(65_536).optional(),
});
export type GenerateInput = z.infer<typeof generateInput>;

/** What is cached (and answered, plus `cached`). */
export interface GenerateResult {
  text: string;
  model: string;
  usage: TokenUsage;
}

/** The input with defaults applied and everything a cache key needs, checked against limits. */
export interface PreparedGenerate {
  model: string;
  request: GenerateContentRequest;
  /** The normalized request the cache key is built from. */
  cacheKeyInput: Record<string, unknown>;
}

export function prepareGenerate(input: GenerateInput, env: Env): PreparedGenerate {
  const model = resolveModel(input.model, env.GEMINI_MODEL);
  const prompt = input.prompt.replace(/\r\n?/g, '\n');
  const system = input.system?.replace(/\r\n?/g, '\n') || undefined;
  if (prompt.trim() === '') throw new InvalidInput('prompt must not be empty');
  if (prompt.length > env.TEXT_MAX_LENGTH)
    throw new PayloadTooLarge(`prompt is ${prompt.length} characters; the limit is ${env.TEXT_MAX_LENGTH}`);
  if (system && system.length > env.TEXT_MAX_LENGTH)
    throw new PayloadTooLarge(`system is ${system.length} characters; the limit is ${env.TEXT_MAX_LENGTH}`);
  const generationConfig: Record<string, unknown> = {};
  if (input.temperature !== undefined) generationConfig.temperature = input.temperature;
  if (input.max_tokens !== undefined) generationConfig.maxOutputTokens = input.max_tokens;
  const request: GenerateContentRequest = { contents: [{ role: 'user', parts: [{ text: prompt }] }] };
  if (system) request.systemInstruction = { parts: [{ text: system }] };
  if (Object.keys(generationConfig).length > 0) request.generationConfig = generationConfig;
  return {
    model,
    request,
    cacheKeyInput: { prompt, system, temperature: input.temperature, max_tokens: input.max_tokens },
  };
}

export async function runGenerate(
  gemini: GeminiCaller,
  prepared: PreparedGenerate,
  ctx: CallContext,
): Promise<GenerateResult> {
  const { text, usage } = await generateText(gemini, prepared.model, prepared.request, ctx);
  return { text, model: prepared.model, usage };
}
