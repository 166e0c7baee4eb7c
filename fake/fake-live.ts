/**
 * The fake's Live API: the WebSocket `BidiGenerateContent` endpoint, as Google serves it.
 *
 * The upgrade is always accepted; refusals are close codes, as Google sends them: no key 1008,
 * an invalid key 1007, a model that is not a Live model 1008, a project over its concurrent
 * session limit 1011. The first message must be `{"setup": {"model": …}}`, answered
 * `{"setupComplete": {}}`; each `clientContent` turn that completes is answered with
 * `serverContent` messages (the model's turn in pieces, `generationComplete`, then
 * `turnComplete` with `usageMetadata`, and a `sessionResumptionUpdate` when the setup asked for
 * resumption: a handle of the project, which another project cannot resume). Every server
 * message is a binary frame.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { splitText, textTokens } from './fake-gemini-content.ts';
import type { ErrorReply } from './fake-gemini-errors.ts';

export interface FakeLiveHooks {
  /** The project of a working key, or Google's refusal of the key (missing, invalid, dead). */
  authenticate(apiKey: string | null): { project: string } | ErrorReply;
  /** Records the upgrade request (the fake's request log). */
  record(req: IncomingMessage, apiKey: string | null): void;
  /** Concurrent sessions per project (undefined: no limit). */
  sessionsPerProject: number | undefined;
  /** Pieces of the model's turn. */
  streamChunks: number;
}

export interface FakeLiveSessionInfo {
  project: string;
  model: string;
  apiKey: string;
  /** The client's close code and reason, once it closed. */
  closedBy?: { side: 'client' | 'server'; code: number; reason: string };
  turns: number;
}

export interface FakeLiveControl {
  /** Concurrent sessions per project; undefined: none. Settable. */
  sessionsPerProject: number | undefined;
  /** Sessions past setup, in order, with how they ended. */
  readonly sessions: readonly FakeLiveSessionInfo[];
  /** Sessions open now (of one project, or all). */
  open(project?: string): number;
  /** Closes every open session from Google's side with `code` (default 1011) and `reason`. */
  closeAll(code?: number, reason?: string): void;
  /** Sends a frame (binary) to every open session, as a model streaming audio would. */
  push(frame: Buffer): void;
  /** Bytes the fake's sockets hold because their reader is not taking them (ws bufferedAmount). */
  buffered(): number;
}

export interface FakeLive extends FakeLiveControl {
  /** Handles an upgrade request; false when its path is not the Live endpoint (left to the caller). */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  close(): void;
}

/** The SDK's path (with a double slash after the host from the JS SDK). */
const PATH =
  /^\/+ws\/google\.ai\.generativelanguage\.(v1beta|v1alpha|v1)\.GenerativeService\.BidiGenerateContent$/;
/** Models served over Live (the fake's generation models are not). */
const LIVE_MODEL = /(^|-)live(-|$)|native-audio/;

type Obj = Record<string, unknown>;
function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A close reason fits in 123 bytes. */
function reason(text: string): string {
  const b = Buffer.from(text);
  return b.length <= 123
    ? text
    : b
        .subarray(0, 120)
        .toString('utf8')
        .replace(/\uFFFD$/, '');
}

function texts(node: unknown, out: string[]): void {
  if (Array.isArray(node)) for (const n of node) texts(n, out);
  else if (isObj(node)) {
    if (typeof node.text === 'string') out.push(node.text);
    for (const [k, v] of Object.entries(node)) if (k !== 'text' && typeof v === 'object') texts(v, out);
  }
}

