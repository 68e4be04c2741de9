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
  /** Whether a placeholder names its value by number (`$1`), so that one value can serve several places. */
  readonly numberedParams: boolean;
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
    /**
     * A canonical client address (`canonicalIp`): IPv4, or IPv6 in hex groups, at most 39
     * characters; room for 45, the longest address text there is (an IPv6 address with an IPv4 tail).
     */
    readonly ip: string;
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
  /**
   * A bound whole number as a 64-bit integer, for arithmetic: drivers send JavaScript numbers as
   * floating point (mysql2 as DOUBLE, better-sqlite3 as REAL), where `/` would not be integer division.
   */
  integer(placeholder: string): string;
  /** Integer division of two positive integers, rounded down. */
  div(dividend: string, divisor: string): string;
  /**
   * Whether an UPDATE can give back the row it wrote (`RETURNING`). Without it (MySQL, MariaDB), the
   * spend statement hands its result back through `LAST_INSERT_ID(expr)`.
   */
  readonly returning: boolean;
  /** The value bound for a boolean. */
  encodeBoolean(value: boolean): boolean | number;
  decodeBoolean(value: unknown): boolean;
  /** A text column as read back (MySQL returns binary columns as Buffers). */
  decodeText(value: unknown): string;
  /** Whether the driver error is a unique-constraint violation (duplicate id or digest). */
  isUniqueViolation(error: unknown): boolean;
  /** Whether the driver error says a statement named a column the table does not have. */
  isUndefinedColumn(error: unknown): boolean;
  /** Whether the driver error says a column being added exists already (a concurrent migration added it). */
  isDuplicateColumn(error: unknown): boolean;
  /** The statement that lists the table's columns (one row per column, in `name`); no rows when there is no table. */
  columnsQuery(table: string): { text: string; values: SqlValue[] };
  /** Whether ALTER TABLE takes ADD COLUMN IF NOT EXISTS (PostgreSQL, MariaDB; not MySQL 8, not SQLite). */
  readonly addColumnIfNotExists: boolean;
  /** Whether one ALTER TABLE may add several columns (not on SQLite). */
  readonly addColumnsTogether: boolean;
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

/** Whether a better-sqlite3 error is a SQLITE_ERROR whose message matches `pattern`. */
function sqliteError(error: unknown, pattern: RegExp): boolean {
  const message = errorField(error, 'message');
  return errorField(error, 'code') === 'SQLITE_ERROR' && typeof message === 'string' && pattern.test(message);
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
  numberedParams: true,
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
    ip: 'VARCHAR(45)',
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
  integer: (placeholder) => `CAST(${placeholder} AS BIGINT)`,
  div: (dividend, divisor) => `(${dividend}) / ${divisor}`,
  returning: true,
  encodeBoolean: (value) => value,
  decodeBoolean: (value) => value === true,
  decodeText: decodeString,
  isUniqueViolation: (error) => errorField(error, 'code') === '23505',
  // undefined_column, duplicate_column
  isUndefinedColumn: (error) => errorField(error, 'code') === '42703',
  isDuplicateColumn: (error) => errorField(error, 'code') === '42701',
  // to_regclass resolves the name as the store's statements do (search_path, or the given schema).
  columnsQuery: (table) => ({
    text: 'SELECT attname AS name FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped',
    values: [postgresDialect.quote(table)],
  }),
  addColumnIfNotExists: true,
  addColumnsTogether: true,
  maxIdentifierLength: 63,
};

/** MySQL 8 and MariaDB (10.11 tested), through mysql2. */
export const mysqlDialect: Dialect = {
  name: 'mysql',
  param: () => '?',
  numberedParams: false,
  quote: (identifier) => `\`${identifier}\``,
  types: {
    // Binary strings compare exactly: the utf8mb4 collations ignore case or trailing spaces.
    id: 'VARBINARY(512)',
    ownerId: 'VARBINARY(800)',
    digest: 'VARBINARY(255)',
    name: 'VARCHAR(255)',
    hint: 'VARCHAR(100)',
    ip: 'VARCHAR(45)',
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
  integer: (placeholder) => `CAST(${placeholder} AS SIGNED)`,
  div: (dividend, divisor) => `(${dividend}) DIV ${divisor}`,
  returning: false,
  encodeBoolean: (value) => (value ? 1 : 0),
  decodeBoolean: decodeBooleanNumber,
  decodeText: decodeString,
  // ER_DUP_ENTRY
  isUniqueViolation: (error) => errorField(error, 'errno') === 1062 || errorField(error, 'code') === 'ER_DUP_ENTRY',
  // ER_BAD_FIELD_ERROR, ER_DUP_FIELDNAME
  isUndefinedColumn: (error) => errorField(error, 'errno') === 1054 || errorField(error, 'code') === 'ER_BAD_FIELD_ERROR',
  isDuplicateColumn: (error) => errorField(error, 'errno') === 1060 || errorField(error, 'code') === 'ER_DUP_FIELDNAME',
  columnsQuery: (table) => ({
    text: 'SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?',
    values: [table],
  }),
  // MariaDB has ADD COLUMN IF NOT EXISTS, MySQL 8 has not: migrate() reads the columns first.
  addColumnIfNotExists: false,
  addColumnsTogether: true,
  maxIdentifierLength: 64,
};

/** SQLite as bundled with better-sqlite3 11, 12 and 13. */
export const sqliteDialect: Dialect = {
  name: 'sqlite',
  param: () => '?',
  numberedParams: false,
  quote: (identifier) => `"${identifier}"`,
  types: {
    id: 'TEXT',
    ownerId: 'TEXT',
    digest: 'TEXT',
    name: 'TEXT',
    hint: 'TEXT',
    ip: 'TEXT',
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
  integer: (placeholder) => `CAST(${placeholder} AS INTEGER)`,
  div: (dividend, divisor) => `(${dividend}) / ${divisor}`,
  // RETURNING since SQLite 3.35; better-sqlite3 11 bundles 3.45 or later.
  returning: true,
  encodeBoolean: (value) => (value ? 1 : 0),
  decodeBoolean: decodeBooleanNumber,
  decodeText: decodeString,
  isUniqueViolation: (error) => {
    const code = errorField(error, 'code');
    return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
  },
  // SQLite gives these the generic SQLITE_ERROR code: only the message tells them apart.
  isUndefinedColumn: (error) => sqliteError(error, /^(no such column: |table \S+ has no column named )/),
  isDuplicateColumn: (error) => sqliteError(error, /^duplicate column name: /),
  columnsQuery: (table) => ({ text: 'SELECT name FROM pragma_table_info(?)', values: [table] }),
  addColumnIfNotExists: false,
  addColumnsTogether: false,
  maxIdentifierLength: 1000,
};

/** The dialect objects by name. */
export const dialects: Readonly<Record<DialectName, Dialect>> = {
  postgres: postgresDialect,
  mysql: mysqlDialect,
  sqlite: sqliteDialect,
};
