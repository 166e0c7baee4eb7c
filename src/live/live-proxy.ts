/**
 * The Live API through the pool: one client WebSocket, one upstream WebSocket with a pool key.
 *
 * A session starts with the client's first message, `{"setup": {"model": …}}`. The gateway
 * reserves a key for that model (its (project, model) budget: one request, the setup's tokens),
 * takes one of the project's concurrent Live session slots in the state store (a lease renewed
 * while the session lives, so a crashed instance leaks none), opens the upstream socket with the
 * key in its `x-goog-api-key` header (the client's token never goes upstream) and sends the
 * setup. Until Google answers it (`setupComplete`), a refused key is settled like any call's
 * (invalid: disabled; quota: rested; a project at its session limit: skipped) and the next key
 * is tried. From then on frames pass both ways as they came (text or binary), with
 * backpressure: the side that sends is paused while the other side's buffer is over a high
 * water mark. Closing either side closes the other with its code.
 *
 * When the session ends its key's reservation is settled with the input tokens of its usage
 * messages (`usageMetadata.promptTokenCount` of each turn, summed: each turn bills its whole
 * context), and its slot is released.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { type RawData, WebSocket } from 'ws';
import type { KeyConfig } from '../config/keys.ts';
import { classifyUpstream } from '../pool/classify.ts';
import { estimateInputTokens } from '../pool/estimate.ts';
import { type KeyPool, type Lease, PoolExhaustedError, QueueAbortedError } from '../pool/key-pool.ts';
import { normalizeModel } from '../pool/models.ts';
import type { Outcome, Pin, StateStore } from '../store/types.ts';
import { MODEL_NAME } from '../upstream/gemini-types.ts';
import type { ResponseScrubber } from '../upstream/response-scrub.ts';
import { liveScope, liveSessionLimit } from './session-limit.ts';

export interface LiveProxyOptions {
  /** GEMINI_BASE_URL (http → ws, https → wss). */
  baseUrl: string;
  pool: KeyPool;
  store: StateStore;
  logger: Logger;
  /** Takes pool keys and client tokens out of what goes to clients. */
  scrubber: ResponseScrubber;
  /** Keys tried per session (MAX_ATTEMPTS). */
  maxAttempts: number;
  /** Longest wait for the upstream handshake and Google's setupComplete (per key). */
  attemptTimeoutMs: number;
  /** AFFINITY=off: a resumed session is not pinned to its project (a test switch). */
  affinityOff?: boolean;
  /** A session slot's lease; renewed every third of it. Default 30 s. */
  slotTtlMs?: number;
  /** Longest wait for the client's setup message. Default 30 s. */
  setupWaitMs?: number;
  /** Bytes buffered towards one side above which the other side is paused. Default 1 MiB. */
  highWaterBytes?: number;
  /** Called when a session ends (usage accounting per client), never throws. */
  onEnd?: (end: LiveSessionEnd) => void;
}

export interface LiveSessionEnd {
  client: string;
  model: string;
  keyId: string | null;
  promptTokens: number;
  outputTokens: number;
  failed: boolean;
}

/** Who opened the session. */
export interface LiveCaller {
  client: string;
  admin: boolean;
  /** The API version of the path (v1beta, v1alpha, v1). */
  version: string;
  /** Why the client may not use `model` (a client limited to some models), or null. */
  refusesModel?: (model: string) => string | null;
}

/** How long a resumption handle the gateway saw keeps its session's project (Google: 2 h after the session). */
const RESUMPTION_MS = 3 * 3600 * 1000;
const USAGE_MARKER = Buffer.from('"usageMetadata"');
const RESUMPTION_MARKER = Buffer.from('"sessionResumptionUpdate"');
/** Frames the client sends before the session is open are held, up to this many bytes. */
const MAX_HELD_BYTES = 16 * 1024 * 1024;

type Frame = { data: Buffer; isBinary: boolean };

/** What an upstream attempt came to before the session was open. */
type Attempt =
  | { kind: 'open'; ws: WebSocket; first: Frame }
  | { kind: 'client_gone' }
  /** The key (or Google) failed: settle it with `outcome` and try another key. */
  | { kind: 'retry'; outcome: Outcome; why: string; throttled?: boolean }
  /** The project is at Google's concurrent-session limit: try another project. */
  | { kind: 'project_full'; why: string }
  /** The session itself is refused (bad setup, unknown model): the client gets Google's close. */
  | { kind: 'refused'; code: number; reason: string }
  /** Google refuses the gateway's location: no key would fare better. */
  | { kind: 'egress' };