export function createFakeLive(hooks: FakeLiveHooks): FakeLive {
  const wss = new WebSocketServer({ noServer: true });
  const open = new Map<WebSocket, FakeLiveSessionInfo>();
  const sessions: FakeLiveSessionInfo[] = [];
  const control = { sessionsPerProject: hooks.sessionsPerProject };
  /** Session resumption handles handed out, with their project. */
  const handles = new Map<string, string>();

  function openOf(project: string): number {
    let n = 0;
    for (const s of open.values()) if (s.project === project && s.closedBy === undefined) n++;
    return n;
  }

  function send(ws: WebSocket, message: Obj): void {
    if (ws.readyState === ws.OPEN) ws.send(Buffer.from(JSON.stringify(message)));
  }

  function serve(ws: WebSocket, apiKey: string | null): void {
    const who = hooks.authenticate(apiKey);
    if ('status' in who) {
      // Google's close codes: no key 1008, an invalid key 1007, any other refusal of the key 1008.
      const error = JSON.parse(who.body.toString('utf8')).error as { message: string };
      ws.close(who.status === 400 ? 1007 : 1008, reason(error.message));
      return;
    }
    let session: FakeLiveSessionInfo | null = null;
    let resumable = false;
    /** Every user text of the session so far: the context each turn is billed for. */
    const context: string[] = [];
    ws.on('message', (data: RawData) => {
      let msg: unknown;
      try {
        msg = JSON.parse(data.toString());
      } catch {
        ws.close(1007, 'Invalid JSON payload received.');
        return;
      }
      if (!isObj(msg)) return;
      if (session === null) {
        const setup = msg.setup;
        if (!isObj(setup) || typeof setup.model !== 'string') {
          ws.close(1007, 'Invalid JSON payload received. The first message must be setup.');
          return;
        }
        const model = setup.model.replace(/^models\//, '');
        if (!LIVE_MODEL.test(model)) {
          ws.close(
            1008,
            reason(
              `models/${model} is not found for API version v1beta, or is not supported for bidiGenerateContent.`,
            ),
          );
          return;
        }
        const limit = control.sessionsPerProject;
        if (limit !== undefined && openOf(who.project) >= limit) {
          ws.close(1011, 'You exceeded your current quota: too many concurrent sessions for this project.');
          return;
        }
        // Session resumption: a handle is its project's (another project's: not found).
        const resumption = isObj(setup.sessionResumption) ? setup.sessionResumption : null;
        if (typeof resumption?.handle === 'string' && handles.get(resumption.handle) !== who.project) {
          ws.close(1008, 'Requested entity was not found.');
          return;
        }
        resumable = resumption !== null;
        session = { project: who.project, model, apiKey: apiKey ?? '', turns: 0 };
        sessions.push(session);
        open.set(ws, session);
        send(ws, { setupComplete: {} });
        return;
      }
      const content = msg.clientContent ?? msg.client_content;
      if (!isObj(content)) return; // realtime input, tool responses: nothing to answer here
      const said: string[] = [];
      texts(content.turns, said);
      if (said.length > 0) context.push(said.join(' '));
      if (content.turnComplete !== true && content.turn_complete !== true) return;
      const s = session;
      s.turns++;
      const text = `Fake live answer, turn ${s.turns}: ${said.join(' ').slice(0, 200)}`;
      for (const piece of splitText(text, hooks.streamChunks))
        send(ws, { serverContent: { modelTurn: { role: 'model', parts: [{ text: piece }] } } });
      context.push(text);
      const prompt = textTokens(context.join(' '));
      const response = textTokens(text);
      send(ws, { serverContent: { generationComplete: true } });
      send(ws, {
        serverContent: { turnComplete: true },
        usageMetadata: {
          promptTokenCount: prompt,
          responseTokenCount: response,
          totalTokenCount: prompt + response,
          promptTokensDetails: [{ modality: 'TEXT', tokenCount: prompt }],
        },
      });
      if (resumable) {
        const newHandle = `handle-${randomBytes(12).toString('base64url')}`;
        handles.set(newHandle, s.project);
        send(ws, { sessionResumptionUpdate: { newHandle, resumable: true } });
      }
    });
    ws.on('close', (code: number, why: Buffer) => {
      const s = open.get(ws);
      open.delete(ws);
      if (s && s.closedBy === undefined) s.closedBy = { side: 'client', code, reason: why.toString() };
    });
    ws.on('error', () => {});
  }

  return {
    get sessionsPerProject() {
      return control.sessionsPerProject;
    },
    set sessionsPerProject(n: number | undefined) {
      control.sessionsPerProject = n;
    },
    sessions,
    open(project?: string): number {
      if (project !== undefined) return openOf(project);
      return open.size;
    },
    closeAll(code = 1011, why = 'The service is currently unavailable.'): void {
      for (const [ws, s] of open) {
        s.closedBy = { side: 'server', code, reason: why };
        ws.close(code, reason(why));
      }
    },
    push(frame: Buffer): void {
      for (const ws of open.keys()) if (ws.readyState === ws.OPEN) ws.send(frame);
    },
    buffered(): number {
      let n = 0;
      for (const ws of open.keys()) n += ws.bufferedAmount;
      return n;
    },
    upgrade(req, socket, head): boolean {
      // Not `new URL`: the JS SDK's `//ws/…` would read as a host.
      const raw = req.url ?? '/';
      const q = raw.indexOf('?');
      if (!PATH.test(q < 0 ? raw : raw.slice(0, q))) return false;
      const query = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
      const header = req.headers['x-goog-api-key'];
      const apiKey = (typeof header === 'string' && header !== '' ? header : query.get('key')) || null;
      hooks.record(req, apiKey);
      wss.handleUpgrade(req, socket, head, (ws) => serve(ws, apiKey));
      return true;
    },
    close(): void {
      for (const ws of open.keys()) ws.terminate();
      open.clear();
      wss.close();
    },
  };
}
