import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { Agent, request } from 'undici';
import { type ErrorKind, GatewayError } from '../errors/gateway-errors.ts';
import { detectImageType, type ImageType } from '../media/image-type.ts';
import { forbiddenAddressReason } from './ip-policy.ts';

/**
 * Fetching a URL a user gave us, without letting it reach anything but the public internet.
 *
 * - only http: and https:, no credentials in the URL;
 * - the host name is resolved once per hop with the (injectable) resolver, and every address
 *   it resolves to must be public (see ip-policy.ts); one bad address refuses the whole hop;
 * - the connection goes to the address that was checked: the undici Agent of each hop gets a
 *   `connect.lookup` that answers with that pinned address, so a DNS answer that changes
 *   between the check and the connection (DNS rebinding) is never used; TLS still verifies the
 *   certificate against the host name;
 * - redirects are followed by hand (at most `maxRedirects`), each hop checked like the first;
 * - the body is read up to `maxBytes` (413 beyond), the whole operation (DNS included) has one
 *   deadline (504), and the content must be an image by its magic bytes (415).
 *
 * `allowHosts` ("host:port" or "host") exempts named hosts from the address check (internal
 * image stores, test servers). It matches the URL's host name literally: another name that
 * resolves to an allowed host's address is still refused.
 *
 * Errors are SafeFetchError (a domain error, src/errors) whose `detail` never contains what
 * was fetched nor the addresses a name resolved to; `internal` carries those for logs.
 */

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (hostname) => {
  const answers = await dnsLookup(hostname, { all: true, verbatim: true });
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

export interface SafeFetchOptions {
  /** "host:port" or "host" entries exempt from the address check. */
  allowHosts?: readonly string[];
  maxBytes: number;
  timeoutMs: number;
  /** Default 3. */
  maxRedirects?: number;
  /** Default: the system resolver (getaddrinfo). */
  resolver?: Resolver;
  signal?: AbortSignal;
  /** Test seam: returns a reason to refuse an address, null to allow. Default: ip-policy. */
  addressPolicy?: (address: string) => string | null;
  /** Test seam: extra CA certificates to trust for https (default: the system's). */
  ca?: string | Buffer;
}

export interface FetchedImage {
  bytes: Buffer;
  mimeType: ImageType['mimeType'];
  ext: ImageType['ext'];
}

/** What a refused fetch says went wrong. */
export type FetchRefusal = Extract<
  ErrorKind,
  'invalid_argument' | 'invalid_input' | 'payload_too_large' | 'unsupported_media_type' | 'deadline_exceeded'
>;

export class SafeFetchError extends GatewayError {
  declare readonly kind: FetchRefusal;
  /** Operator-only detail (may name addresses); never sent to the client. */
  readonly internal: string;
  constructor(kind: FetchRefusal, detail: string, internal = detail) {
    super(kind, detail);
    this.internal = internal;
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const NOT_ALLOWED = 'the URL is not allowed: its host cannot be resolved or is not a public address';

export async function safeFetchImage(input: string, opts: SafeFetchOptions): Promise<FetchedImage> {
  const maxRedirects = opts.maxRedirects ?? 3;
  const resolver = opts.resolver ?? systemResolver;
  const policy = opts.addressPolicy ?? forbiddenAddressReason;
  const allow = parseAllowHosts(opts.allowHosts ?? []);

  const deadline = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    deadline.abort(new Error('timeout'));
  }, opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([deadline.signal, opts.signal]) : deadline.signal;

  try {
    let url = parseUrl(input);
    for (let hop = 0; ; hop++) {
      checkUrl(url);
      const hostname = bareHost(url.hostname);
      const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
      const exempt = isAllowed(allow, hostname, port);
      const pinned = await resolveAndCheck(hostname, exempt, resolver, policy, signal);

      const agent = new Agent({
        connect: {
          lookup: pinnedLookup(hostname, pinned),
          timeout: opts.timeoutMs,
          ...(opts.ca ? { ca: opts.ca } : {}),
        },
        pipelining: 0,
      });
      try {
        const res = await request(url, {
          method: 'GET',
          dispatcher: agent,
          signal,
          headers: { accept: 'image/*', 'user-agent': 'gemini-gateway-image-fetch/1' },
          headersTimeout: opts.timeoutMs,
          bodyTimeout: opts.timeoutMs,
        });
        if (REDIRECTS.has(res.statusCode)) {
          await res.body.dump().catch(() => {});
          const location = headerValue(res.headers.location);
          if (!location)
            throw new SafeFetchError(
              'invalid_input',
              `the URL redirected (HTTP ${res.statusCode}) without a Location`,
            );
          if (hop >= maxRedirects)
            throw new SafeFetchError('invalid_input', `the URL redirected more than ${maxRedirects} times`);
          url = parseUrl(location, url);
          continue;
        }
        if (res.statusCode < 200 || res.statusCode > 299) {
          await res.body.dump().catch(() => {});
          throw new SafeFetchError('invalid_input', `the URL answered HTTP ${res.statusCode}`);
        }
        const declared = Number(headerValue(res.headers['content-length']) ?? Number.NaN);
        if (Number.isFinite(declared) && declared > opts.maxBytes) {
          res.body.destroy();
          throw tooLarge(opts.maxBytes);
        }
        const bytes = await readLimited(res.body, opts.maxBytes);
        const type = detectImageType(bytes);
        if (!type)
          throw new SafeFetchError(
            'unsupported_media_type',
            'the URL did not return an image (PNG, JPEG, WebP, GIF or HEIC)',
          );
        return { bytes, mimeType: type.mimeType, ext: type.ext };
      } finally {
        agent.destroy().catch(() => {});
      }
    }
  } catch (err) {
    if (err instanceof SafeFetchError) throw err;
    if (timedOut)
      throw new SafeFetchError('deadline_exceeded', `fetching the URL took longer than ${opts.timeoutMs} ms`);
    if (opts.signal?.aborted) throw err;
    const code = (err as { code?: string }).code ?? (err as Error).name;
    throw new SafeFetchError('invalid_input', 'the URL could not be fetched', `fetch failed: ${code}`);
  } finally {
    clearTimeout(timer);
  }
}

function parseUrl(raw: string, base?: URL): URL {
  try {
    return new URL(raw, base);
  } catch {
    throw new SafeFetchError('invalid_argument', 'the URL is not valid');
  }
}

function checkUrl(url: URL): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new SafeFetchError('invalid_argument', 'the URL must use http or https');
  if (url.username || url.password)
    throw new SafeFetchError('invalid_argument', 'the URL must not contain credentials');
  if (!url.hostname) throw new SafeFetchError('invalid_argument', 'the URL has no host');
}

function bareHost(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

async function resolveAndCheck(
  hostname: string,
  exempt: boolean,
  resolver: Resolver,
  policy: (address: string) => string | null,
  signal: AbortSignal,
): Promise<ResolvedAddress> {
  const family = isIP(hostname);
  if (family) {
    const reason = exempt ? null : policy(hostname);
    if (reason)
      throw new SafeFetchError('invalid_argument', NOT_ALLOWED, `address ${hostname} refused: ${reason}`);
    return { address: hostname, family: family === 6 ? 6 : 4 };
  }
  let answers: ResolvedAddress[];
  try {
    answers = await abortable(resolver(hostname), signal);
  } catch (err) {
    if (signal.aborted) throw err;
    throw new SafeFetchError(
      'invalid_argument',
      NOT_ALLOWED,
      `cannot resolve ${hostname}: ${(err as { code?: string }).code ?? err}`,
    );
  }
  if (answers.length === 0)
    throw new SafeFetchError('invalid_argument', NOT_ALLOWED, `${hostname} resolved to nothing`);
  for (const a of answers) {
    if (!isIP(a.address))
      throw new SafeFetchError('invalid_argument', NOT_ALLOWED, `${hostname} resolved to a non-address`);
    const reason = exempt ? null : policy(a.address);
    if (reason)
      throw new SafeFetchError(
        'invalid_argument',
        NOT_ALLOWED,
        `${hostname} → ${a.address} refused: ${reason}`,
      );
  }
  return answers[0]!;
}

/** A lookup that answers only with the already-checked address: no second DNS query. */
function pinnedLookup(hostname: string, pinned: ResolvedAddress): LookupFunction {
  return ((host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (bareHost(host) !== hostname) {
      callback(new Error('connection to an unexpected host'));
      return;
    }
    if (options?.all) callback(null, [{ address: pinned.address, family: pinned.family }]);
    else callback(null, pinned.address, pinned.family);
  }) as unknown as LookupFunction;
}

interface AllowEntry {
  host: string;
  port: number | null;
}

function parseAllowHosts(entries: readonly string[]): AllowEntry[] {
  const out: AllowEntry[] = [];
  for (const raw of entries) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry) ?? /^([^:]+)(?::(\d+))?$/.exec(entry);
    if (m) out.push({ host: m[1]!, port: m[2] ? Number(m[2]) : null });
    else if (isIP(entry) === 6) out.push({ host: entry, port: null });
  }
  return out;
}

function isAllowed(allow: readonly AllowEntry[], hostname: string, port: number): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, '');
  return allow.some((e) => e.host === host && (e.port === null || e.port === port));
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function tooLarge(maxBytes: number): SafeFetchError {
  return new SafeFetchError('payload_too_large', `the image is larger than ${maxBytes} bytes`);
}

async function readLimited(
  body: AsyncIterable<Buffer> & { destroy(): void },
  maxBytes: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (total > maxBytes) {
      body.destroy();
      throw tooLarge(maxBytes);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
