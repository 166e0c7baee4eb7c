import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import {
  bufferedStdout,
  flushLogger,
  LazyRequestLogger,
  loggerOptions,
  logTargets,
  redactUrl,
  requestContext,
  SecretScrubber,
} from '../../src/observability/logger.ts';

function capture(opts: ReturnType<typeof loggerOptions>) {
  const lines: string[] = [];
  const logger = pino(opts, { write: (l: string) => void lines.push(l) });
  return { logger, lines, parsed: () => lines.map((l) => JSON.parse(l)) };
}

describe('redaction', () => {
  it('masks tokens in query strings', () => {
    expect(redactUrl('/v1beta/models?key=abc123&pageSize=2')).toBe(
      '/v1beta/models?key=[REDACTED]&pageSize=2',
    );
    expect(redactUrl('/x?a=1&api_key=zz&token=tt&apikey=qq')).toBe(
      '/x?a=1&api_key=[REDACTED]&token=[REDACTED]&apikey=[REDACTED]',
    );
  });

  it('blanks secret-bearing fields', () => {
    const { logger, lines } = capture(loggerOptions({ LOG_LEVEL: 'info', NODE_ENV: 'test' }));
    logger.info({
      headers: { authorization: 'Bearer s3cret', 'x-goog-api-key': 'AIzaXYZ', 'x-admin-token': 'adm' },
    });
    logger.info({ req: { headers: { 'x-api-key': 'k-123' } }, apiKey: 'AIzaTOP', cfg: { password: 'pw' } });
    const text = lines.join('');
    for (const s of ['s3cret', 'AIzaXYZ', 'adm"', 'k-123', 'AIzaTOP', '"pw"']) expect(text).not.toContain(s);
  });

  it('the scrubber replaces known secrets wherever they appear in a line', () => {
    const scrubber = new SecretScrubber(['AIzaSecretPoolKey000001', 'client-token-abcdef', 'short']);
    const { logger, lines } = capture(loggerOptions({ LOG_LEVEL: 'info', NODE_ENV: 'test' }, scrubber));
    logger.info({ note: 'used AIzaSecretPoolKey000001 for it' }, 'token client-token-abcdef in a message');
    logger.info({ err: new Error('failed with AIzaSecretPoolKey000001') });
    logger.info({ url: '/x?k=client-token-abcdef' }, 'short words stay');
    const text = lines.join('');
    expect(text).not.toContain('AIzaSecretPoolKey000001');
    expect(text).not.toContain('client-token-abcdef');
    expect(text).toContain('[REDACTED]');
    expect(text).toContain('short words stay'); // too short to be scrubbed
    scrubber.set(['AIzaSecretPoolKey000002']);
    logger.info('now AIzaSecretPoolKey000002 and AIzaSecretPoolKey000001');
    const last = lines.at(-1)!;
    expect(last).not.toContain('AIzaSecretPoolKey000002');
    expect(last).toContain('AIzaSecretPoolKey000001');
  });
});

describe('request id in every line', () => {
  it('lines written inside a request context carry its request_id, whatever logger writes them', () => {
    const { logger, parsed } = capture(loggerOptions({ LOG_LEVEL: 'info', NODE_ENV: 'test' }));
    logger.info('outside');
    requestContext.run({ requestId: 'req-42', upstreamMs: 0, upstreamAttempts: 0, keyId: null }, () => {
      logger.info('inside');
      logger.child({ component: 'cache' }).warn('inside child');
    });
    const lines = parsed();
    expect(lines[0].request_id).toBeUndefined();
    expect(lines[1].request_id).toBe('req-42');
    expect(lines[2]).toMatchObject({ request_id: 'req-42', component: 'cache' });
  });

  it('a request logger (which binds request_id itself) does not get it twice', () => {
    const { logger, lines } = capture(loggerOptions({ LOG_LEVEL: 'info', NODE_ENV: 'test' }));
    const child = new LazyRequestLogger(logger, { request_id: 'req-7' }, undefined);
    requestContext.run({ requestId: 'req-7', upstreamMs: 0, upstreamAttempts: 0, keyId: null }, () => {
      child.info('once');
      child.child({ x: 1 }).info('grandchild once');
    });
    for (const l of lines) expect(l.match(/"request_id"/g)).toHaveLength(1);
  });
});

describe('LazyRequestLogger (request.log)', () => {
  it('builds its pino child only when a line is written, with the request id and the parent’s level', () => {
    const { logger, parsed } = capture(loggerOptions({ LOG_LEVEL: 'warn', NODE_ENV: 'test' }));
    let children = 0;
    const counting = new Proxy(logger, {
      get: (target, prop, receiver) =>
        prop === 'child'
          ? (...args: Parameters<typeof logger.child>) => {
              children += 1;
              return target.child(...args);
            }
          : Reflect.get(target, prop, receiver),
    });
    const quiet = new LazyRequestLogger(counting, { request_id: 'r-1' }, undefined);
    expect(quiet.level).toBe('warn');
    expect(children).toBe(0);
    const used = new LazyRequestLogger(counting, { request_id: 'r-2' }, undefined);
    used.info('below the level');
    used.error({ err: 'boom' }, 'failed');
    used.warn('again');
    expect(children).toBe(1);
    expect(parsed()).toMatchObject([
      { request_id: 'r-2', msg: 'failed', level: 50 },
      { request_id: 'r-2', msg: 'again', level: 40 },
    ]);
  });
});

