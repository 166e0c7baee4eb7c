import { AsyncLocalStorage } from 'node:async_hooks';
import { join } from 'node:path';
import pino, {
  type Bindings,
  type ChildLoggerOptions,
  type Logger,
  type LoggerOptions,
  type TransportTargetOptions,
} from 'pino';
import type { Env } from '../config/env.ts';

/** Paths pino blanks in every log line, wherever a secret could travel. */
export const REDACT_PATHS = [
  'apiKey',
  'api_key',
  'token',
  'password',
  'authorization',
  '*.apiKey',
  '*.api_key',
  '*.token',
  '*.password',
  '*.authorization',
  'headers.authorization',
  'headers["x-goog-api-key"]',
  'headers["x-api-key"]',
  'headers["x-admin-token"]',
  'headers.cookie',
  'req.headers.authorization',
  'req.headers["x-goog-api-key"]',
  'req.headers["x-api-key"]',
  'req.headers["x-admin-token"]',
  'req.headers.cookie',
];

/** The URL with any `key=` query value masked (clients may send their token as ?key=). */
export function redactUrl(url: string): string {
  if (!url.includes('?')) return url;
  return url.replace(/([?&](?:key|api_key|apikey|token|access_token)=)[^&#]*/gi, '$1[REDACTED]');
}

/**
 * What is known about the request being served, for log lines written outside the request's own
 * logger (services logging through deps.logger) and for attributing upstream time to a request.
 */
export interface RequestContext {
  requestId: string;
  /** Upstream attempts made for this request (from the forwarder's observer). */
  upstreamMs: number;
  upstreamAttempts: number;
  keyId: string | null;
}

export const requestContext = new AsyncLocalStorage<RequestContext>();

/** Marks Fastify's per-request child loggers (they carry request_id as a binding already). */
export const REQUEST_LOGGER: unique symbol = Symbol.for('gemini-gateway.requestLogger');

/**
 * Last line of defence: every serialized log line is scanned for the known secrets (pool keys,
 * client tokens, admin and metrics tokens) and any occurrence is replaced, whatever field or
 * message carried it. The set is updated when keys change at runtime.
 */
export class SecretScrubber {
  private pattern: RegExp | null = null;
  /** Secrets shorter than this are not scrubbed (they would blank ordinary words). */
  static readonly MIN_LENGTH = 8;

  constructor(secrets: Iterable<string> = []) {
    this.set(secrets);
  }

  set(secrets: Iterable<string>): void {
    const variants = new Set<string>();
    for (const s of secrets) {
      if (typeof s !== 'string' || s.length < SecretScrubber.MIN_LENGTH) continue;
      variants.add(s);
      const escaped = JSON.stringify(s).slice(1, -1);
      if (escaped !== s) variants.add(escaped);
      const encoded = encodeURIComponent(s);
      if (encoded !== s) variants.add(encoded);
    }
    // Longest first, so a secret that contains another is replaced whole.
    this.pattern = variants.size ? new RegExp(trieRegex([...variants]), 'g') : null;
  }

  scrub(line: string): string {
    return this.pattern ? line.replace(this.pattern, '[REDACTED]') : line;
  }
}

interface TrieNode {
  children: Map<string, TrieNode>;
  end: boolean;
}

/**
 * One regex source matching any of `words`, longest first, factored as a prefix trie:
 * a flat alternation of 1,000 keys makes the engine try every key at every position of every
 * log line; the trie tries only the branches whose first characters match.
 */
export function trieRegex(words: string[]): string {
  const root: TrieNode = { children: new Map(), end: false };
  for (const w of words) {
    let node = root;
    for (const ch of w) {
      let next = node.children.get(ch);
      if (!next) {
        next = { children: new Map(), end: false };
        node.children.set(ch, next);
      }
      node = next;
    }
    node.end = true;
  }
  const escapeChar = (ch: string) => ch.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
  const emit = (node: TrieNode): string => {
    const branches = [...node.children].map(([ch, child]) => escapeChar(ch) + emit(child));
    if (branches.length === 0) return '';
    const group = branches.length === 1 ? branches[0]! : `(?:${branches.join('|')})`;
    // A word that ends here may also continue: try the longer match first.
    return node.end ? `(?:${group})?` : group;
  };
  return emit(root);
}

type LogArgs = Parameters<Logger['info']>;

/**
 * A request's own logger (Fastify's request.log), built on first use: most requests never log
 * through it (the access line has a logger of its own), and building a pino child on every
 * request would put that work on the proxy's hot path for nothing.
 */
export class LazyRequestLogger {
  private real: Logger | undefined;
  private readonly parent: Logger;
  private readonly childBindings: Bindings;
  private readonly options: ChildLoggerOptions | undefined;

  constructor(parent: Logger, childBindings: Bindings, options: ChildLoggerOptions | undefined) {
    this.parent = parent;
    this.childBindings = childBindings;
    this.options = options;
  }

  private get logger(): Logger {
    if (!this.real) {
      // Fastify passes {} when it has no options: pino's child is quicker without any.
      const options = this.options && Object.keys(this.options).length > 0 ? this.options : undefined;
      this.real = this.parent.child(this.childBindings, options);
      (this.real as unknown as Record<symbol, boolean>)[REQUEST_LOGGER] = true;
    }
    return this.real;
  }

  get level(): string {
    return this.real?.level ?? this.options?.level ?? this.parent.level;
  }
  set level(level: string) {
    this.logger.level = level;
  }
  isLevelEnabled(level: string): boolean {
    return this.logger.isLevelEnabled(level);
  }
  fatal(...args: LogArgs): void {
    this.logger.fatal(...args);
  }
  error(...args: LogArgs): void {
    this.logger.error(...args);
  }
  warn(...args: LogArgs): void {
    this.logger.warn(...args);
  }
  info(...args: LogArgs): void {
    this.logger.info(...args);
  }
  debug(...args: LogArgs): void {
    this.logger.debug(...args);
  }
  trace(...args: LogArgs): void {
    this.logger.trace(...args);
  }
  silent(): void {}
  child(bindings: Bindings, options?: ChildLoggerOptions): Logger {
    return this.logger.child(bindings, options);
  }
}

/** What the mixin adds to a line that needs nothing: merged without a copy (see mixinMergeStrategy). */
const NOTHING = Object.freeze({});

/** pino's isoTime, formatted once per millisecond: at thousands of lines a second most share one. */
let stampMs = -1;
let stamp = '';
function isoTimeOncePerMs(): string {
  const now = Date.now();
  if (now !== stampMs) {
    stampMs = now;
    stamp = `,"time":"${new Date(now).toISOString()}"`;
  }
  return stamp;
}

/** The worker's number when WORKERS > 1 (src/cluster/messages.ts WORKER_ENV): on every line it writes. */
const WORKER = Number(process.env.GATEWAY_WORKER) || undefined;

export function loggerOptions(
  env: Pick<Env, 'LOG_LEVEL' | 'NODE_ENV'>,
  scrubber?: SecretScrubber,
): LoggerOptions {
  return {
    level: env.LOG_LEVEL,
    redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
    base: WORKER ? { service: 'gemini-gateway', worker: WORKER } : { service: 'gemini-gateway' },
    timestamp: isoTimeOncePerMs,
    // Lines written during a request through a logger that is not the request's own (a service
    // logging through deps.logger) still carry the request id.
    mixin(_obj, _level, logger) {
      if ((logger as unknown as Record<symbol, unknown>)[REQUEST_LOGGER]) return NOTHING;
      const ctx = requestContext.getStore();
      return ctx ? { request_id: ctx.requestId } : NOTHING;
    },
    // pino's default copies every field of the line into the mixin's object; with nothing to add
    // the line's own object is used as it is.
    mixinMergeStrategy: (mergeObject, mixinObject) =>
      mixinObject === NOTHING ? mergeObject : Object.assign(mixinObject, mergeObject),
    ...(scrubber ? { hooks: { streamWrite: (line: string) => scrubber.scrub(line) } } : {}),
  };
}

type LogEnv = Pick<
  Env,
  'LOG_LEVEL' | 'NODE_ENV' | 'LOG_DIR' | 'LOG_ROTATION' | 'LOG_RETENTION_DAYS' | 'LOG_STDOUT'
>;

/** Where log lines go: stdout (JSON, or coloured pretty lines in development) and/or rotated files. */
export function logTargets(env: LogEnv): TransportTargetOptions[] {
  const targets: TransportTargetOptions[] = [];
  if (env.LOG_STDOUT) {
    targets.push(
      env.NODE_ENV === 'development'
        ? {
            target: 'pino-pretty',
            level: 'trace',
            options: {
              colorize: true,
              destination: 1,
              translateTime: 'SYS:HH:MM:ss.l',
              singleLine: true,
              ignore: 'pid,hostname,service',
            },
          }
        : { target: 'pino/file', level: 'trace', options: { destination: 1 } },
    );
  }
  if (env.LOG_DIR) {
    const hourly = env.LOG_ROTATION === 'hourly';
    targets.push({
      target: 'pino-roll',
      level: 'trace',
      options: {
        // Each worker (WORKERS > 1) rotates a file of its own: two writers would rotate one file twice.
        file: join(env.LOG_DIR, WORKER ? `gateway-worker${WORKER}` : 'gateway'),
        extension: '.log',
        frequency: hourly ? 'hourly' : 'daily',
        dateFormat: hourly ? 'yyyy-MM-dd-HH' : 'yyyy-MM-dd',
        mkdir: true,
        // Files kept besides the active one: LOG_RETENTION_DAYS worth of them.
        limit: {
          count: hourly ? env.LOG_RETENTION_DAYS * 24 : env.LOG_RETENTION_DAYS,
          removeOtherLogFiles: true,
        },
      },
    });
  }
  return targets;
}

/**
 * Characters of lines gathered before a write to stdout, and the longest a line waits. Each
 * write is a thread-pool round trip that costs the main thread time whatever its size, so
 * batches are large: fewer, larger writes leave the gateway more CPU at saturation, up to about
 * what one write carries (maxWrite below).
 */
const STDOUT_BATCH_CHARS = 64_000;
const STDOUT_FLUSH_MS = 250;

/**
 * stdout, written in batches: one write per line would be a thread-pool round trip per request.
 * Lines wait at most STDOUT_FLUSH_MS; pino flushes the rest when the process exits, and shutdown
 * flushes explicitly (flushLogger). `dest` and `flushMs` are parameters for tests.
 */
export function bufferedStdout(dest = 1, flushMs = STDOUT_FLUSH_MS): ReturnType<typeof pino.destination> {
  // minLength > 0 keeps sonic-boom's flush(cb) waiting for writes in flight (flushLogger);
  // maxWrite lets one batch go out in one write.
  const stdout = pino.destination({ dest, sync: false, minLength: 4096, maxWrite: 65_536 });
  // Lines gather here and reach sonic-boom as one string per batch: sonic-boom measures the
  // byte length of its whole pending buffer on every write it is given, which line by line
  // cost more the longer the batch grew.
  let lines: string[] = [];
  let chars = 0;
  const write = stdout.write.bind(stdout);
  const release = () => {
    if (lines.length === 0) return;
    const batch = lines.join('');
    lines = [];
    chars = 0;
    write(batch);
  };
  // sonic-boom's flush() writes even an empty buffer: an idle process would write nothing
  // four times a second. The timer flushes only when a line came in since its last tick.
  let fresh = false;
  stdout.write = (line: string) => {
    fresh = true;
    lines.push(line);
    chars += line.length;
    if (chars >= STDOUT_BATCH_CHARS) release();
    return true;
  };
  const flush = stdout.flush.bind(stdout);
  stdout.flush = (cb?: (err?: Error) => unknown) => {
    release();
    flush(cb);
  };
  const flushSync = stdout.flushSync.bind(stdout);
  stdout.flushSync = () => {
    release();
    flushSync();
  };
  const end = stdout.end.bind(stdout);
  stdout.end = () => {
    release();
    end();
  };
  const timer = setInterval(() => {
    if (!fresh) return;
    fresh = false;
    try {
      stdout.flush(); // (with a callback, sonic-boom would also fsync)
    } catch {
      /* closed at shutdown */
    }
  }, flushMs);
  timer.unref();
  stdout.once('close', () => clearInterval(timer));
  return stdout;
}

/**
 * The process logger. Production without LOG_DIR: JSON lines to stdout, in batches
 * (no worker thread). Development: coloured pretty lines. LOG_DIR: JSON files rotated per
 * LOG_ROTATION, kept LOG_RETENTION_DAYS, written by a worker thread (pino transport).
 * Redaction and scrubbing happen before a line leaves this thread, so files are clean too.
 */
export function createLogger(env: LogEnv, scrubber?: SecretScrubber): Logger {
  const options = loggerOptions(env, scrubber);
  if (!env.LOG_DIR && env.NODE_ENV !== 'development') {
    return env.LOG_STDOUT ? pino(options, bufferedStdout()) : pino({ ...options, level: 'silent' });
  }
  const targets = logTargets(env);
  if (targets.length === 0) return pino({ ...options, level: 'silent' });
  return pino(options, pino.transport({ targets }));
}

/** Waits until the logger's buffered lines are handed to their destination (transport workers included). */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    try {
      logger.flush(() => resolve());
    } catch {
      resolve();
    }
  });
}
