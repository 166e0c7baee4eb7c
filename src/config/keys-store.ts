import { createHash, randomBytes } from 'node:crypto';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { Conflict, InternalFailure, InvalidInput, NotFound } from '../errors/gateway-errors.ts';
import type { KeyPool } from '../pool/key-pool.ts';
import type { StateStore } from '../store/types.ts';
import { ConfigError, type Env, readSettingFile } from './env.ts';
import {
  assertUnique,
  envKeyId,
  type KeyConfig,
  type KeyDefaults,
  keyFromEntry,
  keysFileSchema,
  keyToEntry,
  parseKeysFile,
} from './keys.ts';

/** Where a key came from, which decides where a change to it is persisted. */
export type KeyOrigin = 'file' | 'env' | 'admin';

export interface ManagedKey {
  config: KeyConfig;
  origin: KeyOrigin;
}

export interface KeysReload {
  /** false: the file was unchanged since it was last applied or written. */
  changed: boolean;
  added: string[];
  removed: string[];
  total: number;
}

type KeyEnv = Pick<
  Env,
  'API_KEYS_FILE' | 'GEMINI_API_KEYS' | 'DEFAULT_RPM' | 'DEFAULT_RPD' | 'DEFAULT_TPM' | 'DEFAULT_TIER'
>;

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Writes a file atomically: a temporary file in the same directory, flushed to disk, then
 * renamed over the target, so a reader (another instance, the file watcher, a crash) sees
 * either the old or the new content, never half of it. The target's mode is kept (0600 when new).
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  let mode = 0o600;
  try {
    mode = (await stat(path)).mode & 0o777;
  } catch {
    /* new file */
  }
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(tmp, 'w', mode);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}

/**
 * The pool's key list and its persistence. Keys come from API_KEYS_FILE ('file'), from
 * GEMINI_API_KEYS ('env') or from the admin API ('admin': added while no API_KEYS_FILE is set).
 * Every change is applied to the pool (and so to the state store's registry, which every
 * instance on the same Redis reads) and, for file keys, written back to API_KEYS_FILE
 * atomically. Changes are serialized: one at a time, in arrival order.
 */
export class KeyManager {
  private keys: ManagedKey[] = [];
  /** Ids of GEMINI_API_KEYS keys removed through the admin API (until restart). */
  private readonly removedEnv = new Set<string>();
  /** The keys file's `defaults` (persisted back as written). */
  private fileDefaults: KeyDefaults = {};
  /** Hash of the keys file as last read or written: a watcher event with the same content is a no-op. */
  private fileHash: string | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly env: KeyEnv;
  private readonly pool: KeyPool;
  private readonly store: StateStore;
  private readonly logger?: Logger;
  /** Called after every applied change (e.g. to update the log scrubber's secrets). */
  onChange?: (keys: readonly KeyConfig[]) => void;

  constructor(opts: { env: KeyEnv; pool: KeyPool; store: StateStore; logger?: Logger }) {
    this.env = opts.env;
    this.pool = opts.pool;
    this.store = opts.store;
    this.logger = opts.logger;
  }

  /** Loads API_KEYS_FILE and GEMINI_API_KEYS (ConfigError when invalid) without applying them. */
  async load(): Promise<KeyConfig[]> {
    const fileKeys = this.env.API_KEYS_FILE ? (await this.readKeysFile()).keys : [];
    const envKeys = this.envKeys();
    const keys = [
      ...fileKeys.map((config) => ({ config, origin: 'file' as const })),
      ...envKeys.map((config) => ({ config, origin: 'env' as const })),
    ];
    assertUnique(keys.map((k) => k.config));
    this.keys = keys;
    return this.configs();
  }

  /** Applies the loaded list to the pool. */
  async apply(): Promise<void> {
    await this.pool.setKeys(this.configs());
    this.onChange?.(this.configs());
  }

  list(): readonly ManagedKey[] {
    return this.keys;
  }

  configs(): KeyConfig[] {
    return this.keys.map((k) => k.config);
  }

  get(id: string): ManagedKey | undefined {
    return this.keys.find((k) => k.config.id === id);
  }

