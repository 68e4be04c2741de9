// SqlStore: every SQL statement keygate runs, written once for PostgreSQL, MySQL/MariaDB and SQLite.

import { createHash } from 'node:crypto';
import { StoreConflictError, ValidationError } from '../../src/errors.js';
import { defineLazyJson, FIELD_LIST, type FieldSpec } from '../../src/fields.js';
import type { KeyRecord, KeyStore, StoreListQuery, TouchEntry } from '../../src/store.js';
import { isIdentifier, type Bind, type Dialect, type SqlValue } from './dialects.js';

/** One row as a driver returns it: column name -> value. */
export type SqlRow = Record<string, unknown>;

/** What a driver returns for one statement. */
export interface SqlResult {
  /** The rows of a SELECT; empty for other statements. */
  rows: SqlRow[];
  /** How many rows an UPDATE or DELETE matched (not only those it changed). */
  count: number;
}

/** The few calls the SQL key store makes, implemented over the user's own driver client. */
export interface SqlDriver {
  /**
   * Runs one statement with bound values. `bookkeeping` marks a last-used write, which is best-effort:
   * a driver may give up on it sooner than on other statements.
   */
  query(text: string, values: SqlValue[], bookkeeping?: boolean): Promise<SqlResult>;
  /** Runs DDL statements, in order, without values (as one transaction where the server allows it). */
  execute(statements: readonly string[]): Promise<void>;
}

/** Options shared by `postgresStore`, `mysqlStore` and `sqliteStore`. */
export interface SqlStoreOptions {
  /**
   * The table that holds the keys. A plain identifier (`/^[A-Za-z_][A-Za-z0-9_]{0,62}$/`), used as
   * written (quoted, so case matters); for PostgreSQL it may be schema-qualified (`auth.api_keys`).
   * @default 'keygate_keys'
   */
  table?: string | undefined;
}

/** The default table name. */
export const DEFAULT_TABLE = 'keygate_keys';

/** The columns, in the order of the field table, which every statement follows. */
const COLUMN_LIST = FIELD_LIST.map(([, spec]) => spec.column).join(', ');

/** Entries of one touch statement; larger batches (the manager sends at most 1000) are split. */
const TOUCH_MAX = 4096;

/** The validated, possibly schema-qualified table name, or a ValidationError saying what is allowed. */
export function resolveTable(dialect: Dialect, table: unknown = DEFAULT_TABLE): string {
  const parts = typeof table === 'string' ? table.split('.') : [];
  const qualified = dialect.name === 'postgres' && parts.length === 2;
  if (!(parts.length === 1 || qualified) || !parts.every(isIdentifier)) {
    throw new ValidationError(
      'table',
      `must be a plain identifier matching /^[A-Za-z_][A-Za-z0-9_]{0,62}$/${dialect.name === 'postgres' ? ", optionally schema-qualified ('auth.api_keys')" : ''}; got ${JSON.stringify(table)}`,
    );
  }
  if ((parts[parts.length - 1] as string).length > dialect.maxIdentifierLength) {
    throw new ValidationError('table', `must be at most ${dialect.maxIdentifierLength} characters on ${dialect.name}`);
  }
  return table as string;
}

/** Index names: `<table>__<what>`, shortened with a hash where the server limits identifier length. */
function indexName(dialect: Dialect, table: string, what: string): string {
  const bare = table.slice(table.lastIndexOf('.') + 1);
  const longest = '__owner_created'.length;
  const base =
    bare.length + longest <= dialect.maxIdentifierLength
      ? bare
      : `${bare.slice(0, 40)}_${createHash('sha256').update(bare).digest('hex').slice(0, 8)}`;
  return dialect.quote(`${base}__${what}`);
}

/**
 * The statements that create the keys table and its indexes, each idempotent (IF NOT EXISTS).
 * Timestamps are BIGINT milliseconds since 1970 UTC; scopes, allowed addresses and metadata are
 * JSON text.
 */