/** The resource name under which a resumption handle's project is kept (its digest: handles are credentials). */
export function resumptionName(handle: string): string {
  return `liveResumptions/${createHash('sha256').update(handle).digest('base64url')}`;
}

export class LiveProxy {
  private readonly o: Required<Omit<LiveProxyOptions, 'onEnd' | 'affinityOff'>> &
    Pick<LiveProxyOptions, 'onEnd' | 'affinityOff'>;
  private readonly wsBase: string;
  private readonly sessions = new Set<LiveSession>();

  constructor(options: LiveProxyOptions) {
    this.o = { slotTtlMs: 30_000, setupWaitMs: 30_000, highWaterBytes: 1024 * 1024, ...options };
    const base = new URL(options.baseUrl);
    base.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
    this.wsBase = `${base.origin}${base.pathname.replace(/\/$/, '')}`;
  }

  /** Sessions open on this instance. */
  get open(): number {
    return this.sessions.size;
  }

  /** Serves a client socket that was just accepted. */
  serve(client: WebSocket, caller: LiveCaller): void {
    const session = new LiveSession(this, client, caller);
    this.sessions.add(session);
    session.ended.then(() => this.sessions.delete(session));
  }

  /** Closes every session (shutdown) and waits for them to settle, at most `waitMs`. */
  async closeAll(code: number, reason: string, waitMs = 2000): Promise<void> {
    const ends = [...this.sessions].map((s) => {
      s.closeClient(code, reason);
      return s.ended;
    });
    await Promise.race([Promise.all(ends), new Promise((r) => setTimeout(r, waitMs).unref())]);
  }

  /** @internal */
  get options() {
    return this.o;
  }

  /** @internal */
  upstreamUrl(version: string): string {
    return `${this.wsBase}/ws/google.ai.generativelanguage.${version}.GenerativeService.BidiGenerateContent`;
  }
}

class LiveSession {
  readonly ended: Promise<void>;
  private end!: () => void;
  private readonly o: LiveProxy['options'];
  private readonly id = randomUUID();
  private state: 'setup' | 'connecting' | 'relay' | 'closed' = 'setup';
  private readonly held: Frame[] = [];
  private heldBytes = 0;
  private setup: Frame | null = null;
  private model = '';
  private upstream: WebSocket | null = null;
  private lease: Lease | null = null;
  private slot: string | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private readonly setupTimer: NodeJS.Timeout;
  private readonly abort = new AbortController();
  private promptTokens = 0;
  private outputTokens = 0;
  private usageSeen = false;
  private upstreamClose: { code: number; reason: string } | null = null;
  private clientClose: number | null = null;
  private readonly started = Date.now();
  private pendingAttempt: ((a: Attempt) => void) | null = null;

  private readonly proxy: LiveProxy;
  private readonly client: WebSocket;
  private readonly caller: LiveCaller;

  constructor(proxy: LiveProxy, client: WebSocket, caller: LiveCaller) {
    this.proxy = proxy;
    this.client = client;
    this.caller = caller;
    this.o = proxy.options;
    this.ended = new Promise((resolve) => {
      this.end = resolve;
    });
    client.on('message', (data, isBinary) => this.fromClient(asBuffer(data), isBinary));
    client.on('close', (code) => this.clientClosed(code));
    client.on('error', () => {});
    this.setupTimer = setTimeout(
      () =>
        this.closeClient(1008, 'no setup message arrived: the first message must be {"setup": {"model": …}}'),
      this.o.setupWaitMs,
    );
  }

  closeClient(code: number, reason: string): void {
    // A paused socket would never read the client's answer to the close: the handshake would hang.
    this.client.resume();
    closeSocket(this.client, code, reason);
    if (this.state === 'setup') this.finish();
  }

  private fromClient(data: Buffer, isBinary: boolean): void {
    if (this.state === 'relay') {
      if (this.upstream) this.pipe(data, isBinary, this.upstream, this.client);
      return;
    }
    if (this.state === 'closed') return;
    if (this.state === 'setup') {
      clearTimeout(this.setupTimer);
      this.setup = { data, isBinary };
      this.state = 'connecting';
      // Nothing more is read until the upstream is open (what already arrived is held).
      this.client.pause();
      void this.connect().catch((err) => {
        this.o.logger.warn({ err: String(err) }, 'live session: unexpected failure while connecting');
        this.closeClient(1011, 'the gateway could not open the session');
        this.finish();
      });
      return;
    }
    this.heldBytes += data.length;
    if (this.heldBytes > MAX_HELD_BYTES) {
      this.closeClient(1009, 'too much data before the session was open');
      return;
    }
    this.held.push({ data, isBinary });
  }

