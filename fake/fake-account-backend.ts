import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A fake of the account backend (the Django app behind BACKEND_URL), as a real HTTP server on
 * 127.0.0.1:
 *   POST /api/v1/auth/verify/         {user_id, api_key} → 200 {"valid":true} | 401 {"valid":false}
 *   POST /api/v1/credits/check/       {user_id} → 200 {"has_credits":bool,"credits":n}
 *   POST /api/v1/inference/webhook/   records the payload → 200 {"ok":true}
 * With `serviceToken`, every call must carry `Authorization: Bearer <token>` (else 403).
 * failWebhooks(n) makes the next n webhooks answer 503; setDown(true) resets every connection
 * without answering (what a dead backend looks like to a client).
 */

export interface FakeUser {
  apiKey: string;
  credits: number;
}

export interface FakeAccountCall {
  path: string;
  body: unknown;
  authorization: string | undefined;
}

export interface FakeAccountBackend {
  url: string;
  users: Map<string, FakeUser>;
  /** Webhook payloads received (accepted ones only). */
  webhooks: Record<string, unknown>[];
  /** Every request, in order. */
  calls: FakeAccountCall[];
  /** Webhook attempts answered with a failure. */
  failedWebhookAttempts: number;
  setUser(userId: string, user: FakeUser): void;
  failWebhooks(times: number, status?: number): void;
  setDown(down: boolean): void;
  /** Resolves when `count` webhooks have been received (or rejects after timeoutMs). */
  waitForWebhooks(count: number, timeoutMs?: number): Promise<Record<string, unknown>[]>;
  /** Resolves with the first received webhook matching `match` (polls; rejects after timeoutMs). */
  waitForWebhook(
    match: (w: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

export async function startFakeAccountBackend(
  opts: { users?: Record<string, FakeUser>; serviceToken?: string } = {},
): Promise<FakeAccountBackend> {
  const users = new Map(Object.entries(opts.users ?? {}));
  const webhooks: Record<string, unknown>[] = [];
  const calls: FakeAccountCall[] = [];
  const sockets = new Set<Socket>();
  let down = false;
  let failTimes = 0;
  let failStatus = 503;

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (down) {
      req.socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
    } catch {
      return json(res, 400, { detail: 'invalid JSON' });
    }
    const path = req.url ?? '';
    calls.push({ path, body, authorization: req.headers.authorization });
    if (opts.serviceToken && req.headers.authorization !== `Bearer ${opts.serviceToken}`)
      return json(res, 403, { detail: 'invalid service token' });
    if (req.method !== 'POST') return json(res, 405, { detail: 'method not allowed' });

    const user = users.get(String(body.user_id ?? ''));
    switch (path) {
      case '/api/v1/auth/verify/':
        if (user && typeof body.api_key === 'string' && body.api_key === user.apiKey)
          return json(res, 200, { valid: true });
        return json(res, 401, { valid: false, detail: 'Invalid credentials' });
      case '/api/v1/credits/check/':
        if (!user) return json(res, 404, { detail: 'unknown user' });
        return json(res, 200, { has_credits: user.credits > 0, credits: user.credits });
      case '/api/v1/inference/webhook/':
        if (failTimes > 0) {
          failTimes--;
          fake.failedWebhookAttempts++;
          return json(res, failStatus, { detail: 'temporarily failing' });
        }
        webhooks.push(body);
        if (user && body.status === 'success') user.credits = Math.max(0, user.credits - 1);
        for (const w of [...waiters]) if (webhooks.length >= w.count) w.resolve();
        return json(res, 200, { ok: true });
      default:
        return json(res, 404, { detail: 'not found' });
    }
  };

  const waiters = new Set<{ count: number; resolve: () => void }>();
  const server = createServer((req, res) => {
    handle(req, res).catch(() => req.socket.destroy());
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    if (down) s.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const fake: FakeAccountBackend = {
    url: `http://127.0.0.1:${port}`,
    users,
    webhooks,
    calls,
    failedWebhookAttempts: 0,
    setUser(userId, user) {
      users.set(userId, user);
    },
    failWebhooks(times, status = 503) {
      failTimes = times;
      failStatus = status;
    },
    setDown(value) {
      down = value;
      if (down) for (const s of sockets) s.destroy();
    },
    waitForWebhooks(count, timeoutMs = 10_000) {
      if (webhooks.length >= count) return Promise.resolve(webhooks);
      return new Promise((resolve, reject) => {
        const w = {
          count,
          resolve: () => {
            clearTimeout(timer);
            waiters.delete(w);
            resolve(webhooks);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`expected ${count} webhooks, got ${webhooks.length}`));
        }, timeoutMs);
        waiters.add(w);
      });
    },
    async waitForWebhook(match, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = webhooks.find(match);
        if (found) return found;
        if (Date.now() > deadline) throw new Error('no matching webhook received');
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  return fake;
}