export function schemaStatements(dialect: Dialect, tableName: string = DEFAULT_TABLE): string[] {
  const table = resolveTable(dialect, tableName);
  const t = dialect.types;
  const q = dialect.quote(table);
  const columns = [
    ...FIELD_LIST.map(([, spec]) => `${spec.column} ${t[spec.sqlType]}${spec.nullable ? '' : ' NOT NULL'}`),
    'PRIMARY KEY (id)',
  ];
  const partial = dialect.partialIndexes ? ' WHERE previous_digest IS NOT NULL' : '';
  const indexes = [
    { unique: true, name: indexName(dialect, table, 'digest'), columns: 'digest', where: '' },
    { unique: false, name: indexName(dialect, table, 'prev_digest'), columns: 'previous_digest', where: partial },
    { unique: false, name: indexName(dialect, table, 'owner_created'), columns: 'owner_id, created_at, id', where: '' },
    { unique: false, name: indexName(dialect, table, 'created'), columns: 'created_at, id', where: '' },
  ];
  if (dialect.ownerlessIndex) {
    indexes.push({
      unique: false,
      name: indexName(dialect, table, 'ownerless'),
      columns: 'created_at, id',
      where: ' WHERE owner_id IS NULL',
    });
  }
  if (dialect.inlineIndexes) {
    for (const i of indexes) columns.push(`${i.unique ? 'UNIQUE KEY' : 'KEY'} ${i.name} (${i.columns})`);
    return [`CREATE TABLE IF NOT EXISTS ${q} (\n  ${columns.join(',\n  ')}\n)${dialect.tableOptions}`];
  }
  return [
    `CREATE TABLE IF NOT EXISTS ${q} (\n  ${columns.join(',\n  ')}\n)${dialect.tableOptions}`,
    ...indexes.map((i) => `CREATE ${i.unique ? 'UNIQUE INDEX' : 'INDEX'} IF NOT EXISTS ${i.name} ON ${q} (${i.columns})${i.where}`),
  ];
}

/** The schema as one SQL script, for migration tools: statements separated by `;`. */
export function schemaScript(dialect: Dialect, table?: string): string {
  return `${schemaStatements(dialect, table).join(';\n\n')};\n`;
}

/** A statement being built: placeholders in order, values alongside. */
function statement(dialect: Dialect, build: (bind: Bind) => string): { text: string; values: SqlValue[] } {
  const values: SqlValue[] = [];
  const bind: Bind = (value) => {
    values.push(value);
    return dialect.param(values.length);
  };
  const text = build(bind);
  return { text, values };
}

/** A field's value as bound to a statement. */
function encodeValue(dialect: Dialect, spec: FieldSpec, value: unknown): SqlValue {
  if (value === null) return null;
  switch (spec.kind) {
    case 'boolean':
      return dialect.encodeBoolean(value as boolean);
    case 'list':
    case 'json':
      return JSON.stringify(value);
    case 'time':
      return (value as Date).getTime();
    default:
      return value as string | number;
  }
}

/** A field's value as read back from a row. */
function decodeValue(dialect: Dialect, spec: FieldSpec, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  switch (spec.kind) {
    case 'boolean':
      return dialect.decodeBoolean(value);
    case 'list':
      return JSON.parse(dialect.decodeText(value));
    case 'time':
      return new Date(Number(value));
    case 'integer':
      return Number(value);
    default:
      return dialect.decodeText(value);
  }
}

/**
 * The SET list of the compare-and-set UPDATE, column by column, with the field each placeholder
 * binds. Every column but `id` is written; a touched column (last_used_at) keeps the later of the
 * stored and the given time, since a touch may have landed after the caller's read.
 */
function updateAssignments(dialect: Dialect): { text: string; binds: number[] } {
  const binds: number[] = [];
  const bind = (field: number): string => {
    binds.push(field);
    return dialect.param(binds.length);
  };
  const parts: string[] = [];
  FIELD_LIST.forEach(([name, spec], field) => {
    if (name === 'id') return;
    const c = spec.column;
    if (spec.touched) {
      const given = bind(field);
      parts.push(`${c} = CASE WHEN ${c} IS NULL OR ${c} < ${dialect.time(given)} THEN ${dialect.time(bind(field))} ELSE ${c} END`);
    } else {
      parts.push(`${c} = ${bind(field)}`);
    }
  });
  return { text: parts.join(', '), binds };
}

