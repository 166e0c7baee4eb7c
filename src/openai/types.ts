/** The OpenAI chat answer shapes (whole and streamed), and the Gemini answer as read here. */
import type { GenerateContentResponse, UsageMetadata } from '../upstream/gemini-types.ts';

export type FinishReason = 'stop' | 'length' | 'content_filter' | 'tool_calls';

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
  /** Gemini's thought signature for this call, to be sent back with it (as Google's own endpoint does). */
  extra_content?: { google: { thought_signature: string } };
}

export interface ChatMessage {
  role: 'assistant';
  content: string | null;
  refusal: null;
  tool_calls?: ToolCall[];
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens: number };
  completion_tokens_details?: { reasoning_tokens: number };
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{ index: number; message: ChatMessage; logprobs: null; finish_reason: FinishReason }>;
  usage: Usage;
}

export type GeminiUsage = UsageMetadata & { cachedContentTokenCount?: number };
export type GeminiResponse = GenerateContentResponse & {
  promptFeedback?: { blockReason?: string };
  usageMetadata?: GeminiUsage;
};

export interface ResponseIds {
  /** Completion id; default `chatcmpl-<responseId>`. */
  id?: string;
  /** Unix seconds; default now. */
  created?: number;
}

export interface ChunkDelta {
  role?: 'assistant';
  content?: string;
  tool_calls?: Array<ToolCall & { index: number }>;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{ index: number; delta: ChunkDelta; logprobs: null; finish_reason: FinishReason | null }>;
  /** Present (null until the last chunk) when the client asked for stream_options.include_usage. */
  usage?: Usage | null;
}
