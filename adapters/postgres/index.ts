// keygate/postgres: the SQL key store over your own node-postgres Pool or Client, and LISTEN/NOTIFY invalidation.

import { assertClient, postgresDialect, schemaScript, SqlKeyStore, type SqlRow, type SqlStoreOptions, type SqlValue } from '../sql/index.js';

export { SqlKeyStore } from '../sql/index.js';
export type { SqlStoreOptions } from '../sql/index.js';
export { postgresInvalidation } from './invalidation.js';
export type { PostgresInvalidationOptions, PostgresListenClient, PostgresNotification, PostgresPool } from './invalidation.js';

/** The part of a `pg` Pool, PoolClient or Client the store uses. */
export interface PostgresQueryable {
  query(text: string, values?: SqlValue[]): Promise<{ rows: SqlRow[]; rowCount: number | null }>;
}

/** Options of {@link postgresStore}. */
export type PostgresStoreOptions = SqlStoreOptions;

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
export function postgresStore(client: PostgresQueryable, options: PostgresStoreOptions = {}): SqlKeyStore {
  assertClient(
    client,
    ['query'],
    'a pg Pool or Client',
    "Install the driver with `npm install pg` and pass `new Pool({ connectionString })` from 'pg'.",
  );
  return new SqlKeyStore(
    postgresDialect,
    {
      async query(text, values) {
        const result = await client.query(text, values);
        return { rows: result.rows, count: result.rowCount ?? 0 };
      },
      async execute(statements) {
        // One script without values: PostgreSQL runs it as a single transaction.
        await client.query(statements.join(';\n'));
      },
    },
    options,
  );
}

/**
 * The SQL that creates the keys table and its indexes on PostgreSQL, for your migration tool.
 * Timestamps are BIGINT milliseconds since 1970 (UTC); scopes, allowed addresses and metadata are JSON text.
 *
 * @example
 * fs.writeFileSync('migrations/001_api_keys.sql', postgresSchema({ table: 'api_keys' }))
 */
export function postgresSchema(options: PostgresStoreOptions = {}): string {
  return schemaScript(postgresDialect, options.table);
}