  private clientClosed(code: number): void {
    this.clientClose = code;
    this.abort.abort();
    clearTimeout(this.setupTimer);
    if (this.pendingAttempt) this.pendingAttempt({ kind: 'client_gone' });
    // The client's reason is not passed on (only its code): it is the client's own text.
    if (this.upstream) {
      this.upstream.resume(); // paused by backpressure, it would not read Google's answer to the close
      closeSocket(this.upstream, code === 1006 || code === 1005 ? 1000 : code, '');
    }
    if (this.state === 'setup' || this.state === 'relay') this.finish();
  }

  /** Chooses a key and a session slot, and opens the upstream; retries other keys while allowed. */
  private async connect(): Promise<void> {
    const setup = parseSetup(this.setup!.data);
    if (setup === null) {
      this.closeClient(
        1007,
        'Invalid JSON payload received. The first message must be {"setup": {"model": …}}.',
      );
      return this.finish();
    }
    this.model = normalizeModel(setup.model);
    if (!MODEL_NAME.test(this.model)) {
      this.closeClient(1008, 'the setup names no valid model');
      return this.finish();
    }
    const refusal = this.caller.refusesModel?.(this.model) ?? null;
    if (refusal !== null) {
      this.closeClient(1008, truncate(refusal));
      return this.finish();
    }
    const { pool, store } = this.o;
    // A resumed session belongs to the project (and client) that had it.
    let pin: Pin | undefined;
    if (setup.handle !== undefined) {
      const [owner] = await store
        .getResources([resumptionName(setup.handle)], Date.now())
        .catch(() => [null]);
      if (owner && owner.client !== this.caller.client && !this.caller.admin) {
        this.closeClient(1008, 'Requested entity was not found.');
        return this.finish();
      }
      if (owner && !this.o.affinityOff) pin = { project: owner.project };
    }
    const estimate = estimateInputTokens(setup.json);
    const exclude: string[] = [];
    let attempts = 0;
    let sessionsFull = false;
    let lastWhy = 'no key could open the session';
    for (;;) {
      if (this.abort.signal.aborted) return this.finish();
      let lease: Lease;
      try {
        lease = await pool.acquire(this.model, estimate, exclude, this.abort.signal, pin);
      } catch (err) {
        if (err instanceof QueueAbortedError || this.abort.signal.aborted) return this.finish();
        if (err instanceof PoolExhaustedError) {
          if (sessionsFull && err.retryAtMs === null)
            this.closeClient(
              1011,
              `every project that can serve ${this.model} is at its limit of concurrent Live sessions; retry later`,
            );
          else if (attempts > 0 && err.retryAtMs === null) this.closeClient(1011, truncate(lastWhy));
          else if (err.retryAtMs === null)
            this.closeClient(1008, `no enabled key can serve model "${this.model}"`);
          else {
            const s = Math.max(1, Math.ceil((err.retryAtMs - Date.now()) / 1000));
            this.closeClient(1011, `every key is at its limit for ${this.model}; retry in ${s}s`);
          }
        } else this.closeClient(1011, 'the gateway cannot reach its state store; retry shortly');
        return this.finish();
      }
      if (this.abort.signal.aborted) {
        void pool.report(lease, { kind: 'unused' });
        return this.finish();
      }
      const project = lease.reservation.project;
      const key = pool.keys.find((k) => k.id === lease.keyId);
      const scope = liveScope(project, this.model);
      let slot: { ok: boolean };
      try {
        slot = await store.acquireSlot(
          scope,
          this.id,
          liveSessionLimit(key, this.model),
          this.o.slotTtlMs,
          Date.now(),
        );
      } catch {
        void pool.report(lease, { kind: 'unused' });
        this.closeClient(1011, 'the gateway cannot reach its state store; retry shortly');
        return this.finish();
      }
      if (!slot.ok) {
        // This project has its limit of sessions: its keys are skipped (the budget goes back).
        void pool.report(lease, { kind: 'unused' });
        sessionsFull = true;
        exclude.push(...keysOf(pool.keys, project));
        continue;
      }
      this.lease = lease;
      this.slot = scope;
      this.renewTimer = setInterval(
        () => {
          void store.renewSlot(scope, this.id, this.o.slotTtlMs, Date.now()).catch(() => {});
        },
        Math.max(1000, Math.floor(this.o.slotTtlMs / 3)),
      );
      this.renewTimer.unref();
      attempts++;
      const result = await this.attempt(lease);
      if (result.kind === 'open') return this.startRelay(result.ws, result.first);
      this.upstream = null;
      this.lease = null;
      this.releaseSlot();
      switch (result.kind) {
        case 'client_gone':
          void pool.report(lease, { kind: 'neutral' });
          return this.finish();
        case 'refused':
          // The session's own fault: the key is fine, Google's close goes to the client.
          void pool.report(lease, { kind: 'success' });
          this.closeClient(result.code, result.reason);
          return this.finish();
        case 'egress':
          void pool.report(lease, { kind: 'neutral' });
          this.closeClient(1008, "Google refuses requests from the gateway's network location");
          return this.finish();
        case 'project_full':
          void pool.report(lease, { kind: 'neutral' });
          sessionsFull = true;
          lastWhy = result.why;
          exclude.push(...keysOf(pool.keys, project));
          break;
        case 'retry':
          void pool.report(lease, result.outcome);
          if (result.throttled) void pool.noteThrottled(lease.keyId);
          lastWhy = result.why;
          exclude.push(lease.keyId);
          break;
      }
      if (attempts >= this.o.maxAttempts) {
        this.closeClient(1011, truncate(lastWhy));
        return this.finish();
      }
    }
  }

