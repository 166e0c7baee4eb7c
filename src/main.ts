import 'dotenv/config';
import { buildGateway } from './app/build.ts';
import { ConfigError } from './config/env.ts';

/** `npm start`: the gateway in the foreground, configured by the environment and `.env`. */
async function main(): Promise<void> {
  let gateway: Awaited<ReturnType<typeof buildGateway>>;
  try {
    gateway = await buildGateway(process.env);
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
    app.log.info({ signal }, 'shutting down: finishing in-flight requests');
    const timer = setTimeout(() => {
      app.log.warn('shutdown deadline reached; exiting with requests still open');
      process.exit(1);
    }, env.SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    await gateway.close();
    app.log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

void main();
