import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { ConfigError } from '../config/env.ts';
import { FIELDS, type Field, zeroCounts } from './counts.ts';
import {
  addDays,
  type DayRow,
  HOUR_MS,
  HOURLY_RETENTION_HOURS,
  type HourRow,
  type UsageBatch,
  type UsageStore,
} from './store.ts';

/** The embedded database's file name under DATA_DIR. */
export const USAGE_DB_FILE = 'usage.sqlite';

/** SQLite's primary result code for a lock held by another connection. */
const SQLITE_BUSY = 5;

const COLUMNS = FIELDS.join(', ');
const PLACEHOLDERS = FIELDS.map(() => '?').join(', ');
const ADD = FIELDS.map((f) => `${f} = ${f} + excluded.${f}`).join(', ');
const COLUMN_DEFS = FIELDS.map((f) => `${f} INTEGER NOT NULL DEFAULT 0`).join(', ');

/** How long a connection waits for another's lock (busy_timeout), and enableWal for the switch. */
const LOCK_WAIT_MS = 5000;
const RETRY_PAUSE_MS = 10;
const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Switches the file to WAL. SQLite answers "database is locked" at once, without its busy
 * handler, when another connection holds a write lock in the old journal mode, as a worker that
 * opened the file a moment earlier does: so the switch is retried here, for as long as
 * busy_timeout would wait. Start-up only, so the synchronous pause blocks nothing else.
 */
function enableWal(db: DatabaseSync): void {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      db.exec('PRAGMA journal_mode = WAL;');
      return;
    } catch (err) {
      const code = (err as { errcode?: number }).errcode ?? 0;
      // The low byte is the primary code: extended codes such as SQLITE_BUSY_RECOVERY count too.
      if ((code & 0xff) !== SQLITE_BUSY || Date.now() >= deadline) throw err;
      Atomics.wait(pause, 0, 0, RETRY_PAUSE_MS);
    }
  }
}

/**
 * Usage in an SQLite file under DATA_DIR (node:sqlite, built into Node 24), so that a restart
 * keeps the history: one row per (Pacific day, client, model) and one per (UTC hour, client,
 * model). A flush is one transaction of upserts (it commits whole or not at all, so a batch is
 * never added twice). The worker processes of one gateway (WORKERS) may share the file (SQLite
 * locks it per transaction); instances on several machines share usage through Redis.
 */
export class SqliteUsageStore implements UsageStore {
  readonly kind = 'sqlite';
  /** Other processes (WORKERS) may write the same file: today's totals are read back. */
  readonly shared = true;
  private readonly db: DatabaseSync;
  private readonly upsertDay: StatementSync;
  private readonly upsertHour: StatementSync;
  private readonly retentionDays: number;
  private readonly pacificDay: (ms: number) => string;

  constructor(dataDir: string, retentionDays: number, pacificDay: (ms: number) => string) {
    try {
      mkdirSync(dataDir, { recursive: true });
      this.db = new DatabaseSync(join(dataDir, USAGE_DB_FILE));
      // With WORKERS several processes open the file at once. The busy timeout covers their
      // transactions, but not the switch to WAL (see enableWal).
      this.db.exec(`PRAGMA busy_timeout = ${LOCK_WAIT_MS};`);
      enableWal(this.db);
      this.db.exec('PRAGMA synchronous = NORMAL;');
      this.db.exec(
        `CREATE TABLE IF NOT EXISTS usage_daily (day TEXT NOT NULL, client TEXT NOT NULL, model TEXT NOT NULL, ${COLUMN_DEFS}, PRIMARY KEY (day, client, model)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS usage_hourly (hour INTEGER NOT NULL, client TEXT NOT NULL, model TEXT NOT NULL, ${COLUMN_DEFS}, PRIMARY KEY (hour, client, model)) WITHOUT ROWID;`,
      );
    } catch (err) {
      throw new ConfigError(
        `DATA_DIR: cannot open the usage database ${join(dataDir, USAGE_DB_FILE)} (${(err as Error).message})`,
      );
    }
    this.upsertDay = this.db.prepare(
      `INSERT INTO usage_daily (day, client, model, ${COLUMNS}) VALUES (?, ?, ?, ${PLACEHOLDERS})
       ON CONFLICT (day, client, model) DO UPDATE SET ${ADD}`,
    );
    this.upsertHour = this.db.prepare(
      `INSERT INTO usage_hourly (hour, client, model, ${COLUMNS}) VALUES (?, ?, ?, ${PLACEHOLDERS})
       ON CONFLICT (hour, client, model) DO UPDATE SET ${ADD}`,
    );
    this.retentionDays = retentionDays;
    this.pacificDay = pacificDay;
  }

  async write(batch: UsageBatch): Promise<null> {
    this.db.exec('BEGIN');
    try {
      for (const e of batch.entries) {
        const values = FIELDS.map((f) => e.counts[f]);
        this.upsertDay.run(e.day, e.client, e.model, ...values);
        this.upsertHour.run(e.hour, e.client, e.model, ...values);
      }
      this.db.exec('COMMIT');
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
    return null;
  }

  async tokensByClient(day: string): Promise<Map<string, number>> {
    const rows = this.db
      .prepare(
        'SELECT client, SUM(prompt_tokens + output_tokens + thought_tokens) AS tokens FROM usage_daily WHERE day = ? GROUP BY client',
      )
      .all(day) as Array<{ client: string; tokens: number }>;
    return new Map(rows.map((r) => [r.client, Number(r.tokens)]));
  }

  async days(days: readonly string[]): Promise<DayRow[]> {
    if (days.length === 0) return [];
    const sorted = [...days].sort();
    const wanted = new Set(days);
    const rows = this.db
      .prepare(
        `SELECT day, client, model, ${COLUMNS} FROM usage_daily WHERE day >= ? AND day <= ? ORDER BY day, client, model`,
      )
      .all(sorted[0]!, sorted[sorted.length - 1]!) as Array<Record<string, unknown>>;
    return rows
      .filter((r) => wanted.has(String(r.day)))
      .map((r) => ({
        day: String(r.day),
        client: String(r.client),
        model: String(r.model),
        counts: countsOf(r),
      }));
  }

  async hours(hours: readonly number[]): Promise<HourRow[]> {
    if (hours.length === 0) return [];
    const wanted = new Set(hours);
    const rows = this.db
      .prepare(
        `SELECT hour, client, model, ${COLUMNS} FROM usage_hourly WHERE hour >= ? AND hour <= ? ORDER BY hour, client, model`,
      )
      .all(Math.min(...hours), Math.max(...hours)) as Array<Record<string, unknown>>;
    return rows
      .filter((r) => wanted.has(Number(r.hour)))
      .map((r) => ({
        hour: Number(r.hour),
        client: String(r.client),
        model: String(r.model),
        counts: countsOf(r),
      }));
  }

  async trim(nowMs: number): Promise<void> {
    const oldestDay = addDays(this.pacificDay(nowMs), -this.retentionDays);
    this.db.prepare('DELETE FROM usage_daily WHERE day < ?').run(oldestDay);
    this.db
      .prepare('DELETE FROM usage_hourly WHERE hour < ?')
      .run(Math.floor(nowMs / HOUR_MS) - HOURLY_RETENTION_HOURS);
  }

  async close(): Promise<void> {
    if (this.db.isOpen) this.db.close();
  }
}

function countsOf(r: Record<string, unknown>) {
  const c = zeroCounts();
  for (const f of FIELDS) c[f as Field] = Number(r[f] ?? 0);
  return c;
}
