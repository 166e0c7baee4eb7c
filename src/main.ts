import 'dotenv/config';
import cluster from 'node:cluster';
import { buildGateway, type Gateway } from './app/build.ts';
import { runPrimary } from './cluster/primary.ts';
import { joinGroup, prepareWorker } from './cluster/worker.ts';
import { ConfigError, parseEnv } from './config/env.ts';

/**
 * `npm start`: the gateway in the foreground, configured by the environment and `.env`.
 * SIGTERM / SIGINT: stop accepting connections, let requests and streams in flight finish (up
 * to SHUTDOWN_TIMEOUT_MS), close the store, exit 0 (1 when the deadline cut connections).
 * SIGHUP: re-read API_KEYS_FILE, CONFIG_FILE and CLIENTS_FILE.
 * WORKERS > 1: this process is the primary of that many workers (src/cluster/primary.ts), each
 * of which runs the gateway below.
 */
async function main(): Promise<void> {
  let gateway: Gateway;
  try {
    if (cluster.isPrimary) {
      const env = parseEnv(process.env);
      if (env.WORKERS > 1) return await runPrimary(env);
    }
    gateway = await buildGateway(process.env, cluster.isWorker ? prepareWorker() : {});
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`gemini-gateway: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const { app, env } = gateway;
  const port = env.PORT ?? env.SERVER_PORT ?? 8000;
  await app.listen({ port, host: env.SERVER_HOST });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.log.info(
      { signal, deadline_ms: env.SHUTDOWN_TIMEOUT_MS },
      'shutting down: finishing in-flight requests',
    );
    let forced = false;
    const timer = setTimeout(() => {
      forced = true;
      app.log.warn('shutdown deadline reached; closing the connections still open');
      gateway.forceClose();
    }, env.SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    // Last resort if closing itself hangs (a store that never answers).
    const hard = setTimeout(() => process.exit(1), env.SHUTDOWN_TIMEOUT_MS + 5_000);
    hard.unref();
    try {
      await gateway.close();
    } catch (err) {
      app.log.error({ err }, 'error while shutting down');
      process.exit(1);
    }
    clearTimeout(timer);
    app.log.info({ signal, forced }, 'stopped');
    process.exit(forced ? 1 : 0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGHUP', () => {
    void gateway.reloader.reloadAll('signal');
    void gateway.deps.clients?.reloadFileLogged('signal');
  });
  if (cluster.isWorker) joinGroup(gateway);
}

void main();
