/**
 * Function calling for the fake Gemini. A request with `tools: [{functionDeclarations: […]}]`
 * is answered the way a model would, but deterministically, so tests and the demo can rely on it:
 *
 * - `toolConfig.functionCallingConfig.mode` NONE, or no declarations: no call.
 * - The conversation's last turn carries `functionResponse` parts (the caller ran a function):
 *   in AUTO (the default) and VALIDATED mode the model answers in text; ANY calls again, as
 *   Google does.
 * - Otherwise the declared function whose name's words the prompt mentions most (`get_weather`:
 *   "weather"; `list_directory`: "list", "directory"), the first declared on a tie. When the
 *   prompt mentions none, AUTO and VALIDATED answer in text and ANY calls the first function.
 *   `allowedFunctionNames` limits the choice.
 * - Arguments: the parameters schema's required properties (every property when it names none),
 *   from sampleFromSchema; a quoted string in the prompt ("…", '…' or `…`) fills the first
 *   required plain-string parameter, so a prompt can steer the call (`list the directory "."`).
 * - Gemini 3 models put a `thoughtSignature` on the first functionCall part (callers must send
 *   it back with the call in the next turn).
 */
import { sampleFromSchema } from './fake-gemini-schema.ts';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface FunctionDeclaration {
  name: string;
  /** `parametersJsonSchema` (JSON Schema) or `parameters` (Gemini's OpenAPI subset), if any. */
  schema: Obj | null;
}

export interface FunctionCalls {
  /** `{functionCall: {name, args}}` parts, as the model's turn carries them. */
  parts: Obj[];
  /** Output tokens the parts cost (ceil(JSON chars / 4)). */
  tokens: number;
}

export interface FunctionResult {
  name: string;
  response: unknown;
}

export type CallingMode = 'AUTO' | 'ANY' | 'NONE' | 'VALIDATED';

/** The request's function declarations (camelCase or snake_case), in declaration order. */
export function functionDeclarations(req: Obj): FunctionDeclaration[] {
  const out: FunctionDeclaration[] = [];
  if (!Array.isArray(req.tools)) return out;
  for (const tool of req.tools) {
    if (!isObj(tool)) continue;
    const decls = tool.functionDeclarations ?? tool.function_declarations;
    if (!Array.isArray(decls)) continue;
    for (const d of decls) {
      if (!isObj(d) || typeof d.name !== 'string' || d.name === '') continue;
      const schema = d.parametersJsonSchema ?? d.parameters_json_schema ?? d.parameters;
      out.push({ name: d.name, schema: isObj(schema) ? schema : null });
    }
  }
  return out;
}

function callingConfig(req: Obj): { mode: CallingMode; allowed: string[] | null } {
  const tc = req.toolConfig ?? req.tool_config;
  const fc = isObj(tc) ? (tc.functionCallingConfig ?? tc.function_calling_config) : undefined;
  if (!isObj(fc)) return { mode: 'AUTO', allowed: null };
  const raw = String(fc.mode ?? 'AUTO').toUpperCase();
  const mode: CallingMode = raw === 'ANY' || raw === 'NONE' || raw === 'VALIDATED' ? raw : 'AUTO';
  const names = fc.allowedFunctionNames ?? fc.allowed_function_names;
  const allowed = Array.isArray(names) && names.length > 0 ? names.map(String) : null;
  return { mode, allowed };
}

/** The functionResponse parts of the conversation's last turn (empty when it has none). */
export function lastFunctionResults(contents: unknown): FunctionResult[] {
  if (!Array.isArray(contents) || contents.length === 0) return [];
  const last = contents[contents.length - 1];
  if (!isObj(last) || last.role === 'model' || !Array.isArray(last.parts)) return [];
  const out: FunctionResult[] = [];
  for (const p of last.parts) {
    const fr = isObj(p) ? (p.functionResponse ?? p.function_response) : undefined;
    if (isObj(fr)) out.push({ name: String(fr.name ?? ''), response: fr.response });
  }
  return out;
}

