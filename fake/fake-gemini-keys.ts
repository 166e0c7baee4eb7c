/**
 * The fake Gemini's API keys: which project each belongs to and its standing at Google, and the
 * answer Google gives a key that may not call.
 */
import {
  ERR_INVALID_KEY,
  ERR_LEAKED,
  ERR_NO_KEY,
  type ErrorReply,
  errServiceDisabled,
  errSuspended,
  maskSecret,
} from './fake-gemini-errors.ts';

/**
 * A key's standing at Google. invalid, leaked, suspended and service_disabled refuse every call,
 * models.list included; billing (a prepaid project without credits) refuses only the calls
 * that spend (generateContent, streamGenerateContent, embedContent, batchEmbedContents).
 */
export type FakeKeyState = 'ok' | 'invalid' | 'leaked' | 'suspended' | 'service_disabled' | 'billing';

export interface KeyEntry {
  project: string;
  state: FakeKeyState;
}

export class FakeKeyring {
  readonly #keys = new Map<string, KeyEntry>();
  /** Unknown keys are accepted (each its own project) instead of refused as invalid. */
  readonly #acceptAnyKey: boolean;

  constructor(keys: ReadonlyArray<{ apiKey: string; project?: string }>, acceptAnyKey: boolean) {
    for (const k of keys) this.#keys.set(k.apiKey, { project: k.project ?? k.apiKey, state: 'ok' });
    this.#acceptAnyKey = acceptAnyKey;
  }

  add(apiKey: string, project?: string): void {
    const e = this.#keys.get(apiKey);
    if (e) e.project = project ?? e.project;
    else this.#keys.set(apiKey, { project: project ?? apiKey, state: 'ok' });
  }

  setState(apiKey: string, state: FakeKeyState): void {
    const e = this.#keys.get(apiKey);
    if (e) e.state = state;
    else this.#keys.set(apiKey, { project: apiKey, state });
  }

  /**
   * The key of an HTTP call: its entry (state ok or billing; an accepted unknown key is kept
   * from then on), or Google's refusal.
   */
  admitCall(apiKey: string | null): Readonly<KeyEntry> | ErrorReply {
    if (apiKey === null) return ERR_NO_KEY;
    let entry = this.#keys.get(apiKey);
    if (entry === undefined) {
      if (!this.#acceptAnyKey) return ERR_INVALID_KEY;
      entry = { project: apiKey, state: 'ok' };
      this.#keys.set(apiKey, entry);
    }
    return refusal(apiKey, entry) ?? entry;
  }

  /** The key of a Live API session: its project, or Google's refusal. */
  admitLive(apiKey: string | null): { project: string } | ErrorReply {
    if (apiKey === null) return ERR_NO_KEY;
    const entry =
      this.#keys.get(apiKey) ?? (this.#acceptAnyKey ? { project: apiKey, state: 'ok' as const } : undefined);
    if (entry === undefined) return ERR_INVALID_KEY;
    return refusal(apiKey, entry) ?? { project: entry.project };
  }
}

/** Google's answer to a key whose standing refuses every call, or null (ok, billing). */
function refusal(apiKey: string, entry: KeyEntry): ErrorReply | null {
  // Google names the key's project; a key without one is shown masked.
  const project = entry.project === apiKey ? maskSecret(apiKey) : entry.project;
  switch (entry.state) {
    case 'invalid':
      return ERR_INVALID_KEY;
    case 'leaked':
      return ERR_LEAKED;
    case 'suspended':
      return errSuspended(apiKey, project);
    case 'service_disabled':
      return errServiceDisabled(project);
    case 'ok':
    case 'billing':
      return null;
  }
}
