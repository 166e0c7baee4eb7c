import { Agent } from 'undici';

/**
 * One keep-alive connection pool per upstream origin for the whole process.
 * headersTimeout/bodyTimeout are idle limits; the forwarder applies the per-attempt deadline.
 */
export function createUpstreamAgent(timeoutMs: number): Agent {
  return new Agent({
    connections: 256,
    keepAliveTimeout: 60_000,
    keepAliveMaxTimeout: 600_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    connect: { timeout: 10_000 },
  });
}