/** The smallest power of two that holds `n`: touch statements come in a few sizes only. */
function bucket(n: number): number {
  let size = 1;
  while (size < n) size *= 2;
  return size;
}

/**
 * A KeyStore over a SQL database. Create it with `postgresStore`, `mysqlStore` or `sqliteStore`,
 * which adapt the driver client you already have; construction runs no query. Call `migrate()`
 * once (or run `schema` with your migration tool) before use.
 *
 * Verify is one indexed read; `touch` is one UPDATE per batch; `update` is compare-and-set on
 * `version`. Rotation keeps the replaced token's digest in `previous_digest` until
 * `previous_digest_expires_at`, and `findByDigest` looks at both columns.
 */
export class SqlStore implements KeyStore {
  /** The table name, as configured. */
  readonly table: string;
  /** The CREATE statements of the table and its indexes, as one script. */
  readonly schema: string;

  private readonly dialect: Dialect;
  private readonly driver: SqlDriver;
  private readonly sql: {
    readonly insert: string;
    readonly findById: string;
    readonly findByDigest: string;
    readonly update: string;
    readonly delete: string;
  };
  /** For each placeholder of the UPDATE's SET list, in order, the index of its field in the table. */
  private readonly updateBinds: readonly number[];

  constructor(dialect: Dialect, driver: SqlDriver, options: SqlStoreOptions = {}) {
    this.dialect = dialect;
    this.driver = driver;
    this.table = resolveTable(dialect, options.table ?? DEFAULT_TABLE);
    this.schema = schemaScript(dialect, this.table);
    const t = dialect.quote(this.table);
    const p = (n: number): string => dialect.param(n);
    const select = `SELECT ${COLUMN_LIST} FROM ${t}`;
    const set = updateAssignments(dialect);
    this.updateBinds = set.binds;
    this.sql = {
      insert: `INSERT INTO ${t} (${COLUMN_LIST}) VALUES (${FIELD_LIST.map((_, i) => p(i + 1)).join(', ')})`,
      findById: `${select} WHERE id = ${p(1)}`,
      // Two lookups, each on its own index, the first hit wins.
      findByDigest: `${select} WHERE digest = ${p(1)} UNION ALL ${select} WHERE previous_digest = ${p(2)} LIMIT 1`,
      update: `UPDATE ${t} SET ${set.text} WHERE id = ${p(set.binds.length + 1)} AND version = ${p(set.binds.length + 2)}`,
      delete: `DELETE FROM ${t} WHERE id = ${p(1)}`,
    };
  }

  /** Creates the table and its indexes if they do not exist. Safe to run on every start, and concurrently. */
  async migrate(): Promise<void> {
    await this.driver.execute([...this.dialect.migrationPrelude(this.table), ...schemaStatements(this.dialect, this.table)]);
  }

  async insert(record: KeyRecord): Promise<void> {
    try {
      await this.driver.query(this.sql.insert, this.encode(record));
    } catch (error) {
      if (this.dialect.isUniqueViolation(error)) {
        throw new StoreConflictError(`a key with id '${record.id}' or with this token digest already exists`);
      }
      throw error;
    }
  }

  async findById(id: string): Promise<KeyRecord | null> {
    const { rows } = await this.driver.query(this.sql.findById, [id]);
    return rows.length === 0 ? null : this.decode(rows[0] as SqlRow);
  }

  async findByDigest(digest: string): Promise<KeyRecord | null> {
    const { rows } = await this.driver.query(this.sql.findByDigest, [digest, digest]);
    return rows.length === 0 ? null : this.decode(rows[0] as SqlRow);
  }