describe('destinations', () => {
  const base = {
    LOG_LEVEL: 'info' as const,
    LOG_ROTATION: 'daily' as const,
    LOG_RETENTION_DAYS: 7,
    LOG_STDOUT: true,
  };

  it('LOG_DIR adds a daily-rotated file kept LOG_RETENTION_DAYS (hourly: 24 per day)', () => {
    const daily = logTargets({ ...base, NODE_ENV: 'production', LOG_DIR: '/var/log/gg' });
    expect(daily.map((t) => t.target)).toEqual(['pino/file', 'pino-roll']);
    expect(daily[1]!.options).toMatchObject({
      file: '/var/log/gg/gateway',
      frequency: 'daily',
      limit: { count: 7 },
      mkdir: true,
    });
    const hourly = logTargets({
      ...base,
      NODE_ENV: 'production',
      LOG_DIR: '/l',
      LOG_ROTATION: 'hourly',
      LOG_STDOUT: false,
    });
    expect(hourly.map((t) => t.target)).toEqual(['pino-roll']);
    expect(hourly[0]!.options).toMatchObject({ frequency: 'hourly', limit: { count: 168 } });
  });

  const run = (nodeEnv: string) =>
    spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createLogger } from './src/observability/logger.ts';
         const l = createLogger({ LOG_LEVEL: 'info', NODE_ENV: '${nodeEnv}', LOG_ROTATION: 'daily', LOG_RETENTION_DAYS: 1, LOG_STDOUT: true });
         l.info({ answer: 42 }, 'hello from the logger');`,
      ],
      { cwd: process.cwd(), encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '1' }, timeout: 20_000 },
    );

  it('production writes JSON lines to stdout', () => {
    const out = run('production');
    expect(out.status).toBe(0);
    const line = JSON.parse(out.stdout.trim().split('\n')[0]!);
    expect(line).toMatchObject({
      msg: 'hello from the logger',
      answer: 42,
      level: 30,
      service: 'gemini-gateway',
    });
  });

  it('production stdout (written in batches): a lone line comes out while the process runs, not at its exit', async () => {
    const { spawn } = await import('node:child_process');
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createLogger } from './src/observability/logger.ts';
         const l = createLogger({ LOG_LEVEL: 'info', NODE_ENV: 'production', LOG_ROTATION: 'daily', LOG_RETENTION_DAYS: 1, LOG_STDOUT: true });
         l.info('lone line');
         setTimeout(() => {}, 10_000); // stays alive: the line must not wait for the exit`,
      ],
      { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no line within 3 s')), 3000);
        child.stdout.setEncoding('utf8').once('data', (d: string) => {
          clearTimeout(timer);
          resolve(d);
        });
      });
      expect(JSON.parse(line)).toMatchObject({ msg: 'lone line', level: 30 });
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('the batched stdout hands lines on in batches, every line whole and in order', async () => {
    const dir = fs.mkdtempSync(join(tmpdir(), 'gg-log-'));
    const file = join(dir, 'out.log');
    const fd = fs.openSync(file, 'w');
    const writes = vi.spyOn(fs, 'write');
    const dest = bufferedStdout(fd, 60_000); // no timer flush within the test: batches and flushLogger only
    try {
      const logger = pino(dest);
      for (let i = 0; i < 2000; i++) logger.info({ i, pad: 'x'.repeat(i % 50) }, `line ${i}`);
      await flushLogger(logger);
      await vi.waitFor(() => expect(fs.readFileSync(file, 'utf8').split('\n').length).toBe(2001));
      const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
      expect(lines.map((l) => JSON.parse(l).i)).toEqual(Array.from({ length: 2000 }, (_, i) => i));
      // about 200 KB of lines, in batches of 64 KB and the rest
      const toFile = writes.mock.calls.filter((call) => call[0] === fd).length;
      expect(toFile).toBeGreaterThan(1);
      expect(toFile).toBeLessThanOrEqual(6);
    } finally {
      writes.mockRestore();
      dest.end();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the batched stdout flushes what came in, and an idle one writes nothing', async () => {
    const dir = fs.mkdtempSync(join(tmpdir(), 'gg-log-'));
    const fd = fs.openSync(join(dir, 'out.log'), 'w');
    const writes = vi.spyOn(fs, 'write'); // what sonic-boom calls for each batch
    const dest = bufferedStdout(fd, 20);
    try {
      const logger = pino(dest);
      logger.info('batched line');
      await vi.waitFor(() => expect(fs.readFileSync(join(dir, 'out.log'), 'utf8')).toContain('batched line'));
      await new Promise((r) => setTimeout(r, 50)); // the write's callback, then a flush tick
      const toFile = () => writes.mock.calls.filter((call) => call[0] === fd).length;
      const afterLine = toFile();
      expect(afterLine).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 150)); // seven more flush ticks with nothing new
      expect(toFile()).toBe(afterLine);
    } finally {
      writes.mockRestore();
      dest.end();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('development writes coloured, human-readable lines', () => {
    const out = run('development');
    expect(out.status).toBe(0);
    expect(out.stdout).toContain('hello from the logger');
    expect(out.stdout).toContain('\u001b['); // ANSI colours
    expect(() => JSON.parse(out.stdout.trim().split('\n')[0]!)).toThrow();
  });
});

