import type { FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { InvalidInput, UpstreamFailed } from '../../errors/gateway-errors.ts';
import type { CallContext, GeminiCaller } from '../../upstream/gemini-caller.ts';
import {
  type GenerateContentRequest,
  type GenerateContentResponse,
  responseText,
  type UsageMetadata,
} from '../../upstream/gemini-types.ts';

/** Token usage as the application endpoints report it. */
export interface TokenUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export const usageJsonSchema = {
  type: 'object',
  properties: {
    prompt_tokens: { type: 'integer' },
    completion_tokens: { type: 'integer' },
    total_tokens: { type: 'integer' },
  },
  required: ['prompt_tokens', 'completion_tokens', 'total_tokens'],
} as const;

export function toUsage(meta: UsageMetadata | undefined): TokenUsage {
  const prompt = meta?.promptTokenCount ?? 0;
  const completion = (meta?.candidatesTokenCount ?? 0) + (meta?.thoughtsTokenCount ?? 0);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: meta?.totalTokenCount ?? prompt + completion,
  };
}

export function addUsage(a: TokenUsage, b: TokenUsage): TokenUsage {
  return {
    prompt_tokens: a.prompt_tokens + b.prompt_tokens,
    completion_tokens: a.completion_tokens + b.completion_tokens,
    total_tokens: a.total_tokens + b.total_tokens,
  };
}

const MODEL_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** A model name as a client may give it (`models/` prefix allowed); InvalidInput for anything else. */
export function resolveModel(requested: string | undefined, fallback: string): string {
  if (requested === undefined || requested.trim() === '') return fallback;
  const name = requested.trim().replace(/^models\//, '');
  if (!MODEL_RE.test(name))
    throw new InvalidInput('model must be a Gemini model name such as gemini-2.5-flash-lite');
  return name;
}

/** Call context for the key pool; aborts the upstream call when the client goes away. */
export function callContext(request: FastifyRequest, _reply?: FastifyReply): CallContext {
  // request.abortSignal fires at REQUEST_TIMEOUT and when the client goes away (src/http/app.ts).
  return { requestId: String(request.id), clientName: request.clientName, signal: request.abortSignal };
}

/** Reasons after which a candidate's (possibly empty) text is not an answer. */
const BLOCKED = new Set([
  'SAFETY',
  'RECITATION',
  'BLOCKLIST',
  'PROHIBITED_CONTENT',
  'SPII',
  'OTHER',
  'LANGUAGE',
]);

/** The answer's text, or UpstreamFailed when the model produced no usable answer (blocked, no candidate). */
export function answerText(res: GenerateContentResponse, allowEmpty = false): string {
  const candidate = res.candidates?.[0];
  const reason = candidate?.finishReason;
  if (!candidate || (reason && BLOCKED.has(reason))) {
    const blockReason = (res as { promptFeedback?: { blockReason?: string } }).promptFeedback?.blockReason;
    throw new UpstreamFailed(`the model returned no answer (${reason ?? blockReason ?? 'no candidate'})`);
  }
  const text = responseText(res);
  if (!allowEmpty && text.trim() === '') throw new UpstreamFailed('the model returned an empty answer');
  return text;
}

export interface TextResult {
  text: string;
  usage: TokenUsage;
  modelVersion?: string;
}

export async function generateText(
  gemini: GeminiCaller,
  model: string,
  request: GenerateContentRequest,
  ctx: CallContext,
  opts: { allowEmpty?: boolean } = {},
): Promise<TextResult> {
  const res = await gemini.generateContent(model, request, ctx);
  return {
    text: answerText(res, opts.allowEmpty),
    usage: toUsage(res.usageMetadata),
    modelVersion: res.modelVersion,
  };
}

/** Parses a JSON answer, tolerating a Markdown code fence around it. */
export function parseJsonAnswer(text: string): unknown {
  const trimmed = text.trim();
  const fenced = /^```(?:json)?\s*\n?([\s\S]*?)\n?```$/i.exec(trimmed);
  return JSON.parse(fenced ? fenced[1]! : trimmed);
}

export interface StructuredResult<T> {
  data: T;
  usage: TokenUsage;
  /** 1, or 2 when the first answer did not match the schema. */
  attempts: number;
}

/**
 * Structured output: asks for JSON under `responseSchema` (set by the caller in
 * generationConfig) and validates the answer with zod. An invalid answer is retried once;
 * a second invalid answer is an UpstreamFailed (the model, not the client, failed).
 */
export async function generateStructured<T>(
  gemini: GeminiCaller,
  model: string,
  request: GenerateContentRequest,
  schema: z.ZodType<T>,
  ctx: CallContext,
  log?: { warn(obj: object, msg: string): void },
): Promise<StructuredResult<T>> {
  const req: GenerateContentRequest = {
    ...request,
    generationConfig: { ...request.generationConfig, responseMimeType: 'application/json' },
  };
  let usage: TokenUsage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
  let lastIssue = '';
  for (let attempt = 1; attempt <= 2; attempt++) {
    const res = await gemini.generateContent(model, req, ctx);
    usage = addUsage(usage, toUsage(res.usageMetadata));
    const text = answerText(res);
    let parsed: unknown;
    try {
      parsed = parseJsonAnswer(text);
    } catch {
      lastIssue = 'the answer is not JSON';
      log?.warn({ attempt, model }, `structured output invalid: ${lastIssue}`);
      continue;
    }
    const checked = schema.safeParse(parsed);
    if (checked.success) return { data: checked.data, usage, attempts: attempt };
    lastIssue = checked.error.issues
      .slice(0, 3)
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ');
    log?.warn({ attempt, model, issues: lastIssue }, 'structured output does not match its schema');
  }
  throw new UpstreamFailed(
    `the model's structured answer did not match the expected schema twice (${lastIssue})`,
  );
}
