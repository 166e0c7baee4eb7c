/** An HTTP request to the fake Gemini, read as Google reads it: path, query, API key and JSON body. */
import type { IncomingMessage } from 'node:http';

export interface ReadRequest {
  method: string;
  /** Decoded path, without the query. */
  path: string;
  /** The raw query string ('' or '?…'). */
  search: string;
  /** The query, when there is one. */
  query: URLSearchParams | null;
  /** The x-goog-api-key header, else ?key=, else null. */
  apiKey: string | null;
  /** The parsed JSON body (the text when it is not JSON); undefined without one. */
  body: unknown;
  /** The body was not JSON. */
  bodyInvalid: boolean;
}

export function readRequest(req: IncomingMessage, raw: Buffer | null): ReadRequest {
  const method = req.method ?? 'GET';
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  let path = q < 0 ? url : url.slice(0, q);
  const search = q < 0 ? '' : url.slice(q);
  if (path.includes('%')) {
    try {
      path = decodeURIComponent(path);
    } catch {
      // keep it raw
    }
  }
  const query = search.length > 1 ? new URLSearchParams(search) : null;
  const headerKey = req.headers['x-goog-api-key'];
  const apiKey = (typeof headerKey === 'string' && headerKey !== '' ? headerKey : query?.get('key')) || null;

  let body: unknown;
  let bodyInvalid = false;
  if (raw !== null && raw.length > 0) {
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      bodyInvalid = true;
      body = raw.toString('utf8');
    }
  }
  return { method, path, search, query, apiKey, body, bodyInvalid };
}
