// The SQL key store shared by keygate/postgres, keygate/mysql and keygate/sqlite (not a public subpath).

export {
  SqlStore,
  SqlKeyStore,
  DEFAULT_TABLE,
  schemaScript,
  schemaStatements,
  upgradeScript,
  upgradeStatements,
  resolveTable,
} from './store.js';
export type { SqlDriver, SqlResult, SqlRow, SqlSchemaOptions, SqlStoreOptions } from './store.js';
export { dialects, postgresDialect, mysqlDialect, sqliteDialect, isIdentifier } from './dialects.js';
export type { Dialect, DialectName, Bind, SqlValue } from './dialects.js';
export { assertClient } from './client.js';
