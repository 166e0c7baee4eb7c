import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GoogleGenAI, type LiveServerMessage, Modality, type Session } from '@google/genai';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type FakeGemini, type FakeGeminiOptions, startFakeGemini } from '../../fake/fake-gemini.ts';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';
import { type Stack, type StackOptions, sharedRedisPair, stackPerTest } from '../helpers/stack.ts';
import { tempDirs } from '../helpers/temp.ts';

/**
 * The Live API through the gateway with the official SDK (`ai.live.connect`, baseUrl = the
 * gateway, a client token as the key) against the fake's Live endpoint: turns relayed both ways,
 * closes passed on with their codes, the per-project session limit held across instances, and
 * the client's token never reaching Google.
 */
const ALICE = 'alice-live-token-0123456789abcdef';
const BOB = 'bob-live-token-0123456789abcdef01';
const MODEL = 'gemini-live-2.5-flash-preview';
const A1 = 'AIzaFakeLiveProjectAKey1xxxxxxxxxxxxxxx';
const B1 = 'AIzaFakeLiveProjectBKey1xxxxxxxxxxxxxxx';
const KEYS = [
  { id: 'a1', api_key: A1, project: 'proj-a' },
  { id: 'b1', api_key: B1, project: 'proj-b' },
];

const tmp = tempDirs('gg-live-');
const start = stackPerTest();
const redisUrl = redisTestUrl();

interface LiveOptions {
  /** live_sessions in the keys file's defaults. */
  sessions?: number;
  env?: Record<string, string>;
  fake?: Partial<FakeGeminiOptions>;
}

async function liveFake(opts: LiveOptions = {}): Promise<FakeGemini> {
  return startFakeGemini({
    keys: KEYS.map((k) => ({ apiKey: k.api_key, project: k.project })),
    ...opts.fake,
  });
}

async function liveStackOptions(fake: FakeGemini, opts: LiveOptions = {}): Promise<StackOptions> {
  const file = join(tmp(), 'keys.json');
  await writeFile(file, JSON.stringify({ defaults: { live_sessions: opts.sessions ?? 5 }, keys: KEYS }));
  return {
    fakeInstance: fake,
    env: {
      GEMINI_API_KEYS: '',
      API_KEYS_FILE: file,
      CLIENT_API_KEYS_MAP: `${ALICE}:alice,${BOB}:bob`,
      ...opts.env,
    },
  };
}

async function liveStack(opts: LiveOptions = {}): Promise<Stack> {
  const fake = await liveFake(opts);
  const s = await start(await liveStackOptions(fake, opts));
  const close = s.close;
  s.close = async () => {
    await close();
    await fake.close();
  };
  return s;
}

/** An SDK session with its messages and its close, as the SDK's callbacks report them. */
interface Opened {
  session: Session;
  messages: LiveServerMessage[];
  closed: Promise<{ code: number; reason: string }>;
  /** Resolves when a message satisfying `pred` has arrived (from `from` on). */
  waitFor(pred: (m: LiveServerMessage) => boolean, from?: number): Promise<LiveServerMessage>;
}

async function connect(url: string, token = ALICE): Promise<Opened> {
  const ai = new GoogleGenAI({ apiKey: token, httpOptions: { baseUrl: url } });
  const messages: LiveServerMessage[] = [];
  const waiters: Array<() => void> = [];
  let onClose!: (e: { code: number; reason: string }) => void;
  const closed = new Promise<{ code: number; reason: string }>((r) => {
    onClose = r;
  });
  const session = await ai.live.connect({
    model: MODEL,
    config: { responseModalities: [Modality.TEXT] },
    callbacks: {
      onmessage: (m) => {
        messages.push(m);
        for (const w of waiters.splice(0)) w();
      },
      onclose: (e) => onClose({ code: e.code, reason: e.reason }),
      onerror: () => {},
    },
  });
  const waitFor = async (pred: (m: LiveServerMessage) => boolean, from = 0) => {
    for (;;) {
      const found = messages.slice(from).find(pred);
      if (found) return found;
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  return { session, messages, closed, waitFor };
}

type Raw = { kind: 'open'; ws: WebSocket } | { kind: 'closed'; code: number; reason: string };

/**
 * A raw WebSocket to the gateway's Live path that sends the setup: open once setupComplete
 * arrives, or closed (with the code and reason) when the gateway refuses the session.
 */
function rawSession(url: string, query: string): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(
      `${url.replace('http', 'ws')}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent${query}`,
    );
    ws.on('open', () => ws.send(JSON.stringify({ setup: { model: `models/${MODEL}` } })));
    const onSetup = (data: Buffer) => {
      if (data.toString().startsWith('{"setupComplete"')) {
        ws.off('message', onSetup);
        resolve({ kind: 'open', ws });
      }
    };
    ws.on('message', onSetup);
    ws.on('close', (code, reason) => resolve({ kind: 'closed', code, reason: reason.toString() }));
    ws.on('error', reject);
  });
}

