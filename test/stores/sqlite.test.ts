// SQLite on the shared store contract with better-sqlite3 11, 12 and 13, in memory and in a file, plus the SQL store checks.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type BetterSqlite3 from 'better-sqlite3';
import { runsHere, SQLITE_DRIVERS } from '../support/sqlite-drivers.js';
import { sqliteSchema, sqliteStore, type SqliteDatabase } from '../../adapters/sqlite/index.js';
import { ValidationError } from '../../src/index.js';
import { storeContractSuite } from '../../adapters/testing/index.js';
import { sampleRecord } from '../../adapters/testing/records.js';
import { describeSqlStore, randomTable, rowsAsText, type SentStatement } from './sql-extras.js';

const require = createRequire(import.meta.url);

function fixture(open: () => Promise<BetterSqlite3.Database>, onClose: () => void = () => {}) {
  return async () => {
    const db = await open();
    const table = randomTable();
    const store = sqliteStore(db, { table });
    await store.migrate();
    return {
      store,
      dump: async () => rowsAsText(db.prepare(`SELECT * FROM "${table}"`).all() as Record<string, unknown>[]),
      cleanup: async () => {
        db.exec(`DROP TABLE "${table}"`);
        db.close();
        onClose();
      },
    };
  };
}

for (const driver of SQLITE_DRIVERS) {
  const name = `better-sqlite3 ${driver.major}`;
  const runs = runsHere(driver);
  // The driver is imported in the hooks only, so a skipped major is never loaded.
  describe.skipIf(!runs)(runs ? name : `${name} needs Node >= ${driver.minNode} (this is Node ${process.versions.node})`, () => {
    storeContractSuite(
      { describe, it, beforeAll, afterAll },
      fixture(async () => new (await driver.load())(':memory:')),
      {
        name: `SQLite (${name}, in memory)`,
      },
    );

    let dir = '';
    storeContractSuite(
      { describe, it, beforeAll, afterAll },
      fixture(
        async () => {
          const Database = await driver.load();
          dir = mkdtempSync(join(tmpdir(), 'keygate-sqlite-'));
          const db = new Database(join(dir, 'keys.db'));
          db.pragma('journal_mode = WAL');
          return db;
        },
        () => rmSync(dir, { recursive: true, force: true }),
      ),
      { name: `SQLite (${name}, file)` },
    );

    describeSqlStore(`SQLite (${name})`, async () => {
      const db = new (await driver.load())(':memory:');
      return {
        open(table) {
          let count = 0;
          let last: SentStatement = { text: '', values: [] };
          // The same database, with every statement execution counted.
          const counting: SqliteDatabase = {
            exec: (source) => db.exec(source),
            prepare(source) {
              const statement = db.prepare(source);
              return {
                reader: statement.reader,
                readonly: statement.readonly,
                all: (...params) => (count++, (last = { text: source, values: params }), statement.all(...params)),
                run: (...params) => (count++, (last = { text: source, values: params }), statement.run(...params)),
              };
            },
          };
          return { store: sqliteStore(counting, { table }), statements: () => count, last: () => last };
        },
        explain: async (table, { text, values }) => {
          db.exec(`ANALYZE "${table}"`);
          return JSON.stringify(db.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...values));
        },
        runScript: async (script) => void db.exec(script),
        schema: (table) => sqliteSchema({ table }),
        drop: async (table) => void db.exec(`DROP TABLE IF EXISTS "${table}"`),
        close: async () => void db.close(),
      };
    });

    it(`${name}: the installed package is that major`, () => {
      const { version } = require(`${driver.pkg}/package.json`) as { version: string };
      expect(Number(version.split('.')[0])).toBe(driver.major);
    });

    it(`${name}: prepares each statement once and reuses it`, async () => {
      const db = new (await driver.load())(':memory:');
      let prepared = 0;
      const store = sqliteStore({ exec: (s) => db.exec(s), prepare: (s) => (prepared++, db.prepare(s)) }, { table: 'reuse' });
      await store.migrate();
      for (let i = 0; i < 50; i++) await store.findByDigest(`d${i}`);
      for (let i = 0; i < 50; i++)
        await store.touch(
          Array.from({ length: 1 + (i % 7) }, (_, j) => ({ id: `k${j}`, lastUsedAt: new Date(i), ip: j % 2 ? null : '192.0.2.1' })),
        );
      // The column list (read by migrate() before and after), findByDigest once, touch once per padded size (1, 2, 4, 8).
      expect(prepared).toBe(6);
      db.close();
    });

    it(`${name}: a spend waits for another connection's write lock on timers, as a write, also in WAL mode`, async () => {
      const Database = await driver.load();
      const dir = mkdtempSync(join(tmpdir(), 'keygate-sqlite-spend-'));
      const db = new Database(join(dir, 'keys.db'), { timeout: 2000 });
      const holder = new Database(join(dir, 'keys.db'));
      try {
        db.pragma('journal_mode = WAL');
        const store = sqliteStore(db, { table: 'spend_lock' });
        await store.migrate();
        const record = sampleRecord({ remaining: 3 });
        await store.insert(record);
        holder.exec('BEGIN IMMEDIATE');
        // Only a timer releases the lock: a spend that waited inside SQLite (the busy timeout, which
        // better-sqlite3 spends blocking this thread) would keep it from firing, and fail.
        setTimeout(() => holder.exec('COMMIT'), 50);
        expect(await store.spend(record.id, 1, null, Date.now())).toEqual({ spent: true, remaining: 2, refilledAt: null });
        expect(holder.inTransaction).toBe(false);
      } finally {
        if (holder.inTransaction) holder.exec('ROLLBACK');
        holder.close();
        db.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

describe('sqliteStore', () => {
  it('says what to pass when given a file name instead of a Database', () => {
    const attempt = () => sqliteStore('keys.db' as unknown as SqliteDatabase);
    expect(attempt).toThrow(ValidationError);
    expect(attempt).toThrow(/better-sqlite3 Database.*npm install better-sqlite3.*new Database\('keys\.db'\)/);
  });
});
