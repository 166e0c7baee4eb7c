/** An OpenAI chat completion request → a Gemini generateContent request (messages, generation config, tools). */
import type { GenerateContentRequest } from '../upstream/gemini-types.ts';
import { translateMessages } from './chat-messages.ts';
import { invalidParam } from './errors.ts';
import { isObj, type Obj } from './json.ts';
import { chatRequestSchema, normalizeModel, parseRequest } from './request-schema.ts';

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
  const req = parseRequest(chatRequestSchema, raw);
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
        throw invalidParam(`tools[${i}].type`, `only "function" tools are supported, not "${tool.type}"`);
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
  if (!hasTools) throw invalidParam('tool_choice', 'tool_choice needs tools');
  if (choice === 'auto') return { mode: 'AUTO' };
  if (choice === 'required') return { mode: 'ANY' };
  if (isObj(choice) && choice.type === 'function' && isObj(choice.function)) {
    const name = choice.function.name;
    if (typeof name !== 'string' || name === '')
      throw invalidParam('tool_choice.function.name', 'is required');
    return { mode: 'ANY', allowedFunctionNames: [name] };
  }
  throw invalidParam(
    'tool_choice',
    'must be "none", "auto", "required" or {"type":"function","function":{"name"}}',
  );
}