describe('trieRegex (the scrubber’s matcher)', () => {
  it('matches every word, prefers the longest, escapes regex characters', async () => {
    const { trieRegex } = await import('../../src/observability/logger.ts');
    const words = ['abc', 'abcdef', 'a.b*c', 'x(y)', 'zz-top', 'abd'];
    const re = new RegExp(trieRegex(words), 'g');
    expect('abcdef abc abd a.b*c axbxc x(y) zz-top'.replace(re, '#')).toBe('# # # # axbxc # #');
  });
});

describe('log redaction', () => {
  function capture(scrubber?: SecretScrubber) {
    const lines: string[] = [];
    const logger = pino(loggerOptions({ LOG_LEVEL: 'info', NODE_ENV: 'test' }, scrubber), {
      write: (l: string) => void lines.push(l),
    });
    return { logger, lines };
  }

  it('every secret-bearing field is blanked with [REDACTED], at the top level, one level down and in headers', () => {
    const S = 'Sup3rSecretValue';
    const shapes: Array<[string, Record<string, unknown>]> = [
      ['apiKey', { apiKey: S }],
      ['api_key', { api_key: S }],
      ['token', { token: S }],
      ['password', { password: S }],
      ['authorization', { authorization: S }],
      ['*.apiKey', { cfg: { apiKey: S } }],
      ['*.api_key', { cfg: { api_key: S } }],
      ['*.token', { cfg: { token: S } }],
      ['*.password', { cfg: { password: S } }],
      ['*.authorization', { cfg: { authorization: S } }],
      ['headers.x-goog-api-key', { headers: { 'x-goog-api-key': S } }],
      ['headers.x-api-key', { headers: { 'x-api-key': S } }],
      ['headers.x-admin-token', { headers: { 'x-admin-token': S } }],
      ['headers.cookie', { headers: { cookie: S } }],
      ['req.headers.authorization', { req: { headers: { authorization: S } } }],
      ['req.headers.x-goog-api-key', { req: { headers: { 'x-goog-api-key': S } } }],
      ['req.headers.x-api-key', { req: { headers: { 'x-api-key': S } } }],
      ['req.headers.x-admin-token', { req: { headers: { 'x-admin-token': S } } }],
      ['req.headers.cookie', { req: { headers: { cookie: S } } }],
    ];
    for (const [path, obj] of shapes) {
      const { logger, lines } = capture();
      logger.info(obj, 'line');
      expect(lines[0], path).not.toContain(S);
      expect(lines[0], path).toContain('"[REDACTED]"');
    }
  });

  it('masks every token-like query parameter, whatever its case', () => {
    expect(redactUrl('/x?access_token=abc&b=1')).toBe('/x?access_token=[REDACTED]&b=1');
    expect(redactUrl('/x?KEY=abc&Token=def')).toBe('/x?KEY=[REDACTED]&Token=[REDACTED]');
  });

  it('the scrubber also catches a secret as JSON escapes it and as a URL encodes it', () => {
    const quoted = 'tok"en\\with-quotes';
    const spaced = 'tok en/with+specials';
    const scrubber = new SecretScrubber([quoted, spaced]);
    const { logger, lines } = capture(scrubber);
    logger.info({ note: `carried ${quoted} here` }, 'json-escaped');
    logger.info({ url: `/x?q=${encodeURIComponent(spaced)}` }, 'url-encoded');
    const text = lines.join('');
    expect(text).not.toContain(JSON.stringify(quoted).slice(1, -1));
    expect(text).not.toContain(encodeURIComponent(spaced));
    expect(lines.every((l) => l.includes('[REDACTED]'))).toBe(true);
  });

  it('LOG_STDOUT=false without LOG_DIR writes nothing to stdout', () => {
    const out = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createLogger } from './src/observability/logger.ts';
         const l = createLogger({ LOG_LEVEL: 'info', NODE_ENV: 'production', LOG_ROTATION: 'daily', LOG_RETENTION_DAYS: 1, LOG_STDOUT: false });
         l.info('must not appear');`,
      ],
      { cwd: process.cwd(), encoding: 'utf8', timeout: 20_000 },
    );
    expect(out.status).toBe(0);
    expect(out.stdout).not.toContain('must not appear');
  });
});
