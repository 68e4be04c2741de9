// keygate/mysql: the SQL key store over your own mysql2 pool, for MySQL 8 and MariaDB.

import {
  assertClient,
  mysqlDialect,
  schemaScript,
  SqlStore,
  upgradeScript,
  type SqlRow,
  type SqlSchemaOptions,
  type SqlStoreOptions,
  type SqlValue,
} from '../sql/index.js';

export { SqlKeyStore } from '../sql/index.js';
export type { SqlSchemaOptions, SqlStore, SqlStoreOptions } from '../sql/index.js';

/** The part of a `mysql2/promise` pool (or connection) the store uses. */
export interface MysqlPool {
  execute(sql: string, values: SqlValue[]): Promise<[unknown, unknown]>;
  query(sql: string): Promise<[unknown, unknown]>;
}

/** A callback-style `mysql2` pool; the store uses its `.promise()` form. */
export interface MysqlCallbackPool {
  promise(): MysqlPool;
}

/** Options of {@link mysqlStore}. */
export type MysqlStoreOptions = SqlStoreOptions;

interface ResultHeader {
  affectedRows?: number;
  info?: string;
  /** A number, or a string where it is beyond 2^53 (negative beyond 2^63: mysql2 reads it signed). */
  insertId?: number | string;
}

/** Rows an UPDATE matched, whether or not the pool was created with the FOUND_ROWS flag. */
function matchedRows(header: ResultHeader): number {
  // "Rows matched: 1  Changed: 0  Warnings: 0" (possibly translated): the first number is what matched.
  const info = /^\D*(\d+)\D+\d+\D+\d+\D*$/.exec(header.info ?? '');
  return Math.max(header.affectedRows ?? 0, info ? Number(info[1]) : 0);
}

/**
 * A key store in a MySQL or MariaDB table, over the `mysql2` pool you already have (from
 * `mysql2/promise`, or a callback pool, whose `.promise()` is used). Statements are prepared
 * server-side (`execute`) and every value is bound. No query runs until you call a method; create
 * the table with `await store.migrate()` or with {@link mysqlSchema}.
 *
 * @example
 * import mysql from 'mysql2/promise'
 * const pool = mysql.createPool({ uri: process.env.DATABASE_URL, connectionLimit: 10 })
 * const store = mysqlStore(pool)
 * await store.migrate()
 */
export function mysqlStore(pool: MysqlPool | MysqlCallbackPool, options: MysqlStoreOptions = {}): SqlStore {
  const callbackPool = pool !== null && typeof pool === 'object' && typeof (pool as MysqlCallbackPool).promise === 'function';
  const client = callbackPool ? (pool as MysqlCallbackPool).promise() : (pool as MysqlPool);
  assertClient(
    client,
    ['execute', 'query'],
    "a mysql2 pool (from 'mysql2/promise')",
    "Install the driver with `npm install mysql2` and pass `mysql.createPool({ uri })` from 'mysql2/promise'.",
  );
  return new SqlStore(
    mysqlDialect,
    {
      async query(text, values) {
        const [result] = await client.execute(text, values);
        if (Array.isArray(result)) return { rows: result as SqlRow[], count: result.length };
        const header = result as ResultHeader;
        const id = header.insertId;
        const lastInsertId = typeof id === 'number' || typeof id === 'string' ? BigInt.asUintN(64, BigInt(id)) : undefined;
        return { rows: [], count: matchedRows(header), lastInsertId };
      },
      async execute(statements) {
        for (const statement of statements) await client.query(statement);
      },
    },
    options,
  );
}

/**
 * The SQL that creates the keys table (with its indexes) on MySQL 8 / MariaDB, for your
 * migration tool. Timestamps are BIGINT milliseconds since 1970 (UTC). With `upgrade: true`, the
 * ALTER TABLE that adds to a table created by an earlier keygate the columns it lacks; MySQL 8 has
 * no ADD COLUMN IF NOT EXISTS, so run it once, as a migration (`migrate()` checks the columns first).
 */
export function mysqlSchema(options: MysqlStoreOptions & SqlSchemaOptions = {}): string {
  if (options.upgrade === true) return upgradeScript(mysqlDialect, options.table);
  return schemaScript(mysqlDialect, options.table);
}

// Rate-limit counters in MySQL / MariaDB (keygate/mysql).
export { mysqlLimiter, mysqlLimiterSchema } from './limiter.js';
export type { MysqlLimiterOptions } from './limiter.js';
export type { SqlLimiter, SqlLimiterOptions } from '../sql/limiter.js';
