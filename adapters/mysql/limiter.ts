// mysqlLimiter: rate-limit counters in a MySQL 8 or MariaDB table, over your own mysql2 pool.

import { assertClient, mysqlDialect } from '../sql/index.js';
import {
  bindValues,
  decodeInsertId,
  limiterSchemaScript,
  SqlLimiter,
  storedState,
  type LimiterStatement,
  type LimiterValues,
  type SqlLimiterOptions,
  type TakeResult,
} from '../sql/limiter.js';
import type { MysqlCallbackPool, MysqlPool } from './index.js';

/** Options of {@link mysqlLimiter}. */
export type MysqlLimiterOptions = SqlLimiterOptions;

interface ResultHeader {
  affectedRows?: number;
  insertId?: number | string;
}

/**
 * Rate-limit counters in a MySQL 8 or MariaDB table, over the `mysql2` pool you already have (from
 * `mysql2/promise`, or a callback pool, whose `.promise()` is used), for several instances of your
 * API without Redis. Every decision is slide()'s, made by the server: one
 * `INSERT … ON DUPLICATE KEY UPDATE` per bucket, a round trip each, which hands the decision and
 * the new counts back through `LAST_INSERT_ID(expr)` (the limiter leaves that value as the pooled
 * connection's `LAST_INSERT_ID()`, as any INSERT would). A key with an owner limit takes its two
 * buckets one after another, all-or-nothing (see `SqlLimiter`). No query runs until a take;
 * create the table with `await limiter.migrate()` or with {@link mysqlLimiterSchema}, and call
 * `limiter.prune()` now and then to delete the rows of keys that are gone.
 *
 * @example
 * import mysql from 'mysql2/promise'
 * import { createKeyManager } from 'keygate'
 * import { mysqlLimiter, mysqlStore } from 'keygate/mysql'
 * const pool = mysql.createPool({ uri: process.env.DATABASE_URL, connectionLimit: 10 })
 * const limiter = mysqlLimiter(pool)
 * await limiter.migrate()
 * const keys = createKeyManager({
 *   store: mysqlStore(pool),
 *   rateLimits: { limiter, default: { limit: 100, windowMs: 60_000 } },
 * })
 */
export function mysqlLimiter(pool: MysqlPool | MysqlCallbackPool, options: MysqlLimiterOptions = {}): SqlLimiter {
  const callbackPool = pool !== null && typeof pool === 'object' && typeof (pool as MysqlCallbackPool).promise === 'function';
  const client = callbackPool ? (pool as MysqlCallbackPool).promise() : (pool as MysqlPool);
  assertClient(
    client,
    ['execute', 'query'],
    "a mysql2 pool (from 'mysql2/promise')",
    "Install the driver with `npm install mysql2` and pass `mysql.createPool({ uri })` from 'mysql2/promise'.",
  );
  const execute = async (statement: LimiterStatement, values: LimiterValues): Promise<unknown> =>
    (await client.execute(statement.text, bindValues(statement, values, mysqlDialect)))[0];
  const run = async (statement: LimiterStatement, values: LimiterValues) => {
    const result = await execute(statement, values);
    if (Array.isArray(result)) return { rows: result as Record<string, unknown>[], count: result.length };
    return { rows: [], count: (result as ResultHeader).affectedRows ?? 0 };
  };
  return new SqlLimiter(mysqlDialect, options, (statements) => ({
    async takeOne(input): Promise<TakeResult> {
      const header = (await execute(statements.take, input.values)) as ResultHeader;
      const { result, exact } = decodeInsertId(header.insertId, input);
      if (exact) return result;
      // The stored window is 3 or more ahead of now's (a clock far behind another instance's):
      // the decision and the counts came back, the window is read. Nothing moves a window back, so
      // this is the take's window unless a later take has moved it on since.
      const { rows } = await run(statements.read, input.values);
      const stored = storedState(rows[0], input.bucket.windowMs);
      return stored && stored.window > result.state.window ? { ...result, state: { ...result.state, window: stored.window } } : result;
    },
    run,
    async migrate(script) {
      // CREATE TABLE IF NOT EXISTS is safe to run concurrently; MySQL commits each DDL statement on its own.
      for (const statement of script) await client.query(statement);
    },
  }));
}

/**
 * The SQL that creates the rate-limit counters table on MySQL 8 / MariaDB, for your migration tool.
 *
 * @example
 * import { writeFileSync } from 'node:fs'
 * import { mysqlLimiterSchema } from 'keygate/mysql'
 * writeFileSync('migrations/002_rate_limits.sql', mysqlLimiterSchema({ table: 'rate_limits' }))
 */
export function mysqlLimiterSchema(options: MysqlLimiterOptions = {}): string {
  return limiterSchemaScript(mysqlDialect, options.table);
}