  /** Adds a key from an admin request body (a keys-file entry; `id` optional). */
  add(body: unknown): Promise<ManagedKey> {
    return this.serialized(async () => {
      const raw = (typeof body === 'object' && body !== null ? { ...body } : body) as Record<string, unknown>;
      if (raw && typeof raw === 'object' && raw.id === undefined && typeof raw.api_key === 'string')
        raw.id = `key_${sha256(raw.api_key).slice(0, 10)}`;
      const parsed = keysFileSchema.safeParse({ keys: [raw] });
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const field = issue?.path.slice(2).join('.') || 'body';
        throw new InvalidInput(`${field}: ${issue?.message ?? 'invalid key entry'}`, {
          title: 'Validation Failed',
        });
      }
      const config = keyFromEntry(parsed.data.keys[0]!, this.env, this.fileDefaults);
      if (this.get(config.id)) throw new Conflict(`a key with id "${config.id}" exists already`);
      if (this.keys.some((k) => k.config.apiKey === config.apiKey))
        throw new Conflict('this api_key is in the pool already');
      const key: ManagedKey = { config, origin: this.env.API_KEYS_FILE ? 'file' : 'admin' };
      await this.commit([...this.keys, key], key.origin === 'file');
      return key;
    });
  }

  remove(id: string): Promise<ManagedKey> {
    return this.serialized(async () => {
      const key = this.require(id);
      if (this.keys.length === 1) throw new Conflict('the last key of the pool cannot be removed');
      if (key.origin === 'env') this.removedEnv.add(id);
      await this.commit(
        this.keys.filter((k) => k !== key),
        key.origin === 'file',
      );
      return key;
    });
  }

  /** Enables or disables a key for every instance (state store) and in its configuration. */
  setEnabled(id: string, enabled: boolean, reason: string | null): Promise<ManagedKey> {
    return this.serialized(async () => {
      const key = this.require(id);
      if (key.config.enabled !== enabled && key.origin !== 'env') {
        const updated: ManagedKey = { config: { ...key.config, enabled }, origin: key.origin };
        await this.commit(
          this.keys.map((k) => (k === key ? updated : k)),
          key.origin === 'file',
        );
      }
      await this.store.setKeyEnabled(
        id,
        enabled,
        enabled ? null : (reason ?? 'disabled by admin'),
        Date.now(),
      );
      return this.require(id);
    });
  }

  /** Ends a rest and closes an open circuit. */
  reset(id: string): Promise<ManagedKey> {
    return this.serialized(async () => {
      const key = this.require(id);
      await this.store.resetKey(id);
      return key;
    });
  }

  /**
   * Re-reads API_KEYS_FILE. An unreadable or invalid file (or one that would duplicate a key)
   * throws ConfigError and changes nothing. Keys added through the admin API without a keys
   * file, and GEMINI_API_KEYS keys, are kept.
   */
  reloadFile(opts: { force?: boolean } = {}): Promise<KeysReload> {
    return this.serialized(async () => {
      if (!this.env.API_KEYS_FILE) return { changed: false, added: [], removed: [], total: this.keys.length };
      const { keys: fileKeys, defaults, hash } = await this.readKeysFile(false);
      if (!opts.force && hash === this.fileHash)
        return { changed: false, added: [], removed: [], total: this.keys.length };
      const next: ManagedKey[] = [
        ...fileKeys.map((config) => ({ config, origin: 'file' as const })),
        ...this.keys.filter((k) => k.origin !== 'file'),
      ];
      // As at start-up and in the admin API (the last key cannot be removed): an empty pool
      // would answer every request 503.
      if (next.length === 0)
        throw new ConfigError('API_KEYS_FILE: no keys; the pool cannot be emptied (keep at least one key)');
      assertUnique(next.map((k) => k.config));
      const before = new Map(this.keys.map((k) => [k.config.id, k.config]));
      const after = new Set(next.map((k) => k.config.id));
      await this.commit(next, false);
      this.fileHash = hash;
      this.fileDefaults = defaults;
      // An operator who flips enabled to true in the file means it: clear a runtime disable too.
      for (const k of next) {
        const old = before.get(k.config.id);
        if (old && !old.enabled && k.config.enabled)
          await this.store.setKeyEnabled(k.config.id, true, null, Date.now());
      }
      return {
        changed: true,
        added: [...after].filter((id) => !before.has(id)),
        removed: [...before.keys()].filter((id) => !after.has(id)),
        total: next.length,
      };
    });
  }

  private require(id: string): ManagedKey {
    const key = this.get(id);
    if (!key) throw new NotFound(`no key with id "${id}"`);
    return key;
  }

  private envKeys(): KeyConfig[] {
    return this.env.GEMINI_API_KEYS.map((apiKey) =>
      keyFromEntry({ id: envKeyId(apiKey), api_key: apiKey }, this.env),
    ).filter((k) => !this.removedEnv.has(k.id));
  }

  /** Persists (file keys → API_KEYS_FILE) first, then applies: a failed write changes nothing. */
  private async commit(next: ManagedKey[], persist: boolean): Promise<void> {
    if (persist && this.env.API_KEYS_FILE) {
      const defaults = Object.keys(this.fileDefaults).length ? { defaults: this.fileDefaults } : {};
      const text = `${JSON.stringify(
        { ...defaults, keys: next.filter((k) => k.origin === 'file').map((k) => keyToEntry(k.config)) },
        null,
        2,
      )}\n`;
      try {
        await writeFileAtomic(this.env.API_KEYS_FILE, text);
      } catch (err) {
        this.logger?.error(
          { code: (err as NodeJS.ErrnoException).code },
          'cannot write API_KEYS_FILE; key change not applied',
        );
        throw new InternalFailure('the keys file could not be written; nothing was changed');
      }
      this.fileHash = sha256(text);
    }
    await this.pool.setKeys(next.map((k) => k.config));
    this.keys = next;
    this.onChange?.(this.configs());
  }

  private async readKeysFile(
    remember = true,
  ): Promise<{ keys: KeyConfig[]; defaults: KeyDefaults; hash: string }> {
    const text = await readSettingFile('API_KEYS_FILE', this.env.API_KEYS_FILE!);
    const { keys, defaults } = parseKeysFile(text, 'API_KEYS_FILE', this.env as Env);
    const hash = sha256(text);
    if (remember) {
      this.fileHash = hash;
      this.fileDefaults = defaults;
    }
    return { keys, defaults, hash };
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => {});
    return run;
  }
}

/** `AIza…xyz1`: enough to recognise a key, never enough to use it. */
export function maskKey(apiKey: string): string {
  if (apiKey.length < 12) return '…';
  return `${apiKey.slice(0, 4)}…${apiKey.slice(-4)}`;
}
