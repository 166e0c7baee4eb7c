/**
 * Upload sessions: the gateway's own `upload_id` for a resumable upload it started upstream.
 *
 * The id is `<random>.<mac>`: 128 random bits, and an HMAC-SHA256 (truncated to 128 bits) of
 * the random part, the pool key the upload was started with and the client that started it.
 * The binding itself (upstream upload URL, key, project, client) lives in the state store under
 * `uploads/<random>` (store.putResource, `detail` = the upstream URL), so in Redis mode any
 * instance continues an upload another one started. An id is honoured only when its record
 * exists, its MAC matches that record's key and client, and the caller is that client: ids
 * cannot be guessed, forged, moved to another key, or used by another client.
 *
 * The HMAC secret is UPLOAD_SESSION_SECRET, or else derived from the client tokens
 * (CLIENT_API_KEYS_MAP), which every instance of one deployment shares; with neither (anonymous
 * mode) it is random per process, and an upload then continues only on the instance that
 * started it.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ResourceOwner } from '../store/types.ts';

/** How long the gateway remembers an upload session (Google keeps one about a week). */
export const UPLOAD_SESSION_TTL_MS = 7 * 24 * 3600 * 1000;

const ID = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{22})$/;

export class UploadSessions {
  private readonly secret: Buffer;

  constructor(configured: string | undefined, clientTokens: Iterable<string>) {
    const tokens = [...clientTokens].sort();
    if (configured) this.secret = createHash('sha256').update(`upload-session\n${configured}`).digest();
    else if (tokens.length > 0)
      this.secret = createHash('sha256')
        .update(`upload-session\n${tokens.join('\n')}`)
        .digest();
    else this.secret = randomBytes(32);
  }

  /** A new session id for an upload started with `keyId` by `client`; `ref` names its store record. */
  create(keyId: string, client: string): { id: string; record: string } {
    const random = randomBytes(16).toString('base64url');
    return { id: `${random}.${this.mac(random, keyId, client)}`, record: `uploads/${random}` };
  }

  /** The store record an id names, or null when it is not one of ours in form. */
  recordOf(id: string): string | null {
    const m = ID.exec(id);
    return m ? `uploads/${m[1]}` : null;
  }

  /** Whether `id` was made for this record's key and client. */
  verify(id: string, owner: ResourceOwner): boolean {
    const m = ID.exec(id);
    if (!m) return false;
    const expected = Buffer.from(this.mac(m[1]!, owner.keyId, owner.client));
    const given = Buffer.from(m[2]!);
    return expected.length === given.length && timingSafeEqual(expected, given);
  }

  private mac(random: string, keyId: string, client: string): string {
    return createHmac('sha256', this.secret)
      .update(`${random}\n${keyId}\n${client}`)
      .digest()
      .subarray(0, 16)
      .toString('base64url');
  }
}
