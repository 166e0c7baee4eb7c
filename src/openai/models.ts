/** Gemini's native model list → OpenAI's model objects. */
import { isObj } from './json.ts';

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
