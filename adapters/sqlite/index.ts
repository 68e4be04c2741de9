// keygate/sqlite: the SQL key store over your own better-sqlite3 Database.

import { assertClient, schemaScript, sqliteDialect, SqlStore, type SqlRow, type SqlStoreOptions } from '../sql/index.js';

export { SqlKeyStore } from '../sql/index.js';
export type { SqlStore, SqlStoreOptions } from '../sql/index.js';

/** The part of a better-sqlite3 statement the store uses. */
export interface SqliteStatement {
  /** Whether the statement returns rows. */
  readonly reader: boolean;
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): { changes: number | bigint };
}

/** The part of a better-sqlite3 `Database` (11, 12 or 13; 13 needs Node.js 22 or later) the store uses. */
export interface SqliteDatabase {
  prepare(source: string): SqliteStatement;
  exec(source: string): unknown;
}

/** Options of {@link sqliteStore}. */
export type SqliteStoreOptions = SqlStoreOptions;

/**
 * A key store in a SQLite table, over the better-sqlite3 `Database` you already have. Each
 * statement is prepared once, on first use, and reused. No statement runs until you call a
 * method; create the table with `await store.migrate()` or with {@link sqliteSchema}.
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
  return new SqlStore(
    sqliteDialect,
    {
      async query(text, values) {
        const statement = prepare(text);
        if (statement.reader) return { rows: statement.all(...values) as SqlRow[], count: 0 };
        return { rows: [], count: Number(statement.run(...values).changes) };
      },
      async execute(statements) {
        db.exec('SAVEPOINT keygate_migrate');
        try {
          for (const statement of statements) db.exec(statement);
          db.exec('RELEASE keygate_migrate');
        } catch (error) {
          db.exec('ROLLBACK TO keygate_migrate; RELEASE keygate_migrate');
          throw error;
        }
      },
    },
    options,
  );
}

/** The SQL that creates the keys table and its indexes on SQLite, for your migration tool. */
export function sqliteSchema(options: SqliteStoreOptions = {}): string {
  return schemaScript(sqliteDialect, options.table);
}
