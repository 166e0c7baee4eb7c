/**
 * Model names as budgets count them. Google counts quota per model id; the API accepts
 * `models/gemini-2.5-flash` and `gemini-2.5-flash` alike, so the prefix is dropped. A `-latest`
 * alias (e.g. `gemini-flash-latest`) is its own budget: the gateway cannot know which model it
 * points to today. When Google's 429 names the underlying model, that model's budget rests too.
 */
export function normalizeModel(model: string): string {
  return model.startsWith('models/') ? model.slice(7) : model;
}
