// Connections to the real servers the store cases use, from KEYGATE_TEST_* variables (with local defaults); null when unreachable.

import { randomBytes } from 'node:crypto';

export const URLS = {
  postgres: process.env.KEYGATE_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test',
  mysql: process.env.KEYGATE_TEST_MYSQL_URL || 'mysql://root@127.0.0.1:3306/test',
  redis: process.env.KEYGATE_TEST_REDIS_URL || 'redis://127.0.0.1:6379',
};

/** A name of our own for tables and key prefixes, so runs never touch anyone else's data. */
export function uniqueName(base) {
  return `${base}_${randomBytes(4).toString('hex')}`;
}

function reason(error) {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0];
}

/** A pg Pool, or `{ skip }` with why not. */
export async function connectPostgres() {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: URLS.postgres, max: 4, connectionTimeoutMillis: 3000 });
  try {
    await pool.query('SELECT 1');
    return { client: pool, close: () => pool.end() };
  } catch (error) {
    await pool.end().catch(() => {});
    return { skip: `PostgreSQL not reachable at ${URLS.postgres} (${reason(error)})` };
  }
}

/** A mysql2/promise pool, or `{ skip }` with why not. */
export async function connectMysql() {
  const { default: mysql } = await import('mysql2/promise');
  const pool = mysql.createPool({ uri: URLS.mysql, connectionLimit: 4, connectTimeout: 3000 });
  try {
    await pool.query('SELECT 1');
    return { client: pool, close: () => pool.end() };
  } catch (error) {
    await pool.end().catch(() => {});
    return { skip: `MySQL/MariaDB not reachable at ${URLS.mysql} (${reason(error)})` };
  }
}

/** A connected ioredis client, or `{ skip }` with why not. */
export async function connectRedis() {
  const { default: Redis } = await import('ioredis');
  const client = new Redis(URLS.redis, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
    return { client, close: () => client.quit() };
  } catch (error) {
    client.disconnect();
    return { skip: `Redis not reachable at ${URLS.redis} (${reason(error)})` };
  }
}

/** Deletes every Redis key under `prefix`. */
export async function deleteRedisPrefix(client, prefix) {
  let cursor = '0';
  do {
    const [next, found] = await client.scan(cursor, 'MATCH', `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`, 'COUNT', 1000);
    if (found.length > 0) await client.del(...found);
    cursor = next;
  } while (cursor !== '0');
}
