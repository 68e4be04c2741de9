// MySQL/MariaDB (mysql2) on the shared store contract, plus the SQL store checks.
import mysql from 'mysql2/promise';
import mysqlCallback from 'mysql2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mysqlSchema, mysqlStore, type MysqlPool } from '../../adapters/mysql/index.js';
import type { SqlValue } from '../../adapters/sql/index.js';
import { createKeyManager, ValidationError, type KeyRecord } from '../../src/index.js';
import { storeContractSuite } from '../../adapters/testing/index.js';
import { serviceUrl } from '../support/services.js';
import { mysqlTableStore } from './sql-servers.js';
import { describeSqlStore, randomTable, rowsAsText, type SentStatement } from './sql-extras.js';

const url = serviceUrl('mysql');

describe.skipIf(!url)('MySQL', () => {
  storeContractSuite(
    { describe, it, beforeAll, afterAll },
    async () => {
      const { pool, table, store, cleanup } = await mysqlTableStore(url as string, 10);
      return {
        store,
        dump: async () => rowsAsText((await pool.query(`SELECT * FROM \`${table}\``))[0] as Record<string, unknown>[]),
        cleanup,
      };
    },
    { name: 'MySQL' },
  );

  describeSqlStore('MySQL', async () => {
    const pool = mysql.createPool({ uri: url, connectionLimit: 10, multipleStatements: true });
    return {
      open(table) {
        let count = 0;
        let last: SentStatement = { text: '', values: [] };
        const counting: MysqlPool = {
          execute: (sql, values) => (count++, (last = { text: sql, values }), pool.execute(sql, values)),
          query: (sql) => (count++, pool.query(sql)),
        };
        return { store: mysqlStore(counting, { table }), statements: () => count, last: () => last };
      },
      explain: async (table, { text, values }) => {
        await pool.query(`ANALYZE TABLE \`${table}\``);
        const [rows] = await pool.execute(`EXPLAIN ${text}`, [...values] as SqlValue[]);
        return JSON.stringify(rows);
      },
      runScript: async (script) => void (await pool.query(script)),
      schema: (table) => mysqlSchema({ table }),
      drop: async (table) => void (await pool.query(`DROP TABLE IF EXISTS \`${table}\``)),
      close: () => pool.end(),
    };
  });

  describe('mysqlStore', () => {
    const table = randomTable();
    let admin: mysql.Pool;
    beforeAll(async () => {
      admin = mysql.createPool({ uri: url, connectionLimit: 2 });
      await mysqlStore(admin, { table }).migrate();
    });
    afterAll(async () => {
      await admin.query(`DROP TABLE IF EXISTS \`${table}\``);
      await admin.end();
    });

    const unchanged = (id: string): KeyRecord => ({
      id,
      ownerId: null,
      name: 'same',
      active: true,
      scopes: ['all'],
      allowedIps: [],
      hint: 'kg_abc…wxyz',
      createdAt: new Date(1000),
      updatedAt: new Date(1000),
      lastUsedAt: null,
      lastUsedIp: null,
      expiresAt: null,
      metadata: {},
      rateLimit: null,
      remaining: null,
      refill: null,
      refilledAt: null,
      version: 3,
      digest: `digest-${id}`,
      previousDigest: null,
      previousDigestExpiresAt: null,
    });

    // mysql2 sets FOUND_ROWS by default (affected = matched); without it, affected = changed.
    for (const flags of [[], ['-FOUND_ROWS']]) {
      it(`counts a compare-and-set that matched but changed nothing as written (flags: ${JSON.stringify(flags)})`, async () => {
        const pool = mysql.createPool({ uri: url, connectionLimit: 2, flags });
        try {
          const store = mysqlStore(pool, { table });
          const r = unchanged(`same-${flags.length}`);
          await store.insert(r);
          expect(await store.update(r, 3)).toBe(true);
          expect(await store.update(r, 2)).toBe(false);
          expect(await store.update({ ...r, id: 'missing' }, 3)).toBe(false);
          expect(await store.delete(r.id)).toBe(true);
          expect(await store.delete(r.id)).toBe(false);
        } finally {
          await pool.end();
        }
      });
    }

    it('compares ids, owners and digests exactly: case and trailing spaces matter', async () => {
      const store = mysqlStore(admin, { table });
      const base = unchanged('CaseKey');
      await store.insert({ ...base, ownerId: 'Shop' });
      await store.insert({ ...base, id: 'casekey', digest: 'digest-casekey', ownerId: 'Shop ' });
      expect((await store.findById('CaseKey'))?.ownerId).toBe('Shop');
      expect((await store.findById('casekey'))?.ownerId).toBe('Shop ');
      expect(await store.findById('CASEKEY')).toBeNull();
      expect(await store.findByDigest('DIGEST-CASEKEY')).toBeNull();
      expect((await store.list({ ownerId: 'Shop', limit: 10 })).map((r) => r.id)).toEqual(['CaseKey']);
      expect((await store.list({ ownerId: 'shop', limit: 10 })).map((r) => r.id)).toEqual([]);
    });

    it('accepts a callback-style mysql2 pool', async () => {
      const pool = mysqlCallback.createPool({ uri: url, connectionLimit: 2 });
      try {
        const keys = createKeyManager({ store: mysqlStore(pool, { table }) });
        const { token } = await keys.create({ name: 'callback pool', scopes: ['all'] });
        expect((await keys.verify(token)).valid).toBe(true);
        await keys.close();
      } finally {
        await new Promise<void>((resolve, reject) => pool.end((error) => (error ? reject(error) : resolve())));
      }
    });

    it('says what to pass when given a connection string', () => {
      const attempt = () => mysqlStore(url as unknown as MysqlPool);
      expect(attempt).toThrow(ValidationError);
      expect(attempt).toThrow(/mysql2 pool.*npm install mysql2.*mysql\.createPool\(\{ uri \}\).*mysql2\/promise/);
    });
  });
});
