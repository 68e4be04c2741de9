// The driver clients of the exactness test, opened the same way in the test and in its child processes.
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import pg from 'pg';

export type Backend = 'postgres' | 'mysql' | 'redis' | 'sqlite';

export interface Connections {
  pg: pg.Pool;
  mysql: mysql.Pool;
  redis: Redis;
  sqlite: Database.Database;
  close(): Promise<void>;
}

/** Opens the client of `backend` at `target` (a URL, or a file for SQLite); the other fields are never read. */
export async function connect(backend: Backend, target: string): Promise<Connections> {
  const conn = {} as Connections;
  switch (backend) {
    case 'postgres': {
      const pool = new pg.Pool({ connectionString: target, max: 10 });
      conn.pg = pool;
      conn.close = () => pool.end();
      break;
    }
    case 'mysql': {
      const pool = mysql.createPool({ uri: target, connectionLimit: 10 });
      conn.mysql = pool;
      conn.close = () => pool.end();
      break;
    }
    case 'redis': {
      const client = new Redis(target, { maxRetriesPerRequest: 1 });
      await client.ping();
      conn.redis = client;
      conn.close = async () => void (await client.quit());
      break;
    }
    case 'sqlite': {
      // The busy timeout bounds how long the store and the limiter wait for another process's lock (on timers).
      const db = new Database(target, { timeout: 5000 });
      db.pragma('journal_mode = WAL');
      conn.sqlite = db;
      conn.close = async () => void db.close();
      break;
    }
  }
  return conn;
}
