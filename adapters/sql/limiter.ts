// The SQL rate limiter shared by keygate/postgres, keygate/mysql and keygate/sqlite: the counters
// table, every statement it runs, and the all-or-nothing take across buckets.

import { createHash } from 'node:crypto';
import { ValidationError } from '../../src/errors.js';
import {
  type LimiterAnswer,
  RATE_LIMIT_MAX,
  RATE_PRODUCT_MAX,
  RATE_WINDOW_MAX_MS,
  type RateLimitBucket,
  type RateLimiter,
  slide,
  type WindowState,
} from '../../src/rate-limit.js';
import type { Dialect, SqlValue } from './dialects.js';
import { resolveTable } from './store.js';

/** The default table of the rate-limit counters. */
export const DEFAULT_LIMITER_TABLE = 'keygate_rate_limits';

/** Options shared by `postgresLimiter`, `mysqlLimiter` and `sqliteLimiter`. */
export interface SqlLimiterOptions {
  /**
   * The table that holds the counters. A plain identifier (`/^[A-Za-z_][A-Za-z0-9_]{0,62}$/`),
   * used as written (quoted, so case matters); for PostgreSQL it may be schema-qualified
   * (`auth.rate_limits`).
   * @default 'keygate_rate_limits'
   */
  table?: string | undefined;
}

/**
 * The counters table, one row per bucket: `bucket` is the SHA-256 of the bucket's name (its
 * UTF-8 bytes), so names compare byte for byte whatever the server's collation (MySQL's would
 * take `a` for `A`, `é` for `e` and ignore trailing spaces) and every key has the same short
 * primary key. `window_ms` is the window the row counts in: a bucket asked with another window
 * starts afresh. `window_index` is `floor(now / window_ms)`, `window_count` and `previous_count`
 * what that window and the one before admitted (slide()'s `window`, `count` and `previous`);
 * `admitted` says whether the row's last take was admitted, for RETURNING (MySQL has no RETURNING
 * and no such column).
 */
export function limiterSchemaStatements(dialect: Dialect, tableName: string = DEFAULT_LIMITER_TABLE): string[] {
  const table = dialect.quote(resolveTable(dialect, tableName));
  const integer = dialect.name === 'sqlite' ? 'INTEGER' : 'BIGINT';
  const columns = [
    `bucket ${{ postgres: 'BYTEA', mysql: 'BINARY(32)', sqlite: 'BLOB' }[dialect.name]} NOT NULL`,
    `window_ms ${integer} NOT NULL`,
    `window_index ${integer} NOT NULL`,
    `window_count ${integer} NOT NULL`,
    `previous_count ${integer} NOT NULL`,
  ];
  if (dialect.name !== 'mysql') columns.push(`admitted ${dialect.types.boolean} NOT NULL`);
  columns.push('PRIMARY KEY (bucket)');
  const options = {
    // Every take updates a row in place without touching an indexed column: room on the page lets
    // PostgreSQL keep the new version beside the old one (a HOT update, no index write).
    postgres: ' WITH (fillfactor = 80)',
    mysql: ' ENGINE=InnoDB',
    sqlite: ' WITHOUT ROWID',
  }[dialect.name];
  // PostgreSQL: UNLOGGED, no write-ahead log, so a take commits without waiting for a disk flush
  // (a row lock is held that much shorter; the counters of one hot key are taken several times
  // faster). A crash empties the table: limits restart from zero, as after a restart of the
  // in-process limiter. Counters are not worth a flush per request.
  const create = dialect.name === 'postgres' ? 'CREATE UNLOGGED TABLE' : 'CREATE TABLE';
  return [`${create} IF NOT EXISTS ${table} (\n  ${columns.join(',\n  ')}\n)${options}`];
}

/** The counters table as one SQL script, for migration tools. */
export function limiterSchemaScript(dialect: Dialect, table?: string): string {
  return `${limiterSchemaStatements(dialect, table).join(';\n\n')};\n`;
}

