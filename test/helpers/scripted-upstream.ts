import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the upstream does with one request. */
export type Reply = (res: ServerResponse) => void;

/** A request the upstream received: the pool key it carried and the path it named. */
export interface SeenRequest {
  apiKey: string;
  path: string;
}

export interface ScriptedUpstream {
  url: string;
  /** Every request received, in order. */
  seen: SeenRequest[];
  /** Queues replies, used in order by the next requests; once they are used up, `ok()` answers. */
  script(...replies: Reply[]): void;
  /** Cuts every connection still open (hung answers, streams) and stops listening. */
  close(): Promise<void>;
}

/**
 * A stand-in for Google's API in unit tests of the forwarder, like scripted-gemini.ts is for the
 * services: it answers from a list, in order, and records what it was sent. Unlike the fake
 * Gemini server it knows no model or quota: each test says exactly what each attempt gets.
 */
export async function startScriptedUpstream(): Promise<ScriptedUpstream> {
  const queue: Reply[] = [];
  const seen: SeenRequest[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      seen.push({ apiKey: String(req.headers['x-goog-api-key'] ?? ''), path: req.url ?? '' });
      (queue.shift() ?? ok())(res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    script: (...replies) => queue.push(...replies),
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
  res.end(JSON.stringify(body));
}

/** A finished generateContent answer. */
export const ok =
  (text = 'ok'): Reply =>
  (res) =>
    json(res, 200, {
      candidates: [{ content: { role: 'model', parts: [{ text }] }, finishReason: 'STOP' }],
      usageMetadata: { promptTokenCount: 3, candidatesTokenCount: 1, totalTokenCount: 4 },
    });

/** An error in Google's shape. */
export const googleError =
  (code: number, status: string, message: string, details: unknown[] = []): Reply =>
  (res) =>
    json(res, code, { error: { code, message, status, details } });

export const overloaded = () =>
  googleError(503, 'UNAVAILABLE', 'The model is overloaded. Please try again later.');
export const internalError = () => googleError(500, 'INTERNAL', 'An internal error has occurred.');
export const badRequest = () => googleError(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.');
export const invalidKey = () =>
  googleError(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [
    { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID' },
  ]);
export const locationRefused = () =>
  googleError(400, 'FAILED_PRECONDITION', 'User location is not supported for the API use.');

/** A per-minute quota 429 for `model`, with Google's retryDelay (e.g. '30s'). */
export const rateLimited = (retryDelay: string, model = 'gemini-2.5-flash') =>
  googleError(429, 'RESOURCE_EXHAUSTED', 'You exceeded your current quota.', [
    {
      '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
      violations: [
        {
          quotaId: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier',
          quotaDimensions: { location: 'global', model },
        },
      ],
    },
    { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay },
  ]);

/** The connection is cut before any answer. */
export const reset = (): Reply => (res) => res.socket?.destroy();

/** Never answers (the connection stays open until the test closes the upstream). */
export const hang = (): Reply => () => {};

/** One SSE event of a streamed answer. */
export const sseEvent = (text: string) =>
  `data: {"candidates":[{"content":{"parts":[{"text":"${text}"}]}}],"usageMetadata":{"promptTokenCount":3}}\r\n\r\n`;

function streamHeaders(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.flushHeaders();
}

/** A whole stream of events. */
export const stream =
  (...texts: string[]): Reply =>
  (res) => {
    streamHeaders(res);
    res.end(texts.map(sseEvent).join(''));
  };

/** A 200 stream whose connection is cut before its first byte. */
export const streamCutBeforeFirstByte = (): Reply => (res) => {
  streamHeaders(res);
  setTimeout(() => res.socket?.destroy(), 20);
};

/** A 200 stream that ends without a byte. */
export const emptyStream = (): Reply => (res) => {
  streamHeaders(res);
  res.end();
};

/** A stream that sends one event, then its connection is cut. */
export const streamCutAfterFirstEvent =
  (text: string): Reply =>
  (res) => {
    streamHeaders(res);
    res.write(sseEvent(text));
    setTimeout(() => res.socket?.destroy(), 50);
  };
