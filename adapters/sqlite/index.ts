// keygate/sqlite: the SQL key store over your own better-sqlite3 Database.

import { setTimeout as sleep } from 'node:timers/promises';
import {
  assertClient,
  schemaScript,
  sqliteDialect,
  SqlStore,
  upgradeScript,
  type SqlRow,
  type SqlSchemaOptions,
  type SqlStoreOptions,
} from '../sql/index.js';

export { SqlKeyStore } from '../sql/index.js';
export type { SqlSchemaOptions, SqlStore, SqlStoreOptions } from '../sql/index.js';

/** The part of a better-sqlite3 statement the store uses. */
export interface SqliteStatement {
  /** Whether the statement returns rows (a SELECT, or a write with RETURNING). */
  readonly reader: boolean;
  /**
   * Whether the statement only reads (better-sqlite3's `readonly`). An UPDATE … RETURNING is a
   * reader that writes: without this the store tells writes by their text.
   */
  readonly readonly?: boolean;
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): { changes: number | bigint };
}

/** The part of a better-sqlite3 `Database` (11, 12 or 13; 13 needs Node.js 22 or later) the store uses. */
export interface SqliteDatabase {
  prepare(source: string): SqliteStatement;
  exec(source: string): unknown;
  /**
   * Tells a better-sqlite3 `Database` from a wrapper: with it, the store switches the connection's
   * busy timeout around its own statements (see {@link sqliteStore}). The store does not call it.
   */
  pragma?(source: string, options?: { simple?: boolean }): unknown;
  /** Whether the database lives in this connection's memory only (no other connection can lock it). */
  readonly memory?: boolean;
}

/** Options of {@link sqliteStore}. */
export type SqliteStoreOptions = SqlStoreOptions;

/** The busy timeout of a connection whose own cannot be read: better-sqlite3's default. */
const DEFAULT_BUSY_MS = 5000;
/** The longest a last-used write waits for a lock: it is bookkeeping, and the next flush writes later times. */
const TOUCH_WAIT_MS = 50;
/** The first and the longest pause between two attempts while another connection holds a lock. */
const FIRST_PAUSE_MS = 1;
const MAX_PAUSE_MS = 50;

/**
 * Whether SQLite refused for a lock another connection holds: SQLITE_BUSY and its extended codes
 * (SQLITE_BUSY_RECOVERY, SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY_TIMEOUT), the codes SQLite's own busy
 * handler would have waited on. SQLITE_LOCKED is a conflict inside this connection, which waiting
 * does not clear; SQLite fails it at once, and so does the store.
 */
function isBusy(error: unknown): boolean {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' && (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_'));
}

/**
 * A key store in a SQLite table, over the better-sqlite3 `Database` you already have. Each
 * statement is prepared once, on first use, and reused. No statement runs until you call a
 * method; create the table with `await store.migrate()` or with {@link sqliteSchema}.
 *
 * better-sqlite3 runs statements synchronously, and SQLite waits for a lock held by another
 * connection inside the statement, for up to the connection's busy timeout (the `timeout` option,
 * 5000 ms by default): the whole event loop would stop meanwhile. So the store reads the busy
 * timeout once, on its first call, and runs each of its statements with a busy timeout of 0, putting
 * that value back right after (your own queries keep it; set it before the store's first call).
 * Reads skip the switch
 * where they cannot wait for a lock: in WAL mode, and on an in-memory database (both read on the
 * first call too). When the database is locked the store tries again on a timer, 1 ms later and then twice as long
 * each time up to 50 ms apart, for at most that busy timeout, then fails with SQLite's SQLITE_BUSY
 * error (a 503 from the manager). A last-used write waits at most 50 ms; a failed one is reported
 * to `onError`.
 *
 * @example
 * import Database from 'better-sqlite3'
 * const db = new Database('keys.db')
 * db.pragma('journal_mode = WAL')
 * const store = sqliteStore(db)
 * await store.migrate()
 */
export function sqliteStore(db: SqliteDatabase, options: SqliteStoreOptions = {}): SqlStore {
  assertClient(
    db,
    ['prepare', 'exec'],
    'a better-sqlite3 Database',
    "Install the driver with `npm install better-sqlite3` and pass `new Database('keys.db')` from 'better-sqlite3'.",
  );
  // The store issues a fixed, small set of statement texts, so this map stays small.
  const prepared = new Map<string, SqliteStatement>();
  const prepare = (text: string): SqliteStatement => {
    let statement = prepared.get(text);
    if (!statement) {
      statement = db.prepare(text);
      prepared.set(text, statement);
    }
    return statement;
  };
  const locks = lockWaiter(db);
  return new SqlStore(
    sqliteDialect,
    {
      query(text, values, bookkeeping) {
        const statement = prepare(text);
        return locks.run(bookkeeping === true ? 'bookkeeping' : readsOnly(statement, text) ? 'read' : 'write', () => {
          if (statement.reader) return { rows: statement.all(...values) as SqlRow[], count: 0 };
          return { rows: [], count: Number(statement.run(...values).changes) };
        });
      },
      execute(statements) {
        return locks.run('write', () => {
          db.exec('SAVEPOINT keygate_migrate');
          try {
            for (const statement of statements) db.exec(statement);
            db.exec('RELEASE keygate_migrate');
          } catch (error) {
            db.exec('ROLLBACK TO keygate_migrate; RELEASE keygate_migrate');
            throw error;
          }
        });
      },
    },
    options,
  );
}

