import { z } from 'zod';
import { InvalidInput } from '../../errors/gateway-errors.ts';
import { MAX_EXTRA_PROMPT_CHARS } from './prompt.ts';

/** Ids may come as strings or integers (Django primary keys); they are handled as strings. */
const id = z
  .union([z.string(), z.number().int().nonnegative()])
  .transform((v) => String(v).trim())
  .pipe(z.string().min(1).max(128));

const imageUrl = z
  .string()
  .max(2048)
  .pipe(z.url({ protocol: /^https?$/, error: 'must be an http or https URL' }));

export const createImageBodySchema = z.object({
  user_id: id,
  api_key: z.string().min(1).max(512),
  catalog_id: id,
  user_image_url: imageUrl,
  catalog_image_url: imageUrl,
  prompt: z.string().max(MAX_EXTRA_PROMPT_CHARS).optional(),
});

export type CreateImageBody = z.infer<typeof createImageBodySchema>;

/** Parses the body or throws an InvalidInput whose detail names the fields (never their values). */
export function parseCreateImageBody(body: unknown): CreateImageBody {
  const result = createImageBodySchema.safeParse(body);
  if (result.success) return result.data;
  const errors = result.error.issues.map((i) => ({ field: i.path.join('.') || 'body', message: i.message }));
  throw new InvalidInput(errors.map((e) => `${e.field}: ${e.message}`).join('; '), { errors });
}

/** The user_id a body claims, before it is validated or verified (for the log line), else null. */
export function claimedUserId(body: unknown): string | null {
  if (!body || typeof body !== 'object') return null;
  const raw = (body as Record<string, unknown>).user_id;
  const s =
    typeof raw === 'number' && Number.isInteger(raw)
      ? String(raw)
      : typeof raw === 'string'
        ? raw.trim()
        : '';
  return s.length >= 1 && s.length <= 128 ? s : null;
}
