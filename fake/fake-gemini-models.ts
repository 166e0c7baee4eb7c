/** models.list and models.get of the fake Gemini: bodies built once, paged as Google pages. */
import { FAKE_MODELS, modelJson } from './fake-gemini-content.ts';

const MODELS_LIST_BODY = Buffer.from(JSON.stringify({ models: FAKE_MODELS.map(modelJson) }));
const DEFAULT_PAGE_SIZE = 50;

/** One page of models.list: `pageToken` is the offset this fake handed out as nextPageToken. */
export function modelsPage(search: string, maxPageSize: number): Buffer {
  const q = new URLSearchParams(search);
  const asked = Number(q.get('pageSize') ?? DEFAULT_PAGE_SIZE);
  const size = Math.min(maxPageSize, asked > 0 ? asked : DEFAULT_PAGE_SIZE);
  const from = Number(q.get('pageToken') ?? 0) || 0;
  if (from === 0 && size >= FAKE_MODELS.length) return MODELS_LIST_BODY;
  const models = FAKE_MODELS.slice(from, from + size).map(modelJson);
  const next = from + size < FAKE_MODELS.length ? { nextPageToken: String(from + size) } : {};
  return Buffer.from(JSON.stringify({ models, ...next }));
}

const MODEL_BODIES = new Map(FAKE_MODELS.map((m) => [m.name, Buffer.from(JSON.stringify(modelJson(m)))]));

/** models.get's body for `name`, or undefined for a model the fake does not know. */
export function modelBody(name: string): Buffer | undefined {
  return MODEL_BODIES.get(name);
}