  /** One upstream socket with `lease`'s key: open, send the setup, wait for Google's first answer. */
  private attempt(lease: Lease): Promise<Attempt> {
    return new Promise<Attempt>((resolve) => {
      const ws = new WebSocket(this.proxy.upstreamUrl(this.caller.version), {
        headers: { 'x-goog-api-key': lease.apiKey },
        handshakeTimeout: this.o.attemptTimeoutMs,
        perMessageDeflate: false,
      });
      this.upstream = ws;
      let settled = false;
      const done = (a: Attempt): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.pendingAttempt = null;
        if (a.kind !== 'open') ws.terminate();
        resolve(a);
      };
      this.pendingAttempt = done;
      const timer = setTimeout(
        () =>
          done({
            kind: 'retry',
            outcome: { kind: 'failure', reason: 'TIMEOUT' },
            why: 'Google did not answer the setup in time',
          }),
        this.o.attemptTimeoutMs,
      );
      ws.on('open', () => {
        const s = this.setup!;
        ws.send(s.data, { binary: s.isBinary });
      });
      ws.on('message', (data, isBinary) => {
        if (!settled) done({ kind: 'open', ws, first: { data: asBuffer(data), isBinary } });
        else if (this.state === 'relay') this.fromUpstream(asBuffer(data), isBinary);
      });
      ws.on('close', (code, reason) => {
        if (!settled) done(classifyClose(code, this.o.scrubber.scrubText(reason.toString())));
        else this.upstreamClosed(code, reason.toString());
      });
      ws.on('unexpected-response', (req, res) => {
        readSmall(res).then((body) => {
          req.destroy();
          done(classifyHandshake(res.statusCode ?? 502, body, this.o.scrubber));
        });
      });
      ws.on('error', () => {
        if (!settled)
          done({
            kind: 'retry',
            outcome: { kind: 'failure', reason: 'NETWORK_ERROR' },
            why: 'the upstream could not be reached',
          });
      });
    });
  }

  private startRelay(ws: WebSocket, first: Frame): void {
    this.state = 'relay';
    this.upstream = ws;
    this.fromUpstream(first.data, first.isBinary);
    for (const f of this.held.splice(0)) this.pipe(f.data, f.isBinary, ws, this.client);
    this.heldBytes = 0;
    this.client.resume();
    if (this.client.readyState !== WebSocket.OPEN) closeSocket(ws, 1000, '');
  }

  private fromUpstream(data: Buffer, isBinary: boolean): void {
    if (data.includes(USAGE_MARKER) || data.includes(RESUMPTION_MARKER)) this.read(data);
    this.pipe(this.o.scrubber.scrub(data), isBinary, this.client, this.upstream!);
  }

  /** Usage (summed per turn) and resumption handles (kept with the session's project and client). */
  private read(data: Buffer): void {
    let msg: {
      usageMetadata?: {
        promptTokenCount?: unknown;
        responseTokenCount?: unknown;
        candidatesTokenCount?: unknown;
      };
      sessionResumptionUpdate?: { newHandle?: unknown; resumable?: unknown };
    };
    try {
      msg = JSON.parse(data.toString('utf8'));
    } catch {
      return;
    }
    const u = msg.usageMetadata;
    if (u) {
      this.usageSeen = true;
      if (typeof u.promptTokenCount === 'number') this.promptTokens += u.promptTokenCount;
      const out = u.responseTokenCount ?? u.candidatesTokenCount;
      if (typeof out === 'number') this.outputTokens += out;
    }
    const r = msg.sessionResumptionUpdate;
    if (r && typeof r.newHandle === 'string' && r.newHandle !== '' && r.resumable !== false && this.lease) {
      const owner = {
        project: this.lease.reservation.project,
        keyId: this.lease.keyId,
        client: this.caller.client,
      };
      void this.o.store
        .putResource({ name: resumptionName(r.newHandle), owner, expiresAtMs: Date.now() + RESUMPTION_MS })
        .catch(() => {});
    }
  }

  /** Sends to `to`; pauses `from` while `to` has more than the high water mark buffered. */
  private pipe(data: Buffer, isBinary: boolean, to: WebSocket, from: WebSocket): void {
    if (to.readyState !== WebSocket.OPEN) return;
    to.send(data, { binary: isBinary }, () => {
      if (from.isPaused && to.bufferedAmount <= this.o.highWaterBytes / 2 && this.state === 'relay')
        from.resume();
    });
    if (to.bufferedAmount > this.o.highWaterBytes && !from.isPaused) from.pause();
  }

  private upstreamClosed(code: number, reason: string): void {
    this.upstreamClose = { code, reason };
    if (this.state !== 'relay') return;
    // Google's code goes to the client; an abnormal end (no close frame) is an internal error.
    if (code === 1006 || code === 1015) this.closeClient(1011, 'the upstream connection was lost');
    else this.closeClient(code, this.o.scrubber.scrubText(reason));
    this.finish();
  }

  private releaseSlot(): void {
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = null;
    if (this.slot !== null) void this.o.store.releaseSlot(this.slot, this.id).catch(() => {});
    this.slot = null;
  }

  /** Settles the key with the session's input tokens, frees the slot, logs one line. Once. */
  private finish(): void {
    if (this.state === 'closed') return;
    const wasRelay = this.state === 'relay';
    this.state = 'closed';
    clearTimeout(this.setupTimer);
    this.abort.abort();
    this.releaseSlot();
    const lease = this.lease;
    this.lease = null;
    const broken = this.upstreamClose !== null && [1006, 1011, 1015].includes(this.upstreamClose.code);
    if (lease) {
      const actualTokens = this.usageSeen ? this.promptTokens : undefined;
      void this.o.pool.report(
        lease,
        broken ? { kind: 'failure', reason: 'LIVE_BROKEN', actualTokens } : { kind: 'success', actualTokens },
      );
    }
    if (wasRelay) {
      this.o.onEnd?.({
        client: this.caller.client,
        model: this.model,
        keyId: lease?.keyId ?? null,
        promptTokens: this.promptTokens,
        outputTokens: this.outputTokens,
        failed: broken,
      });
      this.o.logger.info(
        {
          live_session: this.id,
          client: this.caller.client,
          model: this.model,
          key_id: lease?.keyId,
          duration_ms: Date.now() - this.started,
          prompt_tokens: this.promptTokens,
          output_tokens: this.outputTokens,
          client_close: this.clientClose ?? undefined,
          upstream_close: this.upstreamClose?.code,
        },
        'live session ended',
      );
    }
    this.end();
  }
}

