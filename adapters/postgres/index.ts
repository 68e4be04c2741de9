// keygate/postgres: the SQL key store over your own node-postgres Pool or Client, and LISTEN/NOTIFY invalidation.

import { statementNamer } from './prepared.js';
import { ValidationError } from '../../src/errors.js';
import {
  assertClient,
  postgresDialect,
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
export { postgresInvalidation } from './invalidation.js';
export type { PostgresInvalidationOptions, PostgresListenClient, PostgresNotification, PostgresPool } from './invalidation.js';

/** A statement as `pg` takes it: with a `name`, it is prepared once per connection and reused. */
export interface PostgresQueryConfig {
  text: string;
  values?: SqlValue[];
  name?: string;
}

/** The part of a `pg` Pool, PoolClient or Client the store uses. */
export interface PostgresQueryable {
  query(config: PostgresQueryConfig): Promise<{ rows: SqlRow[]; rowCount: number | null }>;
}

/** Options of {@link postgresStore}. */
export interface PostgresStoreOptions extends SqlStoreOptions {
  /**
   * Send the store's statements as named prepared statements, parsed and planned once per
   * connection (about half the latency of a verify on a local server). Turn it off behind a pooler
   * that cannot keep prepared statements, such as PgBouncer before 1.21 in transaction mode.
   * @default true
   */
  preparedStatements?: boolean | undefined;
}

/**
 * A key store in a PostgreSQL table, over the `pg` Pool (or Client) you already have. No query
 * runs until you call a method; create the table with `await store.migrate()` or with
 * {@link postgresSchema} in your own migrations.
 *
 * @example
 * import pg from 'pg'
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL })
 * const store = postgresStore(pool)
 * await store.migrate()
 * const keys = createKeyManager({ store })
 */
export function postgresStore(client: PostgresQueryable, options: PostgresStoreOptions = {}): SqlStore {
  assertClient(
    client,
    ['query'],
    'a pg Pool or Client',
    "Install the driver with `npm install pg` and pass `new Pool({ connectionString })` from 'pg'.",
  );
  const prepared = options.preparedStatements ?? true;
  if (typeof prepared !== 'boolean') throw new ValidationError('preparedStatements', 'must be true or false');
  const nameOf = statementNamer();
  return new SqlStore(
    postgresDialect,
    {
      async query(text, values) {
        const result = await client.query(prepared ? { name: nameOf(text), text, values } : { text, values });
        return { rows: result.rows, count: result.rowCount ?? 0 };
      },
      async execute(statements) {
        // One script without values: PostgreSQL runs it as a single transaction.
        await client.query({ text: statements.join(';\n') });
      },
    },
    options,
  );
}

/**
 * The SQL that creates the keys table and its indexes on PostgreSQL, for your migration tool.
 * Timestamps are BIGINT milliseconds since 1970 (UTC); scopes, allowed addresses, metadata, rate
 * limits and refills are JSON text. With `upgrade: true`, the SQL that adds to a table created by
 * an earlier keygate the columns it lacks (ADD COLUMN IF NOT EXISTS: harmless to run again).
 *
 * @example
 * fs.writeFileSync('migrations/001_api_keys.sql', postgresSchema({ table: 'api_keys' }))
 * fs.writeFileSync('migrations/002_api_keys_quotas.sql', postgresSchema({ table: 'api_keys', upgrade: true }))
 */
export function postgresSchema(options: PostgresStoreOptions & SqlSchemaOptions = {}): string {
  if (options.upgrade === true) return upgradeScript(postgresDialect, options.table);
  return schemaScript(postgresDialect, options.table);
}

// Rate-limit counters in PostgreSQL (keygate/postgres).
export { postgresLimiter, postgresLimiterSchema } from './limiter.js';
export type { PostgresLimiterOptions } from './limiter.js';
export type { SqlLimiter, SqlLimiterOptions } from '../sql/limiter.js';
