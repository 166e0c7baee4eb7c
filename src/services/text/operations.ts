import { z } from 'zod';

/** One numeric option of an operation, as listed by GET /v1/text_processing/operations. */
export interface OptionSpec {
  name: string;
  type: 'integer';
  description: string;
  default: number;
  minimum: number;
  maximum: number;
}

export interface OperationSpec {
  id: OperationId;
  name: string;
  description: string;
  /** text: a plain answer in `result`; structured: JSON under a responseSchema, validated. */
  output: 'text' | 'structured';
  requiresQuestion: boolean;
  options: OptionSpec[];
}

export const OPERATION_IDS = ['summarize', 'sentiment', 'key_points', 'questions', 'qa'] as const;
export type OperationId = (typeof OPERATION_IDS)[number];

export const OPERATIONS: Record<OperationId, OperationSpec> = {
  summarize: {
    id: 'summarize',
    name: 'Summarize',
    description: 'A concise summary of the text.',
    output: 'text',
    requiresQuestion: false,
    options: [
      {
        name: 'max_length',
        type: 'integer',
        description: 'Maximum length of the summary, in words.',
        default: 150,
        minimum: 10,
        maximum: 1000,
      },
    ],
  },
  sentiment: {
    id: 'sentiment',
    name: 'Sentiment analysis',
    description:
      'Overall sentiment (positive, negative, neutral, mixed) with a confidence in 0..1 and an explanation.',
    output: 'structured',
    requiresQuestion: false,
    options: [],
  },
  key_points: {
    id: 'key_points',
    name: 'Key points',
    description: 'The most important points of the text, as a list.',
    output: 'structured',
    requiresQuestion: false,
    options: [
      {
        name: 'max_points',
        type: 'integer',
        description: 'Maximum number of key points.',
        default: 5,
        minimum: 1,
        maximum: 20,
      },
    ],
  },
  questions: {
    id: 'questions',
    name: 'Question generation',
    description: 'Questions that the text raises or answers, e.g. for study or comprehension checks.',
    output: 'structured',
    requiresQuestion: false,
    options: [
      {
        name: 'num_questions',
        type: 'integer',
        description: 'Number of questions to generate.',
        default: 5,
        minimum: 1,
        maximum: 20,
      },
    ],
  },
  qa: {
    id: 'qa',
    name: 'Question answering',
    description: 'Answers `question` from the text only; requires `question`.',
    output: 'text',
    requiresQuestion: true,
    options: [],
  },
};

export function isOperationId(s: unknown): s is OperationId {
  return typeof s === 'string' && (OPERATION_IDS as readonly string[]).includes(s);
}

/** zod schema of an operation's options (strict: unknown options are refused), defaults applied. */
export function optionsSchema(op: OperationId): z.ZodType<Record<string, number>> {
  const shape: Record<string, z.ZodType<number>> = {};
  for (const o of OPERATIONS[op].options)
    shape[o.name] = z.number().int().min(o.minimum).max(o.maximum).default(o.default);
  return z.strictObject(shape) as unknown as z.ZodType<Record<string, number>>;
}

/** Structured answers, validated with zod (the responseSchema below tells the model the same shape). */
export const sentimentAnswer = z.object({
  sentiment: z.enum(['positive', 'negative', 'neutral', 'mixed']),
  confidence: z.number().min(0).max(1),
  explanation: z.string().min(1),
});
export type SentimentAnswer = z.infer<typeof sentimentAnswer>;

export const keyPointsAnswer = z.object({ key_points: z.array(z.string().min(1)).min(1) });
export const questionsAnswer = z.object({ questions: z.array(z.string().min(1)).min(1) });

/** Gemini responseSchema (OpenAPI subset) for each structured operation. */
export const RESPONSE_SCHEMAS = {
  sentiment: {
    type: 'OBJECT',
    properties: {
      sentiment: { type: 'STRING', enum: ['positive', 'negative', 'neutral', 'mixed'] },
      confidence: { type: 'NUMBER', minimum: 0, maximum: 1 },
      explanation: { type: 'STRING' },
    },
    required: ['sentiment', 'confidence', 'explanation'],
    propertyOrdering: ['sentiment', 'confidence', 'explanation'],
  },
  key_points: (max: number) => ({
    type: 'OBJECT',
    properties: { key_points: { type: 'ARRAY', items: { type: 'STRING' }, minItems: 1, maxItems: max } },
    required: ['key_points'],
  }),
  questions: (n: number) => ({
    type: 'OBJECT',
    properties: { questions: { type: 'ARRAY', items: { type: 'STRING' }, minItems: 1, maxItems: n } },
    required: ['questions'],
  }),
};
