/**
 * OpenAI Chat Completions / Embeddings / Models ⇄ Gemini native wire format. Pure functions:
 * no I/O, no clock or randomness unless no id/time is given. Errors are OpenAiError (status,
 * OpenAI error type, code and the offending request parameter).
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import {
  type Content,
  type GenerateContentRequest,
  type GenerateContentResponse,
  MODEL_NAME,
  type Part,
  type UsageMetadata,
} from '../upstream/gemini-types.ts';

// ---------------------------------------------------------------------------------------------
// Errors

/** An error of the OpenAI surface, rendered as `{"error":{"message","type","code","param"}}`. */
export class OpenAiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string | null;
  readonly param: string | null;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    opts: {
      type?: string;
      code?: string | null;
      param?: string | null;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.status = status;
    this.type = opts.type ?? errorTypeFor(status);
    this.code = opts.code ?? null;
    this.param = opts.param ?? null;
    this.headers = opts.headers ?? {};
  }

  body(): OpenAiErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}

export interface OpenAiErrorBody {
  error: { message: string; type: string; code: string | null; param: string | null };
}

/** OpenAI's error `type` for an HTTP status (a wrong API key is OpenAI's invalid_request_error, code invalid_api_key). */
export function errorTypeFor(status: number): string {
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** A machine-readable code: OpenAI's own where one fits, else Google's RPC status in lower case. */
export function errorCodeFor(
  status: number,
  googleStatus: string | undefined,
  message: string,
): string | null {
  if (status === 401) return 'invalid_api_key';
  if (status === 429) return 'rate_limit_exceeded';
  if (status === 404 && /\bmodels?\b/i.test(message)) return 'model_not_found';
  if (status === 400 && /(input token count|maximum number of tokens|context length)/i.test(message))
    return 'context_length_exceeded';
  if (status === 504) return 'timeout';
  return googleStatus ? googleStatus.toLowerCase() : null;
}

/**
 * Google's error answer (`{"error":{code,message,status}}`, or the array form of Google's own
 * OpenAI endpoint) as an OpenAI error with the same HTTP status.
 */
export function googleErrorToOpenAi(status: number, body: unknown): OpenAiError {
  const parsed = typeof body === 'string' || body instanceof Uint8Array ? safeJson(body) : body;
  const root = Array.isArray(parsed) ? parsed[0] : parsed;
  const err = isObj(root) && isObj(root.error) ? root.error : undefined;
  const message =
    typeof err?.message === 'string' && err.message !== '' ? err.message : `upstream answered HTTP ${status}`;
  const googleStatus = typeof err?.status === 'string' ? err.status : undefined;
  const httpStatus = status >= 400 && status <= 599 ? status : 502;
  return new OpenAiError(httpStatus, message, { code: errorCodeFor(httpStatus, googleStatus, message) });
}

function invalid(param: string, message: string, code: string | null = null): OpenAiError {
  return new OpenAiError(400, `${param}: ${message}`, { param, code });
}

// ---------------------------------------------------------------------------------------------
// Helpers

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function safeJson(v: string | Uint8Array): unknown {
  try {
    return JSON.parse(typeof v === 'string' ? v : Buffer.from(v).toString('utf8'));
  } catch {
    return undefined;
  }
}

/** `messages.0.content` → `messages[0].content` (OpenAI's `param` notation). */
function paramPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

function parseWith<T>(schema: z.ZodType<T>, raw: unknown): T {
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
  if (!MODEL_NAME.test(model)) throw invalid(param, `"${raw.slice(0, 140)}" is not a valid model name`);
  return model;
}

// ---------------------------------------------------------------------------------------------
// Chat completions: request

const nullish = <T extends z.ZodType>(t: T) => t.nullish();

const chatRequestSchema = z.object({
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

export interface GeminiChatCall {
  /** Model id for the upstream path (no `models/`). */
  model: string;
  /** The generateContent / streamGenerateContent body. */
  request: GenerateContentRequest;
  stream: boolean;
  /** stream_options.include_usage: a usage chunk ends the stream. */
  includeUsage: boolean;
}

/** Thinking budgets Google's own OpenAI endpoint uses for reasoning_effort on 2.5 models. */
const THINKING_BUDGET: Record<string, number> = {
  none: 0,
  minimal: 1024,
  low: 1024,
  medium: 8192,
  high: 24576,
};

/** An OpenAI chat completion request → a Gemini generateContent request. Throws OpenAiError (400). */
export function openAiToGemini(raw: unknown): GeminiChatCall {
  const req = parseWith(chatRequestSchema, raw);
  const model = normalizeModel(req.model);
  const { contents, system } = translateMessages(req.messages);
  const request: GenerateContentRequest = { contents };
  if (system.length > 0) request.systemInstruction = { parts: system };

  const cfg: Obj = {};
  if (req.temperature != null) cfg.temperature = req.temperature;
  if (req.top_p != null) cfg.topP = req.top_p;
  const maxTokens = req.max_completion_tokens ?? req.max_tokens;
  if (maxTokens != null) cfg.maxOutputTokens = maxTokens;
  if (req.n != null && req.n !== 1) cfg.candidateCount = req.n;
  if (req.stop != null) {
    const stops = typeof req.stop === 'string' ? [req.stop] : req.stop;
    if (stops.length > 0) cfg.stopSequences = stops;
  }
  if (req.seed != null) cfg.seed = req.seed;
  if (req.presence_penalty != null) cfg.presencePenalty = req.presence_penalty;
  if (req.frequency_penalty != null) cfg.frequencyPenalty = req.frequency_penalty;
  const format = req.response_format;
  if (format && format.type !== 'text') {
    cfg.responseMimeType = 'application/json';
    if (format.type === 'json_schema' && format.json_schema.schema !== undefined)
      cfg.responseJsonSchema = format.json_schema.schema;
  }
  if (req.reasoning_effort != null) {
    const effort = req.reasoning_effort;
    cfg.thinkingConfig = /^gemini-3/.test(model)
      ? { thinkingLevel: effort === 'none' ? 'minimal' : effort }
      : { thinkingBudget: THINKING_BUDGET[effort] };
  }
  if (Object.keys(cfg).length > 0) request.generationConfig = cfg;

  if (req.tools && req.tools.length > 0) {
    const declarations = req.tools.map((tool, i) => {
      if (tool.type !== 'function' || !tool.function)
        throw invalid(`tools[${i}].type`, `only "function" tools are supported, not "${tool.type}"`);
      const fn = tool.function;
      const decl: Obj = { name: fn.name };
      if (fn.description !== undefined) decl.description = fn.description;
      if (fn.parameters !== undefined) decl.parametersJsonSchema = fn.parameters;
      return decl;
    });
    request.tools = [{ functionDeclarations: declarations }];
  }
  if (req.tool_choice != null) {
    const mode = toolChoice(req.tool_choice, (req.tools?.length ?? 0) > 0);
    if (mode) request.toolConfig = { functionCallingConfig: mode };
  }

  return {
    model,
    request,
    stream: req.stream === true,
    includeUsage: req.stream === true && req.stream_options?.include_usage === true,
  };
}

function toolChoice(choice: unknown, hasTools: boolean): Obj | null {
  if (choice === 'none') return { mode: 'NONE' };
  if (!hasTools) throw invalid('tool_choice', 'tool_choice needs tools');
  if (choice === 'auto') return { mode: 'AUTO' };
  if (choice === 'required') return { mode: 'ANY' };
  if (isObj(choice) && choice.type === 'function' && isObj(choice.function)) {
    const name = choice.function.name;
    if (typeof name !== 'string' || name === '') throw invalid('tool_choice.function.name', 'is required');
    return { mode: 'ANY', allowedFunctionNames: [name] };
  }
  throw invalid(
    'tool_choice',
    'must be "none", "auto", "required" or {"type":"function","function":{"name"}}',
  );
}

/** Messages → Gemini contents (user/model) and the system instruction's parts. */
function translateMessages(messages: ReadonlyArray<Obj>): { contents: Content[]; system: Part[] } {
  const contents: Content[] = [];
  const system: Part[] = [];
  /** tool_call id → function name (a Gemini functionResponse needs the name). */
  const toolNames = new Map<string, string>();
  let previousRole = '';

  messages.forEach((m, i) => {
    const at = `messages[${i}]`;
    const role = m.role;
    switch (role) {
      case 'system':
      case 'developer':
        system.push(...textOnlyParts(m.content, `${at}.content`));
        break;
      case 'user':
        contents.push({ role: 'user', parts: userParts(m.content, `${at}.content`) });
        break;
      case 'assistant': {
        const parts = assistantParts(m, at, toolNames);
        if (parts.length > 0) contents.push({ role: 'model', parts });
        break;
      }
      case 'tool':
      case 'function': {
        let name: string | undefined;
        if (role === 'tool') {
          const id = m.tool_call_id;
          if (typeof id !== 'string' || id === '') throw invalid(`${at}.tool_call_id`, 'is required');
          name = toolNames.get(id);
          if (name === undefined)
            throw invalid(`${at}.tool_call_id`, `no earlier assistant message has a tool call "${id}"`);
        } else {
          if (typeof m.name !== 'string' || m.name === '') throw invalid(`${at}.name`, 'is required');
          name = m.name;
        }
        const part: Part = { functionResponse: { name, response: toolResponse(m.content, `${at}.content`) } };
        // Answers to one turn's parallel calls go back together, in one user turn.
        const last = contents[contents.length - 1];
        if ((previousRole === 'tool' || previousRole === 'function') && last?.role === 'user')
          last.parts.push(part);
        else contents.push({ role: 'user', parts: [part] });
        break;
      }
      default:
        throw invalid(`${at}.role`, `unsupported role "${String(role)}"`);
    }
    previousRole = String(role);
  });

  if (contents.length === 0)
    throw invalid('messages', 'at least one user or assistant message is required', 'missing_messages');
  return { contents, system };
}

/** A tool result as Gemini's functionResponse.response (which must be an object). */
function toolResponse(content: unknown, param: string): Obj {
  const text = typeof content === 'string' ? content : joinText(textOnlyParts(content, param));
  const parsed = safeJson(text);
  return isObj(parsed) ? parsed : { result: parsed === undefined ? text : parsed };
}

function joinText(parts: Part[]): string {
  return parts.map((p) => p.text ?? '').join('');
}

function textOnlyParts(content: unknown, param: string): Part[] {
  if (typeof content === 'string') return [{ text: content }];
  if (!Array.isArray(content)) throw invalid(param, 'must be a string or an array of text parts');
  return content.map((p, j) => {
    if (isObj(p) && p.type === 'text' && typeof p.text === 'string') return { text: p.text };
    throw invalid(`${param}[${j}]`, 'only text parts are allowed here');
  });
}

function userParts(content: unknown, param: string): Part[] {
  if (typeof content === 'string') return [{ text: content }];
  if (!Array.isArray(content) || content.length === 0)
    throw invalid(param, 'must be a string or a non-empty array of content parts');
  return content.map((p, j) => contentPart(p, `${param}[${j}]`));
}

function contentPart(p: unknown, param: string): Part {
  if (!isObj(p)) throw invalid(param, 'must be an object');
  switch (p.type) {
    case 'text':
      if (typeof p.text !== 'string') throw invalid(`${param}.text`, 'must be a string');
      return { text: p.text };
    case 'image_url': {
      const img = p.image_url;
      const url = typeof img === 'string' ? img : isObj(img) ? img.url : undefined;
      if (typeof url !== 'string' || url === '') throw invalid(`${param}.image_url.url`, 'is required');
      if (/^https?:/i.test(url)) {
        throw invalid(
          `${param}.image_url.url`,
          'remote image URLs are not fetched by this gateway; send the image inline as a data: URL (data:image/png;base64,...)',
          'unsupported_image_url',
        );
      }
      return { inlineData: parseDataUrl(url, `${param}.image_url.url`) };
    }
    case 'input_audio': {
      const a = p.input_audio;
      if (!isObj(a) || typeof a.data !== 'string' || a.data === '')
        throw invalid(`${param}.input_audio.data`, 'is required (base64)');
      const format = typeof a.format === 'string' && a.format !== '' ? a.format.toLowerCase() : 'wav';
      return {
        inlineData: { mimeType: `audio/${format}`, data: checkBase64(a.data, `${param}.input_audio.data`) },
      };
    }
    case 'file': {
      const f = p.file;
      if (!isObj(f)) throw invalid(`${param}.file`, 'is required');
      if (typeof f.file_data === 'string' && f.file_data !== '') {
        if (f.file_data.startsWith('data:'))
          return { inlineData: parseDataUrl(f.file_data, `${param}.file.file_data`) };
        const filename = typeof f.filename === 'string' ? f.filename : '';
        const mimeType = mimeFromFilename(filename);
        if (!mimeType)
          throw invalid(
            `${param}.file.file_data`,
            'send a data: URL, or a filename whose extension names the type',
          );
        return { inlineData: { mimeType, data: checkBase64(f.file_data, `${param}.file.file_data`) } };
      }
      throw invalid(
        `${param}.file`,
        'uploaded files (file_id) are not supported; send file_data inline',
        'unsupported_file',
      );
    }
    default:
      throw invalid(`${param}.type`, `unsupported content part type "${String(p.type)}"`);
  }
}

const EXTENSION_TYPES: Record<string, string> = {
  pdf: 'application/pdf',
  txt: 'text/plain',
  md: 'text/markdown',
  html: 'text/html',
  csv: 'text/csv',
  json: 'application/json',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  mp3: 'audio/mp3',
  wav: 'audio/wav',
  mp4: 'video/mp4',
};

function mimeFromFilename(name: string): string | undefined {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? undefined : EXTENSION_TYPES[name.slice(dot + 1).toLowerCase()];
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function checkBase64(data: string, param: string): string {
  const clean = data.replace(/\s+/g, '').replace(/-/g, '+').replace(/_/g, '/');
  if (clean === '' || !BASE64.test(clean) || clean.length % 4 === 1)
    throw invalid(param, 'is not valid base64');
  return clean;
}

/** `data:<mime>[;base64],<data>` → Gemini inlineData (base64). */
export function parseDataUrl(url: string, param = 'url'): { mimeType: string; data: string } {
  const m = /^data:([^,]*),(.*)$/is.exec(url);
  if (!m) throw invalid(param, 'must be a data: URL (data:<media type>;base64,<data>)');
  const meta = m[1]!.split(';').map((s) => s.trim());
  const mimeType = (meta[0] ?? '').toLowerCase();
  if (!/^[a-z0-9.+-]+\/[a-z0-9.+-]+$/.test(mimeType))
    throw invalid(param, 'the data: URL must name a media type');
  const payload = m[2]!;
  if (meta.slice(1).some((s) => s.toLowerCase() === 'base64'))
    return { mimeType, data: checkBase64(payload, param) };
  let bytes: Buffer;
  try {
    bytes = Buffer.from(decodeURIComponent(payload), 'utf8');
  } catch {
    throw invalid(param, 'the data: URL is not valid percent-encoding');
  }
  return { mimeType, data: bytes.toString('base64') };
}

function assistantParts(m: Obj, at: string, toolNames: Map<string, string>): Part[] {
  const parts: Part[] = [];
  const content = m.content;
  if (typeof content === 'string') {
    if (content !== '') parts.push({ text: content });
  } else if (Array.isArray(content)) {
    content.forEach((p, j) => {
      if (isObj(p) && p.type === 'text' && typeof p.text === 'string') parts.push({ text: p.text });
      else if (isObj(p) && p.type === 'refusal' && typeof p.refusal === 'string')
        parts.push({ text: p.refusal });
      else throw invalid(`${at}.content[${j}]`, 'assistant content parts must be text or refusal');
    });
  } else if (content != null) {
    throw invalid(`${at}.content`, 'must be a string, an array of text parts, or null');
  }

  const calls = m.tool_calls;
  if (calls != null) {
    if (!Array.isArray(calls)) throw invalid(`${at}.tool_calls`, 'must be an array');
    calls.forEach((c, j) => {
      const param = `${at}.tool_calls[${j}]`;
      if (!isObj(c) || !isObj(c.function)) throw invalid(`${param}.function`, 'is required');
      const name = c.function.name;
      if (typeof name !== 'string' || name === '') throw invalid(`${param}.function.name`, 'is required');
      const args = parseArguments(c.function.arguments, `${param}.function.arguments`);
      if (typeof c.id === 'string' && c.id !== '') toolNames.set(c.id, name);
      const part: Part = { functionCall: { name, args } };
      const google =
        isObj(c.extra_content) && isObj(c.extra_content.google) ? c.extra_content.google : undefined;
      if (typeof google?.thought_signature === 'string') part.thoughtSignature = google.thought_signature;
      parts.push(part);
    });
  }
  const legacy = m.function_call;
  if (isObj(legacy) && typeof legacy.name === 'string') {
    const args = parseArguments(legacy.arguments, `${at}.function_call.arguments`);
    parts.push({ functionCall: { name: legacy.name, args } });
  }
  return parts;
}

function parseArguments(raw: unknown, param: string): Obj {
  if (raw === undefined || raw === null || raw === '') return {};
  if (isObj(raw)) return raw;
  if (typeof raw !== 'string') throw invalid(param, 'must be a JSON string');
  const parsed = safeJson(raw);
  if (!isObj(parsed)) throw invalid(param, 'must be a JSON object encoded as a string');
  return parsed;
}

// ---------------------------------------------------------------------------------------------
// Chat completions: response

export type FinishReason = 'stop' | 'length' | 'content_filter' | 'tool_calls';

const FILTERED = new Set([
  'SAFETY',
  'RECITATION',
  'BLOCKLIST',
  'PROHIBITED_CONTENT',
  'SPII',
  'IMAGE_SAFETY',
  'IMAGE_PROHIBITED_CONTENT',
  'IMAGE_RECITATION',
]);

/** Gemini's finishReason → OpenAI's. STOP after a function call is `tool_calls`. */
export function finishReason(reason: string | undefined | null, hasToolCalls = false): FinishReason {
  if (reason === 'MAX_TOKENS') return 'length';
  if (reason && FILTERED.has(reason)) return 'content_filter';
  return hasToolCalls ? 'tool_calls' : 'stop';
}

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

type GeminiUsage = UsageMetadata & { cachedContentTokenCount?: number };
export type GeminiResponse = GenerateContentResponse & {
  promptFeedback?: { blockReason?: string };
  usageMetadata?: GeminiUsage;
};

/** Gemini usageMetadata → OpenAI usage (thinking tokens count as completion tokens, as OpenAI's reasoning tokens do). */
export function usageFrom(meta: GeminiUsage | undefined): Usage {
  const prompt = meta?.promptTokenCount ?? 0;
  const thoughts = meta?.thoughtsTokenCount ?? 0;
  const completion = (meta?.candidatesTokenCount ?? 0) + thoughts;
  const usage: Usage = {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: meta?.totalTokenCount ?? prompt + completion,
  };
  if (meta?.cachedContentTokenCount)
    usage.prompt_tokens_details = { cached_tokens: meta.cachedContentTokenCount };
  if (thoughts > 0) usage.completion_tokens_details = { reasoning_tokens: thoughts };
  return usage;
}

export interface ResponseIds {
  /** Completion id; default `chatcmpl-<responseId>`. */
  id?: string;
  /** Unix seconds; default now. */
  created?: number;
}

/** Text (thoughts excluded) and function calls of one candidate's parts. */
function readParts(
  parts: ReadonlyArray<Part> | undefined,
  callId: (n: number, fc: Obj) => string,
  firstCall = 0,
): { text: string; hasText: boolean; toolCalls: ToolCall[] } {
  let text = '';
  let hasText = false;
  const toolCalls: ToolCall[] = [];
  for (const p of parts ?? []) {
    if (typeof p.text === 'string' && p.thought !== true) {
      text += p.text;
      hasText = true;
    } else if (isObj(p.functionCall) && typeof p.functionCall.name === 'string') {
      const fc = p.functionCall;
      const call: ToolCall = {
        id: callId(firstCall + toolCalls.length, fc),
        type: 'function',
        function: { name: fc.name as string, arguments: JSON.stringify(isObj(fc.args) ? fc.args : {}) },
      };
      if (typeof p.thoughtSignature === 'string')
        call.extra_content = { google: { thought_signature: p.thoughtSignature } };
      toolCalls.push(call);
    }
  }
  return { text, hasText, toolCalls };
}

function callIds(base: string, candidate: number): (n: number, fc: Obj) => string {
  return (n, fc) => (typeof fc.id === 'string' && fc.id !== '' ? fc.id : `call_${base}_${candidate}_${n}`);
}

function baseId(res: GeminiResponse): string {
  return typeof res.responseId === 'string' && /^[A-Za-z0-9_-]{1,100}$/.test(res.responseId)
    ? res.responseId
    : randomUUID().replace(/-/g, '');
}

/** A Gemini generateContent answer → an OpenAI chat.completion. `model` is the id the client asked for. */
export function geminiToOpenAi(res: GeminiResponse, model: string, ids: ResponseIds = {}): ChatCompletion {
  const base = baseId(res);
  const candidates = [...(res.candidates ?? [])].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
  const choices: ChatCompletion['choices'] = candidates.map((c, position) => {
    const index = c.index ?? position;
    const { text, hasText, toolCalls } = readParts(c.content?.parts, callIds(base, index));
    const reason = finishReason(c.finishReason, toolCalls.length > 0);
    const message: ChatMessage = {
      role: 'assistant',
      content: hasText ? text : toolCalls.length > 0 || reason === 'content_filter' ? null : '',
      refusal: null,
    };
    if (toolCalls.length > 0) message.tool_calls = toolCalls;
    return { index, message, logprobs: null, finish_reason: reason };
  });
  if (choices.length === 0) {
    // The prompt itself was blocked (promptFeedback.blockReason), or nothing came back.
    const blocked = res.promptFeedback?.blockReason !== undefined;
    choices.push({
      index: 0,
      message: { role: 'assistant', content: blocked ? null : '', refusal: null },
      logprobs: null,
      finish_reason: blocked ? 'content_filter' : 'stop',
    });
  }
  return {
    id: ids.id ?? `chatcmpl-${base}`,
    object: 'chat.completion',
    created: ids.created ?? Math.floor(Date.now() / 1000),
    model,
    choices,
    usage: usageFrom(res.usageMetadata),
  };
}

// ---------------------------------------------------------------------------------------------
// Chat completions: stream chunks

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

/** What a stream's translation carries from one upstream chunk to the next. */
export interface ChunkState {
  id: string;
  /** Base of generated tool-call ids. */
  base: string;
  created: number;
  model: string;
  includeUsage: boolean;
  choices: Map<number, { roleSent: boolean; toolCalls: number; finished: boolean }>;
  /** Usage of the latest upstream chunk (Gemini's usage is cumulative). */
  usage: GeminiUsage | undefined;
}

export function newChunkState(
  model: string,
  opts: ResponseIds & { includeUsage?: boolean } = {},
): ChunkState {
  const base = randomUUID().replace(/-/g, '');
  return {
    id: opts.id ?? `chatcmpl-${base}`,
    base,
    created: opts.created ?? Math.floor(Date.now() / 1000),
    model,
    includeUsage: opts.includeUsage === true,
    choices: new Map(),
    usage: undefined,
  };
}

function chunk(state: ChunkState, choice: ChatCompletionChunk['choices'][number]): ChatCompletionChunk {
  const c: ChatCompletionChunk = {
    id: state.id,
    object: 'chat.completion.chunk',
    created: state.created,
    model: state.model,
    choices: [choice],
  };
  if (state.includeUsage) c.usage = null;
  return c;
}

function choiceState(state: ChunkState, index: number) {
  let s = state.choices.get(index);
  if (!s) {
    s = { roleSent: false, toolCalls: 0, finished: false };
    state.choices.set(index, s);
  }
  return s;
}

/**
 * One upstream streamGenerateContent chunk → OpenAI chunks (one per choice with new content,
 * then one per choice that finished in it). Updates `state`.
 */
export function geminiChunkToOpenAi(res: GeminiResponse, state: ChunkState): ChatCompletionChunk[] {
  if (res.usageMetadata) state.usage = res.usageMetadata;
  const out: ChatCompletionChunk[] = [];
  const finished: ChatCompletionChunk[] = [];
  const candidates = res.candidates ?? [];
  candidates.forEach((c, position) => {
    const index = c.index ?? position;
    const s = choiceState(state, index);
    if (s.finished) return;
    const { text, toolCalls } = readParts(c.content?.parts, callIds(state.base, index), s.toolCalls);
    const delta: ChunkDelta = {};
    if (!s.roleSent) {
      delta.role = 'assistant';
      s.roleSent = true;
    }
    if (text !== '' || (delta.role !== undefined && toolCalls.length === 0)) delta.content = text;
    if (toolCalls.length > 0) {
      delta.tool_calls = toolCalls.map((t, k) => ({ index: s.toolCalls + k, ...t }));
      s.toolCalls += toolCalls.length;
    }
    if (Object.keys(delta).length > 0)
      out.push(chunk(state, { index, delta, logprobs: null, finish_reason: null }));
    if (c.finishReason) {
      s.finished = true;
      finished.push(
        chunk(state, {
          index,
          delta: {},
          logprobs: null,
          finish_reason: finishReason(c.finishReason, s.toolCalls > 0),
        }),
      );
    }
  });
  if (candidates.length === 0 && res.promptFeedback?.blockReason !== undefined) {
    const s = choiceState(state, 0);
    if (!s.finished) {
      if (!s.roleSent) {
        s.roleSent = true;
        out.push(emptyOpening(state));
      }
      s.finished = true;
      finished.push(chunk(state, { index: 0, delta: {}, logprobs: null, finish_reason: 'content_filter' }));
    }
  }
  return [...out, ...finished];
}

/** The first chunk of choice 0 when the answer has no content of its own: role, empty text. */
function emptyOpening(state: ChunkState): ChatCompletionChunk {
  return chunk(state, {
    index: 0,
    delta: { role: 'assistant', content: '' },
    logprobs: null,
    finish_reason: null,
  });
}

/**
 * The chunks that end a stream: a finish chunk for any choice the upstream left open (or an
 * empty answer when nothing came), then the usage chunk when include_usage was asked for.
 */
export function finishChunks(state: ChunkState): ChatCompletionChunk[] {
  const out: ChatCompletionChunk[] = [];
  if (state.choices.size === 0) {
    out.push(emptyOpening(state));
    choiceState(state, 0);
  }
  for (const [index, s] of state.choices) {
    if (s.finished) continue;
    s.finished = true;
    out.push(
      chunk(state, {
        index,
        delta: {},
        logprobs: null,
        finish_reason: finishReason('STOP', s.toolCalls > 0),
      }),
    );
  }
  if (state.includeUsage) {
    out.push({
      id: state.id,
      object: 'chat.completion.chunk',
      created: state.created,
      model: state.model,
      choices: [],
      usage: usageFrom(state.usage),
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Embeddings

const embeddingsSchema = z.object({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(z.unknown()).min(1)]),
  encoding_format: nullish(z.enum(['float', 'base64'])),
  dimensions: nullish(z.number().int().min(1)),
});

export interface GeminiEmbedCall {
  model: string;
  /** batchEmbedContents body. */
  request: { requests: Array<{ model: string; content: { parts: Part[] }; outputDimensionality?: number }> };
  encoding: 'float' | 'base64';
  inputs: string[];
}

/** An OpenAI embeddings request → a Gemini batchEmbedContents request. */
export function openAiEmbeddingsToGemini(raw: unknown): GeminiEmbedCall {
  const req = parseWith(embeddingsSchema, raw);
  const model = normalizeModel(req.model);
  const inputs = typeof req.input === 'string' ? [req.input] : req.input;
  const texts = inputs.map((v, i) => {
    if (typeof v === 'string') return v;
    throw invalid(
      `input[${i}]`,
      'token arrays are not supported; send strings',
      typeof v === 'number' || Array.isArray(v) ? 'unsupported_input' : null,
    );
  });
  const requests = texts.map((text) => {
    const r: GeminiEmbedCall['request']['requests'][number] = {
      model: `models/${model}`,
      content: { parts: [{ text }] },
    };
    if (req.dimensions != null) r.outputDimensionality = req.dimensions;
    return r;
  });
  return { model, request: { requests }, encoding: req.encoding_format ?? 'float', inputs: texts };
}

export interface EmbeddingsResponse {
  object: 'list';
  data: Array<{ object: 'embedding'; index: number; embedding: number[] | string }>;
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/** Float32 little-endian bytes in base64: what OpenAI sends for encoding_format "base64". */
export function embeddingToBase64(values: readonly number[]): string {
  const f = Float32Array.from(values);
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString('base64');
}

/**
 * Gemini's batchEmbedContents answer → OpenAI's list. Gemini reports no token usage for
 * embeddings: `promptTokens` is the caller's estimate.
 */
export function geminiEmbeddingsToOpenAi(
  res: unknown,
  model: string,
  encoding: 'float' | 'base64',
  promptTokens: number,
  expected?: number,
): EmbeddingsResponse {
  const list = isObj(res) && Array.isArray(res.embeddings) ? res.embeddings : undefined;
  if (!list || (expected !== undefined && list.length !== expected))
    throw new OpenAiError(502, 'the upstream embeddings answer is malformed', {
      code: 'bad_upstream_response',
    });
  const data = list.map((e, index) => {
    const values = isObj(e) && Array.isArray(e.values) ? (e.values as number[]) : [];
    return {
      object: 'embedding' as const,
      index,
      embedding: encoding === 'base64' ? embeddingToBase64(values) : values,
    };
  });
  return { object: 'list', data, model, usage: { prompt_tokens: promptTokens, total_tokens: promptTokens } };
}

// ---------------------------------------------------------------------------------------------
// Models

export interface OpenAiModel {
  id: string;
  object: 'model';
  created: number;
  owned_by: 'google';
  display_name?: string;
}

/** One native model (`{name: "models/x", displayName}`) → OpenAI's model object (id without `models/`). */
export function geminiModelToOpenAi(m: unknown): OpenAiModel | null {
  if (!isObj(m) || typeof m.name !== 'string' || m.name === '') return null;
  const out: OpenAiModel = {
    id: m.name.replace(/^models\//, ''),
    object: 'model',
    created: 0,
    owned_by: 'google',
  };
  if (typeof m.displayName === 'string') out.display_name = m.displayName;
  return out;
}

/** GET /v1beta/models pages (`{models:[…]}`) → `{object:'list', data:[…]}`. */
export function geminiModelsToOpenAi(pages: ReadonlyArray<unknown>): { object: 'list'; data: OpenAiModel[] } {
  const data: OpenAiModel[] = [];
  for (const page of pages) {
    const models = isObj(page) && Array.isArray(page.models) ? page.models : [];
    for (const m of models) {
      const model = geminiModelToOpenAi(m);
      if (model) data.push(model);
    }
  }
  return { object: 'list', data };
}