/** Whether a statement only reads: better-sqlite3 says so; for a wrapper that does not, a SELECT that is a reader. */
function readsOnly(statement: SqliteStatement, text: string): boolean {
  if (typeof statement.readonly === 'boolean') return statement.readonly;
  return statement.reader && /^\s*SELECT\b/i.test(text);
}

/** What a step does: reads (which never wait in WAL mode), writes, or the last-used write (which waits least). */
type StepKind = 'read' | 'write' | 'bookkeeping';

/** A busy timeout as `db.pragma('busy_timeout', { simple: true })` returns it (a row or rows on other shapes), or null. */
function timeoutOf(value: unknown): number | null {
  const row = Array.isArray(value) ? value[0] : value;
  const timeout = typeof row === 'object' && row !== null ? (row as { timeout?: unknown }).timeout : row;
  return typeof timeout === 'number' && Number.isInteger(timeout) && timeout >= 0 ? timeout : null;
}

/**
 * Runs the store's synchronous steps so that a lock held by another connection is waited for on a
 * timer, never inside SQLite. On the first step it reads the connection's busy timeout, once; on a
 * connection that has one, each step then runs with the busy timeout at 0 and that value put back
 * right after, all synchronously, so none of your queries can run in between. A client without
 * `pragma` (a wrapper) keeps its own busy timeout, and the store waits at most 5000 ms in all.
 */
function lockWaiter(db: SqliteDatabase): { run<T>(kind: StepKind, step: () => T): Promise<T> } {
  let timeout: number | null = null;
  /** Whether reads may skip the switch: in WAL mode a reader never waits for a writer. */
  let readsNeverWait = false;
  /** Set and put back the busy timeout: prepared once (each run compiles the PRAGMA again, which sets it). */
  let zero: SqliteStatement | null = null;
  let restore: SqliteStatement | null = null;

  /** The busy timeout the connection had on the store's first call, in ms. */
  const busyTimeout = (): number => {
    if (timeout !== null) return timeout;
    if (typeof db.pragma !== 'function') return (timeout = DEFAULT_BUSY_MS);
    const read = timeoutOf(db.pragma('busy_timeout', { simple: true }));
    if (read === null) return (timeout = DEFAULT_BUSY_MS);
    // Nobody else can lock an in-memory database: there is nothing to wait for.
    if (db.memory === true) return (timeout = read);
    readsNeverWait = String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal';
    if (read > 0) {
      // Compiling a PRAGMA already sets the value: the statement that puts it back comes last.
      zero = db.prepare('PRAGMA busy_timeout = 0');
      restore = db.prepare(`PRAGMA busy_timeout = ${read}`);
    }
    return (timeout = read);
  };
  /** Runs `step` once; SQLite answers SQLITE_BUSY at once where the store switches the busy timeout. */
  const once = <T>(step: () => T, kind: StepKind): T => {
    if (zero === null || restore === null || (kind === 'read' && readsNeverWait)) return step();
    const back = restore;
    zero.run();
    try {
      return step();
    } finally {
      back.run();
    }
  };

  /** Tries `step` again on a timer while the database is locked, until `wait` ms have passed since `start`. */
  const retry = async <T>(step: () => T, kind: StepKind, error: unknown, start: number, wait: number): Promise<T> => {
    let pause = FIRST_PAUSE_MS;
    for (;;) {
      const left = wait - (performance.now() - start);
      if (!isBusy(error) || left <= 0) throw error;
      await sleep(Math.min(pause, left));
      pause = Math.min(pause * 2, MAX_PAUSE_MS);
      try {
        return once(step, kind);
      } catch (next) {
        error = next;
      }
    }
  };

  return {
    run(kind, step) {
      const start = performance.now();
      try {
        const wait = kind === 'bookkeeping' ? Math.min(busyTimeout(), TOUCH_WAIT_MS) : busyTimeout();
        try {
          // The first attempt, when nothing is locked, costs no timer and no extra promise.
          return Promise.resolve(once(step, kind));
        } catch (error) {
          return retry(step, kind, error, start, wait);
        }
      } catch (error) {
        return Promise.reject(error);
      }
    },
  };
}

/**
 * The SQL that creates the keys table and its indexes on SQLite, for your migration tool. With
 * `upgrade: true`, the ALTER TABLE statements that add to a table created by an earlier keygate
 * the columns it lacks (one per column; SQLite has no ADD COLUMN IF NOT EXISTS, so run them once).
 */
export function sqliteSchema(options: SqliteStoreOptions & SqlSchemaOptions = {}): string {
  if (options.upgrade === true) return upgradeScript(sqliteDialect, options.table);
  return schemaScript(sqliteDialect, options.table);
}

// Rate-limit counters in SQLite (keygate/sqlite).
export { sqliteLimiter, sqliteLimiterSchema } from './limiter.js';
export type { SqliteLimiterOptions } from './limiter.js';
export type { SqlLimiter, SqlLimiterOptions } from '../sql/limiter.js';
