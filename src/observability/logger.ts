import pino, { type Logger, type LoggerOptions } from 'pino';
import type { Env } from '../config/env.ts';

/** Paths pino blanks in every log line, wherever a secret could travel. */
export const REDACT_PATHS = [
  'apiKey',
  'api_key',
  'token',
  'password',
  '*.apiKey',
  '*.api_key',
  '*.token',
  '*.password',
  'headers.authorization',
  'headers["x-goog-api-key"]',
  'headers["x-api-key"]',
  'headers.cookie',
  'req.headers.authorization',
  'req.headers["x-goog-api-key"]',
  'req.headers["x-api-key"]',
];

/** The URL with any `key=` query value masked (clients may send their token as ?key=). */
export function redactUrl(url: string): string {
  return url.replace(/([?&](?:key|api_key|token)=)[^&#]*/gi, '$1[REDACTED]');
}

export function loggerOptions(env: Pick<Env, 'LOG_LEVEL' | 'NODE_ENV'>): LoggerOptions {
  return {
    level: env.LOG_LEVEL,
    redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
    base: { service: 'gemini-gateway' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
}

export function createLogger(env: Pick<Env, 'LOG_LEVEL' | 'NODE_ENV'>): Logger {
  const options = loggerOptions(env);
  if (env.NODE_ENV === 'development') {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  return pino(options);
}
