// postgresLimiter: rate-limit counters in a PostgreSQL table, over your own node-postgres Pool or Client.

import { statementNamer } from './prepared.js';
import { ValidationError } from '../../src/errors.js';
import { assertClient, postgresDialect } from '../sql/index.js';
import {
  bindValues,
  decodeReturned,
  limiterSchemaScript,
  SqlLimiter,
  type LimiterStatement,
  type LimiterValues,
  type SqlLimiterOptions,
} from '../sql/limiter.js';
import type { PostgresQueryable } from './index.js';

/** Options of {@link postgresLimiter}. */
export interface PostgresLimiterOptions extends SqlLimiterOptions {
  /**
   * Send the limiter's statements as named prepared statements, parsed and planned once per
   * connection. Turn it off behind a pooler that cannot keep prepared statements, such as
   * PgBouncer before 1.21 in transaction mode.
   * @default true
   */
  preparedStatements?: boolean | undefined;
}

/**
 * Rate-limit counters in a PostgreSQL table, over the `pg` Pool (or Client) you already have, for
 * several instances of your API without Redis. Every decision is slide()'s, made by the server:
 * one `INSERT … ON CONFLICT DO UPDATE … RETURNING` per bucket, a round trip each. A key with an
 * owner limit takes its two buckets one after another, all-or-nothing (see `SqlLimiter`). No query
 * runs until a take; create the table with `await limiter.migrate()` or with
 * {@link postgresLimiterSchema} in your own migrations, and call `limiter.prune()` now and then to
 * delete the rows of keys that are gone.
 *
 * @example
 * import pg from 'pg'
 * import { createKeyManager } from 'keygate'
 * import { postgresLimiter, postgresStore } from 'keygate/postgres'
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL })
 * const limiter = postgresLimiter(pool)
 * await limiter.migrate()
 * const keys = createKeyManager({
 *   store: postgresStore(pool),
 *   rateLimits: { limiter, default: { limit: 100, windowMs: 60_000 } },
 * })
 */
export function postgresLimiter(client: PostgresQueryable, options: PostgresLimiterOptions = {}): SqlLimiter {
  assertClient(
    client,
    ['query'],
    'a pg Pool or Client',
    "Install the driver with `npm install pg` and pass `new Pool({ connectionString })` from 'pg'.",
  );
  const prepared = options.preparedStatements ?? true;
  if (typeof prepared !== 'boolean') throw new ValidationError('preparedStatements', 'must be true or false');
  const nameOf = statementNamer();
  const run = async (statement: LimiterStatement, values: LimiterValues) => {
    const bound = bindValues(statement, values, postgresDialect);
    const { text } = statement;
    const result = await client.query(prepared ? { name: nameOf(text), text, values: bound } : { text, values: bound });
    return { rows: result.rows, count: result.rowCount ?? 0 };
  };
  return new SqlLimiter(postgresDialect, options, (statements) => ({
    takeOne: async (input) => decodeReturned((await run(statements.take, input.values)).rows[0], postgresDialect),
    run,
    async migrate(script) {
      // One script without values: PostgreSQL runs it as one transaction, after the advisory lock
      // that makes concurrent migrations wait for each other.
      await client.query({ text: script.join(';\n') });
    },
  }));
}

/**
 * The SQL that creates the rate-limit counters table on PostgreSQL, for your migration tool.
 *
 * @example
 * import { writeFileSync } from 'node:fs'
 * import { postgresLimiterSchema } from 'keygate/postgres'
 * writeFileSync('migrations/002_rate_limits.sql', postgresLimiterSchema({ table: 'rate_limits' }))
 */
export function postgresLimiterSchema(options: SqlLimiterOptions = {}): string {
  return limiterSchemaScript(postgresDialect, options.table);
}
