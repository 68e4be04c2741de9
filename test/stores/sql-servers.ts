// Stores on the PostgreSQL and MySQL test servers, each on a table of its own that cleanup drops.

import mysql from 'mysql2/promise';
import pg from 'pg';
import { mysqlStore } from '../../adapters/mysql/index.js';
import { postgresStore } from '../../adapters/postgres/index.js';
import type { SqlStore } from '../../adapters/sql/index.js';
import { randomTable } from './sql-extras.js';

/** A migrated store on a random table; `cleanup` drops the table and closes the pool. */
export interface TableStore<Pool> {
  pool: Pool;
  table: string;
  store: SqlStore;
  cleanup(): Promise<void>;
}

/** A PostgreSQL store on a random table, through a pool of at most `max` connections. */
export async function postgresTableStore(url: string, max: number): Promise<TableStore<pg.Pool>> {
  const pool = new pg.Pool({ connectionString: url, max });
  const table = randomTable();
  const store = postgresStore(pool, { table });
  await store.migrate();
  return {
    pool,
    table,
    store,
    cleanup: async () => {
      await pool.query(`DROP TABLE IF EXISTS "${table}"`);
      await pool.end();
    },
  };
}

/** A MySQL store on a random table, through a pool of at most `connectionLimit` connections. */
export async function mysqlTableStore(url: string, connectionLimit: number): Promise<TableStore<mysql.Pool>> {
  const pool = mysql.createPool({ uri: url, connectionLimit });
  const table = randomTable();
  const store = mysqlStore(pool, { table });
  await store.migrate();
  return {
    pool,
    table,
    store,
    cleanup: async () => {
      await pool.query(`DROP TABLE IF EXISTS \`${table}\``);
      await pool.end();
    },
  };
}