  async list(query: StoreListQuery): Promise<KeyRecord[]> {
    const d = this.dialect;
    const { text, values } = statement(d, (bind) => {
      const where: string[] = [];
      // The keys without an owner: `= NULL` would match none. Read in order from the (owner_id,
      // created_at, id) index, or on PostgreSQL from an index of their own (see Dialect.ownerlessIndex).
      if (query.ownerId === null) where.push('owner_id IS NULL');
      else if (query.ownerId !== undefined) where.push(`owner_id = ${bind(query.ownerId)}`);
      if (query.active !== undefined) where.push(`active = ${bind(d.encodeBoolean(query.active))}`);
      if (query.after) where.push(d.after(bind, query.after.createdAt.getTime(), query.after.id));
      return [
        `SELECT ${COLUMN_LIST} FROM ${d.quote(this.table)}`,
        where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '',
        ` ORDER BY created_at, id LIMIT ${bind(query.limit)}`,
      ].join('');
    });
    const { rows } = await this.driver.query(text, values);
    return rows.map((row) => this.decode(row));
  }

  async update(next: KeyRecord, expectedVersion: number): Promise<boolean> {
    const encoded = this.encode(next);
    const values = this.updateBinds.map((field) => encoded[field] as SqlValue);
    values.push(next.id, expectedVersion);
    try {
      const { count } = await this.driver.query(this.sql.update, values);
      return count > 0;
    } catch (error) {
      if (this.dialect.isUniqueViolation(error)) throw new StoreConflictError('a key with this token digest already exists');
      throw error;
    }
  }

  async delete(id: string): Promise<boolean> {
    const { count } = await this.driver.query(this.sql.delete, [id]);
    return count > 0;
  }

  async touch(entries: readonly TouchEntry[]): Promise<void> {
    // The latest time per key; an id given twice is written once.
    const latest = new Map<string, number>();
    for (const { id, lastUsedAt } of entries) {
      const at = lastUsedAt.getTime();
      const seen = latest.get(id);
      if (seen === undefined || at > seen) latest.set(id, at);
    }
    const all = [...latest];
    for (let i = 0; i < all.length; i += TOUCH_MAX) {
      const { text, values } = this.touchStatement(all.slice(i, i + TOUCH_MAX));
      await this.driver.query(text, values, true);
    }
  }

  /** Nothing to release: the client belongs to the caller, who closes it. */
  async close(): Promise<void> {}

  /**
   * One UPDATE for the whole batch. The batch is padded (by repeating its last entry) to a power
   * of two so that only a dozen distinct statements exist, each prepared once by the server.
   */
  private touchStatement(batch: Array<[string, number]>): { text: string; values: SqlValue[] } {
    const d = this.dialect;
    const size = bucket(batch.length);
    const padded = batch.slice();
    while (padded.length < size) padded.push(batch[batch.length - 1] as [string, number]);
    return statement(d, (bind) => {
      const byId = (): string => `CASE id${padded.map(([id, at]) => ` WHEN ${bind(id)} THEN ${d.time(bind(at))}`).join('')} END`;
      const set = byId();
      const ids = padded.map(([id]) => bind(id)).join(', ');
      const when = byId();
      return `UPDATE ${d.quote(this.table)} SET last_used_at = ${set} WHERE id IN (${ids}) AND (last_used_at IS NULL OR last_used_at < ${when})`;
    });
  }

  /** A record's values in column order. */
  private encode(r: KeyRecord): SqlValue[] {
    return FIELD_LIST.map(([name, spec]) => encodeValue(this.dialect, spec, r[name]));
  }

  private decode(row: SqlRow): KeyRecord {
    const record: Record<string, unknown> = {};
    for (const [name, spec] of FIELD_LIST) {
      const value = row[spec.column];
      // Metadata is parsed when read: verify refuses a token without reading it.
      if (spec.kind === 'json' && value !== null && value !== undefined) defineLazyJson(record, name, this.dialect.decodeText(value));
      else record[name] = decodeValue(this.dialect, spec, value);
    }
    return record as unknown as KeyRecord;
  }
}

/** @deprecated Use `postgresStore()`, `mysqlStore()` or `sqliteStore()`, and the `SqlStore` type; removed in 0.3. */
export const SqlKeyStore = SqlStore;
/** @deprecated Use the `SqlStore` type, which `postgresStore()`, `mysqlStore()` and `sqliteStore()` return; removed in 0.3. */
export type SqlKeyStore = SqlStore;
