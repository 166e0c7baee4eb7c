import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type AccessFields, AccessLog } from '../../src/observability/access-log.ts';
import { loggerOptions, SecretScrubber } from '../../src/observability/logger.ts';

const SECRET = 'client-secret-token-0123';

function capture(level: 'info' | 'warn' = 'info') {
  const lines: string[] = [];
  const options = loggerOptions({ LOG_LEVEL: level, NODE_ENV: 'production' }, new SecretScrubber([SECRET]));
  // One fixed time, so that pino's line and ours can be compared byte for byte.
  const logger = pino(
    { ...options, timestamp: () => ',"time":"2026-11-25T10:00:00.000Z"' },
    {
      write: (l: string) => void lines.push(l),
    },
  );
  return { logger, lines };
}

const FULL: AccessFields = {
  request_id: 'req-1',
  method: 'POST',
  route: '/v1beta/models/*',
  url: '/v1beta/models/gemini-2.5-flash:generateContent?alt=sse',
  status: 200,
  duration_ms: 12.3,
  upstream_ms: 10.1,
  queued_ms: 2,
  attempts: 1,
  key_id: 'key_7',
  client: 'web "app"\n',
  ip: '127.0.0.1',
};

describe('access line', () => {
  it('is the line pino writes for logger.info(fields, "request"), byte for byte', () => {
    const { logger, lines } = capture();
    const access = new AccessLog(logger);
    const short: AccessFields = {
      request_id: 'r2',
      method: 'GET',
      route: 'not_found',
      url: '/x',
      status: 404,
      duration_ms: 0.4,
    };
    const odd: AccessFields = { ...FULL, duration_ms: Number.NaN, url: '/é\u0001\\' };
    for (const fields of [FULL, short, odd]) {
      logger.info(fields, 'request');
      access.write(fields);
      expect(lines).toHaveLength(2);
      expect(lines[1]).toBe(lines[0]);
      expect(JSON.parse(lines[1]!).msg).toBe('request');
      lines.length = 0;
    }
  });

  it('goes through the secret scrubber', () => {
    const { logger, lines } = capture();
    new AccessLog(logger).write({ ...FULL, url: `/v1beta/models/${SECRET}:generateContent` });
    expect(lines[0]).not.toContain(SECRET);
    expect(lines[0]).toContain('[REDACTED]');
  });

  it('follows the logger level', () => {
    const { logger } = capture('warn');
    const access = new AccessLog(logger);
    expect(access.enabled).toBe(false);
    logger.level = 'info';
    expect(access.enabled).toBe(true);
  });

  it('refuses a destination that needs pino metadata (multistream)', () => {
    const logger = pino({}, pino.multistream([{ stream: { write: () => {} } }]));
    expect(() => new AccessLog(logger)).toThrow(/multistream/);
  });
});
