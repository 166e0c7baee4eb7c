import { z } from 'zod';
import type { Env } from '../../config/env.ts';
import { InvalidInput, PayloadTooLarge } from '../../errors/gateway-errors.ts';
import type { CallContext, GeminiCaller } from '../../upstream/gemini-caller.ts';
import type { GenerateContentRequest } from '../../upstream/gemini-types.ts';
import { generateStructured, generateText, resolveModel, type TokenUsage } from '../generate/gemini.ts';
import { parseInput } from '../generate/input.ts';
import { refuseInjection } from './injection.ts';
import {
  isOperationId,
  keyPointsAnswer,
  OPERATION_IDS,
  type OperationId,
  optionsSchema,
  questionsAnswer,
  type SentimentAnswer,
  sentimentAnswer,
} from './operations.ts';
import { buildTextRequest } from './prompt.ts';

export const QUESTION_MAX_LENGTH = 2000;

/** One request of /v1/text_processing/process (and one item of batch_process). */
export const processInput = z.object({
  text: z.string({ error: 'text is required and must be a string' }),
  operation: z.string({ error: 'operation is required and must be a string' }),
  options: z.record(z.string(), z.unknown()).optional(),
  question: z.string().optional(),
  model: z.string().optional(),
});

export interface PreparedProcess {
  operation: OperationId;
  options: Record<string, number>;
  model: string;
  request: GenerateContentRequest;
  /** The normalized request the cache key is built from (defaults applied). */
  cacheKeyInput: Record<string, unknown>;
}

/** What is cached; the routes add cached, request_id and timing. */
export interface ProcessResult {
  operation: OperationId;
  model: string;
  usage: TokenUsage;
  result?: string;
  sentiment?: SentimentAnswer;
  key_points?: string[];
  questions?: string[];
}

/**
 * Validates one request and builds its Gemini request. Throws InvalidInput (malformed, unknown
 * operation, bad options, qa without question), PayloadTooLarge (text too long) or
 * PromptInjectionRefused.
 */
export function prepareProcess(raw: unknown, env: Env): PreparedProcess {
  const input = parseInput(processInput, raw);
  if (!isOperationId(input.operation))
    throw new InvalidInput(
      `unknown operation "${input.operation.slice(0, 40)}"; expected one of ${OPERATION_IDS.join(', ')}`,
    );
  const operation = input.operation;
  const options = parseInput(
    optionsSchema(operation),
    input.options ?? {},
    'options',
    ` (operation ${operation})`,
  );
  const text = input.text.replace(/\r\n?/g, '\n');
  if (text.trim() === '') throw new InvalidInput('text must not be empty');
  if (text.length > env.TEXT_MAX_LENGTH)
    throw new PayloadTooLarge(`text is ${text.length} characters; the limit is ${env.TEXT_MAX_LENGTH}`);
  let question: string | undefined;
  if (operation === 'qa') {
    question = input.question?.replace(/\r\n?/g, '\n').trim();
    if (!question) throw new InvalidInput('operation qa requires a non-empty question');
    if (question.length > QUESTION_MAX_LENGTH)
      throw new PayloadTooLarge(
        `question is ${question.length} characters; the limit is ${QUESTION_MAX_LENGTH}`,
      );
  }
  refuseInjection('text', text);
  if (question !== undefined) refuseInjection('question', question);
  const model = resolveModel(input.model, env.GEMINI_MODEL);
  return {
    operation,
    options,
    model,
    request: buildTextRequest(operation, options, text, question),
    cacheKeyInput: { operation, options, text, question },
  };
}

type Log = { warn(obj: object, msg: string): void };

export async function runProcess(
  gemini: GeminiCaller,
  p: PreparedProcess,
  ctx: CallContext,
  log?: Log,
): Promise<ProcessResult> {
  const base = { operation: p.operation, model: p.model };
  switch (p.operation) {
    case 'summarize':
    case 'qa': {
      const { text, usage } = await generateText(gemini, p.model, p.request, ctx);
      return { ...base, usage, result: text.trim() };
    }
    case 'sentiment': {
      const { data, usage } = await generateStructured(gemini, p.model, p.request, sentimentAnswer, ctx, log);
      return { ...base, usage, sentiment: data };
    }
    case 'key_points': {
      const { data, usage } = await generateStructured(gemini, p.model, p.request, keyPointsAnswer, ctx, log);
      return { ...base, usage, key_points: data.key_points.slice(0, p.options.max_points) };
    }
    case 'questions': {
      const { data, usage } = await generateStructured(gemini, p.model, p.request, questionsAnswer, ctx, log);
      return { ...base, usage, questions: data.questions.slice(0, p.options.num_questions) };
    }
  }
}

/** Runs fn over items with at most `limit` in flight; results keep the items' order. */
export async function mapWithConcurrency<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}
