import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { ConfigError, type Env, parseSettingJson, readSettingFile } from './env.ts';
import type { KeyManager, KeysReload } from './keys-store.ts';

/**
 * CONFIG_FILE: a JSON object holding the subset of settings that may change while the gateway
 * runs, under their environment variable names. Values in the file override the environment;
 * a setting removed from the file falls back to the environment's value at the next reload.
 *
 *   { "GLOBAL_RATE_LIMIT": 300, "BURST_RATE_LIMIT": 30, "CLIENT_RATE_LIMIT": 60,
 *     "CLIENT_RATE_LIMITS": { "batch-jobs": 600 }, "LOG_LEVEL": "debug" }
 *
 * Everything else (ports, Redis, tokens, timeouts) needs a restart.
 */
const count = z.number().int().min(0);
export const runtimeConfigSchema = z
  .object({
    GLOBAL_RATE_LIMIT: count.optional(),
    BURST_RATE_LIMIT: count.optional(),
    CLIENT_RATE_LIMIT: count.optional(),
    CLIENT_RATE_LIMITS: z.record(z.string().min(1), count).optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
  })
  .strict();

export type RuntimeConfig = z.infer<typeof runtimeConfigSchema>;

/** The settings in effect: the environment, overridden by CONFIG_FILE. */
export interface EffectiveSettings {
  GLOBAL_RATE_LIMIT: number;
  BURST_RATE_LIMIT: number;
  CLIENT_RATE_LIMIT: number;
  CLIENT_RATE_LIMITS: Map<string, number>;
  LOG_LEVEL: Env['LOG_LEVEL'];
}

export function effectiveSettings(env: Env, file: RuntimeConfig): EffectiveSettings {
  return {
    GLOBAL_RATE_LIMIT: file.GLOBAL_RATE_LIMIT ?? env.GLOBAL_RATE_LIMIT,
    BURST_RATE_LIMIT: file.BURST_RATE_LIMIT ?? env.BURST_RATE_LIMIT,
    CLIENT_RATE_LIMIT: file.CLIENT_RATE_LIMIT ?? env.CLIENT_RATE_LIMIT,
    CLIENT_RATE_LIMITS: file.CLIENT_RATE_LIMITS
      ? new Map(Object.entries(file.CLIENT_RATE_LIMITS))
      : new Map(env.CLIENT_RATE_LIMITS),
    LOG_LEVEL: file.LOG_LEVEL ?? env.LOG_LEVEL,
  };
}

export function parseRuntimeConfig(text: string, source = 'CONFIG_FILE'): RuntimeConfig {
  return parseSettingJson(text, source, 'config file', runtimeConfigSchema);
}

export type ReloadSource = 'keys_file' | 'config_file' | 'admin' | 'signal';

export interface ReloadOutcome {
  ok: boolean;
  keys?: KeysReload;
  config?: { changed: boolean };
  error?: string;
}

export interface ReloadStatus {
  last_reload_at: string | null;
  last_result: 'applied' | 'unchanged' | 'rejected' | null;
  last_error: string | null;
  watching: string[];
}

const DEBOUNCE_MS = 150;

/**
 * Whether a directory event may change the watched file: its own name, or a Kubernetes volume's
 * atomic update (a new `..<timestamp>` directory, then the `..data` symlink swapped through
 * `..data_tmp`; the file is a symlink into `..data`). No name given (some platforms): maybe.
 */
export function concernsFile(filename: string | Buffer | null | undefined, name: string): boolean {
  if (filename === null || filename === undefined) return true;
  const f = String(filename);
  return f === name || f.startsWith('..');
}

/**
 * Hot reload of API_KEYS_FILE and CONFIG_FILE: each file's directory is watched (so editors'
 * and Kubernetes' rename-into-place updates are seen), changes are debounced, and a new version
 * is validated in full before anything is applied. An invalid file keeps the configuration in
 * force and logs why. Requests in flight are not affected: the key pool swaps its list in one
 * step and settings are plain value replacements.
 */
export class ConfigReloader {
  private readonly env: Env;
  private readonly keys: KeyManager;
  private readonly logger: Logger;
  private readonly applyConfig: (settings: EffectiveSettings) => void;
  private readonly onResult?: (source: ReloadSource, result: 'applied' | 'rejected') => void;
  private readonly onKeysReloaded?: (keys: KeysReload) => void;
  private configHash: string | null = null;
  private fileConfig: RuntimeConfig = {};
  private watchers: FSWatcher[] = [];
  private timers = new Map<string, NodeJS.Timeout>();
  private chain: Promise<unknown> = Promise.resolve();
  readonly status: ReloadStatus = { last_reload_at: null, last_result: null, last_error: null, watching: [] };

  constructor(opts: {
    env: Env;
    keys: KeyManager;
    logger: Logger;
    applyConfig: (settings: EffectiveSettings) => void;
    onResult?: (source: ReloadSource, result: 'applied' | 'rejected') => void;
    /** A keys file with new content was applied. */
    onKeysReloaded?: (keys: KeysReload) => void;
  }) {
    this.env = opts.env;
    this.keys = opts.keys;
    this.logger = opts.logger;
    this.applyConfig = opts.applyConfig;
    this.onResult = opts.onResult;
    this.onKeysReloaded = opts.onKeysReloaded;
  }

