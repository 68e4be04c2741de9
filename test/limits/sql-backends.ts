// The databases the SQL limiters are tested on: PostgreSQL and MySQL/MariaDB from the KEYGATE_TEST_*
// variables, and SQLite through each better-sqlite3 major this Node.js can load and node:sqlite where it has one.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { mysqlLimiter, type MysqlLimiterOptions } from '../../adapters/mysql/index.js';
import { postgresLimiter, type PostgresLimiterOptions } from '../../adapters/postgres/index.js';
import { bucketDigest, type SqlLimiter } from '../../adapters/sql/limiter.js';
import { sqliteLimiter, type SqliteDatabase } from '../../adapters/sqlite/index.js';
import type { WindowState } from '../../src/rate-limit.js';
import { serviceUrl } from '../support/services.js';
import { runsHere, SQLITE_DRIVERS } from '../support/sqlite-drivers.js';

/** A table name of the limiter tests' own. */
export function randomTable(): string {
  return `kg_limits_${Math.random().toString(36).slice(2, 10)}`;
}

/** A stored counter row, as the tests read it. */
export interface StoredRow extends WindowState {
  windowMs: number;
}

/** One open connection to a test database. */
export interface Connection {
  /** A limiter on `table`, with `options`, not migrated. */
  limiter(table: string, options?: Record<string, unknown>): SqlLimiter;
  /** The row of bucket `key` in `table`, read directly. */
  row(table: string, key: string): Promise<StoredRow | null>;
  /** How many rows `table` holds. */
  size(table: string): Promise<number>;
  /** Runs a script of statements through the driver itself. */
  script(sql: string): Promise<void>;
  /** Drops `table` if it exists. */
  drop(table: string): Promise<void>;
  close(): Promise<void>;
}

/** A database the limiter tests run on. */
export interface Backend {
  name: string;
  /** Why it does not run here, or null when it does. */
  skip: string | null;
  dialect: 'postgres' | 'mysql' | 'sqlite';
  connect(): Promise<Connection>;
}

function toRow(row: Record<string, unknown> | undefined): StoredRow | null {
  if (!row) return null;
  return {
    window: Number(row.window_index),
    count: Number(row.window_count),
    previous: Number(row.previous_count),
    windowMs: Number(row.window_ms),
  };
}

const COLUMNS = 'window_ms, window_index, window_count, previous_count';

function postgresBackend(url: string | undefined): Backend {
  return {
    name: 'PostgreSQL',
    dialect: 'postgres',
    skip: url ? null : 'KEYGATE_TEST_POSTGRES_URL is not set',
    async connect() {
      const pool = new pg.Pool({ connectionString: url, max: 10 });
      return {
        limiter: (table, options) => postgresLimiter(pool, { table, ...(options as PostgresLimiterOptions) }),
        row: async (table, key) =>
          toRow(
            (await pool.query(`SELECT ${COLUMNS} FROM "${table}" WHERE bucket = decode($1, 'hex')`, [bucketDigest(key).toString('hex')]))
              .rows[0],
          ),
        size: async (table) => Number((await pool.query(`SELECT count(*) AS n FROM "${table}"`)).rows[0].n),
        script: async (sql) => void (await pool.query(sql)),
        drop: async (table) => void (await pool.query(`DROP TABLE IF EXISTS "${table}"`)),
        close: () => pool.end(),
      };
    },
  };
}

