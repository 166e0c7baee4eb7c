/**
 * The floor for one Node hop: a bare HTTP proxy (node:http + undici keep-alive pool) that
 * forwards every request to UPSTREAM with a fixed key and streams the answer back. No auth,
 * no budgets, no retries. `npm run bench` measures the gateway against it.
 */
import { createServer } from 'node:http';
import { Agent } from 'undici';

const upstream = new URL(process.env.UPSTREAM ?? 'http://127.0.0.1:8090');
const port = Number(process.env.PORT ?? 0);
const agent = new Agent({ connections: 256, keepAliveTimeout: 60_000 });

const server = createServer(async (req, res) => {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  try {
    const r = await agent.request({
      origin: upstream.origin,
      path: req.url ?? '/',
      method: req.method as 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': 'bench-key' },
      body: Buffer.concat(chunks),
    });
    res.writeHead(r.statusCode, { 'content-type': String(r.headers['content-type'] ?? 'application/json') });
    for await (const c of r.body) res.write(c);
    res.end();
  } catch {
    res.writeHead(502).end();
  }
});
server.keepAliveTimeout = 65_000;
// A clean exit on SIGTERM, so that `--cpu-prof` (PASSTHROUGH_NODE_ARGS) gets written.
process.on('SIGTERM', () => process.exit(0));
server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${(server.address() as { port: number }).port}`);
});
