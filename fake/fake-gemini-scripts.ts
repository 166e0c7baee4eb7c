/**
 * Scripted failures of the fake Gemini: "the next N matching requests fail this way", checked
 * before the key, for the fixed routes (models and their actions).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ActionContext } from './fake-gemini-action.ts';
import { buildAnswer } from './fake-gemini-content.ts';
import { embeddingsMissingOne } from './fake-gemini-embed.ts';
import {
  ERR_BAD_REQUEST,
  ERR_BARE_429,
  ERR_BILLING,
  ERR_INTERNAL,
  ERR_INVALID_KEY,
  ERR_LEAKED,
  ERR_LOCATION,
  ERR_OVERLOADED,
  type ErrorReply,
  err429,
  errorBody,
  errServiceDisabled,
  errSuspended,
  maskSecret,
} from './fake-gemini-errors.ts';
import { type FakeLimits, QUOTA_IDS } from './fake-gemini-limits.ts';
import { JSON_TYPE } from './fake-gemini-reply.ts';
import { responseId, responseJson } from './fake-gemini-response.ts';
import { ARRAY_STREAM_HEADERS, SPLIT_WRITE_GAP_MS, SSE_HEADERS } from './fake-gemini-stream.ts';
import { isObject } from './fake-surface.ts';

export type FakeFailure =
  | { kind: 'overloaded' }
  | { kind: 'internal' }
  | { kind: 'rate_limit'; quotaId?: string; retryDelay?: string; bare?: boolean }
  | { kind: 'invalid_key' }
  | { kind: 'leaked' }
  | { kind: 'suspended' }
  | { kind: 'service_disabled' }
  /** 400 FAILED_PRECONDITION "User location is not supported for the API use." */
  | { kind: 'location' }
  /** 429 "Your prepayment credits are depleted. …" (no QuotaFailure). */
  | { kind: 'billing' }
  | { kind: 'hang' }
  /** Headers and the start of a 200 body, then silence. */
  | { kind: 'stall' }
  | { kind: 'reset' }
  | { kind: 'midstream_error' }
  /** A stream whose connection breaks after its first chunk (no error event: the socket dies). */
  | { kind: 'midstream_break' }
  /** A 200 stream that ends without a single chunk. */
  | { kind: 'empty_stream' }
  | { kind: 'bad_request' }
  /** A 200 answer whose text is exactly `text` (e.g. not the JSON a responseSchema asked for). */
  | { kind: 'text_answer'; text: string }
  /** A malformed 200 answer: batchEmbedContents with one embedding fewer than it was asked for. */
  | { kind: 'missing_embedding' }
  /**
   * An answer that echoes `secret` (default: the key the request came with), as a careless
   * upstream might. Status 200 (the default): in the model's text, and a stream carries it cut
   * in two across two writes, the first not ending at a line break. Any other status: in the
   * error's message.
   */
  | { kind: 'echo'; status?: number; secret?: string }
  /**
   * A normal stream each of whose chunks is written in two parts, cut inside the digits of its
   * promptTokenCount (`"promptTokenCount": 12` | `34, …`).
   */
  | { kind: 'split_usage' };

export interface ScriptOptions {
  /** Only requests with this key. */
  apiKey?: string;
  /** Only requests whose path contains this (e.g. 'streamGenerateContent'). */
  method?: string;
  /** How many matching requests fail (default 1). */
  times?: number;
}

interface Script {
  failure: FakeFailure;
  apiKey: string | undefined;
  method: string | undefined;
  remaining: number;
}

/** The scripted failures still due, in the order they were scripted. */
export class FakeScripts {
  readonly #scripts: Script[] = [];

  get pending(): boolean {
    return this.#scripts.length > 0;
  }

  add(failure: FakeFailure, o?: ScriptOptions): void {
    const times = o?.times ?? 1;
    if (times <= 0) return;
    this.#scripts.push({ failure, apiKey: o?.apiKey, method: o?.method, remaining: times });
  }

  /** The failure of the first script matching this request (counting it down), or null. */
  take(path: string, apiKey: string | null): FakeFailure | null {
    const scripts = this.#scripts;
    for (let i = 0; i < scripts.length; i++) {
      const s = scripts[i]!;
      if (s.apiKey !== undefined && s.apiKey !== apiKey) continue;
      if (s.method !== undefined && !path.includes(s.method)) continue;
      if (--s.remaining <= 0) scripts.splice(i, 1);
      return s.failure;
    }
    return null;
  }
}

/** The request a scripted failure answers. */
export interface ScriptedCall {
  req: IncomingMessage;
  res: ServerResponse;
  apiKey: string | null;
  /** The parsed body (anything, even invalid JSON's text). */
  body: unknown;
  /** The model the route names (models.list: gemini-2.5-flash). */
  model: string;
  /** A streamGenerateContent call, and whether with alt=sse. */
  streaming: boolean;
  sse: boolean;
}

const STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