function mysqlBackend(url: string | undefined, name: string, poolOptions: mysql.PoolOptions = {}): Backend {
  return {
    name,
    dialect: 'mysql',
    skip: url ? null : 'KEYGATE_TEST_MYSQL_URL is not set',
    async connect() {
      const pool = mysql.createPool({ uri: url, connectionLimit: 10, ...poolOptions });
      const select = async (sql: string, values: unknown[] = []) => (await pool.query(sql, values))[0] as Record<string, unknown>[];
      return {
        limiter: (table, options) => mysqlLimiter(pool, { table, ...(options as MysqlLimiterOptions) }),
        row: async (table, key) => toRow((await select(`SELECT ${COLUMNS} FROM \`${table}\` WHERE bucket = ?`, [bucketDigest(key)]))[0]),
        size: async (table) => Number((await select(`SELECT COUNT(*) AS n FROM \`${table}\``))[0]?.n),
        script: async (sql) => {
          for (const statement of sql.split(';').filter((s) => s.trim())) await pool.query(statement);
        },
        drop: async (table) => void (await pool.query(`DROP TABLE IF EXISTS \`${table}\``)),
        close: () => pool.end(),
      };
    },
  };
}

/** A database object as both better-sqlite3 and node:sqlite have it. */
interface AnySqlite {
  prepare(sql: string): { all(...params: unknown[]): unknown[] };
  exec(sql: string): unknown;
  close(): unknown;
}

function sqliteBackend(name: string, skip: string | null, open: (file: string) => Promise<AnySqlite>, inMemory: boolean): Backend {
  return {
    name,
    dialect: 'sqlite',
    skip,
    async connect() {
      const dir = inMemory ? '' : mkdtempSync(join(tmpdir(), 'keygate-limits-'));
      const db = await open(inMemory ? ':memory:' : join(dir, 'limits.db'));
      if (!inMemory) db.exec('PRAGMA journal_mode = WAL');
      const select = (sql: string, ...values: unknown[]) => db.prepare(sql).all(...values) as Record<string, unknown>[];
      return {
        limiter: (table, options) => sqliteLimiter(db as unknown as SqliteDatabase, { table, ...options }),
        row: async (table, key) => toRow(select(`SELECT ${COLUMNS} FROM "${table}" WHERE bucket = ?`, bucketDigest(key))[0]),
        size: async (table) => Number(select(`SELECT COUNT(*) AS n FROM "${table}"`)[0]?.n),
        script: async (sql) => void db.exec(sql),
        drop: async (table) => void db.exec(`DROP TABLE IF EXISTS "${table}"`),
        close: async () => {
          db.close();
          if (dir) rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

/** node:sqlite's DatabaseSync where this Node.js has it without a flag (22.13 and later), else null. */
export function nodeSqlite(): (new (path: string) => AnySqlite) | null {
  const load = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  const module =
    typeof load === 'function' ? (load('node:sqlite') as { DatabaseSync?: new (path: string) => AnySqlite } | undefined) : undefined;
  return module?.DatabaseSync ?? null;
}

/** Every backend, those that cannot run here with the reason. */
export function backends(): Backend[] {
  const list: Backend[] = [
    postgresBackend(serviceUrl('postgres')),
    mysqlBackend(serviceUrl('mysql'), 'MySQL'),
    // mysql2 then reports a large insert id as a string, which the limiter must read as well.
    mysqlBackend(process.env.KEYGATE_TEST_MYSQL_URL, 'MySQL (bigNumberStrings)', { supportBigNumbers: true, bigNumberStrings: true }),
  ];
  for (const driver of SQLITE_DRIVERS) {
    const skip = runsHere(driver) ? null : `better-sqlite3 ${driver.major} needs Node >= ${driver.minNode}`;
    for (const inMemory of [true, false]) {
      list.push(
        sqliteBackend(
          `SQLite (better-sqlite3 ${driver.major}, ${inMemory ? 'in memory' : 'file'})`,
          skip,
          async (file) => new (await driver.load())(file),
          inMemory,
        ),
      );
    }
  }
  const DatabaseSync = nodeSqlite();
  list.push(
    sqliteBackend(
      'SQLite (node:sqlite, file)',
      DatabaseSync ? null : `node:sqlite needs Node >= 22.13 (this is Node ${process.versions.node})`,
      async (file) => new (DatabaseSync as new (path: string) => AnySqlite)(file),
      false,
    ),
  );
  return list;
}
