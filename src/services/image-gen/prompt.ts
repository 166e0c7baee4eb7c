/**
 * The try-on prompt. The seed prompt is always sent, because it is what tells the model which
 * reference image is the person and which the garment; a request's `prompt` extends it (it is
 * appended as additional instructions), it never replaces it.
 */
export const TRY_ON_PROMPT =
  "take the person from the first reference image and the garment and the setting from the second image, virtual try on should match the model's body. catalogue shoot. 4k. photorealistic. new shot and visual. three quarter angle shot";

export const MAX_EXTRA_PROMPT_CHARS = 2000;

export function buildPrompt(extra?: string): string {
  const more = extra?.trim();
  return more ? `${TRY_ON_PROMPT}\n\nAdditional instructions: ${more}` : TRY_ON_PROMPT;
}