/** The values limiter statements bind, by name. */
export interface LimiterValues {
  /** The SHA-256 of the bucket's name, in hex. */
  bucket?: string;
  windowMs?: number;
  /** `floor(now / windowMs)`, as slide() computes it. */
  window?: number;
  previousWindow?: number;
  nextWindow?: number;
  /** The count and decision of a take on a bucket without a row: slide(null, …). */
  freshCount?: number;
  freshAdmitted?: boolean;
  cost?: number;
  /** How much the previous window weighs in the current one: `windowMs - (now - window * windowMs)`. */
  weight?: number;
  /** `limit * windowMs`, what slide() compares with (at most RATE_PRODUCT_MAX). */
  limitWeight?: number;
  now?: number;
}

type ValueName = keyof LimiterValues;
type ValueType = 'int' | 'bool' | 'hash';

/** A statement's text and, for each of its placeholders in order, the value it binds. */
export interface LimiterStatement {
  readonly text: string;
  readonly args: readonly { readonly name: ValueName; readonly type: ValueType }[];
}

/** A value of `LimiterValues` as bound for `type` (the bucket's hash stays hex: each adapter encodes it). */
export function bindValues(statement: LimiterStatement, values: LimiterValues, dialect: Dialect): SqlValue[] {
  return statement.args.map(({ name, type }) => {
    const value = values[name];
    if (value === undefined) throw new Error(`limiter statement value '${name}' is missing`);
    return type === 'bool' ? dialect.encodeBoolean(value as boolean) : (value as SqlValue);
  });
}

/**
 * Turns a statement written with `{type:name}` markers into the dialect's placeholders, in the
 * order they appear: PostgreSQL numbers each name once (`$1`), MySQL and SQLite repeat `?`. Each
 * number carries a cast to a 64-bit integer, so that every server computes in integers (mysql2
 * sends every number as a DOUBLE, better-sqlite3 as a REAL).
 */
function compile(dialect: Dialect, source: string): LimiterStatement {
  const args: { name: ValueName; type: ValueType }[] = [];
  const text = source.replace(/\{(int|bool|hash):(\w+)\}/g, (_, type: ValueType, name: ValueName) => {
    let placeholder: string;
    if (dialect.name === 'postgres') {
      let index = args.findIndex((a) => a.name === name);
      if (index < 0) index = args.push({ name, type }) - 1;
      else if (args[index]?.type !== type) throw new Error(`limiter statement value '${name}' bound as two types`);
      placeholder = `$${index + 1}`;
    } else {
      args.push({ name, type });
      placeholder = '?';
    }
    return cast(dialect, type, placeholder);
  });
  return { text, args };
}

function cast(dialect: Dialect, type: ValueType, placeholder: string): string {
  switch (type) {
    case 'int':
      return `CAST(${placeholder} AS ${{ postgres: 'BIGINT', mysql: 'SIGNED', sqlite: 'INTEGER' }[dialect.name]})`;
    case 'bool':
      return dialect.name === 'postgres' ? `CAST(${placeholder} AS BOOLEAN)` : placeholder;
    case 'hash':
      // SQLite binds the bytes themselves (its unhex() is recent: 3.41).
      return { postgres: `decode(${placeholder}, 'hex')`, mysql: `UNHEX(${placeholder})`, sqlite: placeholder }[dialect.name];
  }
}

/** The mask of one 30-bit field of the MySQL take's answer: a count never exceeds RATE_LIMIT_MAX < 2^30. */
const FIELD = 0x3fffffff;

/**
 * slide() on a stored row, as SQL expressions over the row before the take (`old(column)`):
 * the window rolled over to `now`, and whether the take is admitted.
 */