  /** Reads CONFIG_FILE at start (ConfigError when missing or invalid) and applies the settings. */
  async init(): Promise<void> {
    if (this.env.CONFIG_FILE) {
      const { config, hash } = await this.readConfigFile();
      this.fileConfig = config;
      this.configHash = hash;
    }
    this.applyConfig(effectiveSettings(this.env, this.fileConfig));
  }

  get settings(): EffectiveSettings {
    return effectiveSettings(this.env, this.fileConfig);
  }

  /** Starts watching the files (no-op for unset ones). */
  start(): void {
    const files: Array<[string, 'keys_file' | 'config_file']> = [];
    if (this.env.API_KEYS_FILE) files.push([this.env.API_KEYS_FILE, 'keys_file']);
    if (this.env.CONFIG_FILE) files.push([this.env.CONFIG_FILE, 'config_file']);
    for (const [path, source] of files) {
      try {
        // The directory is watched (an editor's or writeFileAtomic's rename over the file
        // replaces its inode, which a watch on the file itself would lose), but only events that
        // concern the file count: other files there (log files when LOG_DIR is this folder) would
        // otherwise wake a reload at every write. The content hash decides whether anything changed.
        const name = basename(path);
        const w = watch(dirname(path), { persistent: false }, (_event, filename) => {
          if (concernsFile(filename, name)) this.schedule(source);
        });
        w.on('error', (err) => this.logger.warn({ err: String(err), source }, 'config watcher failed'));
        this.watchers.push(w);
        this.status.watching.push(source);
      } catch (err) {
        this.logger.warn(
          { err: String(err), source },
          'cannot watch configuration file; use POST /admin/reload or SIGHUP',
        );
      }
    }
  }

  stop(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** Re-reads both files (admin API, SIGHUP). */
  reloadAll(source: ReloadSource = 'admin'): Promise<ReloadOutcome> {
    return this.serialized(async () => {
      const keys = await this.tryKeys(source, true);
      if (!keys.ok) return keys;
      const config = await this.tryConfig(source, true);
      if (!config.ok) return { ...config, keys: keys.keys };
      return { ok: true, keys: keys.keys, config: config.config };
    });
  }

  reloadKeys(source: ReloadSource = 'keys_file'): Promise<ReloadOutcome> {
    return this.serialized(() => this.tryKeys(source, false));
  }

  reloadConfig(source: ReloadSource = 'config_file'): Promise<ReloadOutcome> {
    return this.serialized(() => this.tryConfig(source, false));
  }

  private schedule(source: 'keys_file' | 'config_file'): void {
    const existing = this.timers.get(source);
    if (existing) clearTimeout(existing);
    const timer = setTimeout(() => {
      this.timers.delete(source);
      void (source === 'keys_file' ? this.reloadKeys() : this.reloadConfig());
    }, DEBOUNCE_MS);
    timer.unref();
    this.timers.set(source, timer);
  }

  private async tryKeys(source: ReloadSource, force: boolean): Promise<ReloadOutcome> {
    try {
      const keys = await this.keys.reloadFile({ force });
      if (keys.changed) {
        this.note(source, 'applied');
        this.logger.info(
          { source, added: keys.added, removed: keys.removed, total: keys.total },
          'keys file reloaded',
        );
        this.onKeysReloaded?.(keys);
      } else if (force || source !== 'keys_file') this.noteUnchanged();
      return { ok: true, keys };
    } catch (err) {
      return this.reject(source, 'API_KEYS_FILE', err);
    }
  }

  private async tryConfig(source: ReloadSource, force: boolean): Promise<ReloadOutcome> {
    if (!this.env.CONFIG_FILE) return { ok: true, config: { changed: false } };
    try {
      const { config, hash } = await this.readConfigFile();
      if (!force && hash === this.configHash) return { ok: true, config: { changed: false } };
      const settings = effectiveSettings(this.env, config);
      this.applyConfig(settings);
      this.fileConfig = config;
      this.configHash = hash;
      this.note(source, 'applied');
      this.logger.info({ source, settings: Object.keys(config) }, 'config file reloaded');
      return { ok: true, config: { changed: true } };
    } catch (err) {
      return this.reject(source, 'CONFIG_FILE', err);
    }
  }

  private reject(source: ReloadSource, what: string, err: unknown): ReloadOutcome {
    // ConfigError messages name the file, entry and field, never a key value.
    const message = err instanceof ConfigError ? err.message : `${what}: ${(err as Error).message}`;
    this.status.last_reload_at = new Date().toISOString();
    this.status.last_result = 'rejected';
    this.status.last_error = message;
    this.onResult?.(source, 'rejected');
    this.logger.error(
      { source, reason: message },
      `${what} reload rejected; the configuration in force is kept`,
    );
    return { ok: false, error: message };
  }

  private note(source: ReloadSource, result: 'applied'): void {
    this.status.last_reload_at = new Date().toISOString();
    this.status.last_result = result;
    this.status.last_error = null;
    this.onResult?.(source, result);
  }

  private noteUnchanged(): void {
    this.status.last_reload_at = new Date().toISOString();
    this.status.last_result = 'unchanged';
    this.status.last_error = null;
  }

  private async readConfigFile(): Promise<{ config: RuntimeConfig; hash: string }> {
    const text = await readSettingFile('CONFIG_FILE', this.env.CONFIG_FILE!);
    return { config: parseRuntimeConfig(text), hash: createHash('sha256').update(text).digest('hex') };
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => {});
    return run;
  }
}
