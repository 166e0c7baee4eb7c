import { type IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { WebSocketServer } from 'ws';
import { assertModelAllowed } from '../../clients/models.ts';
import { LiveProxy } from '../../live/live-proxy.ts';
import { callerOf } from '../../upstream/affinity.ts';
import { presentedToken } from '../auth.ts';
import type { AppDeps } from '../deps.ts';
import { isKnownError, toProblem } from '../errors.ts';
import { HttpProblem } from '../problem.ts';

/**
 * The Live API's WebSocket, where the SDKs open it: `/ws/google.ai.generativelanguage.{version}
 * .GenerativeService.BidiGenerateContent` (the JS SDK puts a double slash after the host: both
 * are served), with the client's token in `?key=` as the SDK sends it (or any header the other
 * routes take).
 *
 * The upgrade request goes through the app's own hooks like any request (client authentication,
 * caller limits, the shutdown check): a refusal is answered the way Google answers on this
 * endpoint, by accepting the WebSocket and closing it with a code (no or unknown token: 1008 /
 * 1007; over a limit: 1011; others 1008), so the SDK's `onclose` gets the reason. An accepted
 * socket is served by LiveProxy (src/live/live-proxy.ts); the token never goes upstream.
 */
const LIVE_PATH =
  /^\/+ws\/google\.ai\.generativelanguage\.(v1beta|v1alpha|v1)\.GenerativeService\.BidiGenerateContent(?:\?|$)/;
const VERSIONS = ['v1beta', 'v1alpha', 'v1'] as const;

interface PendingUpgrade {
  socket: Duplex;
  head: Buffer;
}

export async function liveRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const proxy = new LiveProxy({
    baseUrl: deps.env.GEMINI_BASE_URL,
    pool: deps.pool,
    store: deps.store,
    logger: deps.logger,
    scrubber: deps.forwarder.scrubber,
    maxAttempts: deps.env.MAX_ATTEMPTS,
    attemptTimeoutMs: Math.min(deps.env.UPSTREAM_TIMEOUT_MS, 30_000),
    affinityOff: deps.env.AFFINITY === 'off',
    onEnd: (end) => {
      try {
        deps.usage?.record(
          end.client,
          end.model,
          { prompt: end.promptTokens, output: end.outputTokens, cached: 0, thought: 0, imageOutput: 0 },
          end.failed,
        );
        void deps.clientBudget
          ?.recordTokens(end.client, end.promptTokens + end.outputTokens)
          ?.catch(() => {});
      } catch {
        /* usage accounting never ends a session badly */
      }
    },
  });
  /** Upgrade requests on their way through the app's hooks, with their socket. */
  const pending = new WeakMap<IncomingMessage, PendingUpgrade>();

  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!LIVE_PATH.test(req.url ?? '')) {
      // Another path: someone else's upgrade when another listener is there, else nobody's.
      if (app.server.listenerCount('upgrade') === 1)
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    socket.on('error', () => {});
    req.url = (req.url ?? '/').replace(/^\/+/, '/');
    pending.set(req, { socket, head });
    // Through the router, so that every hook runs (as @fastify/websocket does it).
    const res = new ServerResponse(req);
    res.assignSocket(socket as never);
    app.routing(req, res);
  });

  /** Accepts the socket and closes it with the code Google would use for `status`. */
  const refuse = (request: FastifyRequest, up: PendingUpgrade, status: number, message: string): void => {
    const code =
      status === 401
        ? presentedToken(request) === undefined
          ? 1008
          : 1007
        : status === 429 || status >= 500
          ? 1011
          : 1008;
    wss.handleUpgrade(request.raw, up.socket, up.head, (ws) => {
      ws.on('error', () => {});
      ws.close(code, truncate(message));
    });
  };

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const up = pending.get(request.raw);
    if (up === undefined) {
      throw new HttpProblem(426, 'this endpoint is a WebSocket: connect with an Upgrade request', {
        headers: { upgrade: 'websocket', connection: 'Upgrade' },
        googleStatus: 'FAILED_PRECONDITION',
      });
    }
    pending.delete(request.raw);
    reply.hijack();
    // The socket is the WebSocket's from here on: the placeholder response lets go of it.
    (reply.raw as ServerResponse).detachSocket(up.socket as never);
    const version = /\.(v1beta|v1alpha|v1)\./.exec(request.url)?.[1] ?? 'v1beta';
    const caller = callerOf(request, deps);
    wss.handleUpgrade(request.raw, up.socket, up.head, (ws) => {
      proxy.serve(ws, {
        client: caller.client,
        admin: caller.admin,
        version,
        refusesModel: (model) => {
          try {
            assertModelAllowed(request, model);
            return null;
          } catch (err) {
            return isKnownError(err) ? toProblem(err).detail : 'this client may not use that model';
          }
        },
      });
    });
  };

  for (const version of VERSIONS) {
    app.get(
      `/ws/google.ai.generativelanguage.${version}.GenerativeService.BidiGenerateContent`,
      {
        config: { googleErrors: true },
        // A refusal by a hook (no token, a limit, shutting down) becomes a close code.
        onSend: (request, reply, payload, done) => {
          const up = pending.get(request.raw);
          if (up === undefined || reply.statusCode < 400) return done(null, payload);
          pending.delete(request.raw);
          (reply.raw as ServerResponse).detachSocket(up.socket as never);
          refuse(request, up, reply.statusCode, messageOf(payload));
          done(null, payload);
        },
      },
      handler,
    );
  }

  app.addHook('preClose', async () => {
    await proxy.closeAll(1001, 'the gateway is shutting down');
    wss.close();
  });
}

/** The message of an error answer (Google's shape or problem+json). */
function messageOf(payload: unknown): string {
  try {
    const j = JSON.parse(String(payload)) as { error?: { message?: unknown }; detail?: unknown };
    const m = j.error?.message ?? j.detail;
    if (typeof m === 'string') return m;
  } catch {
    /* not JSON */
  }
  return 'the gateway refused the session';
}

function truncate(text: string): string {
  const b = Buffer.from(text);
  return b.length <= 123
    ? text
    : `${b
        .subarray(0, 119)
        .toString('utf8')
        .replace(/\uFFFD+$/, '')}...`;
}
