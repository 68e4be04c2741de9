// sqliteLimiter: rate-limit counters in a SQLite table, over your own better-sqlite3 (or node:sqlite) database.

import { setTimeout as sleep } from 'node:timers/promises';
import { assertClient, sqliteDialect } from '../sql/index.js';
import {
  bindValues,
  decodeReturned,
  limiterSchemaScript,
  SqlLimiter,
  type LimiterStatement,
  type LimiterValues,
  type SqlLimiterOptions,
  type TakeInput,
  type TakeResult,
} from '../sql/limiter.js';
import type { SqliteDatabase } from './index.js';

/** Options of {@link sqliteLimiter}. */
export type SqliteLimiterOptions = SqlLimiterOptions;

/** A prepared statement, as the limiter uses it (better-sqlite3's and node:sqlite's have these). */
interface Statement {
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): { changes: number | bigint };
}

/** The busy timeout of a connection whose own cannot be read: better-sqlite3's default. */
const DEFAULT_BUSY_MS = 5000;
/** The first and the longest pause between two attempts while another connection holds a lock. */
const FIRST_PAUSE_MS = 1;
const MAX_PAUSE_MS = 50;

/**
 * Whether SQLite refused for a lock another connection holds: SQLITE_BUSY or one of its extended
 * codes, as better-sqlite3 (`code`) or node:sqlite (`errcode`, 5 in its low byte) reports it.
 */
