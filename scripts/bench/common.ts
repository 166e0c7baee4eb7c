/**
 * What `npm run bench` and `npm run bench:compare` share: the servers they start, the request
 * they send, and how they read a process's CPU time and memory.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../src/util/free-port.ts';

export const KEYS = 1000;
export const TOKEN = 'bench-client-token';
export const BODY = JSON.stringify({
  contents: [{ role: 'user', parts: [{ text: 'Benchmark prompt: say hello.' }] }],
});
export const PATH = '/v1beta/models/gemini-2.5-flash-lite:generateContent';
export const REQUEST_HEADERS = { 'content-type': 'application/json', 'x-goog-api-key': TOKEN };
const CLK_TCK = 100;

/** The child processes of one benchmark run. */
export class Servers {
  private readonly children: ChildProcess[] = [];

  start(cmd: string, args: string[], env: Record<string, string>): ChildProcess {
    const child = spawn(cmd, args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    this.children.push(child);
    return child;
  }

  /** SIGTERM, then wait for a graceful exit (profiles and logs get written). */
  stop(pid: number): Promise<void> {
    const child = this.children.find((c) => c.pid === pid);
    if (!child) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, 5000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }

  /** A throwaway redis-server on a free port (no persistence, loopback only). */
  async startRedis(): Promise<{ pid: number; url: string }> {
    const port = await freePort();
    const redis = this.start(
      'redis-server',
      ['--port', String(port), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1'],
      {},
    );
    await new Promise((r) => setTimeout(r, 300));
    return { pid: redis.pid!, url: `redis://127.0.0.1:${port}` };
  }

  killAll(): void {
    for (const c of this.children) c.kill('SIGKILL');
  }
}

export async function waitFor(url: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(url);
      if (r.status < 500) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up`);
}

/** utime+stime of a process in ms, from /proc. */
export function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

function statusMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}
export const rssMb = (pid: number): number => statusMb(pid, 'VmRSS');
export const peakRssMb = (pid: number): number => statusMb(pid, 'VmHWM');

/** A keys file of KEYS keys with budgets no benchmark reaches; returns its path. */
export function writeBenchKeys(dir: string): string {
  const file = join(dir, 'keys.json');
  writeFileSync(
    file,
    JSON.stringify({
      keys: Array.from({ length: KEYS }, (_, i) => ({
        id: `key_${i}`,
        api_key: `AIzaBench${String(i).padStart(6, '0')}`,
        limits: {
          requests_per_minute: 1_000_000,
          requests_per_day: 100_000_000,
          tokens_per_minute: 1_000_000_000,
        },
      })),
    }),
  );
  return file;
}

/** A gateway's environment for a benchmark: production settings, logs to stdout (discarded). */
export function gatewayEnv(
  port: number,
  fakeUrl: string,
  keysFile: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    PORT: String(port),
    SERVER_HOST: '127.0.0.1',
    NODE_ENV: 'production',
    // The production default: one JSON log line per request (to /dev/null here).
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'info',
    GEMINI_BASE_URL: fakeUrl,
    API_KEYS_FILE: keysFile,
    CLIENT_API_KEYS_MAP: `${TOKEN}:bench`,
    // Caller rate limits are off: one client drives the whole load from one IP.
    GLOBAL_RATE_LIMIT: '0',
    BURST_RATE_LIMIT: '0',
    ...extra,
  };
}

export const hasRedisServer = (): boolean => spawnSync('sh', ['-c', 'command -v redis-server']).status === 0;

/** Node flags from an environment variable (GATEWAY_NODE_ARGS and the like). */
export function nodeArgs(variable: string): string[] {
  return (process.env[variable] ?? '').split(' ').filter(Boolean);
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
