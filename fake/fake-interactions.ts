/**
 * The fake's Interactions API (`/v1beta/interactions`), as the official SDK (2026) speaks it:
 * create (unary, SSE stream, or `background`), get (unary, or the stream again from
 * `last_event_id`), cancel (`/{id}/cancel` as the SDK sends it, or `/{id}:cancel`) and delete.
 *
 * Google's ownership rule: an interaction belongs to the project of the key that created it.
 * Another project's key gets Google's 404 NOT_FOUND for it, whether it asks for the interaction
 * or continues from it with `previous_interaction_id`. A chain keeps the conversation: each
 * answer says which turn of its chain it is, so a test sees the context was the right one.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { MODELS_BY_NAME, splitText, textTokens } from './fake-gemini-content.ts';
import { type ErrorReply, errModelNotFound, errorBody } from './fake-gemini-errors.ts';
import {
  errInvalid,
  errNotFound,
  type FakeRequestContext,
  type FakeSurface,
  isObject,
} from './fake-surface.ts';

export interface FakeInteractionOptions {
  /** Polls (GET by the owning project) a background interaction answers `in_progress` before it completes; default 2. */
  pollsToFinish?: number;
  /** Pieces of a streamed answer (step.delta events); default 3. */
  streamChunks?: number;
  /** Pause between stream events; default 0. */
  chunkDelayMs?: number;
}

type Obj = Record<string, unknown>;

interface StreamEvent {
  id: string;
  type: string;
  json: Obj;
}

interface Stored {
  id: string;
  project: string;
  model: string;
  status: string;
  created: string;
  updated: string;
  previousId: string | undefined;
  /** The turn of its chain (1 for an interaction without previous_interaction_id). */
  turn: number;
  /** Every user text of the chain so far, this turn's last (the context the model sees). */
  history: string[];
  userText: string;
  answer: string;
  background: boolean;
  polls: number;
  usage: Obj;
  events: StreamEvent[];
}

const PATH = /^\/(v1beta|v1alpha|v1)\/interactions(?:\/([^/:]+)(?:(\/cancel|:cancel))?)?$/;
const NOT_FOUND = (): ErrorReply => errNotFound();
const badRequest = errInvalid;
const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };

/** Every `text` in an Interactions input (a string, content, contents or steps). */
function inputText(input: unknown): string {
  if (typeof input === 'string') return input;
  const texts: string[] = [];
  const stack: unknown[] = [input];
  while (stack.length > 0) {
    const node = stack.pop();
    if (Array.isArray(node)) for (let i = node.length - 1; i >= 0; i--) stack.push(node[i]);
    else if (isObject(node)) {
      if (typeof node.text === 'string') texts.push(node.text);
      for (const [k, v] of Object.entries(node)) if (k !== 'text' && typeof v === 'object') stack.push(v);
    }
  }
  return texts.join(' ');
}

