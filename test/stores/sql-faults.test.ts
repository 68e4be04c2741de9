// A SQL server that refuses connections, or accepts and never answers, makes verify fail fast with StoreUnavailableError.
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { mysqlStore } from '../../adapters/mysql/index.js';
import { postgresStore } from '../../adapters/postgres/index.js';
import { createKeyManager, StoreUnavailableError, type KeyStore } from '../../src/index.js';
import { generateToken } from '../../src/token.js';
import { refusedPort, silentServer } from '../support/tcp.js';

const TIMEOUT_MS = 300;
const MARGIN_MS = 1500;

/** verify's elapsed time and error, after asserting it rejected with StoreUnavailableError. */
async function failingVerify(store: KeyStore): Promise<{ elapsed: number; message: string }> {
  const keys = createKeyManager({ store, storeTimeoutMs: TIMEOUT_MS });
  const token = generateToken(keys.prefix);
  const started = Date.now();
  const error = await keys.verify(token).then(
    () => null,
    (e: unknown) => e,
  );
  const elapsed = Date.now() - started;
  expect(error).toBeInstanceOf(StoreUnavailableError);
  expect((error as StoreUnavailableError).operation).toBe('findByDigest');
  await keys.close();
  return { elapsed, message: (error as Error).message };
}

/** The same process still serves requests that do not need the broken store. */
async function stillServing(): Promise<void> {
  const keys = createKeyManager({ store: memoryStore() });
  const { token } = await keys.create({ name: 'healthy', scopes: ['all'] });
  expect((await keys.verify(token)).valid).toBe(true);
  await keys.close();
}

const drivers: Array<{ name: string; open: (port: number) => { store: KeyStore; end: () => Promise<void> } }> = [
  {
    name: 'PostgreSQL',
    open(port) {
      const pool = new pg.Pool({ host: '127.0.0.1', port, user: 'postgres', database: 'test', max: 10 });
      pool.on('error', () => {});
      return { store: postgresStore(pool), end: () => pool.end() };
    },
  },
  {
    name: 'MySQL',
    open(port) {
      const pool = mysql.createPool({ host: '127.0.0.1', port, user: 'root', database: 'test', connectionLimit: 10 });
      return { store: mysqlStore(pool), end: () => pool.end() };
    },
  },
];

for (const driver of drivers) {
  describe(`${driver.name} store unreachable`, () => {
    it(`refused connections: verify rejects with StoreUnavailableError within ${TIMEOUT_MS} ms + margin, every time`, async () => {
      const { store, end } = driver.open(await refusedPort());
      try {
        expect((await failingVerify(store)).elapsed).toBeLessThan(TIMEOUT_MS + MARGIN_MS);
        expect((await failingVerify(store)).elapsed).toBeLessThan(TIMEOUT_MS + MARGIN_MS);
        await stillServing();
      } finally {
        await end();
      }
    });

    describe('a server that accepts and never answers', () => {
      let silent: Awaited<ReturnType<typeof silentServer>>;
      beforeAll(async () => {
        silent = await silentServer();
      });
      afterAll(() => silent.close());

      it(`verify rejects with StoreUnavailableError within ${TIMEOUT_MS} ms + margin, every time`, async () => {
        const { store, end } = driver.open(silent.port);
        try {
          for (let i = 0; i < 2; i++) {
            const { elapsed, message } = await failingVerify(store);
            expect(message).toMatch(`no answer within ${TIMEOUT_MS} ms`);
            expect(elapsed).toBeLessThan(TIMEOUT_MS + MARGIN_MS);
          }
          await stillServing();
        } finally {
          // Closing the sockets lets the pool's pending connection attempts fail, so end() returns.
          await silent.close();
          await end().catch(() => {});
        }
      });
    });
  });
}