function slideExpressions(old: (column: string) => string) {
  const live = `${old('window_ms')} = {int:windowMs}`;
  const ahead = `(${live} AND ${old('window_index')} > {int:window})`;
  const same = `(${live} AND ${old('window_index')} >= {int:window})`;
  // A clock behind the stored window counts in the stored window.
  const window = `CASE WHEN ${ahead} THEN ${old('window_index')} ELSE {int:window} END`;
  const count = `CASE WHEN ${same} THEN ${old('window_count')} ELSE 0 END`;
  const previous = `CASE WHEN ${same} THEN ${old('previous_count')} WHEN ${live} AND ${old('window_index')} = {int:previousWindow} THEN ${old('window_count')} ELSE 0 END`;
  // In a window ahead of now nothing has elapsed: the previous window weighs in full.
  const weight = `CASE WHEN ${ahead} THEN {int:windowMs} ELSE {int:weight} END`;
  // As slide() compares it. With limit * windowMs at most RATE_PRODUCT_MAX (2^51) and cost at most
  // the limit, every term stays below 2^53: BIGINT computes exactly what JavaScript's doubles do.
  const admitted = `${previous} * ${weight} + (${count} + {int:cost}) * {int:windowMs} <= {int:limitWeight}`;
  const after = `CASE WHEN ${admitted} THEN ${count} + {int:cost} ELSE ${count} END`;
  return { window, count: after, previous, admitted };
}

/** Every statement the limiter runs on one table. */
export interface LimiterStatements {
  /** Takes one bucket, in one atomic statement. */
  readonly take: LimiterStatement;
  /** Gives a take back to a bucket that admitted it, when a later bucket refused. */
  readonly giveBack: LimiterStatement;
  readonly read: LimiterStatement;
  readonly prune: LimiterStatement;
}

/** The statements of the limiter on `table` (already validated) in `dialect`. */
export function limiterStatements(dialect: Dialect, table: string): LimiterStatements {
  const t = dialect.quote(table);
  const greatest = dialect.name === 'sqlite' ? 'MAX' : 'GREATEST';
  let take: string;
  if (dialect.name === 'mysql') {
    const s = slideExpressions((column) => column);
    // MySQL and MariaDB have no RETURNING on INSERT … ON DUPLICATE KEY UPDATE. The decision and
    // the state go back in the OK packet instead: LAST_INSERT_ID(expr) sets the insert id the
    // server reports for this statement (and for LAST_INSERT_ID() later in it). 63 bits hold
    // admitted (bit 62), how far the window is ahead of now's, capped at 3 (bits 60-61; 3 has the
    // window read back), previous_count (bits 30-59) and window_count (bits 0-29). A statement
    // that inserted reports 0 and the client knows what it inserted. The alternatives cost more:
    // a SELECT after the upsert needs a second round trip and, for the same take's answer, a
    // transaction around both; a multi-statement needs `multipleStatements` on the pool.
    //
    // MySQL runs SET assignments left to right, each seeing the columns assigned before it
    // (MariaDB may see the old row, with SIMULTANEOUS_ASSIGNMENT): so the first assignment reads
    // only the old row, and the others read the new counts from LAST_INSERT_ID(), or columns not
    // assigned yet. The fields cannot overflow: counts are at most RATE_LIMIT_MAX < 2^30.
    const answer = [
      `(CASE WHEN ${s.admitted} THEN 4611686018427387904 ELSE 0 END)`,
      `(LEAST(${s.window} - {int:window}, 3) << 60)`,
      `((${s.previous}) << 30)`,
      `(${s.count})`,
    ].join(' | ');
    take = [
      `INSERT INTO ${t} (bucket, window_ms, window_index, window_count, previous_count)`,
      'VALUES ({hash:bucket}, {int:windowMs}, {int:window}, {int:freshCount}, 0)',
      'ON DUPLICATE KEY UPDATE',
      `window_count = LAST_INSERT_ID(${answer}) & ${FIELD},`,
      `previous_count = (LAST_INSERT_ID() >> 30) & ${FIELD},`,
      `window_index = ${s.window},`,
      'window_ms = {int:windowMs}',
    ].join('\n');
  } else {
    const s = slideExpressions((column) => `r.${column}`);
    // ON CONFLICT DO UPDATE computes every column from the row before the update.
    take = [
      `INSERT INTO ${t} AS r (bucket, window_ms, window_index, window_count, previous_count, admitted)`,
      'VALUES ({hash:bucket}, {int:windowMs}, {int:window}, {int:freshCount}, 0, {bool:freshAdmitted})',
      'ON CONFLICT (bucket) DO UPDATE SET',
      'window_ms = {int:windowMs},',
      `window_index = ${s.window},`,
      `window_count = ${s.count},`,
      `previous_count = ${s.previous},`,
      `admitted = ${s.admitted}`,
      'RETURNING window_index, window_count, previous_count, admitted',
    ].join('\n');
  }
  return {
    take: compile(dialect, take),
    // The take counted in `window`; if the row has moved on to the next window since, it is in previous_count.
    giveBack: compile(
      dialect,
      [
        `UPDATE ${t} SET`,
        `window_count = CASE WHEN window_index = {int:window} THEN ${greatest}(window_count - {int:cost}, 0) ELSE window_count END,`,
        `previous_count = CASE WHEN window_index = {int:nextWindow} THEN ${greatest}(previous_count - {int:cost}, 0) ELSE previous_count END`,
        'WHERE bucket = {hash:bucket} AND window_ms = {int:windowMs} AND window_index IN ({int:window}, {int:nextWindow})',
      ].join('\n'),
    ),
    read: compile(dialect, `SELECT window_ms, window_index, window_count, previous_count FROM ${t} WHERE bucket = {hash:bucket}`),
    // A window older than the previous one weighs nothing: the row is as good as absent.
    prune: compile(dialect, `DELETE FROM ${t} WHERE (window_index + 2) * window_ms <= {int:now}`),
  };
}

