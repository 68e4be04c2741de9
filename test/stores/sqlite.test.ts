// SQLite (better-sqlite3) on the shared store contract, in memory and in a file, plus the SQL store checks.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sqliteSchema, sqliteStore, type SqliteDatabase } from '../../adapters/sqlite/index.js';
import { ValidationError } from '../../src/index.js';
import { storeContractSuite } from '../../adapters/testing/index.js';
import { describeSqlStore, randomTable, rowsAsText } from './sql-extras.js';

function fixture(db: Database.Database, onClose: () => void) {
  return async () => {
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

storeContractSuite(
  { describe, it, beforeAll, afterAll },
  fixture(new Database(':memory:'), () => {}),
  { name: 'SQLite (in memory)' },
);

const dir = mkdtempSync(join(tmpdir(), 'keygate-sqlite-'));
const fileDb = new Database(join(dir, 'keys.db'));
fileDb.pragma('journal_mode = WAL');
storeContractSuite(
  { describe, it, beforeAll, afterAll },
  fixture(fileDb, () => rmSync(dir, { recursive: true, force: true })),
  { name: 'SQLite (file)' },
);

describeSqlStore('SQLite', async () => {
  const db = new Database(':memory:');
  return {
    open(table) {
      let count = 0;
      // The same database, with every statement execution counted.
      const counting: SqliteDatabase = {
        exec: (source) => db.exec(source),
        prepare(source) {
          const statement = db.prepare(source);
          return {
            reader: statement.reader,
            all: (...params) => (count++, statement.all(...params)),
            run: (...params) => (count++, statement.run(...params)),
          };
        },
      };
      return { store: sqliteStore(counting, { table }), statements: () => count };
    },
    runScript: async (script) => void db.exec(script),
    schema: (table) => sqliteSchema({ table }),
    drop: async (table) => void db.exec(`DROP TABLE IF EXISTS "${table}"`),
    close: async () => void db.close(),
  };
});

describe('sqliteStore', () => {
  it('prepares each statement once and reuses it', async () => {
    const db = new Database(':memory:');
    let prepared = 0;
    const store = sqliteStore({ exec: (s) => db.exec(s), prepare: (s) => (prepared++, db.prepare(s)) }, { table: 'reuse' });
    await store.migrate();
    for (let i = 0; i < 50; i++) await store.findByDigest(`d${i}`);
    for (let i = 0; i < 50; i++)
      await store.touch(Array.from({ length: 1 + (i % 7) }, (_, j) => ({ id: `k${j}`, lastUsedAt: new Date(i) })));
    // findByDigest once, touch once per padded size (1, 2, 4, 8).
    expect(prepared).toBe(5);
    db.close();
  });

  it('says what to pass when given a file name instead of a Database', () => {
    const attempt = () => sqliteStore('keys.db' as unknown as SqliteDatabase);
    expect(attempt).toThrow(ValidationError);
    expect(attempt).toThrow(/better-sqlite3 Database.*npm install better-sqlite3.*new Database\('keys\.db'\)/);
  });
});
