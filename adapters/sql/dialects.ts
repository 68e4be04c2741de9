// What differs between PostgreSQL, MySQL/MariaDB and SQLite: one object per dialect, no SQL logic.

/** The SQL dialects the SQL key store speaks. */
export type DialectName = 'postgres' | 'mysql' | 'sqlite';

/** A value bound to a statement parameter. */
export type SqlValue = string | number | boolean | null;

/** Adds a bound value to the statement being built and returns its placeholder. */
export type Bind = (value: SqlValue) => string;

/**
 * Everything the SQL key store needs to know about one dialect. The statements themselves are
 * written once, in `SqlStore`; this object only fills in the parts that differ.
 */
export interface Dialect {
  readonly name: DialectName;
  /** The placeholder of the n-th (1-based) bound value. */
  param(n: number): string;
  /** A validated identifier, quoted (a `schema.table` name is quoted part by part). */
  quote(identifier: string): string;
  /** Column types. Timestamps are whole milliseconds since 1970 (UTC) in a 64-bit integer everywhere. */
  readonly types: {
    /** Key ids: compared byte by byte (case- and trailing-space-sensitive), ordered like JavaScript strings for ASCII. */
    readonly id: string;
    readonly ownerId: string;
    readonly digest: string;
    readonly name: string;
    readonly hint: string;
    /** JSON text of scopes, allowed addresses and metadata. */
    readonly json: string;
    readonly boolean: string;
    readonly time: string;
    readonly version: string;
  };
  /** Indexes declared inside CREATE TABLE (MySQL 8 has no CREATE INDEX IF NOT EXISTS). */
  readonly inlineIndexes: boolean;
  /** Whether an index may carry a WHERE clause (previous_digest is mostly NULL). */
  readonly partialIndexes: boolean;
  /**
   * Whether the keys without an owner need an index of their own, `(created_at, id) WHERE owner_id
   * IS NULL`, to be read in order. PostgreSQL reads `owner_id IS NULL` from the (owner_id,
   * created_at, id) index unordered and sorts every match after the cursor; MySQL, MariaDB and
   * SQLite read it in order like an equality.
   */
  readonly ownerlessIndex: boolean;
  /** Appended to CREATE TABLE (...). */
  readonly tableOptions: string;
  /** Statements run by migrate() before the schema, e.g. a lock against concurrent migrations. */
  migrationPrelude(table: string): string[];
  /** `(created_at, id) > (createdAt, id)`, written so that the (…, created_at, id) indexes serve it. */
  after(bind: Bind, createdAt: number, id: string): string;
  /** A bound timestamp where the server cannot infer its type (inside CASE). */
  time(placeholder: string): string;
  /** The value bound for a boolean. */
  encodeBoolean(value: boolean): boolean | number;
  decodeBoolean(value: unknown): boolean;
  /** A text column as read back (MySQL returns binary columns as Buffers). */
  decodeText(value: unknown): string;
  /** Whether the driver error is a unique-constraint violation (duplicate id or digest). */
  isUniqueViolation(error: unknown): boolean;
  /** The longest identifier the server accepts. */
  readonly maxIdentifierLength: number;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Whether `name` is a plain SQL identifier keygate accepts for a table. */
export function isIdentifier(name: string): boolean {
  return IDENTIFIER.test(name);
}

function errorField(error: unknown, field: string): unknown {
  return error !== null && typeof error === 'object' ? (error as Record<string, unknown>)[field] : undefined;
}

function decodeBooleanNumber(value: unknown): boolean {
  return value === true || Number(value) === 1;
}

function decodeString(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return String(value);
}

/** PostgreSQL (15 tested), through node-postgres. */
export const postgresDialect: Dialect = {
  name: 'postgres',
  param: (n) => `$${n}`,
  quote: (identifier) =>
    identifier
      .split('.')
      .map((part) => `"${part}"`)
      .join('.'),
  types: {
    id: 'VARCHAR(128) COLLATE "C"',
    ownerId: 'VARCHAR(200) COLLATE "C"',
    digest: 'VARCHAR(128) COLLATE "C"',
    name: 'VARCHAR(255)',
    hint: 'VARCHAR(100)',
    json: 'TEXT',
    boolean: 'BOOLEAN',
    time: 'BIGINT',
    version: 'INTEGER',
  },
  inlineIndexes: false,
  partialIndexes: true,
  ownerlessIndex: true,
  tableOptions: '',
  // migrate() sends its statements as one script, which PostgreSQL runs as one transaction: the
  // advisory lock makes concurrent migrations wait for each other instead of failing.
  migrationPrelude: (table) => [`SELECT pg_advisory_xact_lock(hashtext('keygate:migrate:${table}'))`],
  after: (bind, createdAt, id) => `(created_at, id) > (${bind(createdAt)}, ${bind(id)})`,
  time: (placeholder) => `CAST(${placeholder} AS BIGINT)`,
  encodeBoolean: (value) => value,
  decodeBoolean: (value) => value === true,
  decodeText: decodeString,
  isUniqueViolation: (error) => errorField(error, 'code') === '23505',
  maxIdentifierLength: 63,
};

/** MySQL 8 and MariaDB (10.11 tested), through mysql2. */
export const mysqlDialect: Dialect = {
  name: 'mysql',
  param: () => '?',
  quote: (identifier) => `\`${identifier}\``,
  types: {
    // Binary strings compare exactly: the utf8mb4 collations ignore case or trailing spaces.
    id: 'VARBINARY(512)',
    ownerId: 'VARBINARY(800)',
    digest: 'VARBINARY(255)',
    name: 'VARCHAR(255)',
    hint: 'VARCHAR(100)',
    json: 'MEDIUMTEXT',
    boolean: 'BOOLEAN',
    time: 'BIGINT',
    version: 'INT',
  },
  inlineIndexes: true,
  partialIndexes: false,
  ownerlessIndex: false,
  tableOptions: ' ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin',
  migrationPrelude: () => [],
  // Row-value comparisons are not range-optimised by every MySQL/MariaDB version; this form is.
  after: (bind, createdAt, id) => `(created_at > ${bind(createdAt)} OR (created_at = ${bind(createdAt)} AND id > ${bind(id)}))`,
  time: (placeholder) => placeholder,
  encodeBoolean: (value) => (value ? 1 : 0),
  decodeBoolean: decodeBooleanNumber,
  decodeText: decodeString,
  // ER_DUP_ENTRY
  isUniqueViolation: (error) => errorField(error, 'errno') === 1062 || errorField(error, 'code') === 'ER_DUP_ENTRY',
  maxIdentifierLength: 64,
};

/** SQLite as bundled with better-sqlite3 11 and 12. */
export const sqliteDialect: Dialect = {
  name: 'sqlite',
  param: () => '?',
  quote: (identifier) => `"${identifier}"`,
  types: {
    id: 'TEXT',
    ownerId: 'TEXT',
    digest: 'TEXT',
    name: 'TEXT',
    hint: 'TEXT',
    json: 'TEXT',
    boolean: 'INTEGER',
    time: 'INTEGER',
    version: 'INTEGER',
  },
  inlineIndexes: false,
  partialIndexes: true,
  ownerlessIndex: false,
  tableOptions: '',
  migrationPrelude: () => [],
  after: (bind, createdAt, id) => `(created_at, id) > (${bind(createdAt)}, ${bind(id)})`,
  time: (placeholder) => placeholder,
  encodeBoolean: (value) => (value ? 1 : 0),
  decodeBoolean: decodeBooleanNumber,
  decodeText: decodeString,
  isUniqueViolation: (error) => {
    const code = errorField(error, 'code');
    return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
  },
  maxIdentifierLength: 1000,
};

/** The dialect objects by name. */
export const dialects: Readonly<Record<DialectName, Dialect>> = {
  postgres: postgresDialect,
  mysql: mysqlDialect,
  sqlite: sqliteDialect,
};
