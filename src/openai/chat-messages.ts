/**
 * OpenAI chat messages → Gemini contents and system instruction: roles, assistant tool calls,
 * and tool results matched back to the function that was called.
 */
import type { Content, Part } from '../upstream/gemini-types.ts';
import { contentPart } from './content-parts.ts';
import { invalidParam } from './errors.ts';
import { isObj, type Obj, safeJson } from './json.ts';

/** Messages → Gemini contents (user/model) and the system instruction's parts. */
export function translateMessages(messages: ReadonlyArray<Obj>): { contents: Content[]; system: Part[] } {
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
          if (typeof id !== 'string' || id === '') throw invalidParam(`${at}.tool_call_id`, 'is required');
          name = toolNames.get(id);
          if (name === undefined)
            throw invalidParam(`${at}.tool_call_id`, `no earlier assistant message has a tool call "${id}"`);
        } else {
          if (typeof m.name !== 'string' || m.name === '') throw invalidParam(`${at}.name`, 'is required');
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
        throw invalidParam(`${at}.role`, `unsupported role "${String(role)}"`);
    }
    previousRole = String(role);
  });

  if (contents.length === 0)
    throw invalidParam('messages', 'at least one user or assistant message is required', 'missing_messages');
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
  if (!Array.isArray(content)) throw invalidParam(param, 'must be a string or an array of text parts');
  return content.map((p, j) => {
    if (isObj(p) && p.type === 'text' && typeof p.text === 'string') return { text: p.text };
    throw invalidParam(`${param}[${j}]`, 'only text parts are allowed here');
  });
}

function userParts(content: unknown, param: string): Part[] {
  if (typeof content === 'string') return [{ text: content }];
  if (!Array.isArray(content) || content.length === 0)
    throw invalidParam(param, 'must be a string or a non-empty array of content parts');
  return content.map((p, j) => contentPart(p, `${param}[${j}]`));
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
      else throw invalidParam(`${at}.content[${j}]`, 'assistant content parts must be text or refusal');
    });
  } else if (content != null) {
    throw invalidParam(`${at}.content`, 'must be a string, an array of text parts, or null');
  }

  const calls = m.tool_calls;
  if (calls != null) {
    if (!Array.isArray(calls)) throw invalidParam(`${at}.tool_calls`, 'must be an array');
    calls.forEach((c, j) => {
      const param = `${at}.tool_calls[${j}]`;
      if (!isObj(c) || !isObj(c.function)) throw invalidParam(`${param}.function`, 'is required');
      const name = c.function.name;
      if (typeof name !== 'string' || name === '')
        throw invalidParam(`${param}.function.name`, 'is required');
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
  if (typeof raw !== 'string') throw invalidParam(param, 'must be a JSON string');
  const parsed = safeJson(raw);
  if (!isObj(parsed)) throw invalidParam(param, 'must be a JSON object encoded as a string');
  return parsed;
}
