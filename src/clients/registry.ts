import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, type Env, readSettingFile } from '../config/env.ts';
import { writeFileAtomic } from '../config/keys-store.ts';
import { concernsFile } from '../config/reload.ts';
import { Conflict, InternalFailure, NotFound, Unavailable } from '../errors/gateway-errors.ts';
import type { StateStore } from '../store/types.ts';
import {
  type Client,
  type CreateBody,
  envClients,
  fromRecord,
  limitsFrom,
  mintToken,
  modelsFrom,
  type PatchBody,
  parseClientsFile,
  tokenDigest,
  toRecord,
} from './client.ts';

type RegistryEnv = Pick<Env, 'CLIENT_API_KEYS_MAP' | 'CLIENTS_FILE' | 'DATA_DIR'>;

const DEBOUNCE_MS = 150;
/** Where embedded mode keeps the admin-made clients, under DATA_DIR. */
export const CLIENTS_DATA_FILE = 'clients.json';

export interface ClientsFileReload {
  changed: boolean;
  total: number;
}

/**
 * Every client this instance knows, looked up by token digest. Clients of CLIENT_API_KEYS_MAP
 * and CLIENTS_FILE live here; admin-made ones live in the state store (shared by every instance
 * on one Redis) and are mirrored here.
 *
 * Freshness: `version` grows with every change this instance sees. With a shared store, a change
 * made on another instance is seen through the store's clients version, which ClientAuth reads
 * (refresh) for every request of an admin-made client and before refusing an unknown token: a
 * deleted or rotated token is refused by every instance from the moment the admin call returned.
 * Clients of CLIENT_API_KEYS_MAP and CLIENTS_FILE cost no store read.
 *
 * Embedded mode (memory store): admin-made clients are written to DATA_DIR/clients.json
 * (atomically, before they are applied) and read back at start.
 */
