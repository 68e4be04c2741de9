// The stores the benchmarks run on: how to open each one's client, make keygate's store over it, and clean up.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectMysql, connectPostgres, connectRedis, deleteRedisPrefix, uniqueName } from './services.mjs';

/** Each store by id: `open()` gives `{ client, close }` or `{ skip: reason }`; `make(mod, client)` gives `{ store, drop }`. */
export const BENCH_STORES = {
  memory: {
    id: 'memory',
    label: 'MemoryStore',
    dist: 'memory',
    open: async () => ({ client: null, close: () => {} }),
    make: async (mod) => ({ store: mod.memoryStore(), drop: async () => {} }),
  },
  sqlite: {
    id: 'sqlite',
    label: 'SQLite (better-sqlite3, file, WAL)',
    dist: 'sqlite',
    async open() {
      const { default: Database } = await import('better-sqlite3');
      const dir = mkdtempSync(join(tmpdir(), 'keygate-bench-'));
      const db = new Database(join(dir, 'keys.db'));
      db.pragma('journal_mode = WAL');
      return {
        client: db,
        close: () => {
          db.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
    async make(mod, client) {
      const store = mod.sqliteStore(client, { table: uniqueName('kg_bench') });
      await store.migrate();
      return { store, drop: async () => {} };
    },
  },
  postgres: {
    id: 'postgres',
    label: 'PostgreSQL (pg)',
    dist: 'postgres',
    open: connectPostgres,
    async make(mod, client) {
      const table = uniqueName('kg_bench');
      const store = mod.postgresStore(client, { table });
      await store.migrate();
      return { store, drop: () => client.query(`DROP TABLE IF EXISTS ${table}`) };
    },
  },
  mysql: {
    id: 'mysql',
    label: 'MariaDB (mysql2)',
    dist: 'mysql',
    open: connectMysql,
    async make(mod, client) {
      const table = uniqueName('kg_bench');
      const store = mod.mysqlStore(client, { table });
      await store.migrate();
      return { store, drop: () => client.query(`DROP TABLE IF EXISTS ${table}`) };
    },
  },
  redis: {
    id: 'redis',
    label: 'Redis (ioredis)',
    dist: 'redis',
    open: connectRedis,
    async make(mod, client) {
      const prefix = `{${uniqueName('kgbench')}}:`;
      const store = mod.redisStore(client, { prefix });
      return { store, drop: () => deleteRedisPrefix(client, prefix) };
    },
  },
};