/** A scripted 429: the quota named (default: generate requests per minute), at the configured limit. */
function scripted429(f: { quotaId?: string; retryDelay?: string }, model: string, l: FakeLimits): ErrorReply {
  const quotaId = f.quotaId ?? QUOTA_IDS.generate.rpm;
  const ids = quotaId.startsWith('Embed') ? QUOTA_IDS.embed : QUOTA_IDS.generate;
  const tokens = quotaId.includes('Token');
  const perDay = quotaId.includes('PerDay');
  const limit = tokens ? (l.tpm ?? 250000) : perDay ? (l.rpd ?? 20) : (l.rpm ?? 15);
  return err429(
    [{ quotaMetric: tokens ? ids.tokens : ids.requests, quotaId, model, limit }],
    0,
    f.retryDelay ?? '23s',
  );
}

/** Answers `call` the way `failure` says. */
export function answerScripted(
  ctx: ActionContext,
  limits: FakeLimits,
  call: ScriptedCall,
  failure: FakeFailure,
) {
  const { reply } = ctx;
  const { req, res, apiKey, body, model } = call;
  switch (failure.kind) {
    case 'overloaded':
      return reply.sendError(res, ERR_OVERLOADED);
    case 'internal':
      return reply.sendError(res, ERR_INTERNAL);
    case 'rate_limit':
      return reply.sendError(res, failure.bare ? ERR_BARE_429 : scripted429(failure, model, limits));
    case 'invalid_key':
      return reply.sendError(res, ERR_INVALID_KEY);
    case 'leaked':
      return reply.sendError(res, ERR_LEAKED);
    case 'suspended':
      return reply.sendError(res, errSuspended(apiKey ?? '', maskSecret(apiKey ?? '')));
    case 'service_disabled':
      return reply.sendError(res, errServiceDisabled(apiKey === null ? 'project' : maskSecret(apiKey)));
    case 'location':
      return reply.sendError(res, ERR_LOCATION);
    case 'billing':
      return reply.sendError(res, ERR_BILLING);
    case 'bad_request':
      return reply.sendError(res, ERR_BAD_REQUEST);
    case 'text_answer': {
      const prompt = isObject(body) ? ctx.billedTokens(body).total : 0;
      const answer = {
        candidates: [
          {
            content: { role: 'model', parts: [{ text: failure.text }] },
            finishReason: 'STOP',
            index: 0,
          },
        ],
        usageMetadata: {
          promptTokenCount: prompt,
          candidatesTokenCount: 1,
          totalTokenCount: prompt + 1,
        },
        modelVersion: model,
        responseId: 'scripted-text-answer',
      };
      return reply.send(res, 200, Buffer.from(JSON.stringify(answer)));
    }
    case 'missing_embedding':
      return reply.send(res, 200, Buffer.from(embeddingsMissingOne(body)));
    case 'hang':
      return; // the socket is destroyed by close() or by the client
    case 'stall':
      res.writeHead(200, { 'content-type': JSON_TYPE });
      res.write('{"candidates": [');
      return;
    case 'reset':
      req.socket.resetAndDestroy();
      return;
    case 'echo':
      return echo(ctx, call, failure);
    case 'midstream_error':
    case 'midstream_break':
    case 'empty_stream':
    case 'split_usage':
      if (call.streaming && isObject(body)) {
        const prompt = ctx.billedTokens(body);
        const answer = buildAnswer(model, body, ctx.streamChunks);
        return ctx.stream(res, call.sse, answer, prompt, model, failure.kind);
      }
      return reply.sendError(res, ERR_INTERNAL);
  }
}

/** An answer that carries the secret (FakeFailure echo). */
function echo(ctx: ActionContext, call: ScriptedCall, failure: { status?: number; secret?: string }) {
  const { reply } = ctx;
  const { res, body, model } = call;
  const secret = failure.secret ?? call.apiKey ?? '';
  const status = failure.status ?? 200;
  if (status !== 200) {
    const message = `Request failed for API key ${secret}; please try again.`;
    return reply.sendError(res, {
      status,
      body: errorBody(status, STATUS_NAMES[status] ?? 'UNKNOWN', message),
    });
  }
  const text = `Your key is ${secret}, isn't it?`;
  const prompt = isObject(body) ? ctx.billedTokens(body) : { total: 0, text: 0, images: 0 };
  const json = responseJson([{ text }], true, prompt, 8, model, responseId());
  if (!call.streaming) return reply.send(res, 200, json);
  const whole = call.sse ? `data: ${json}\r\n\r\n` : `[${json}]`;
  const cut = whole.indexOf(secret) + Math.floor(secret.length / 2);
  reply.later(() => {
    if (res.destroyed) return;
    reply.countStatus(200);
    res.writeHead(200, call.sse ? SSE_HEADERS : ARRAY_STREAM_HEADERS);
    res.write(whole.slice(0, cut));
    reply.later(() => res.end(whole.slice(cut)), SPLIT_WRITE_GAP_MS);
  });
}