async function rawClose(url: string, query: string): Promise<{ code: number; reason: string }> {
  const r = await rawSession(url, query);
  if (r.kind === 'open') {
    r.ws.close();
    throw new Error('expected the session to be refused, it opened');
  }
  return { code: r.code, reason: r.reason };
}

async function rawOpen(url: string, token = BOB): Promise<WebSocket> {
  const r = await rawSession(url, `?key=${token}`);
  if (r.kind === 'closed') throw new Error(`expected the session to open, it closed ${r.code} ${r.reason}`);
  return r.ws;
}

function turnText(messages: LiveServerMessage[], from: number): string {
  return messages
    .slice(from)
    .map((m) => m.serverContent?.modelTurn?.parts?.map((p) => p.text ?? '').join('') ?? '')
    .join('');
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Every place a secret could travel upstream: the key, the query, any header. */
function fakeSaw(fake: FakeGemini, secret: string): boolean {
  return fake.stats.log.some(
    (r) =>
      r.apiKey === secret ||
      r.search.includes(secret) ||
      Object.values(r.headers).some((v) => String(v).includes(secret)),
  );
}

describe('Live API through the pool', () => {
  it('relays a session of two turns (SDK), settles its tokens, and closes upstream when the client closes', async () => {
    const s = await liveStack();
    const live = await connect(s.url);
    expect(s.fake.live.open()).toBe(1);
    const [upstream] = s.fake.live.sessions;
    expect(upstream!.model).toBe(MODEL);

    live.session.sendClientContent({ turns: 'Hello there', turnComplete: true });
    const first = await live.waitFor((m) => m.serverContent?.turnComplete === true);
    const secondFrom = live.messages.length;
    live.session.sendClientContent({ turns: 'And again', turnComplete: true });
    const second = await live.waitFor((m) => m.serverContent?.turnComplete === true, secondFrom);
    expect(turnText(live.messages, 0)).toContain('Fake live answer, turn 1: Hello there');
    expect(turnText(live.messages, secondFrom)).toBe('Fake live answer, turn 2: And again');
    expect(live.messages.some((m) => m.serverContent?.generationComplete)).toBe(true);
    const prompt =
      (first.usageMetadata?.promptTokenCount ?? 0) + (second.usageMetadata?.promptTokenCount ?? 0);
    expect(prompt).toBeGreaterThan(0);

    live.session.close();
    await live.closed;
    await until(() => upstream!.closedBy !== undefined, 'the upstream close');
    expect(upstream!.closedBy).toMatchObject({ side: 'client', code: 1000 });
    expect(s.fake.live.open()).toBe(0);
    // The session's key was settled with the input tokens its usage messages reported.
    const project = upstream!.project;
    let tokens = 0;
    for (let i = 0; i < 100 && tokens !== prompt; i++) {
      const now = Date.now();
      const budgets = await s.gateway.store.budgetStates(now, s.gateway.pool.calendarAt(now).day);
      tokens = budgets.find((b) => b.project === project && b.model === MODEL)?.tokensThisMinute ?? 0;
      if (tokens !== prompt) await new Promise((r) => setTimeout(r, 20));
    }
    expect(tokens).toBe(prompt);
    // Google saw a pool key, in a header, never the client's token (nor any key in the URL).
    expect(fakeSaw(s.fake, ALICE)).toBe(false);
    const upgrade = s.fake.stats.log.find((r) => r.path.includes('BidiGenerateContent'))!;
    expect(upgrade.headers['x-goog-api-key']).toBe(upstream!.apiKey);
    expect(upgrade.search).toBe('');
  });

  it("passes Google's close to the client with its code and reason", async () => {
    const s = await liveStack();
    const live = await connect(s.url);
    s.fake.live.closeAll(1011, 'The service is currently unavailable.');
    expect(await live.closed).toEqual({ code: 1011, reason: 'The service is currently unavailable.' });
    expect(s.fake.live.open()).toBe(0);
  });

  it('closes open sessions with 1001 when the gateway shuts down, and their upstream with them', async () => {
    const s = await liveStack();
    const live = await connect(s.url);
    const [upstream] = s.fake.live.sessions;
    await s.gateway.close();
    expect((await live.closed).code).toBe(1001);
    await until(() => upstream!.closedBy !== undefined, 'the upstream close');
    expect(upstream!.closedBy?.side).toBe('client');
  });

  it('holds back what Google sends while the client does not read (backpressure), then delivers all of it in order', async () => {
    const s = await liveStack();
    const client = await rawOpen(s.url);
    const received: number[] = [];
    client.on('message', (data: Buffer) => {
      if (data.length > 1000) received.push(data.readUInt32BE(0));
    });
    client.pause(); // the client stops reading its socket
    const FRAMES = 64;
    const frame = Buffer.alloc(1024 * 1024, 0x61);
    for (let i = 0; i < FRAMES; i++) {
      const f = Buffer.from(frame);
      f.writeUInt32BE(i, 0);
      s.fake.live.push(f);
    }
    // Once the pipes are full, the bytes wait at Google's side: the gateway stopped reading the
    // upstream when its buffer towards the client passed the high water mark (1 MiB). Without
    // that, the gateway would have read everything into its own memory and Google's side would
    // hold nothing.
    // Waits until Google's side holds the same amount for a whole second (or nothing at all).
    let last = -1;
    let sameFor = 0;
    for (let i = 0; i < 600 && sameFor < 20; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const now = s.fake.live.buffered();
      sameFor = now === last ? sameFor + 1 : 0;
      last = now;
      if (now === 0) break;
    }
    expect(s.fake.live.buffered()).toBeGreaterThan(24 * 1024 * 1024);
    client.resume();
    // 64 MiB through two hops: a slow machine may take a while.
    for (let i = 0; i < 600 && received.length < FRAMES; i++) await new Promise((r) => setTimeout(r, 50));
    expect(received).toEqual(Array.from({ length: FRAMES }, (_, i) => i));
    expect(s.fake.live.buffered()).toBe(0);
    client.close();
  });

  it('resumes a session on the project that had it, for its client only', async () => {
    const s = await liveStack();
    const base = `${s.url.replace('http', 'ws')}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent`;
    /** Opens with `resumption` in the setup, says one turn, closes: the last handle and how it ended. */
    const run = (token: string, resumption: Record<string, string>) =>
      new Promise<{ handle?: string; code: number; reason: string }>((resolve) => {
        const ws = new WebSocket(`${base}?key=${token}`);
        let handle: string | undefined;
        ws.on('open', () =>
          ws.send(JSON.stringify({ setup: { model: `models/${MODEL}`, sessionResumption: resumption } })),
        );
        ws.on('message', (data: Buffer) => {
          const m = JSON.parse(data.toString());
          if (m.setupComplete)
            ws.send(
              JSON.stringify({ clientContent: { turns: [{ parts: [{ text: 'hi' }] }], turnComplete: true } }),
            );
          if (m.sessionResumptionUpdate) {
            handle = m.sessionResumptionUpdate.newHandle;
            ws.close(1000);
          }
        });
        ws.on('close', (code, reason) => resolve({ handle, code, reason: reason.toString() }));
      });
    const first = await run(ALICE, {});
    expect(first.handle).toMatch(/^handle-/);
    const project = s.fake.live.sessions[0]!.project;
    // Round robin over two projects would send every other one elsewhere: each must go back.
    let handle = first.handle!;
    for (let i = 0; i < 4; i++) {
      const again = await run(ALICE, { handle });
      expect(again.code).toBe(1000);
      handle = again.handle!;
    }
    expect(s.fake.live.sessions.map((x) => x.project)).toEqual(Array(5).fill(project));
    // Another client cannot resume it, and nothing goes upstream.
    const upgrades = s.fake.stats.log.length;
    const bob = await run(BOB, { handle });
    expect(bob).toMatchObject({ code: 1008, reason: 'Requested entity was not found.' });
    expect(s.fake.stats.log.length).toBe(upgrades);
  });

  it('refuses a missing token with 1008 and an unknown one with 1007, sending nothing upstream', async () => {
    const s = await liveStack();
    expect((await rawClose(s.url, '')).code).toBe(1008);
    const invalid = await rawClose(s.url, '?key=not-a-client-token');
    expect(invalid.code).toBe(1007);
    expect(invalid.reason).toContain('invalid client token');
    // Through the JS SDK's double slash, with a valid token, it opens.
    const ok = await connect(s.url, BOB);
    ok.session.close();
    expect(s.fake.live.sessions).toHaveLength(1);
    expect(s.fake.stats.log.filter((r) => r.path.includes('BidiGenerateContent'))).toHaveLength(1);
    expect(fakeSaw(s.fake, 'not-a-client-token')).toBe(false);
    // The path without an upgrade: a 426 in Google's shape.
    const plain = await fetch(
      `${s.url}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=${BOB}`,
    );
    expect(plain.status).toBe(426);
    expect(await plain.json()).toMatchObject({ error: { code: 426 } });
    expect(fakeSaw(s.fake, BOB)).toBe(false);
  });

  it('tries another key when Google refuses one: an invalid key is disabled, the session opens on a good one', async () => {
    const s = await liveStack();
    s.fake.setKeyState(B1, 'invalid');
    // Round robin reaches B1 within two sessions: Google closes it with 1007 before setupComplete.
    const one = await rawOpen(s.url);
    const two = await rawOpen(s.url);
    const states = await s.gateway.store.keyStates(Date.now(), s.gateway.pool.calendarAt(Date.now()).day);
    expect(states.find((k) => k.id === 'b1')).toMatchObject({
      enabled: false,
      disabledReason: 'API_KEY_INVALID',
    });
    expect(s.fake.live.sessions.map((x) => x.project)).toEqual(['proj-a', 'proj-a']);
    one.close();
    two.close();
  });

  it('spills to another project when Google says one is at its session limit, and refuses when all are', async () => {
    const s = await liveStack({ fake: { liveSessionsPerProject: 1 } });
    const one = await rawOpen(s.url);
    const two = await rawOpen(s.url);
    expect(new Set(s.fake.live.sessions.map((x) => x.project))).toEqual(new Set(['proj-a', 'proj-b']));
    const third = await rawClose(s.url, `?key=${BOB}`);
    expect(third.code).toBe(1011);
    expect(third.reason).toMatch(/limit of concurrent Live sessions/);
    // Neither key was blamed: a full project is no dead key.
    const states = await s.gateway.store.keyStates(Date.now(), s.gateway.pool.calendarAt(Date.now()).day);
    expect(states.every((k) => k.enabled)).toBe(true);
    one.close();
    two.close();
  });

  it('holds the per-project session limit across two instances on one Redis, and frees a slot when a session ends', async (ctx) => {
    if (!redisUrl) {
      warnSkipped('Live session limit across instances');
      ctx.skip();
      return;
    }
    const fake = await liveFake();
    const opts = await liveStackOptions(fake, { sessions: 1 });
    const [a, b] = await sharedRedisPair((o) => start({ ...o, fakeInstance: fake }), redisUrl, opts);
    try {
      const one = await connect(a.url);
      const two = await connect(b.url);
      // One session per project: each instance's session went to a different project.
      expect(new Set(fake.live.sessions.map((x) => x.project))).toEqual(new Set(['proj-a', 'proj-b']));
      // A third, on either instance, finds both projects full: refused before anything goes upstream.
      const upgradesBefore = fake.stats.log.filter((r) => r.path.includes('BidiGenerateContent')).length;
      const third = await rawClose(a.url, `?key=${BOB}`);
      expect(third.code).toBe(1011);
      expect(third.reason).toMatch(/limit of concurrent Live sessions/);
      expect(fake.stats.log.filter((r) => r.path.includes('BidiGenerateContent'))).toHaveLength(
        upgradesBefore,
      );
      expect(fake.live.sessions).toHaveLength(2);
      // A session that ends frees its slot for the other instance.
      one.session.close();
      await one.closed;
      await until(() => fake.live.open() === 1, 'the first session to end upstream');
      let reopened: WebSocket | null = null;
      for (let i = 0; i < 50 && reopened === null; i++) {
        const r = await rawSession(b.url, `?key=${BOB}`);
        if (r.kind === 'open') reopened = r.ws;
        else await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(reopened).not.toBeNull();
      expect(fake.live.open()).toBe(2);
      reopened!.close();
      two.session.close();
    } finally {
      await fake.close();
    }
  });
});
