/**
 * GenerateContentResponse as Google writes it: candidates, usageMetadata, modelVersion and
 * responseId, whole or as the chunks of a stream.
 */
import { randomBytes } from 'node:crypto';
import { type Answer, IMAGE_OUTPUT_TOKENS, type TokenCount } from './fake-gemini-content.ts';

const ID_PREFIX = randomBytes(9).toString('base64url');
let idCounter = 0;

/** A fresh responseId (unique per process: a random prefix and a counter). */
export function responseId(): string {
  idCounter = (idCounter + 1) % 0x7fffffff;
  return ID_PREFIX + idCounter.toString(36);
}

export interface Chunk {
  parts: unknown[];
  candidatesTokens: number;
  last: boolean;
}

/** Splits an answer into stream chunks (text pieces, then the image if any); tokens are cumulative. */
export function answerChunks(answer: Answer): Chunk[] {
  const chunks: Chunk[] = [];
  let chars = 0;
  for (const t of answer.textPieces) {
    chars += t.length;
    chunks.push({ parts: [{ text: t }], candidatesTokens: Math.ceil(chars / 4), last: false });
  }
  if (answer.image !== null) {
    chunks.push({
      parts: [{ inlineData: { mimeType: 'image/png', data: answer.image } }],
      candidatesTokens: IMAGE_OUTPUT_TOKENS,
      last: false,
    });
  }
  if (answer.calls !== undefined) {
    const tokens = Math.ceil(chars / 4) + answer.calls.tokens;
    chunks.push({ parts: answer.calls.parts, candidatesTokens: tokens, last: false });
  }
  if (chunks.length === 0) chunks.push({ parts: [{ text: '' }], candidatesTokens: 0, last: false });
  chunks[chunks.length - 1]!.last = true;
  return chunks;
}

/** One response (or stream chunk): finishReason STOP only on the `last`. */
export function responseJson(
  parts: unknown[],
  last: boolean,
  prompt: TokenCount,
  candidatesTokens: number,
  model: string,
  id: string,
): string {
  const promptTokensDetails: unknown[] = [{ modality: 'TEXT', tokenCount: prompt.text }];
  if (prompt.images > 0) promptTokensDetails.push({ modality: 'IMAGE', tokenCount: prompt.images });
  const candidate: Record<string, unknown> = { content: { parts, role: 'model' } };
  if (last) candidate.finishReason = 'STOP';
  candidate.index = 0;
  const thoughts = prompt.thoughts ?? 0;
  return JSON.stringify({
    candidates: [candidate],
    usageMetadata: {
      promptTokenCount: prompt.total,
      candidatesTokenCount: candidatesTokens,
      totalTokenCount: prompt.total + candidatesTokens + thoughts,
      promptTokensDetails,
      ...(thoughts > 0 ? { thoughtsTokenCount: thoughts } : {}),
    },
    modelVersion: model,
    responseId: id,
  });
}
