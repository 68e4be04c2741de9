// SqlStore: every SQL statement keygate runs, written once for PostgreSQL, MySQL/MariaDB and SQLite.

import { createHash } from 'node:crypto';
import { StoreConflictError, StoreUnavailableError, ValidationError } from '../../src/errors.js';
import { defineLazyJson, FIELD_LIST, type FieldSpec } from '../../src/fields.js';
import { deepFreeze } from '../../src/freeze.js';
import { type QuotaRefill, type QuotaState, spendQuota } from '../../src/quota.js';
import type { KeyRecord, KeyStore, SpendResult, StoreListQuery, TouchEntry } from '../../src/store.js';
import { isIdentifier, type Bind, type Dialect, type SqlValue } from './dialects.js';

/** One row as a driver returns it: column name -> value. */
export type SqlRow = Record<string, unknown>;

/** What a driver returns for one statement. */
export interface SqlResult {
  /** The rows of a SELECT; empty for other statements. */
  rows: SqlRow[];
  /** How many rows an UPDATE or DELETE matched (not only those it changed). */
  count: number;
  /**
   * The value the statement gave `LAST_INSERT_ID(expr)`, as an unsigned 64-bit integer (MySQL,
   * MariaDB; the spend statement returns its result this way). Absent where there is none.
   */
  lastInsertId?: bigint | undefined;
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

/** Options of `postgresSchema`, `mysqlSchema` and `sqliteSchema`. */
export interface SqlSchemaOptions extends SqlStoreOptions {
  /**
   * Give the statements that add to a table created by an earlier keygate the columns it lacks
   * (`rate_limit`, `remaining`, `refill`, `refilled_at`, `last_used_ip`), instead of those that
   * create the table. `migrate()` does the same by itself.
   * @default false
   */
  upgrade?: boolean | undefined;
}

/** The default table name. */
export const DEFAULT_TABLE = 'keygate_keys';

/** Entries of one touch statement; larger batches (the manager sends at most 1000) are split. */
const TOUCH_MAX = 4096;

/**
 * The columns added to the table after its first version, in the order they came. A table created
 * before them keeps working (see {@link SqlStore}); `migrate()` adds them, and
 * {@link upgradeScript} gives the ALTER TABLE statements for migration tools. All are nullable.
 */
const ADDED_COLUMNS: readonly string[] = ['rate_limit', 'remaining', 'refill', 'refilled_at', 'last_used_ip'];

/** The touched columns: the time of a key's last use, and the client address that goes with it. */
const LAST_USED_AT = 'last_used_at';
const LAST_USED_IP = 'last_used_ip';

/** How often, at most, a store on a table that lacks columns reads its column list again (ms). */
const RECHECK_MS = 1000;
/** How many times migrate() starts over when a concurrent migration added a column first. */
const MIGRATE_ATTEMPTS = 5;
/** How many times spend() starts over when the counters changed between its statements. */
const SPEND_ATTEMPTS = 50;

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

/** A column as CREATE TABLE and ALTER TABLE … ADD COLUMN declare it. */
function columnDefinition(dialect: Dialect, spec: FieldSpec): string {
  return `${spec.column} ${dialect.types[spec.sqlType]}${spec.nullable ? '' : ' NOT NULL'}`;
}

/**
 * The statements that create the keys table and its indexes, each idempotent (IF NOT EXISTS).
 * Timestamps are BIGINT milliseconds since 1970 UTC; scopes, allowed addresses, metadata, the rate
 * limit and the refill are JSON text.
 */
export function schemaStatements(dialect: Dialect, tableName: string = DEFAULT_TABLE): string[] {
  const table = resolveTable(dialect, tableName);
  const q = dialect.quote(table);
  const columns = [...FIELD_LIST.map(([, spec]) => columnDefinition(dialect, spec)), 'PRIMARY KEY (id)'];
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

/** ALTER TABLE statements that add these (nullable) columns: one statement, or one per column on SQLite. */
function addColumnStatements(dialect: Dialect, table: string, specs: readonly FieldSpec[], ifNotExists: boolean): string[] {
  if (specs.length === 0) return [];
  const q = dialect.quote(table);
  const adds = specs.map((spec) => `ADD COLUMN ${ifNotExists ? 'IF NOT EXISTS ' : ''}${columnDefinition(dialect, spec)}`);
  return dialect.addColumnsTogether ? [`ALTER TABLE ${q} ${adds.join(', ')}`] : adds.map((add) => `ALTER TABLE ${q} ${add}`);
}

/** The field table's entry of a column. */
function specOf(column: string): FieldSpec {
  const entry = FIELD_LIST.find(([, spec]) => spec.column === column);
  if (!entry) throw new Error(`no field has the column ${column}`);
  return entry[1];
}

/**
 * The statements that add to a table created by an earlier keygate the columns it lacks
 * (`rate_limit`, `remaining`, `refill`, `refilled_at`, `last_used_ip`), for migration tools. On
 * PostgreSQL they can run again harmlessly (ADD COLUMN IF NOT EXISTS); on MySQL 8, which has no IF
 * NOT EXISTS for columns, and on SQLite they are meant to run once, as a migration tool runs a
 * migration.
 */
export function upgradeStatements(dialect: Dialect, tableName: string = DEFAULT_TABLE): string[] {
  const table = resolveTable(dialect, tableName);
  return addColumnStatements(dialect, table, ADDED_COLUMNS.map(specOf), dialect.addColumnIfNotExists);
}

/** {@link upgradeStatements} as one SQL script: statements separated by `;`. */
export function upgradeScript(dialect: Dialect, table?: string): string {
  return `${upgradeStatements(dialect, table).join(';\n\n')};\n`;
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

/** A fixed statement whose placeholders stand for named values: `names` gives the value of each, in order. */
interface NamedStatement<N extends string> {
  readonly text: string;
  readonly names: readonly N[];
}

/**
 * Builds a statement whose placeholders are named: where the dialect numbers its placeholders, each
 * name has one number (in the order of `order`) wherever it is used; elsewhere each use is a
 * placeholder of its own.
 */
function namedStatement<N extends string>(
  dialect: Dialect,
  order: readonly N[],
  build: (param: (name: N) => string) => string,
): NamedStatement<N> {
  if (dialect.numberedParams) return { text: build((name) => dialect.param(order.indexOf(name) + 1)), names: order };
  const names: N[] = [];
  const text = build((name) => {
    names.push(name);
    return dialect.param(names.length);
  });
  return { text, names };
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

/** A field's value as read back from a row (a `lazy` field is parsed later, by `defineLazyJson`). */
function decodeValue(dialect: Dialect, spec: FieldSpec, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  switch (spec.kind) {
    case 'boolean':
      return dialect.decodeBoolean(value);
    case 'list':
      return JSON.parse(dialect.decodeText(value));
    case 'json':
      // The rate limit and the refill: two numbers each, parsed at once and frozen (records are shared).
      return deepFreeze(JSON.parse(dialect.decodeText(value)));
    case 'time':
      return new Date(Number(value));
    case 'integer':
      return Number(value);
    default:
      return dialect.decodeText(value);
  }
}

/** The position of the last_used_at field in the field table: the time the touched columns follow. */
const LAST_USED_AT_FIELD = FIELD_LIST.findIndex(([, spec]) => spec.column === LAST_USED_AT);

/**
 * The SET list of the compare-and-set UPDATE, column by column, with the field each placeholder
 * binds: every column `written` keeps but `id`. The touched columns keep the stored pair when the
 * stored last_used_at is the later one, since a touch may have landed after the caller's read:
 * last_used_at becomes the later of the two times, last_used_ip the address of that time.
 * last_used_ip is assigned first, from the stored last_used_at: MySQL (and MariaDB by default)
 * evaluate each assignment after the ones before it, PostgreSQL and SQLite from the row as it was.
 */
function updateAssignments(dialect: Dialect, written: (spec: FieldSpec) => boolean): { text: string; binds: number[] } {
  const binds: number[] = [];
  const bind = (field: number): string => {
    binds.push(field);
    return dialect.param(binds.length);
  };
  const parts: string[] = [];
  const at = LAST_USED_AT;
  // Placeholders are bound in the order they appear: the address first, then the other columns.
  const follows = (spec: FieldSpec): boolean => spec.touched && spec.column !== at;
  for (const pass of [true, false]) {
    FIELD_LIST.forEach(([name, spec], field) => {
      if (name === 'id' || !written(spec) || follows(spec) !== pass) return;
      const c = spec.column;
      if (follows(spec)) {
        const given = bind(LAST_USED_AT_FIELD);
        parts.push(`${c} = CASE WHEN ${at} IS NULL OR ${at} < ${dialect.time(given)} THEN ${bind(field)} ELSE ${c} END`);
      } else if (spec.touched) {
        const given = bind(field);
        parts.push(`${c} = CASE WHEN ${c} IS NULL OR ${c} < ${dialect.time(given)} THEN ${dialect.time(bind(field))} ELSE ${c} END`);
      } else {
        parts.push(`${c} = ${bind(field)}`);
      }
    });
  }
  return { text: parts.join(', '), binds };
}

/** One key of a touch statement: its id, the time in ms, the address. */
type TouchRow = [id: string, at: number, ip: string | null];

/** A write statement and, for each of its placeholders in order, the index of the field it binds. */
interface Write {
  readonly text: string;
  readonly fields: readonly number[];
}

/** The statements of a store for the columns its table has (all but `list`, `touch` and `spend`). */
interface Statements {
  /** The columns of the field table the table lacks: empty once migrated. */
  readonly missing: ReadonlySet<string>;
  /** `SELECT <every column> FROM <table>`: a column the table lacks reads as NULL. */
  readonly select: string;
  readonly insert: Write;
  readonly findById: string;
  readonly findByDigest: string;
  /** The compare-and-set UPDATE without the counters (`remaining`, `refilled_at`)… */
  readonly update: Write;
  /** …and with them. */
  readonly updateCounters: Write;
  readonly delete: string;
}

function buildStatements(dialect: Dialect, table: string, missing: ReadonlySet<string>): Statements {
  const t = dialect.quote(table);
  const p = (n: number): string => dialect.param(n);
  const has = (spec: FieldSpec): boolean => !missing.has(spec.column);
  const select = `SELECT ${FIELD_LIST.map(([, spec]) => (has(spec) ? spec.column : `NULL AS ${spec.column}`)).join(', ')} FROM ${t}`;
  const inserted = FIELD_LIST.flatMap(([, spec], field) => (has(spec) ? [field] : []));
  const update = (counters: boolean): Write => {
    const set = updateAssignments(dialect, (spec) => has(spec) && (counters || !spec.counter));
    const n = set.binds.length;
    return { text: `UPDATE ${t} SET ${set.text} WHERE id = ${p(n + 1)} AND version = ${p(n + 2)}`, fields: set.binds };
  };
  return {
    missing,
    select,
    insert: {
      text: `INSERT INTO ${t} (${inserted.map((field) => FIELD_LIST[field]?.[1].column).join(', ')}) VALUES (${inserted.map((_, i) => p(i + 1)).join(', ')})`,
      fields: inserted,
    },
    findById: `${select} WHERE id = ${p(1)}`,
    // Two lookups, each on its own index, the first hit wins.
    findByDigest: `${select} WHERE digest = ${p(1)} UNION ALL ${select} WHERE previous_digest = ${p(2)} LIMIT 1`,
    update: update(false),
    updateCounters: update(true),
    delete: `DELETE FROM ${t} WHERE id = ${p(1)}`,
  };
}

/** The values the spend statement binds. */
type SpendParam = 'id' | 'cost' | 'amount' | 'interval' | 'now';
const SPEND_PARAMS: readonly SpendParam[] = ['id', 'cost', 'amount', 'interval', 'now'];

const DAY_MS = 86_400_000;
/**
 * Without RETURNING, the spend statement packs what it wrote into one BIGINT, handed back by
 * `LAST_INSERT_ID(expr)`: `code * 2^31 + remaining`, where remaining is the INT column's value
 * (0 ≤ remaining < 2^31 after a spend) and `code` says where refilled_at is: 0 for NULL, 1 + its
 * distance from 48 days before `now` when it lies within 48 days before and one day after `now`
 * (always, for refills up to 48 days apart on clocks within a day of each other), else
 * `PACK_FAR`, and then the store reads it. The whole stays below 2^63, a signed BIGINT.
 */
const PACK_REMAINING = 2n ** 31n;
const PACK_BEFORE_MS = 48 * DAY_MS;
const PACK_AFTER_MS = DAY_MS;
const PACK_FAR = 2n ** 32n - 1n;

/**
 * The spend statement: one UPDATE that applies the refills due by `now` and spends `cost` when that
 * many uses are left, exactly as `spendQuota()` does, in integers. It writes only when the uses are
 * taken (the WHERE clause); a refusal is read and, when a refill is due, written by `spend()`.
 * Missing or `remaining IS NULL`: no row.
 */
function spendStatement(dialect: Dialect, table: string): NamedStatement<SpendParam> {
  return namedStatement(dialect, SPEND_PARAMS, (param) => {
    const int = (name: SpendParam): string => dialect.integer(param(name));
    // Due: a whole interval has passed since refilled_at (NULL, so not due, without a refill or a refilled_at).
    const due = (): string => `refilled_at <= ${int('now')} - ${int('interval')}`;
    // The uses left after the refills due: topped up to the amount, never lowered.
    const topped = (): string => `CASE WHEN ${due()} AND remaining < ${int('amount')} THEN ${int('amount')} ELSE remaining END`;
    // refilled_at moved on by the whole intervals passed.
    const moved = (): string =>
      `CASE WHEN ${due()} THEN refilled_at + ${dialect.div(`${int('now')} - refilled_at`, int('interval'))} * ${int('interval')} ELSE refilled_at END`;
    const left = (): string => `${topped()} - ${int('cost')}`;
    // MySQL assigns left to right, each assignment seeing the ones before (MariaDB may not): every
    // expression here reads only the stored values, remaining's first, then refilled_at, which
    // remaining's does not change.
    const remaining = dialect.returning
      ? left()
      : `LAST_INSERT_ID((CASE WHEN refilled_at IS NULL THEN 0 WHEN (${moved()}) BETWEEN ${int('now')} - ${PACK_BEFORE_MS} AND ${int('now')} + ${PACK_AFTER_MS} THEN (${moved()}) - ${int('now')} + ${PACK_BEFORE_MS + 1} ELSE ${PACK_FAR} END) * ${PACK_REMAINING} + ${left()}) MOD ${PACK_REMAINING}`;
    const text = `UPDATE ${dialect.quote(table)} SET remaining = ${remaining}, refilled_at = ${moved()} WHERE id = ${param('id')} AND remaining IS NOT NULL AND ${topped()} >= ${int('cost')}`;
    return dialect.returning ? `${text} RETURNING remaining, refilled_at` : text;
  });
}

/** The smallest power of two that holds `n`: touch statements come in a few sizes only. */
function bucket(n: number): number {
  let size = 1;
  while (size < n) size *= 2;
  return size;
}

/** A stored time (BIGINT ms, which some drivers return as text) as a number, or null. */
function timeOf(value: unknown): number | null {
  return value === null || value === undefined ? null : Number(value);
}

/** What `spend` resolves, from counters in ms. */
function spendResult(spent: boolean, state: QuotaState): SpendResult {
  return { spent, remaining: state.remaining, refilledAt: state.refilledAt === null ? null : new Date(state.refilledAt) };
}

/**
 * A KeyStore over a SQL database. Create it with `postgresStore`, `mysqlStore` or `sqliteStore`,
 * which adapt the driver client you already have; construction runs no query. Call `migrate()`
 * once (or run `schema` with your migration tool) before use.
 *
 * Verify is one indexed read; `touch` is one UPDATE per batch; `update` is compare-and-set on
 * `version`. Rotation keeps the replaced token's digest in `previous_digest` until
 * `previous_digest_expires_at`, and `findByDigest` looks at both columns. `spend` is one UPDATE
 * when it takes the uses; a refusal costs one more read (and a write when a refill is due).
 *
 * A table created by an earlier keygate lacks the columns added since: `rate_limit`, `remaining`,
 * `refill`, `refilled_at` and `last_used_ip`. `migrate()` adds them (or run the upgrade script,
 * e.g. `postgresSchema({ upgrade: true })`, with your migration tool). Until then the store keeps
 * working on that table: the first statement that names a missing column makes it read the
 * table's column list, and from then on it reads the missing columns as NULL and writes only the
 * columns there are. Existing keys read, list and verify as before, and keys without a rate limit
 * or quota can be created and edited; `touch` and `update` write `lastUsedAt` without its address
 * (`lastUsedIp` reads as null); a rate limit, quota or refill is refused with a ValidationError
 * naming the field and the column, which says to run migrate(), and `spend` fails likewise.
 * Meanwhile the store reads the column list again at most once a second, so it notices a
 * migration run elsewhere; its own `migrate()` switches back at once. A migrated table pays
 * nothing for this.
 */
export class SqlStore implements KeyStore {
  /** The table name, as configured. */
  readonly table: string;
  /** The CREATE statements of the table and its indexes, as one script. */
  readonly schema: string;

  private readonly dialect: Dialect;
  private readonly driver: SqlDriver;
  /** The statements for a table with every column. */
  private readonly complete: Statements;
  /** The statements in use: `complete`, or those for the columns a table of an earlier keygate has. */
  private statements: Statements;
  /** When the column list was last read (Date.now()), while columns are missing. */
  private checkedAt = 0;
  private checking: Promise<void> | null = null;
  private readonly spendSql: {
    readonly take: NamedStatement<SpendParam>;
    readonly counters: string;
    readonly refill: string;
  };

  constructor(dialect: Dialect, driver: SqlDriver, options: SqlStoreOptions = {}) {
    this.dialect = dialect;
    this.driver = driver;
    this.table = resolveTable(dialect, options.table ?? DEFAULT_TABLE);
    this.schema = schemaScript(dialect, this.table);
    this.complete = buildStatements(dialect, this.table, new Set());
    this.statements = this.complete;
    const t = dialect.quote(this.table);
    const p = (n: number): string => dialect.param(n);
    this.spendSql = {
      take: spendStatement(dialect, this.table),
      counters: `SELECT remaining, refilled_at FROM ${t} WHERE id = ${p(1)}`,
      // A refused spend's due refill, written only over the counters it was computed from.
      refill: `UPDATE ${t} SET remaining = ${p(1)}, refilled_at = ${p(2)} WHERE id = ${p(3)} AND remaining = ${p(4)} AND refilled_at = ${p(5)}`,
    };
  }

  /**
   * Creates the table and its indexes if they do not exist, and adds the columns a table created by
   * an earlier keygate lacks (PostgreSQL: ADD COLUMN IF NOT EXISTS; MySQL, MariaDB and SQLite: the
   * missing ones, read from the table first). Safe to run on every start, and concurrently.
   */
  async migrate(): Promise<void> {
    const d = this.dialect;
    for (let attempt = 1; ; attempt++) {
      const before = await this.readColumns();
      // No table yet: CREATE TABLE makes it whole.
      const missing = before.size === 0 ? [] : this.missingOf(before);
      try {
        await this.driver.execute([
          ...d.migrationPrelude(this.table),
          ...schemaStatements(d, this.table),
          ...addColumnStatements(d, this.table, missing, d.addColumnIfNotExists),
        ]);
      } catch (error) {
        // A concurrent migration added a column after this one read the list: read it again.
        if (attempt < MIGRATE_ATTEMPTS && d.isDuplicateColumn(error)) continue;
        throw error;
      }
      const after = await this.readColumns();
      // Another migration may have created the table meanwhile, without the newer columns.
      if (after.size > 0 && this.missingOf(after).length > 0 && attempt < MIGRATE_ATTEMPTS) continue;
      this.useColumns(after);
      return;
    }
  }

  async insert(record: KeyRecord): Promise<void> {
    const values = this.encode(record);
    try {
      await this.run((s) => {
        this.assertColumns(record, s, true);
        return this.driver.query(
          s.insert.text,
          s.insert.fields.map((field) => values[field] as SqlValue),
        );
      });
    } catch (error) {
      if (this.dialect.isUniqueViolation(error)) {
        throw new StoreConflictError(`a key with id '${record.id}' or with this token digest already exists`);
      }
      throw error;
    }
  }

  async findById(id: string): Promise<KeyRecord | null> {
    const { rows } = await this.run((s) => this.driver.query(s.findById, [id]));
    return rows.length === 0 ? null : this.decode(rows[0] as SqlRow);
  }

  async findByDigest(digest: string): Promise<KeyRecord | null> {
    const { rows } = await this.run((s) => this.driver.query(s.findByDigest, [digest, digest]));
    return rows.length === 0 ? null : this.decode(rows[0] as SqlRow);
  }

  async list(query: StoreListQuery): Promise<KeyRecord[]> {
    const d = this.dialect;
    const { rows } = await this.run((s) => {
      const { text, values } = statement(d, (bind) => {
        const where: string[] = [];
        // The keys without an owner: `= NULL` would match none. Read in order from the (owner_id,
        // created_at, id) index, or on PostgreSQL from an index of their own (see Dialect.ownerlessIndex).
        if (query.ownerId === null) where.push('owner_id IS NULL');
        else if (query.ownerId !== undefined) where.push(`owner_id = ${bind(query.ownerId)}`);
        if (query.active !== undefined) where.push(`active = ${bind(d.encodeBoolean(query.active))}`);
        if (query.after) where.push(d.after(bind, query.after.createdAt.getTime(), query.after.id));
        return [
          s.select,
          where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '',
          ` ORDER BY created_at, id LIMIT ${bind(query.limit)}`,
        ].join('');
      });
      return this.driver.query(text, values);
    });
    return rows.map((row) => this.decode(row));
  }

  async update(next: KeyRecord, expectedVersion: number, counters = false): Promise<boolean> {
    const encoded = this.encode(next);
    try {
      const { count } = await this.run((s) => {
        this.assertColumns(next, s, counters);
        const write = counters ? s.updateCounters : s.update;
        const values = write.fields.map((field) => encoded[field] as SqlValue);
        values.push(next.id, expectedVersion);
        return this.driver.query(write.text, values);
      });
      return count > 0;
    } catch (error) {
      if (this.dialect.isUniqueViolation(error)) throw new StoreConflictError('a key with this token digest already exists');
      throw error;
    }
  }

  async delete(id: string): Promise<boolean> {
    const { count } = await this.run((s) => this.driver.query(s.delete, [id]));
    return count > 0;
  }

  async touch(entries: readonly TouchEntry[]): Promise<void> {
    // The latest time per key, with its address; an id given twice is written once.
    const latest = new Map<string, TouchRow>();
    for (const { id, lastUsedAt, ip } of entries) {
      const at = lastUsedAt.getTime();
      const seen = latest.get(id);
      if (seen === undefined || at > seen[1]) latest.set(id, [id, at, ip ?? null]);
    }
    const all = [...latest.values()];
    for (let i = 0; i < all.length; i += TOUCH_MAX) {
      const batch = all.slice(i, i + TOUCH_MAX);
      // On a table without last_used_ip (not migrated yet), the time alone.
      await this.run((s) => {
        const { text, values } = this.touchStatement(batch, !s.missing.has(LAST_USED_IP));
        return this.driver.query(text, values, true);
      });
    }
  }

  /**
   * Spends `cost` uses as `spendQuota()` computes them from the stored counters and `refill`. The
   * spend statement takes them in one atomic UPDATE. When it takes nothing, the counters are read:
   * no row or no quota gives `null`; counters that would now take the uses (changed since the
   * statement) send it again; otherwise the spend is refused as of that read, and a refill due
   * by `now` is written over exactly the counters read (or, if they changed, it starts over).
   * Every answer is thus what `spendQuota()` gives for the counters at one moment, and a refused
   * spend that writes nothing costs no lock or row version.
   */
  async spend(id: string, cost: number, refill: QuotaRefill | null, now: number): Promise<SpendResult | null> {
    if (this.statements.missing.size > 0) await this.recheck();
    this.assertQuotaColumns();
    try {
      return await this.spendOnce(id, cost, refill, now);
    } catch (error) {
      if (!this.dialect.isUndefinedColumn(error)) throw error;
      // A table of an earlier keygate, not known as one yet: say what to do.
      await this.checkColumns();
      this.assertQuotaColumns();
      throw error;
    }
  }

  /** Nothing to release: the client belongs to the caller, who closes it. */
  async close(): Promise<void> {}

  private async spendOnce(id: string, cost: number, refill: QuotaRefill | null, now: number): Promise<SpendResult | null> {
    const given: Record<SpendParam, SqlValue> = { id, cost, amount: refill?.amount ?? null, interval: refill?.intervalMs ?? null, now };
    const take = this.spendSql.take;
    const takeValues = take.names.map((name) => given[name]);
    for (let attempt = 0; attempt < SPEND_ATTEMPTS; attempt++) {
      const taken = await this.taken(await this.driver.query(take.text, takeValues), id, now);
      if (taken !== null) return spendResult(true, taken);
      const stored = await this.counters(id);
      if (stored === null) return null;
      const { state, spent } = spendQuota(stored, refill, cost, now);
      if (spent) continue;
      // A refill moves refilledAt; without one nothing changes and there is nothing to write.
      if (state.refilledAt === stored.refilledAt) return spendResult(false, stored);
      const written = await this.driver.query(this.spendSql.refill, [
        state.remaining,
        state.refilledAt,
        id,
        stored.remaining,
        stored.refilledAt,
      ]);
      if (written.count > 0) return spendResult(false, state);
    }
    throw new StoreUnavailableError('spend', `the quota of key '${id}' changed during each of ${SPEND_ATTEMPTS} attempts to spend from it`);
  }

  /** Fails a spend on a table without the quota columns, saying how to add them. */
  private assertQuotaColumns(): void {
    const absent = ['remaining', 'refilled_at'].find((column) => this.statements.missing.has(column));
    if (absent !== undefined) {
      throw new StoreUnavailableError('spend', `the table ${this.table} has no column ${absent} yet: run migrate() to add it`);
    }
  }

  /** The counters the spend statement wrote, or `null` when it took nothing. */
  private async taken(result: SqlResult, id: string, now: number): Promise<QuotaState | null> {
    if (this.dialect.returning) {
      const row = result.rows[0];
      return row === undefined ? null : { remaining: Number(row.remaining), refilledAt: timeOf(row.refilled_at) };
    }
    if (result.count === 0) return null;
    const packed = result.lastInsertId;
    if (packed === undefined) throw new StoreUnavailableError('spend', 'the driver gave no LAST_INSERT_ID() for the spend statement');
    const remaining = Number(packed % PACK_REMAINING);
    const code = packed / PACK_REMAINING;
    if (code === 0n) return { remaining, refilledAt: null };
    if (code !== PACK_FAR) return { remaining, refilledAt: now - PACK_BEFORE_MS - 1 + Number(code) };
    // Far from now (a refill interval over 48 days, or clocks a day apart): read it. It changes
    // only by a refill or an edit of the quota, so this is what the statement wrote unless one of
    // those came in between.
    return { remaining, refilledAt: (await this.counters(id))?.refilledAt ?? null };
  }

  /** The stored counters of a key; `null` when it is missing or has no quota. */
  private async counters(id: string): Promise<QuotaState | null> {
    const row = (await this.driver.query(this.spendSql.counters, [id])).rows[0];
    if (row === undefined || row.remaining === null || row.remaining === undefined) return null;
    return { remaining: Number(row.remaining), refilledAt: timeOf(row.refilled_at) };
  }

  /**
   * Runs `op` with the statements for the table's columns. A statement that names a column the
   * table lacks makes the store read the column list, and run `op` once more with statements for
   * the columns there are (see {@link SqlStore}).
   */
  private async run<T>(op: (statements: Statements) => Promise<T>): Promise<T> {
    if (this.statements.missing.size > 0) await this.recheck();
    const used = this.statements;
    try {
      return await op(used);
    } catch (error) {
      if (!this.dialect.isUndefinedColumn(error)) throw error;
      await this.checkColumns();
      if (this.statements === used) throw error;
      return op(this.statements);
    }
  }

  /** Reads the column list again if it is over a second old, while columns are missing. */
  private recheck(): Promise<void> {
    return Date.now() - this.checkedAt < RECHECK_MS ? Promise.resolve() : this.checkColumns();
  }

  /**
   * Reads the column list and uses the statements for it. Concurrent calls share one read; a read
   * that fails changes nothing (the statement that needs the table fails on its own).
   */
  private checkColumns(): Promise<void> {
    this.checking ??= this.readColumns()
      .then(
        (columns) => this.useColumns(columns),
        () => {},
      )
      .finally(() => {
        this.checking = null;
      });
    return this.checking;
  }

  /** The table's columns; empty when there is no table. */
  private async readColumns(): Promise<Set<string>> {
    const { text, values } = this.dialect.columnsQuery(this.table);
    const { rows } = await this.driver.query(text, values);
    return new Set(rows.map((row) => this.dialect.decodeText(row.name)));
  }

  /** The columns of the field table that `columns` lacks. */
  private missingOf(columns: ReadonlySet<string>): FieldSpec[] {
    const missing = FIELD_LIST.flatMap(([, spec]) => (columns.has(spec.column) ? [] : [spec]));
    const required = missing.find((spec) => !spec.nullable);
    if (required !== undefined) {
      throw new StoreUnavailableError(
        'migrate',
        `the table ${this.table} has no column ${required.column}, which every keygate table has: is it the keys table?`,
      );
    }
    return missing;
  }

  /** Uses the statements for these columns: all, or those of an older table that lacks nullable ones. */
  private useColumns(columns: ReadonlySet<string>): void {
    this.checkedAt = Date.now();
    // No table (or none visible): the statements stay, and fail as they would.
    if (columns.size === 0) return;
    const missing = FIELD_LIST.flatMap(([, spec]) => (columns.has(spec.column) ? [] : [spec]));
    if (missing.length === 0) {
      this.statements = this.complete;
      return;
    }
    if (missing.some((spec) => !spec.nullable)) return;
    const names = missing.map((spec) => spec.column);
    const current = this.statements.missing;
    if (current.size === names.length && names.every((name) => current.has(name))) return;
    this.statements = buildStatements(this.dialect, this.table, new Set(names));
  }

  /** Refuses to write a value to a column the table lacks, saying how to add it. */
  private assertColumns(record: KeyRecord, statements: Statements, counters: boolean): void {
    if (statements.missing.size === 0) return;
    for (const [name, spec] of FIELD_LIST) {
      // A touched value is bookkeeping: where its column is missing it is not kept, like a touch's.
      if (!statements.missing.has(spec.column) || spec.touched || (spec.counter && !counters) || record[name] === null) continue;
      throw new ValidationError(
        name,
        `cannot be stored yet: the table ${this.table} has no column ${spec.column}. Run migrate() to add it (or the upgrade script, ${this.dialect.name}Schema({ upgrade: true }))`,
      );
    }
  }

  /**
   * One UPDATE for the whole batch. The batch is padded (by repeating its last entry) to a power
   * of two so that only a dozen distinct statements exist, each prepared once by the server. The
   * WHERE clause picks the rows whose stored time is older, and both columns are set on those
   * only: an older touch changes neither.
   */
  private touchStatement(batch: readonly TouchRow[], withIp: boolean): { text: string; values: SqlValue[] } {
    const d = this.dialect;
    const size = bucket(batch.length);
    const padded = batch.slice();
    while (padded.length < size) padded.push(batch[batch.length - 1] as TouchRow);
    return statement(d, (bind) => {
      const times = (): string => `CASE id${padded.map(([id, at]) => ` WHEN ${bind(id)} THEN ${d.time(bind(at))}`).join('')} END`;
      const ips = withIp
        ? `${LAST_USED_IP} = CASE id${padded.map(([id, , ip]) => ` WHEN ${bind(id)} THEN ${bind(ip)}`).join('')} END, `
        : '';
      const set = times();
      const ids = padded.map(([id]) => bind(id)).join(', ');
      const when = times();
      const at = LAST_USED_AT;
      return `UPDATE ${d.quote(this.table)} SET ${ips}${at} = ${set} WHERE id IN (${ids}) AND (${at} IS NULL OR ${at} < ${when})`;
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
      if (spec.lazy && value !== null && value !== undefined) defineLazyJson(record, name, this.dialect.decodeText(value));
      else record[name] = decodeValue(this.dialect, spec, value);
    }
    return record as unknown as KeyRecord;
  }
}

/** @deprecated Use `postgresStore()`, `mysqlStore()` or `sqliteStore()`, and the `SqlStore` type; removed in 0.3. */
export const SqlKeyStore = SqlStore;
/** @deprecated Use the `SqlStore` type, which `postgresStore()`, `mysqlStore()` and `sqliteStore()` return; removed in 0.3. */
export type SqlKeyStore = SqlStore;