/** One bucket of a take, with what every statement about it binds. */
export interface TakeInput {
  readonly bucket: RateLimitBucket;
  readonly values: LimiterValues;
  /** The answer when the take inserts the row: slide() from no state. */
  readonly fresh: TakeResult;
}

/** A bucket's decision and its state after the take. */
export interface TakeResult {
  readonly allowed: boolean;
  readonly state: WindowState;
}

/** Lone surrogates: a name with one is hashed from its UTF-16 code units, which UTF-8 cannot carry. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * The SHA-256 of a bucket's name: of its UTF-8 bytes, or for a name that UTF-8 cannot encode (a
 * lone surrogate, which it would turn into U+FFFD, as it would another) of a 0xFF byte, which UTF-8
 * never holds, and its UTF-16 code units. So two names share a row only if they are equal.
 */
export function bucketDigest(key: string): Buffer {
  const hash = createHash('sha256');
  if (LONE_SURROGATE.test(key)) hash.update(Buffer.of(0xff)).update(key, 'utf16le');
  else hash.update(key, 'utf8');
  return hash.digest();
}

function checkInteger(field: string, value: unknown, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(field, `must be a whole number from ${min} to ${max}, got ${String(value)}`);
  }
}

/**
 * What one take binds, for each bucket; a ValidationError for values slide() is not meant for.
 * A cost above a bucket's limit never passes (slide() refuses it before any product): such a
 * take is asked with cost 0, which rolls the windows over as the refusal would, and refused.
 */
