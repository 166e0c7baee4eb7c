import type { z } from 'zod';
import { HttpProblem } from '../../http/problem.ts';

/** Parses raw input with a zod schema; the first issue becomes a 422 naming its field (under `prefix`). */
export function parseInput<T>(schema: z.ZodType<T>, raw: unknown, prefix = '', context = ''): T {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = [prefix, ...(issue?.path ?? []).map(String)].filter(Boolean).join('.') || 'body';
  throw new HttpProblem(422, `${path}: ${issue?.message ?? 'invalid'}${context}`);
}
