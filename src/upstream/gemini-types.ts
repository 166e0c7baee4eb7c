/** The subset of Gemini's wire format the gateway and its services read or build. */

/** A model name as requests may give it (in a path or a body) and a keys file may list it. */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface InlineData {
  mimeType: string;
  data: string; // base64
}
export interface Part {
  text?: string;
  inlineData?: InlineData;
  fileData?: { mimeType: string; fileUri: string };
  thoughtSignature?: string;
  [other: string]: unknown;
}
export interface Content {
  role?: 'user' | 'model';
  parts: Part[];
}
export interface GenerationConfig {
  temperature?: number;
  maxOutputTokens?: number;
  responseMimeType?: string;
  responseSchema?: unknown;
  responseJsonSchema?: unknown;
  responseModalities?: string[];
  [other: string]: unknown;
}
export interface GenerateContentRequest {
  contents: Content[];
  systemInstruction?: { parts: Part[] };
  generationConfig?: GenerationConfig;
  [other: string]: unknown;
}
export interface UsageMetadata {
  promptTokenCount?: number;
  candidatesTokenCount?: number;
  totalTokenCount?: number;
  thoughtsTokenCount?: number;
}
export interface Candidate {
  content?: Content;
  finishReason?: string;
  index?: number;
}
export interface GenerateContentResponse {
  candidates?: Candidate[];
  usageMetadata?: UsageMetadata;
  modelVersion?: string;
  responseId?: string;
}

/** Concatenated text of the first candidate (thought parts excluded). */
export function responseText(res: GenerateContentResponse): string {
  const parts = res.candidates?.[0]?.content?.parts ?? [];
  let text = '';
  for (const p of parts) if (typeof p.text === 'string' && p.thought !== true) text += p.text;
  return text;
}