/** The setup of a first message: its model, its resumption handle, and the whole for the estimate. */
function parseSetup(data: Buffer): { model: string; handle?: string; json: unknown } | null {
  let msg: unknown;
  try {
    msg = JSON.parse(data.toString('utf8'));
  } catch {
    return null;
  }
  const setup = (msg as { setup?: unknown } | null)?.setup as
    | { model?: unknown; sessionResumption?: { handle?: unknown }; session_resumption?: { handle?: unknown } }
    | undefined;
  if (typeof setup !== 'object' || setup === null || typeof setup.model !== 'string') return null;
  const handle = (setup.sessionResumption ?? setup.session_resumption)?.handle;
  return {
    model: setup.model,
    json: setup,
    ...(typeof handle === 'string' && handle !== '' ? { handle } : {}),
  };
}

/** Google closed the socket before the session opened: why, and what it says about the key. */
export function classifyClose(code: number, reason: string): Attempt {
  const why = `Google closed the session (${code}${reason ? `: ${reason}` : ''})`;
  if (code === 1007) {
    if (/API key/i.test(reason))
      return { kind: 'retry', outcome: { kind: 'disable', reason: 'API_KEY_INVALID' }, why };
    return { kind: 'refused', code, reason };
  }
  if (code === 1008) {
    if (/location is not supported/i.test(reason)) return { kind: 'egress' };
    const dead = /leaked/i.test(reason)
      ? 'LEAKED'
      : /suspended/i.test(reason)
        ? 'SUSPENDED'
        : /has not been used in project|is disabled|SERVICE_DISABLED/i.test(reason)
          ? 'SERVICE_DISABLED'
          : /API key|unregistered callers/i.test(reason)
            ? 'PERMISSION_DENIED'
            : null;
    if (dead) return { kind: 'retry', outcome: { kind: 'disable', reason: dead }, why };
    return { kind: 'refused', code, reason };
  }
  if (code === 1011) {
    if (/concurrent|too many sessions|sessions/i.test(reason) && /quota|exceed|limit|too many/i.test(reason))
      return { kind: 'project_full', why };
    if (/quota|exhausted|RESOURCE_EXHAUSTED/i.test(reason))
      return {
        kind: 'retry',
        outcome: { kind: 'rest', untilMs: Date.now() + 60_000, reason: 'LIVE_QUOTA' },
        why,
      };
    return { kind: 'retry', outcome: { kind: 'failure', reason: 'LIVE_INTERNAL' }, why };
  }
  if (code === 1001 || code === 1012 || code === 1013)
    return { kind: 'retry', outcome: { kind: 'neutral', reason: 'LIVE_UNAVAILABLE' }, why };
  return { kind: 'retry', outcome: { kind: 'failure', reason: 'LIVE_CLOSED' }, why };
}

