import pino, { type Logger } from 'pino';

/** What one access line says about a request. */
export interface AccessFields {
  request_id: string;
  method: string;
  route: string;
  url: string;
  status: number;
  duration_ms: number;
  upstream_ms?: number;
  queued_ms?: number;
  attempts?: number;
  key_id?: string;
  client?: string;
  ip?: string;
}

const { lsCacheSym, timeSym, chindingsSym, endSym, streamSym, hooksSym, needsMetadataGsym } = pino.symbols;
const INFO = 30;

interface Destination {
  write(line: string): unknown;
  [needsMetadataGsym]?: boolean;
}

/**
 * The line written for every answered request: the bytes `logger.info(fields, 'request')` writes,
 * serialized here from its known fields. pino's generic path (argument formatting, the mixin,
 * a loop over the object escaping every key) redoes, on every request, work that a line of
 * known fields does not need.
 * The line is made of the logger's own parts (pino.symbols are their public handles): level
 * prefix, time, bindings, streamWrite hook (the secret scrubber) and destination; it follows the
 * logger's level.
 */
export class AccessLog {
  private readonly logger: Logger;
  private readonly internals: Record<symbol, unknown>;

  constructor(logger: Logger) {
    this.logger = logger;
    this.internals = logger as unknown as Record<symbol, unknown>;
    // pino.multistream reads each line's level and object from the logger, which this path skips.
    if ((this.internals[streamSym] as Destination)[needsMetadataGsym] === true)
      throw new Error('AccessLog: the destination needs pino metadata (multistream); not supported');
  }

  get enabled(): boolean {
    return this.logger.isLevelEnabled('info');
  }

  write(f: AccessFields): void {
    const p = this.internals;
    const time = (p[timeSym] as () => string).call(p);
    let line = `${(p[lsCacheSym] as Record<number, string>)[INFO]}${time}${p[chindingsSym] as string},"request_id":${JSON.stringify(f.request_id)},"method":${JSON.stringify(f.method)},"route":${JSON.stringify(f.route)},"url":${JSON.stringify(f.url)},"status":${number(f.status)},"duration_ms":${number(f.duration_ms)}`;
    if (f.upstream_ms !== undefined) line += `,"upstream_ms":${number(f.upstream_ms)}`;
    if (f.queued_ms !== undefined) line += `,"queued_ms":${number(f.queued_ms)}`;
    if (f.attempts !== undefined) line += `,"attempts":${number(f.attempts)}`;
    if (f.key_id !== undefined) line += `,"key_id":${JSON.stringify(f.key_id)}`;
    if (f.client !== undefined) line += `,"client":${JSON.stringify(f.client)}`;
    if (f.ip !== undefined) line += `,"ip":${JSON.stringify(f.ip)}`;
    line += `,"msg":"request"${p[endSym] as string}`;
    const scrub = (p[hooksSym] as { streamWrite?: (line: string) => string }).streamWrite;
    (p[streamSym] as Destination).write(scrub ? scrub(line) : line);
  }
}

/** As pino writes a number: a non-finite one as null. */
function number(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}
