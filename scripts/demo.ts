/**
 * `npm run demo`: the fake Gemini, a sample image server and the gateway wired to them, in one
 * process (see demo-setup.ts). Prints the pool's capacity, a client token, curl lines and an SDK
 * snippet. Ctrl-C stops everything.
 */
import { demoBanner, startDemo } from './demo-setup.ts';

const port = Number(process.env.PORT ?? 8000);
const demo = await startDemo({
  port,
  imagesPort: process.env.DEMO_IMAGES_PORT ? Number(process.env.DEMO_IMAGES_PORT) : undefined,
  // NODE_ENV=development: coloured one-line-per-request logs, secrets scrubbed like in production.
  nodeEnv: process.env.NODE_ENV ?? 'development',
  logLevel: process.env.LOG_LEVEL ?? 'info',
  adminToken: process.env.ADMIN_TOKEN,
  mediaDir: process.env.MEDIA_DIR,
});
console.log(demoBanner(demo));

const stop = async () => {
  await demo.close();
  process.exit(0);
};
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
