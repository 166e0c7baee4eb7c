import type { z } from 'zod';
import { InvalidInput } from '../../errors/gateway-errors.ts';

/** Parses raw input with a zod schema; the first issue becomes an InvalidInput naming its field (under `prefix`). */
export function parseInput<T>(schema: z.ZodType<T>, raw: unknown, prefix = '', context = ''): T {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = [prefix, ...(issue?.path ?? []).map(String)].filter(Boolean).join('.') || 'body';
  throw new InvalidInput(`${path}: ${issue?.message ?? 'invalid'}${context}`);
}