/** A function name's words: `get_weather` → get, weather; `listFiles` → list, files. */
function nameWords(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length >= 3);
}

function mentions(promptWords: Set<string>, word: string): boolean {
  if (promptWords.has(word)) return true;
  if (word.length < 4) return false;
  for (const p of promptWords) if (p.startsWith(word)) return true; // files → file, listing → list
  return false;
}

function pickFunction(decls: FunctionDeclaration[], prompt: string): FunctionDeclaration | null {
  const words = new Set(prompt.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []);
  let best: FunctionDeclaration | null = null;
  let bestScore = 0;
  for (const d of decls) {
    const score = new Set(nameWords(d.name).filter((w) => mentions(words, w))).size;
    if (score > bestScore) {
      best = d;
      bestScore = score;
    }
  }
  return best;
}

const QUOTED = /"([^"\n]{1,200})"|(?<![\p{L}\p{N}])'([^'\n]{1,200})'(?![\p{L}\p{N}])|`([^`\n]{1,200})`/u;

function isPlainString(s: unknown, value: string): boolean {
  if (!isObj(s)) return false;
  const t = Array.isArray(s.type)
    ? s.type.map((x) => String(x).toLowerCase())
    : [String(s.type).toLowerCase()];
  if (!t.includes('string')) return false;
  if (s.enum !== undefined || 'const' in s || s.format !== undefined || s.pattern !== undefined) return false;
  if (typeof s.minLength === 'number' && value.length < s.minLength) return false;
  if (typeof s.maxLength === 'number' && value.length > s.maxLength) return false;
  return true;
}

/** Arguments fitting the declaration's schema; a quoted string in the prompt fills the first plain-string one. */
export function sampleArguments(decl: FunctionDeclaration, prompt: string): Obj {
  if (decl.schema === null) return {};
  const sampled = sampleFromSchema(decl.schema, { requiredOnly: true });
  const args: Obj = isObj(sampled) ? sampled : {};
  const quoted = QUOTED.exec(prompt);
  const value = quoted?.[1] ?? quoted?.[2] ?? quoted?.[3];
  if (value === undefined || !isObj(decl.schema.properties)) return args;
  const props = decl.schema.properties;
  const required = Array.isArray(decl.schema.required) ? decl.schema.required.map(String) : [];
  const order = required.length > 0 ? required : Object.keys(props);
  const target = order.find((k) => k in args && isPlainString(props[k], value));
  if (target !== undefined) args[target] = value;
  return args;
}

/**
 * The functionCall parts the model answers with, or null when it answers in text (see the
 * module comment for the rules).
 */
export function planFunctionCalls(model: string, req: Obj, prompt: string): FunctionCalls | null {
  const { mode, allowed } = callingConfig(req);
  if (mode === 'NONE') return null;
  let decls = functionDeclarations(req);
  if (allowed !== null) decls = decls.filter((d) => allowed.includes(d.name));
  if (decls.length === 0) return null;
  let chosen: FunctionDeclaration | null;
  if (mode === 'ANY') {
    chosen = pickFunction(decls, prompt) ?? decls[0]!;
  } else {
    if (lastFunctionResults(req.contents).length > 0) return null;
    chosen = pickFunction(decls, prompt);
  }
  if (chosen === null) return null;
  const call = { name: chosen.name, args: sampleArguments(chosen, prompt) };
  const part: Obj = { functionCall: call };
  if (model.startsWith('gemini-3')) {
    part.thoughtSignature = Buffer.from(`fake-thought-signature/${model}/${chosen.name}`).toString('base64');
  }
  return { parts: [part], tokens: Math.ceil(JSON.stringify(call).length / 4) };
}

/** A short account of the function results, for the text answer that follows them. */
export function describeResults(results: FunctionResult[]): string {
  return results
    .map((r) => {
      const json = JSON.stringify(r.response ?? null) ?? 'null';
      return `${r.name} returned ${json.length > 200 ? `${json.slice(0, 200)}…` : json}`;
    })
    .join('; ');
}