function isBusy(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, errcode } = error as { code?: unknown; errcode?: unknown };
  if (typeof code === 'string' && (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_'))) return true;
  return typeof errcode === 'number' && (errcode & 0xff) === 5;
}

/**
 * Rate-limit counters in a SQLite table, over the better-sqlite3 `Database` you already have (or a
 * `DatabaseSync` from `node:sqlite`), for several processes sharing one database file. Every
 * decision is slide()'s, made by SQLite: one `INSERT … ON CONFLICT DO UPDATE … RETURNING` per
 * bucket (SQLite 3.35 or later). A key with an owner limit takes its two buckets in one transaction,
 * which a synchronous driver makes cheap: all-or-nothing, and nobody else is refused meanwhile.
 *
 * Like `sqliteStore`, the limiter never waits for another connection's lock inside SQLite, which
 * would stop the event loop: each of its steps runs with the connection's busy timeout at 0 (put
 * back right after) and, while the database is locked, is tried again on a timer, for at most the
 * busy timeout the connection had on the limiter's first take (5000 ms where it cannot be read).
 * Create the table with `await limiter.migrate()` or with {@link sqliteLimiterSchema}, and call
 * `limiter.prune()` now and then to delete the rows of keys that are gone.
 *
 * @example
 * import Database from 'better-sqlite3'
 * import { createKeyManager } from 'keygate'
 * import { sqliteLimiter, sqliteStore } from 'keygate/sqlite'
 * const db = new Database('keys.db')
 * db.pragma('journal_mode = WAL')
 * const limiter = sqliteLimiter(db)
 * await limiter.migrate()
 * const keys = createKeyManager({
 *   store: sqliteStore(db),
 *   rateLimits: { limiter, default: { limit: 100, windowMs: 60_000 } },
 * })
 */
export function sqliteLimiter(db: SqliteDatabase, options: SqliteLimiterOptions = {}): SqlLimiter {
  assertClient(
    db,
    ['prepare', 'exec'],
    'a better-sqlite3 Database',
    "Install the driver with `npm install better-sqlite3` and pass `new Database('keys.db')` from 'better-sqlite3'.",
  );
  const prepared = new Map<string, Statement>();
  const prepare = (text: string): Statement => {
    let statement = prepared.get(text);
    if (!statement) {
      statement = db.prepare(text) as Statement;
      prepared.set(text, statement);
    }
    return statement;
  };
  /** The bound values, with the bucket's hash as bytes (a BLOB). */
  const bind = (statement: LimiterStatement, values: LimiterValues): unknown[] => {
    const bound: unknown[] = bindValues(statement, values, sqliteDialect);
    statement.args.forEach(({ type }, i) => {
      if (type === 'hash') bound[i] = Buffer.from(bound[i] as string, 'hex');
    });
    return bound;
  };
  const steps = lockWaiter(db);
  return new SqlLimiter(sqliteDialect, options, (statements) => {
    const takeOne = (input: TakeInput): TakeResult =>
      decodeReturned(
        prepare(statements.take.text).all(...bind(statements.take, input.values))[0] as Record<string, unknown>,
        sqliteDialect,
      );
    /** Runs `step` in a savepoint, rolled back when it throws or `keep` says so. */
    const inSavepoint = <T>(step: () => T, keep: (result: T) => boolean): T => {
      prepare('SAVEPOINT keygate_limiter').run();
      let result: T;
      try {
        result = step();
      } catch (error) {
        prepare('ROLLBACK TO keygate_limiter').run();
        prepare('RELEASE keygate_limiter').run();
        throw error;
      }
      if (!keep(result)) prepare('ROLLBACK TO keygate_limiter').run();
      try {
        prepare('RELEASE keygate_limiter').run();
      } catch (error) {
        // A commit refused for a lock: undo, so that the retry starts from a clean connection.
        prepare('ROLLBACK TO keygate_limiter').run();
        prepare('RELEASE keygate_limiter').run();
        throw error;
      }
      return result;
    };
    return {
      takeOne: (input) => steps.run(() => takeOne(input)),
      // One transaction: every bucket counts, or the savepoint is rolled back and none does.
      takeAll: (inputs) =>
        steps.run(() =>
          inSavepoint(
            () => inputs.map(takeOne),
            (results) => results.every((r) => r.allowed),
          ),
        ),
      run: (statement, values) =>
        steps.run(() => {
          const prepared = prepare(statement.text);
          const bound = bind(statement, values);
          // A SELECT returns rows; better-sqlite3 refuses all() on a statement that returns none.
          if (/^\s*SELECT/i.test(statement.text)) return { rows: prepared.all(...bound) as Record<string, unknown>[], count: 0 };
          return { rows: [], count: Number(prepared.run(...bound).changes) };
        }),
      migrate: (script) =>
        steps.run(() =>
          inSavepoint(
            () => {
              for (const statement of script) db.exec(statement);
            },
            () => true,
          ),
        ),
    };
  });
}

/**
 * Runs the limiter's synchronous steps so that a lock held by another connection is waited for on
 * a timer, never inside SQLite (the policy of `sqliteStore`). On the first step it reads the
 * connection's busy timeout, once; on a better-sqlite3 connection that has one, each step then
 * runs with the busy timeout at 0 and that value put back right after, all synchronously, so none
 * of your queries can run in between. A database without `pragma()` (node:sqlite, whose default
 * busy timeout is 0, or a wrapper) keeps its own, and the limiter waits at most 5000 ms in all.
 */
function lockWaiter(db: SqliteDatabase): { run<T>(step: () => T): Promise<T> } {
  let timeout: number | null = null;
  let zero: Statement | null = null;
  let restore: Statement | null = null;
  const busyTimeout = (): number => {
    if (timeout !== null) return timeout;
    if (typeof db.pragma !== 'function') return (timeout = DEFAULT_BUSY_MS);
    const value = db.pragma('busy_timeout', { simple: true });
    const read = typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : null;
    if (read === null) return (timeout = DEFAULT_BUSY_MS);
    // Nobody else can lock an in-memory database: there is nothing to wait for.
    if (read > 0 && db.memory !== true) {
      // Compiling a PRAGMA already sets the value: the statement that puts it back comes last.
      zero = db.prepare('PRAGMA busy_timeout = 0');
      restore = db.prepare(`PRAGMA busy_timeout = ${read}`);
    }
    return (timeout = read);
  };
  const once = <T>(step: () => T): T => {
    if (zero === null || restore === null) return step();
    const back = restore;
    zero.run();
    try {
      return step();
    } finally {
      back.run();
    }
  };
  return {
    async run(step) {
      const start = performance.now();
      const wait = busyTimeout();
      let pause = FIRST_PAUSE_MS;
      for (;;) {
        try {
          return once(step);
        } catch (error) {
          const left = wait - (performance.now() - start);
          if (!isBusy(error) || left <= 0) throw error;
          await sleep(Math.min(pause, left));
          pause = Math.min(pause * 2, MAX_PAUSE_MS);
        }
      }
    },
  };
}

/**
 * The SQL that creates the rate-limit counters table on SQLite, for your migration tool.
 *
 * @example
 * import { writeFileSync } from 'node:fs'
 * import { sqliteLimiterSchema } from 'keygate/sqlite'
 * writeFileSync('migrations/002_rate_limits.sql', sqliteLimiterSchema({ table: 'rate_limits' }))
 */
export function sqliteLimiterSchema(options: SqliteLimiterOptions = {}): string {
  return limiterSchemaScript(sqliteDialect, options.table);
}