export function fakeInteractions(options: FakeInteractionOptions = {}): FakeSurface {
  const stored = new Map<string, Stored>();
  const nowIso = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const pollsToFinish = Math.max(1, options.pollsToFinish ?? 2);
  const streamChunks = Math.max(1, options.streamChunks ?? 3);
  const chunkDelayMs = Math.max(0, options.chunkDelayMs ?? 0);

  function json(i: Stored): Obj {
    const steps: Obj[] = [{ type: 'user_input', content: [{ type: 'text', text: i.userText }] }];
    const done = i.status === 'completed';
    if (done) steps.push({ type: 'model_output', content: [{ type: 'text', text: i.answer }] });
    const out: Obj = {
      id: i.id,
      object: 'interaction',
      model: i.model,
      status: i.status,
      created: i.created,
      updated: i.updated,
      steps,
    };
    if (i.previousId !== undefined) out.previous_interaction_id = i.previousId;
    if (done) out.usage = i.usage;
    return out;
  }

  function events(i: Stored): StreamEvent[] {
    const lifecycle = (status: string): Obj => ({
      id: i.id,
      model: i.model,
      object: 'interaction',
      status,
      created: i.created,
      ...(status === 'completed' ? { updated: i.updated, usage: i.usage } : {}),
    });
    const list: Array<[string, Obj]> = [
      ['interaction.created', { interaction: lifecycle('in_progress') }],
      ['interaction.status_update', { interaction_id: i.id, status: 'in_progress' }],
      ['step.start', { index: 1, step: { type: 'model_output', content: [] } }],
    ];
    for (const text of splitText(i.answer, streamChunks))
      list.push(['step.delta', { index: 1, delta: { type: 'text', text } }]);
    list.push(['step.stop', { index: 1, usage: i.usage }]);
    list.push(['interaction.completed', { interaction: lifecycle('completed') }]);
    // An event id is opaque to clients: here, the interaction's id and the event's place.
    return list.map(([type, body], n) => {
      const id = Buffer.from(`${i.id}#${n + 1}`).toString('base64url');
      return { id, type, json: { event_type: type, event_id: id, ...body } };
    });
  }

  /** Writes events as SSE (`event:` and `data:` lines), one at a time, then ends the answer. */
  function streamEvents(res: ServerResponse, list: readonly StreamEvent[]): void {
    if (res.destroyed) return;
    res.writeHead(200, SSE_HEADERS);
    let n = 0;
    const next = (): void => {
      if (res.destroyed) return;
      if (n >= list.length) {
        res.end();
        return;
      }
      const e = list[n++]!;
      res.write(`event: ${e.type}\ndata: ${JSON.stringify(e.json)}\n\n`);
      if (chunkDelayMs > 0) setTimeout(next, chunkDelayMs).unref();
      else next();
    };
    next();
  }

  /** The caller's project's interaction, or null (unknown, deleted, or another project's: Google's 404). */
  function owned(id: string, project: string): Stored | null {
    const i = stored.get(id);
    return i !== undefined && i.project === project ? i : null;
  }

  function create(ctx: FakeRequestContext) {
    const body = ctx.body;
    if (ctx.bodyInvalid || !isObject(body))
      return ctx.sendError(badRequest('Invalid JSON payload received.'));
    const model = String(body.model ?? body.agent ?? '').replace(/^models\//, '');
    if (model === '') return ctx.sendError(badRequest('model or agent is required.'));
    if (body.agent === undefined) {
      const info = MODELS_BY_NAME.get(model);
      if (info === undefined || !info.methods.includes('generateContent'))
        return ctx.sendError(errModelNotFound(model, 'v1beta', 'createInteraction'));
    }
    let previous: Stored | null = null;
    if (body.previous_interaction_id !== undefined) {
      previous = owned(String(body.previous_interaction_id), ctx.project);
      if (previous === null) return ctx.sendError(NOT_FOUND());
    }
    const userText = inputText(body.input);
    if (userText === '' && previous === null) return ctx.sendError(badRequest('input is required.'));
    // The model sees the whole chain: every earlier turn is billed again as input.
    const history = [...(previous?.history ?? []), userText];
    const inputTokens = textTokens(history.join(' '));
    const turn = (previous?.turn ?? 0) + 1;
    const answer = `Fake interaction answer, turn ${turn}: ${userText.slice(0, 200)}`;
    const outputTokens = textTokens(answer);
    const now = nowIso();
    const background = body.background === true;
    const i: Stored = {
      id: `v1_${randomBytes(18).toString('base64url')}`,
      project: ctx.project,
      model,
      status: background ? 'in_progress' : 'completed',
      created: now,
      updated: now,
      previousId: previous?.id,
      turn,
      history,
      userText,
      answer,
      background,
      polls: 0,
      usage: {
        total_input_tokens: inputTokens,
        total_output_tokens: outputTokens,
        total_tokens: inputTokens + outputTokens,
      },
      events: [],
    };
    i.events = events(i);
    if (body.store !== false) stored.set(i.id, i);
    if (body.stream === true && !background) return streamEvents(ctx.res, i.events);
    ctx.send(200, JSON.stringify(json(i)));
  }

  function get(ctx: FakeRequestContext, i: Stored) {
    // A background interaction completes after a poll or two.
    if (i.background && i.status === 'in_progress' && ++i.polls >= pollsToFinish) {
      i.status = 'completed';
      i.updated = nowIso();
    }
    if (ctx.query.get('stream') !== 'true') return ctx.send(200, JSON.stringify(json(i)));
    if (i.status !== 'completed') return ctx.sendError(badRequest('The interaction is still running.'));
    const last = ctx.query.get('last_event_id');
    let from = 0;
    if (last !== null && last !== '') {
      const at = i.events.findIndex((e) => e.id === last);
      if (at < 0) return ctx.sendError(badRequest('Unknown last_event_id.'));
      from = at + 1;
    }
    streamEvents(ctx.res, i.events.slice(from));
  }

  function cancel(ctx: FakeRequestContext, i: Stored) {
    if (!i.background || i.status !== 'in_progress') {
      return ctx.sendError({
        status: 400,
        body: errorBody(
          400,
          'FAILED_PRECONDITION',
          'Only background interactions that are still running can be cancelled.',
        ),
      });
    }
    i.status = 'cancelled';
    i.updated = nowIso();
    ctx.send(200, JSON.stringify(json(i)));
  }

  return {
    matches(_method: string, path: string): boolean {
      return PATH.test(path);
    },
    handle(ctx: FakeRequestContext) {
      const m = PATH.exec(ctx.path)!;
      const id = m[2];
      const action = m[3] === undefined ? null : 'cancel';
      const { method } = ctx;
      if (id === undefined) {
        if (method === 'POST') return create(ctx);
        return ctx.sendError(errNotFound('Method not found.'));
      }
      const i = owned(id, ctx.project);
      if (i === null) return ctx.sendError(NOT_FOUND());
      if (action === 'cancel' && method === 'POST') return cancel(ctx, i);
      if (action === null && method === 'GET') return get(ctx, i);
      if (action === null && method === 'DELETE') {
        stored.delete(i.id);
        return ctx.send(200, '{}');
      }
      ctx.sendError(errNotFound('Method not found.'));
    },
    reset(): void {
      stored.clear();
    },
  };
}
