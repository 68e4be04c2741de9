// Network key stores behind a fault proxy, with the driver settings docs/faults.md recommends, and a steady verify load that records what each request got.

import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { mysqlStore } from '../../adapters/mysql/index.js';
import { postgresStore } from '../../adapters/postgres/index.js';
import { redisStore } from '../../adapters/redis/index.js';
import type { KeyManager, KeyStore } from '../../src/index.js';
import { serviceUrl } from './services.js';
import { TcpProxy } from './tcp.js';

/** The network stores, by the service that enables their tests. */
export const NETWORK_STORES = ['postgres', 'mysql', 'redis'] as const;
export type NetworkStore = (typeof NETWORK_STORES)[number];

/** A store whose every connection passes through `proxy`, and how to drop what it made. */
export interface ProxiedStore {
  readonly kind: NetworkStore;
  readonly proxy: TcpProxy;
  readonly store: KeyStore;
  /** The same table or prefix over a connection that does not pass through the proxy. */
  readonly direct: KeyStore;
  /** Drops the table or key prefix (directly, not through the proxy) and closes every client. */
  cleanup(): Promise<void>;
}

/** The manager's `storeTimeoutMs` the driver settings below are made for. */
export const STORE_TIMEOUT_MS = 2000;

/**
 * Opens `kind` through a new fault proxy, with the driver settings of docs/faults.md: connect and
 * query timeouts at `storeTimeoutMs`, so that a connection stuck in an outage is given up by the
 * driver too. The table or prefix is new and random; the store is migrated.
 */
export async function openProxiedStore(kind: NetworkStore, timeoutMs = STORE_TIMEOUT_MS): Promise<ProxiedStore> {
  const url = new URL(serviceUrl(kind) as string);
  const proxy = await TcpProxy.start({ host: url.hostname, port: Number(url.port) });
  const name = `kg_fault_${randomBytes(6).toString('hex')}`;
  if (kind === 'postgres') {
    const options = { user: url.username || 'postgres', database: url.pathname.slice(1) || 'test', host: '127.0.0.1' };
    const pool = new pg.Pool({ ...options, port: proxy.port, max: 10, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
    pool.on('error', () => {});
    const direct = new pg.Pool({ ...options, port: Number(url.port), max: 2 });
    const store = postgresStore(pool, { table: name });
    await store.migrate();
    return {
      kind,
      proxy,
      store,
      direct: postgresStore(direct, { table: name }),
      async cleanup() {
        await direct.query(`DROP TABLE IF EXISTS "${name}"`);
        await direct.end();
        await proxy.close();
        await pool.end().catch(() => {});
      },
    };
  }
  if (kind === 'mysql') {
    const options = { user: url.username || 'root', database: url.pathname.slice(1) || 'test', host: '127.0.0.1' };
    const pool = mysql.createPool({ ...options, port: proxy.port, connectionLimit: 10, connectTimeout: timeoutMs, enableKeepAlive: true });
    pool.on('connection', (connection) => connection.on('error', () => {}));
    const direct = mysql.createPool({ ...options, port: Number(url.port), connectionLimit: 2 });
    const store = mysqlStore(pool, { table: name });
    await store.migrate();
    return {
      kind,
      proxy,
      store,
      direct: mysqlStore(direct, { table: name }),
      async cleanup() {
        await direct.query(`DROP TABLE IF EXISTS \`${name}\``);
        await direct.end();
        await proxy.close();
        await pool.end().catch(() => {});
      },
    };
  }
  const client = new Redis({
    host: '127.0.0.1',
    port: proxy.port,
    commandTimeout: timeoutMs,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => Math.min(times * 50, 500),
  });
  client.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve);
    setTimeout(() => reject(new Error('the Redis client did not become ready')), 10_000).unref();
  });
  const direct = new Redis(serviceUrl('redis') as string);
  await new Promise<void>((resolve) => direct.once('ready', resolve));
  const prefix = `{${name}}:`;
  const store = redisStore(client, { prefix });
  return {
    kind,
    proxy,
    store,
    direct: redisStore(direct, { prefix }),
    async cleanup() {
      const keys = await direct.keys(`${prefix}*`);
      if (keys.length > 0) await direct.del(...keys);
      direct.disconnect();
      await proxy.close();
      client.disconnect();
    },
  };
}

/** One verify of a steady load: when it started and ended (ms on `performance.now()`), and what it got. */
export interface Outcome {
  readonly start: number;
  readonly end: number;
  readonly status: 200 | 401 | 503 | 500;
}

/**
 * Verifies `tokens` (round robin) at `rate` per second until `stop()`, as a guard would: a valid
 * key is 200, an invalid one 401, a store failure 503, anything else 500.
 */
export function steadyLoad(keys: KeyManager, tokens: readonly string[], rate: number): { outcomes: Outcome[]; stop: () => Promise<void> } {
  const outcomes: Outcome[] = [];
  const inFlight = new Set<Promise<void>>();
  const tickMs = 10;
  const perTick = (rate * tickMs) / 1000;
  let owed = 0;
  let next = 0;
  const timer = setInterval(() => {
    owed += perTick;
    for (; owed >= 1; owed--) {
      const token = tokens[next++ % tokens.length] as string;
      const start = performance.now();
      const done = keys.verify(token).then(
        (result) => {
          outcomes.push({ start, end: performance.now(), status: result.valid ? 200 : 401 });
        },
        (error: unknown) => {
          const status = (error as { status?: unknown }).status === 503 ? 503 : 500;
          outcomes.push({ start, end: performance.now(), status });
        },
      );
      inFlight.add(done);
      void done.finally(() => inFlight.delete(done));
    }
  }, tickMs);
  return {
    outcomes,
    async stop() {
      clearInterval(timer);
      await Promise.all(inFlight);
    },
  };
}

let gcFunction: (() => void) | null = null;

/** Heap in use after a full garbage collection, in bytes. */
export function heapAfterGc(): number {
  if (gcFunction === null) {
    setFlagsFromString('--expose-gc');
    gcFunction = runInNewContext('gc') as () => void;
  }
  gcFunction();
  gcFunction();
  return process.memoryUsage().heapUsed;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
