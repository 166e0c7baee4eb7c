import type { TokenUsage } from './read.ts';

/**
 * What is counted per (client, model, day or hour). The `long_*` fields repeat, for the requests
 * whose prompt exceeded the price table's long-context threshold, what they added to the plain
 * fields: cost is computed when it is read, from these sums and the price table, so a corrected
 * table applies to past usage too and the counts stay exact integers.
 */
export const FIELDS = [
  'requests',
  'prompt_tokens',
  'output_tokens',
  'cached_tokens',
  'thought_tokens',
  'errors',
  'long_prompt_tokens',
  'long_output_tokens',
  'long_cached_tokens',
  'long_thought_tokens',
  'image_output_tokens',
] as const;
export type Field = (typeof FIELDS)[number];
export type Counts = Record<Field, number>;

/** The fields a usage row shows (the others serve the cost). */
export const SHOWN_FIELDS = [
  'requests',
  'prompt_tokens',
  'output_tokens',
  'cached_tokens',
  'thought_tokens',
  'errors',
] as const satisfies readonly Field[];

export function zeroCounts(): Counts {
  return {
    requests: 0,
    prompt_tokens: 0,
    output_tokens: 0,
    cached_tokens: 0,
    thought_tokens: 0,
    errors: 0,
    long_prompt_tokens: 0,
    long_output_tokens: 0,
    long_cached_tokens: 0,
    long_thought_tokens: 0,
    image_output_tokens: 0,
  };
}

/** Adds one request's usage (may be undefined: an answer without usage) to `c`. */
export function addUsage(c: Counts, u: TokenUsage | undefined, error: boolean, longThreshold: number): void {
  c.requests += 1;
  if (error) c.errors += 1;
  if (u === undefined) return;
  c.prompt_tokens += u.prompt;
  c.output_tokens += u.output;
  c.cached_tokens += u.cached;
  c.thought_tokens += u.thought;
  c.image_output_tokens += u.imageOutput;
  if (u.prompt > longThreshold) {
    c.long_prompt_tokens += u.prompt;
    c.long_output_tokens += u.output;
    c.long_cached_tokens += u.cached;
    c.long_thought_tokens += u.thought;
  }
}

export function addCounts(into: Counts, c: Counts): void {
  for (const f of FIELDS) into[f] += c[f];
}

/** Tokens a client spent (the `tokens_per_day` of client limits): prompt, output and thinking. */
export function billedTokens(c: Counts): number {
  return c.prompt_tokens + c.output_tokens + c.thought_tokens;
}

export function usageTokens(u: TokenUsage | undefined): number {
  return u === undefined ? 0 : u.prompt + u.output + u.thought;
}