export function takeInputs(
  buckets: readonly RateLimitBucket[],
  cost: number,
  now: number,
): { inputs: TakeInput[]; cost: number; over: boolean } {
  if (!Array.isArray(buckets)) throw new ValidationError('buckets', 'must be an array of { key, limit, windowMs }');
  checkInteger('cost', cost, 0, RATE_LIMIT_MAX);
  checkInteger('now', now, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  buckets.forEach((bucket, i) => {
    if (typeof bucket?.key !== 'string') throw new ValidationError(`buckets[${i}].key`, 'must be a string');
    checkInteger(`buckets[${i}].limit`, bucket.limit, 1, RATE_LIMIT_MAX);
    checkInteger(`buckets[${i}].windowMs`, bucket.windowMs, 1, RATE_WINDOW_MAX_MS);
    if (bucket.limit * bucket.windowMs > RATE_PRODUCT_MAX) {
      throw new ValidationError(`buckets[${i}].limit`, `times windowMs must be at most 2^51, got ${bucket.limit} × ${bucket.windowMs}`);
    }
  });
  const over = buckets.some((b) => cost > b.limit);
  const asked = over ? 0 : cost;
  const inputs = buckets.map((bucket) => {
    const { limit, windowMs } = bucket;
    // Exactly as slide() computes them.
    const window = Math.floor(now / windowMs);
    const fresh = slide(null, limit, windowMs, asked, now);
    return {
      bucket,
      fresh,
      values: {
        bucket: bucketDigest(bucket.key).toString('hex'),
        windowMs,
        window,
        previousWindow: window - 1,
        nextWindow: window + 1,
        freshCount: fresh.state.count,
        freshAdmitted: fresh.allowed,
        cost: asked,
        weight: windowMs - Math.max(0, now - window * windowMs),
        limitWeight: limit * windowMs,
      },
    };
  });
  return { inputs, cost: asked, over };
}

/** A whole number from a driver (pg returns BIGINT as a string, better-sqlite3 may return a bigint). */
function integer(value: unknown): number {
  return Number(value);
}

/** The answer of a take statement that returned its row (PostgreSQL, SQLite). */
export function decodeReturned(row: Record<string, unknown> | undefined, dialect: Dialect): TakeResult {
  if (!row) throw new Error('the rate-limit take returned no row');
  return {
    allowed: dialect.decodeBoolean(row.admitted),
    state: { window: integer(row.window_index), count: integer(row.window_count), previous: integer(row.previous_count) },
  };
}

/**
 * The answer of the MySQL take from the insert id it reported (see limiterStatements). `exact` is
 * false when the stored window is 3 or more ahead of now's: the state then says 3, and the
 * window must be read back.
 */
export function decodeInsertId(insertId: unknown, input: TakeInput): { result: TakeResult; exact: boolean } {
  const answer = BigInt(typeof insertId === 'number' || typeof insertId === 'string' ? insertId : 0);
  if (answer === 0n) return { result: input.fresh, exact: true };
  const ahead = Number((answer >> 60n) & 3n);
  const result = {
    allowed: ((answer >> 62n) & 1n) === 1n,
    state: {
      window: (input.values.window as number) + ahead,
      count: Number(answer & BigInt(FIELD)),
      previous: Number((answer >> 30n) & BigInt(FIELD)),
    },
  };
  return { result, exact: ahead < 3 };
}

/** A stored row as slide() takes it: `null` when there is none, or it counts another window length. */
export function storedState(row: Record<string, unknown> | undefined, windowMs: number): WindowState | null {
  if (!row || integer(row.window_ms) !== windowMs) return null;
  return { window: integer(row.window_index), count: integer(row.window_count), previous: integer(row.previous_count) };
}

/** What the SQL limiter needs of a driver. */
export interface LimiterDriver {
  /** Runs the take statement for one bucket: one atomic statement. */
  takeOne(input: TakeInput): Promise<TakeResult>;
  /**
   * Takes every bucket in one transaction, rolled back unless all admit (where a transaction is
   * cheap: SQLite). Returns each bucket's own answer. Without it, the limiter compensates.
   */
  takeAll?(inputs: readonly TakeInput[]): Promise<TakeResult[]>;
  /** Runs a statement; returns its rows and how many rows it changed. */
  run(statement: LimiterStatement, values: LimiterValues): Promise<{ rows: Record<string, unknown>[]; count: number }>;
  /** Runs DDL without values, as one transaction where the server allows it. */
  migrate(statements: readonly string[]): Promise<void>;
}

/**
 * Rate-limit counters in a SQL table: every decision is slide()'s, made by the server in one
 * statement per bucket. Create it with `postgresLimiter`, `mysqlLimiter` or `sqliteLimiter`;
 * construction runs no query. Call `migrate()` once (or run `schema` with your migration tool).
 *
 * One bucket: one statement (an upsert that rolls the window over, decides and counts in one
 * step). Several buckets (a key's and its owner's), all-or-nothing: on SQLite, one transaction.
 * Elsewhere the buckets are taken one after another, in the order given, and if one refuses, the
 * ones before it get the request back (a decrement in the window it was counted in) and the ones
 * after it are only read. No bucket ever admits more than its limit; while a request is counted
 * in an earlier bucket before a later one refuses it, a concurrent request that the earlier bucket
 * would have admitted without it may be refused. A give-back that fails (the database went away)
 * leaves the request counted there until its window slides out: the limiter then errs toward
 * refusing, never toward admitting.
 */
export class SqlLimiter implements RateLimiter {
  /** The table name, as configured. */
  readonly table: string;
  /** The CREATE statement of the counters table, as a script for migration tools. */
  readonly schema: string;

  private readonly dialect: Dialect;
  private readonly driver: LimiterDriver;
  private readonly statements: LimiterStatements;

  /** `driver` is made from the statements on the configured table. */
  constructor(dialect: Dialect, options: SqlLimiterOptions, driver: (statements: LimiterStatements) => LimiterDriver) {
    this.dialect = dialect;
    this.table = resolveTable(dialect, options.table ?? DEFAULT_LIMITER_TABLE);
    this.schema = limiterSchemaScript(dialect, this.table);
    this.statements = limiterStatements(dialect, this.table);
    this.driver = driver(this.statements);
  }

  /** Creates the counters table if it does not exist. Safe to run on every start, and concurrently. */
  async migrate(): Promise<void> {
    await this.driver.migrate([...this.dialect.migrationPrelude(this.table), ...limiterSchemaStatements(this.dialect, this.table)]);
  }

  /**
   * Deletes the rows that no longer weigh at `now`: those whose window is older than the one
   * before now's. Such a row counts as no row at all, so pruning never changes a decision; it
   * only keeps the table from growing with keys that are gone. Scans the whole table: run it
   * now and then (say hourly), not per request. Returns how many rows it deleted.
   * @param now the clock the takes use, in ms since 1970. @default Date.now()
   */
  async prune(now: number = Date.now()): Promise<number> {
    checkInteger('now', now, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    return (await this.driver.run(this.statements.prune, { now })).count;
  }

  async take(_group: string, buckets: readonly RateLimitBucket[], cost: number, now: number): Promise<LimiterAnswer> {
    const asked = takeInputs(buckets, cost, now);
    const answer = await this.takeAsked(asked.inputs, asked.cost, now);
    return asked.over ? { allowed: false, states: answer.states } : answer;
  }

  /** Nothing to release: the client belongs to the caller, who closes it. */
  async close(): Promise<void> {}

  private async takeAsked(inputs: readonly TakeInput[], cost: number, now: number): Promise<LimiterAnswer> {
    if (inputs.length === 1) {
      const { allowed, state } = await this.driver.takeOne(inputs[0] as TakeInput);
      return { allowed, states: [state] };
    }
    if (inputs.length === 0) return { allowed: true, states: [] };
    if (this.driver.takeAll) {
      const results = await this.driver.takeAll(inputs);
      const allowed = results.every((r) => r.allowed);
      // Rolled back: a bucket that admitted holds what it held before, which is its state less the cost.
      const states = results.map(({ allowed: own, state }) => (allowed || !own ? state : { ...state, count: state.count - cost }));
      return { allowed, states };
    }
    return this.compensated(inputs, cost, now);
  }

  private async compensated(inputs: readonly TakeInput[], cost: number, now: number): Promise<LimiterAnswer> {
    const results: TakeResult[] = [];
    for (const input of inputs) {
      const result = await this.driver.takeOne(input);
      results.push(result);
      if (!result.allowed) break;
    }
    const refused = results.length - 1;
    if ((results[refused] as TakeResult).allowed) return { allowed: true, states: results.map((r) => r.state) };
    const states = await Promise.all(
      inputs.map(async (input, i): Promise<WindowState> => {
        const { state } = results[i] ?? { state: null };
        if (i === refused && state) return state;
        if (i < refused && state) {
          if (cost > 0) {
            await this.driver
              .run(this.statements.giveBack, { ...input.values, window: state.window, nextWindow: state.window + 1 })
              .catch(() => undefined);
          }
          return { ...state, count: state.count - cost };
        }
        // Not taken: what slide() makes of the stored row without counting anything.
        const { rows } = await this.driver.run(this.statements.read, input.values);
        const { limit, windowMs } = input.bucket;
        return slide(storedState(rows[0], windowMs), limit, windowMs, 0, now).state;
      }),
    );
    return { allowed: false, states };
  }
}