/** Google answered the upgrade with an HTTP error: the same verdicts as any answer of Google's. */
function classifyHandshake(status: number, body: string, scrubber: ResponseScrubber): Attempt {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  const message = scrubber.scrubText(
    String((json as { error?: { message?: unknown } } | undefined)?.error?.message ?? `HTTP ${status}`),
  );
  const why = `Google refused the session (${status}: ${message})`;
  const v = classifyUpstream(status, json, Date.now());
  switch (v.kind) {
    case 'success':
    case 'client_error':
      return { kind: 'refused', code: 1008, reason: truncate(message) };
    case 'egress_refused':
      return { kind: 'egress' };
    case 'rest':
      return {
        kind: 'retry',
        outcome: { kind: 'rest', untilMs: v.untilMs, reason: v.reason, model: v.model },
        why,
      };
    case 'throttled':
      return {
        kind: 'retry',
        outcome: { kind: 'rest', untilMs: v.untilMs, reason: v.reason },
        why,
        throttled: true,
      };
    case 'disable':
      return { kind: 'retry', outcome: { kind: 'disable', reason: v.reason }, why };
    case 'retry':
      return {
        kind: 'retry',
        outcome: v.circuit ? { kind: 'failure', reason: v.reason } : { kind: 'neutral', reason: v.reason },
        why,
      };
  }
}

function keysOf(keys: readonly KeyConfig[], project: string): string[] {
  return keys.filter((k) => k.project === project).map((k) => k.id);
}

function asBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** A close reason fits in 123 bytes. */
function truncate(text: string): string {
  const b = Buffer.from(text);
  return b.length <= 123
    ? text
    : `${b
        .subarray(0, 119)
        .toString('utf8')
        .replace(/\uFFFD+$/, '')}...`;
}

/** Codes a peer may send in a close frame (1005, 1006, 1015 may not). */
function sendable(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

export function closeSocket(ws: WebSocket, code: number, reason: string): void {
  if (ws.readyState === WebSocket.CLOSED || ws.readyState === WebSocket.CLOSING) return;
  if (ws.readyState === WebSocket.CONNECTING) {
    ws.terminate();
    return;
  }
  if (code === 1005) ws.close();
  else ws.close(sendable(code) ? code : 1011, truncate(reason));
}

function readSmall(res: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      if (size < 65_536) chunks.push(c);
      size += c.length;
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}