export class ClientRegistry {
  /** Grows whenever the clients this instance knows change (a cached lookup of an older version is redone). */
  version = 0;
  /** Admin-made clients may change on other instances (a Redis store). */
  readonly shared: boolean;
  private readonly store: StateStore;
  private readonly env: RegistryEnv;
  private readonly logger?: Logger;
  private readonly fromEnv: Client[];
  private fromFile: Client[] = [];
  private readonly admin = new Map<string, Client>();
  private byDigest = new Map<string, Client>();
  private byName = new Map<string, Client>();
  /** The store's clients version that `admin` mirrors. */
  private storeVersion = 0;
  private loading: { started: number; done: Promise<void> } | null = null;
  /** The version read that callers of this turn share (not sent yet). */
  private nextRead: Promise<number> | null = null;
  private ticks = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private fileHash: string | null = null;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Plain tokens this process has known (CLIENTS_FILE's, and the ones it minted): scrubbed from logs. */
  private readonly secrets = new Set<string>();
  /** DATA_DIR/clients.json in embedded mode; null with a shared store. */
  readonly dataFile: string | null;
  /** Called with every plain token this process knows, whenever one is added. */
  onSecrets?: (tokens: readonly string[]) => void;

  /**
   * `shared`: whether other processes change the store's clients too (default: a Redis store; a
   * cluster worker's embedded store, which the primary holds, is shared as well).
   */
  constructor(opts: { store: StateStore; env: RegistryEnv; logger?: Logger; shared?: boolean }) {
    this.store = opts.store;
    this.env = opts.env;
    this.logger = opts.logger;
    this.shared = opts.shared ?? opts.store.kind !== 'memory';
    this.fromEnv = envClients(opts.env.CLIENT_API_KEYS_MAP);
    // Embedded (memory) stores forget at exit: the admin-made clients are kept in DATA_DIR.
    this.dataFile = opts.store.kind === 'memory' ? join(opts.env.DATA_DIR, CLIENTS_DATA_FILE) : null;
  }

  /** Reads CLIENTS_FILE, the embedded data file and the store (ConfigError when a file is invalid). */
  async init(): Promise<void> {
    if (this.env.CLIENTS_FILE) {
      const { clients, hash, plainTokens } = await this.readClientsFile();
      this.fromFile = clients;
      this.fileHash = hash;
      this.addSecrets(plainTokens);
    }
    if (this.dataFile) await this.restoreDataFile(this.dataFile);
    await this.loadFromStore();
  }

  /** Whether any client source is configured (otherwise only ALLOW_ANONYMOUS opens the gateway). */
  get configuredSources(): { env: boolean; file: boolean } {
    return { env: this.fromEnv.length > 0, file: this.env.CLIENTS_FILE !== undefined };
  }

  lookup(digest: string): Client | undefined {
    return this.byDigest.get(digest);
  }

  get(name: string): Client | undefined {
    return this.byName.get(name);
  }

  /** Every client: CLIENT_API_KEYS_MAP's, CLIENTS_FILE's, then the admin-made ones by name. */
  list(): Client[] {
    return [
      ...this.fromEnv,
      ...this.fromFile,
      ...[...this.admin.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    ];
  }

  /**
   * Brings the admin-made clients up to date with the store (one read when nothing changed).
   * Returns once this instance knows every change committed before the call.
   */
  async refresh(): Promise<void> {
    if (!this.shared) return;
    const v = await this.readVersion();
    if (v === this.storeVersion) return;
    await this.loadAfter(++this.ticks);
  }

  /**
   * The store's clients version, read by one command for every caller of this event-loop turn:
   * the read leaves at the turn's end, after each of them arrived, so it sees every change
   * committed before any of them (a read already sent is never shared with a later caller).
   */
  private readVersion(): Promise<number> {
    if (this.nextRead) return this.nextRead;
    const read = new Promise<number>((resolve, reject) => {
      setImmediate(() => {
        this.nextRead = null;
        this.store.clientsVersion().then(resolve, reject);
      });
    });
    this.nextRead = read;
    return read;
  }

  /** Waits for a load of the store that began after `mark` (a load begun earlier may miss a change). */
  private async loadAfter(mark: number): Promise<void> {
    for (;;) {
      if (!this.loading) {
        const started = ++this.ticks;
        const done = this.loadFromStore().finally(() => {
          this.loading = null;
        });
        this.loading = { started, done };
      }
      const current = this.loading;
      await current.done;
      if (current.started > mark) return;
    }
  }

  private async loadFromStore(): Promise<void> {
    const { version, records } = await this.store.listClients();
    if (version < this.storeVersion)
      this.logger?.error(
        { known: this.storeVersion, found: version },
        'the state store lost its clients (Redis restarted empty?): admin-made clients must be created again',
      );
    this.admin.clear();
    for (const [name, text] of Object.entries(records)) {
      const c = fromRecord(text);
      if (c && c.name === name) this.admin.set(name, c);
      else this.logger?.warn({ client: name }, 'a stored client record is not readable; ignored');
    }
    this.storeVersion = version;
    this.rebuild();
  }

  /** The lookup maps, rebuilt: CLIENT_API_KEYS_MAP's clients first, then CLIENTS_FILE's, then admin-made. */
  private rebuild(): void {
    const byDigest = new Map<string, Client>();
    const byName = new Map<string, Client>();
    for (const c of [...this.fromEnv, ...this.fromFile, ...this.admin.values()]) {
      if (!byDigest.has(c.tokenSha256)) byDigest.set(c.tokenSha256, c);
      if (!byName.has(c.name)) byName.set(c.name, c);
    }
    this.byDigest = byDigest;
    this.byName = byName;
    this.version += 1;
  }

  // ---- admin API -------------------------------------------------------------------------

  /** A new client and its token (shown once: only its digest is kept). */
  create(body: CreateBody): Promise<{ client: Client; token: string }> {
    return this.serialized(async () => {
      await this.refreshForAdmin();
      const taken = this.byName.get(body.name);
      if (taken) throw new Conflict(`a client named "${body.name}" exists already (${taken.source})`);
      const now = Date.now();
      const token = mintToken();
      const client: Client = {
        name: body.name,
        source: 'admin',
        tokenSha256: tokenDigest(token),
        limits: limitsFrom(body.limits),
        models: modelsFrom(body.models),
        expiresAtMs: body.expires_at ? Date.parse(body.expires_at) : null,
        enabled: body.enabled !== false,
        createdAtMs: now,
        updatedAtMs: now,
      };
      await this.commit(client, 'create');
      this.addSecrets([token]);
      return { client, token };
    });
  }

  update(name: string, patch: PatchBody): Promise<Client> {
    return this.serialized(async () => {
      await this.refreshForAdmin();
      const old = this.requireAdmin(name);
      const client: Client = {
        ...old,
        limits: patch.limits !== undefined ? limitsFrom(patch.limits) : old.limits,
        models: patch.models !== undefined ? modelsFrom(patch.models) : old.models,
        expiresAtMs:
          patch.expires_at !== undefined
            ? patch.expires_at === null
              ? null
              : Date.parse(patch.expires_at)
            : old.expiresAtMs,
        enabled: patch.enabled ?? old.enabled,
        updatedAtMs: Date.now(),
      };
      await this.commit(client, 'replace');
      return client;
    });
  }

  /** A new token for the client; the old one is refused from now on, on every instance. */
  rotate(name: string): Promise<{ client: Client; token: string }> {
    return this.serialized(async () => {
      await this.refreshForAdmin();
      const old = this.requireAdmin(name);
      const token = mintToken();
      const client: Client = { ...old, tokenSha256: tokenDigest(token), updatedAtMs: Date.now() };
      await this.commit(client, 'replace');
      this.addSecrets([token]);
      return { client, token };
    });
  }

  remove(name: string): Promise<Client> {
    return this.serialized(async () => {
      await this.refreshForAdmin();
      const old = this.requireAdmin(name);
      await this.commit(old, 'delete');
      return old;
    });
  }

  private requireAdmin(name: string): Client {
    const c = this.byName.get(name);
    if (!c) throw new NotFound(`no client named "${name}"`);
    if (c.source !== 'admin')
      throw new Conflict(
        `client "${name}" is defined in ${c.source === 'env' ? 'CLIENT_API_KEYS_MAP' : 'CLIENTS_FILE'}; change it there`,
      );
    return c;
  }

  private async refreshForAdmin(): Promise<void> {
    try {
      await this.refresh();
    } catch {
      throw new Unavailable('the state store is unreachable');
    }
  }

  /**
   * Persists (embedded: DATA_DIR/clients.json first, so a failed write changes nothing), writes
   * the store, then applies the change here at once.
   */
  private async commit(client: Client, op: 'create' | 'replace' | 'delete'): Promise<void> {
    if (this.dataFile) {
      const next = new Map(this.admin);
      if (op === 'delete') next.delete(client.name);
      else next.set(client.name, client);
      await this.writeDataFile(this.dataFile, [...next.values()]);
    }
    let version: number | null;
    try {
      version =
        op === 'delete'
          ? await this.store.deleteClient(client.name)
          : await this.store.putClient(client.name, toRecord(client), op === 'create');
    } catch {
      throw new Unavailable('the state store is unreachable; nothing was changed');
    }
    if (version === null) {
      // Another instance created (or deleted) it meanwhile: take the store's view.
      await this.loadFromStore();
      await this.rewriteDataFile();
      throw op === 'create'
        ? new Conflict(`a client named "${client.name}" exists already (admin)`)
        : new NotFound(`no client named "${client.name}"`);
    }
    if (version === this.storeVersion + 1) {
      if (op === 'delete') this.admin.delete(client.name);
      else this.admin.set(client.name, client);
      this.storeVersion = version;
      this.rebuild();
    } else {
      // Other instances changed clients too: read them all.
      await this.loadFromStore();
      await this.rewriteDataFile();
    }
  }

  /**
   * The data file as the store has the clients now, when another process (a cluster worker)
   * changed them between this one's write and its change (best effort: the change is made).
   */
  private async rewriteDataFile(): Promise<void> {
    if (this.dataFile) await this.writeDataFile(this.dataFile, [...this.admin.values()]).catch(() => {});
  }

  // ---- embedded persistence ----------------------------------------------------------------

  /** Puts the data file's clients into a store that has none yet (a fresh process, or the first worker). */
  private async restoreDataFile(path: string): Promise<void> {
    if ((await this.store.clientsVersion()) !== 0) return;
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new ConfigError(`DATA_DIR: cannot read ${path} (${(err as NodeJS.ErrnoException).code})`);
    }
    let records: unknown[];
    try {
      const json = JSON.parse(text) as { clients?: unknown };
      if (!Array.isArray(json.clients)) throw new Error('no clients list');
      records = json.clients;
    } catch {
      throw new ConfigError(
        `DATA_DIR: ${path} is not a clients file the gateway wrote (fix or remove it; it holds the admin-made clients)`,
      );
    }
    for (const r of records) {
      const c = fromRecord(JSON.stringify(r));
      if (!c) throw new ConfigError(`DATA_DIR: ${path} holds a client record that is not readable`);
      await this.store.putClient(c.name, toRecord(c));
    }
  }

  private async writeDataFile(path: string, clients: Client[]): Promise<void> {
    const text = `${JSON.stringify({ clients: clients.map((c) => JSON.parse(toRecord(c))) }, null, 2)}\n`;
    try {
      await mkdir(dirname(path), { recursive: true });
      await writeFileAtomic(path, text);
    } catch (err) {
      this.logger?.error(
        { code: (err as NodeJS.ErrnoException).code },
        'cannot write the clients data file (DATA_DIR); client change not applied',
      );
      throw new InternalFailure('the clients data file could not be written; nothing was changed');
    }
  }

  // ---- CLIENTS_FILE ------------------------------------------------------------------------

  /**
   * Re-reads CLIENTS_FILE. An unreadable or invalid file throws ConfigError and changes nothing
   * (the clients in force stay). Unchanged content is a no-op unless forced.
   */
  reloadFile(opts: { force?: boolean } = {}): Promise<ClientsFileReload> {
    return this.serialized(async () => {
      if (!this.env.CLIENTS_FILE) return { changed: false, total: this.fromFile.length };
      const { clients, hash, plainTokens } = await this.readClientsFile();
      if (!opts.force && hash === this.fileHash) return { changed: false, total: clients.length };
      this.fromFile = clients;
      this.fileHash = hash;
      this.addSecrets(plainTokens);
      this.rebuild();
      return { changed: true, total: clients.length };
    });
  }

  /** reloadFile, its outcome logged (a rejected file: why, never a value); never throws. */
  async reloadFileLogged(source: 'clients_file' | 'signal'): Promise<void> {
    try {
      const r = await this.reloadFile({ force: source === 'signal' });
      if (r.changed) this.logger?.info({ source, total: r.total }, 'clients file reloaded');
    } catch (err) {
      this.logger?.error(
        { source, reason: err instanceof ConfigError ? err.message : 'unexpected error' },
        'CLIENTS_FILE reload rejected; the clients in force are kept',
      );
    }
  }

  /** Watches CLIENTS_FILE (its directory, events for its name only), debounced; invalid versions are logged and ignored. */
  startWatching(): void {
    const path = this.env.CLIENTS_FILE;
    if (!path || this.watcher) return;
    const name = basename(path);
    try {
      this.watcher = watch(dirname(path), { persistent: false }, (_event, filename) => {
        if (!concernsFile(filename, name)) return;
        if (this.timer) clearTimeout(this.timer);
        this.timer = setTimeout(() => {
          this.timer = null;
          void this.reloadFileLogged('clients_file');
        }, DEBOUNCE_MS);
        this.timer.unref();
      });
      this.watcher.on('error', (err) =>
        this.logger?.warn({ err: String(err) }, 'clients file watcher failed'),
      );
    } catch (err) {
      this.logger?.warn({ err: String(err) }, 'cannot watch CLIENTS_FILE; use POST /admin/clients/reload');
    }
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private async readClientsFile(): Promise<{ clients: Client[]; hash: string; plainTokens: string[] }> {
    const text = await readSettingFile('CLIENTS_FILE', this.env.CLIENTS_FILE!);
    const { clients, plainTokens } = parseClientsFile(text);
    const envNames = new Set(this.fromEnv.map((c) => c.name));
    const envDigests = new Set(this.fromEnv.map((c) => c.tokenSha256));
    clients.forEach((c, i) => {
      if (envNames.has(c.name))
        throw new ConfigError(
          `CLIENTS_FILE: client ${i + 1} ("${c.name}") is named in CLIENT_API_KEYS_MAP too`,
        );
      if (envDigests.has(c.tokenSha256))
        throw new ConfigError(
          `CLIENTS_FILE: client ${i + 1} ("${c.name}") has a token of CLIENT_API_KEYS_MAP`,
        );
    });
    return { clients, hash: createHash('sha256').update(text).digest('hex'), plainTokens };
  }

  private addSecrets(tokens: readonly string[]): void {
    let added = false;
    for (const t of tokens)
      if (!this.secrets.has(t)) {
        this.secrets.add(t);
        added = true;
      }
    if (added) this.onSecrets?.([...this.secrets]);
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => {});
    return run;
  }
}
