/**
 * The shapes OpenAI request bodies must have (zod), and the parsing that turns a failed check
 * into an OpenAiError naming the parameter in OpenAI's notation.
 */
import { z } from 'zod';
import { MODEL_NAME } from '../upstream/gemini-types.ts';
import { invalidParam, OpenAiError } from './errors.ts';
import { isObj } from './json.ts';

const nullish = <T extends z.ZodType>(t: T) => t.nullish();

export const chatRequestSchema = z.object({
  model: z.string().min(1),
  messages: z.array(z.looseObject({ role: z.string() })).min(1),
  stream: nullish(z.boolean()),
  stream_options: nullish(z.looseObject({ include_usage: nullish(z.boolean()) })),
  temperature: nullish(z.number().min(0).max(2)),
  top_p: nullish(z.number().min(0).max(1)),
  max_tokens: nullish(z.number().int().min(1)),
  max_completion_tokens: nullish(z.number().int().min(1)),
  n: nullish(z.number().int().min(1).max(8)),
  stop: nullish(z.union([z.string(), z.array(z.string())])),
  seed: nullish(z.number().int()),
  presence_penalty: nullish(z.number().min(-2).max(2)),
  frequency_penalty: nullish(z.number().min(-2).max(2)),
  reasoning_effort: nullish(z.enum(['none', 'minimal', 'low', 'medium', 'high'])),
  response_format: nullish(
    z.discriminatedUnion('type', [
      z.looseObject({ type: z.literal('text') }),
      z.looseObject({ type: z.literal('json_object') }),
      z.looseObject({
        type: z.literal('json_schema'),
        json_schema: z.looseObject({
          name: z.string().optional(),
          description: z.string().optional(),
          schema: z.record(z.string(), z.unknown()).optional(),
          strict: nullish(z.boolean()),
        }),
      }),
    ]),
  ),
  tools: nullish(
    z.array(
      z.looseObject({
        type: z.string(),
        function: z
          .looseObject({
            name: z.string().min(1),
            description: z.string().optional(),
            parameters: z.record(z.string(), z.unknown()).optional(),
            strict: nullish(z.boolean()),
          })
          .optional(),
      }),
    ),
  ),
  tool_choice: nullish(z.unknown()),
});

export type ChatCompletionRequest = z.infer<typeof chatRequestSchema>;

export const embeddingsRequestSchema = z.object({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(z.unknown()).min(1)]),
  encoding_format: nullish(z.enum(['float', 'base64'])),
  dimensions: nullish(z.number().int().min(1)),
});

/** `messages.0.content` → `messages[0].content` (OpenAI's `param` notation). */
function paramPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

/** The body checked against `schema`; a 400 naming the first parameter at fault otherwise. */
export function parseRequest<T>(schema: z.ZodType<T>, raw: unknown): T {
  if (!isObj(raw)) throw new OpenAiError(400, 'request body must be a JSON object');
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const param = paramPath(issue?.path ?? []) || null;
  const message = issue?.message ?? 'invalid value';
  throw new OpenAiError(400, param ? `${param}: ${message}` : message, { param });
}

/** The model id the client sent, without a leading `models/`; 400 when it cannot be a model name. */
export function normalizeModel(raw: string, param = 'model'): string {
  const model = raw.trim().replace(/^models\//, '');
  if (!MODEL_NAME.test(model)) throw invalidParam(param, `"${raw.slice(0, 140)}" is not a valid model name`);
  return model;
}
