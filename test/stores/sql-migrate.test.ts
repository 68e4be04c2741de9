// Tables created before the rate limit, quota and last-used address columns: the SQL stores work on them until migrate() (or the upgrade script) adds the columns, and after.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mysqlSchema, mysqlStore } from '../../adapters/mysql/index.js';
import { postgresSchema, postgresStore } from '../../adapters/postgres/index.js';
import type { SqlStore } from '../../adapters/sql/index.js';
import { sqliteSchema, sqliteStore } from '../../adapters/sqlite/index.js';
import { type ApiKey, createKeyManager, type KeyManager, type KeyRecord } from '../../src/index.js';
import { serviceUrl } from '../support/services.js';
import { runsHere, SQLITE_DRIVERS } from '../support/sqlite-drivers.js';
import { randomTable } from './sql-extras.js';

/** The columns of a table made before rate limits and quotas. */
const OLD_COLUMNS =
  'id, owner_id, name, active, scopes, allowed_ips, hint, created_at, updated_at, last_used_at, expires_at, metadata, version, digest, previous_digest, previous_digest_expires_at';
const NEW_COLUMNS = ['rate_limit', 'remaining', 'refill', 'refilled_at', 'last_used_ip'];

/** The schema keygate created before rate limits and quotas, as it wrote it, one statement each. */
const OLD_SCHEMA = {
  postgres: (t: string) => [
    `CREATE TABLE IF NOT EXISTS "${t}" (
  id VARCHAR(128) COLLATE "C" NOT NULL,
  owner_id VARCHAR(200) COLLATE "C",
  name VARCHAR(255) NOT NULL,
  active BOOLEAN NOT NULL,
  scopes TEXT NOT NULL,
  allowed_ips TEXT NOT NULL,
  hint VARCHAR(100) NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  last_used_at BIGINT,
  expires_at BIGINT,
  metadata TEXT NOT NULL,
  version INTEGER NOT NULL,
  digest VARCHAR(128) COLLATE "C" NOT NULL,
  previous_digest VARCHAR(128) COLLATE "C",
  previous_digest_expires_at BIGINT,
  PRIMARY KEY (id)
)`,
    `CREATE UNIQUE INDEX IF NOT EXISTS "${t}__digest" ON "${t}" (digest)`,
    `CREATE INDEX IF NOT EXISTS "${t}__prev_digest" ON "${t}" (previous_digest) WHERE previous_digest IS NOT NULL`,
    `CREATE INDEX IF NOT EXISTS "${t}__owner_created" ON "${t}" (owner_id, created_at, id)`,
    `CREATE INDEX IF NOT EXISTS "${t}__created" ON "${t}" (created_at, id)`,
    `CREATE INDEX IF NOT EXISTS "${t}__ownerless" ON "${t}" (created_at, id) WHERE owner_id IS NULL`,
  ],
  mysql: (t: string) => [
    `CREATE TABLE IF NOT EXISTS \`${t}\` (
  id VARBINARY(512) NOT NULL,
  owner_id VARBINARY(800),
  name VARCHAR(255) NOT NULL,
  active BOOLEAN NOT NULL,
  scopes MEDIUMTEXT NOT NULL,
  allowed_ips MEDIUMTEXT NOT NULL,
  hint VARCHAR(100) NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  last_used_at BIGINT,
  expires_at BIGINT,
  metadata MEDIUMTEXT NOT NULL,
  version INT NOT NULL,
  digest VARBINARY(255) NOT NULL,
  previous_digest VARBINARY(255),
  previous_digest_expires_at BIGINT,
  PRIMARY KEY (id),
  UNIQUE KEY \`${t}__digest\` (digest),
  KEY \`${t}__prev_digest\` (previous_digest),
  KEY \`${t}__owner_created\` (owner_id, created_at, id),
  KEY \`${t}__created\` (created_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
  ],
  sqlite: (t: string) => [
    `CREATE TABLE IF NOT EXISTS "${t}" (
  id TEXT NOT NULL,
  owner_id TEXT,
  name TEXT NOT NULL,
  active INTEGER NOT NULL,
  scopes TEXT NOT NULL,
  allowed_ips TEXT NOT NULL,
  hint TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  last_used_at INTEGER,
  expires_at INTEGER,
  metadata TEXT NOT NULL,
  version INTEGER NOT NULL,
  digest TEXT NOT NULL,
  previous_digest TEXT,
  previous_digest_expires_at INTEGER,
  PRIMARY KEY (id)
)`,
    `CREATE UNIQUE INDEX IF NOT EXISTS "${t}__digest" ON "${t}" (digest)`,
    `CREATE INDEX IF NOT EXISTS "${t}__prev_digest" ON "${t}" (previous_digest) WHERE previous_digest IS NOT NULL`,
    `CREATE INDEX IF NOT EXISTS "${t}__owner_created" ON "${t}" (owner_id, created_at, id)`,
    `CREATE INDEX IF NOT EXISTS "${t}__created" ON "${t}" (created_at, id)`,
  ],
} as const;

/** One database, reached through a driver, for the checks on old tables. */
interface OldTableHarness {
  /** A store on `table`; each call may use a connection of its own. */
  open(table: string): SqlStore;
  /** Runs one statement, or a script of several separated by `;`. */
  run(sql: string): Promise<void>;
  /** The table's columns, sorted. */
  columns(table: string): Promise<string[]>;
  /** The upgrade script for `table`. */
  upgrade(table: string): string;
  /** Whether the upgrade script can run twice (ADD COLUMN IF NOT EXISTS). */
  upgradeRepeats: boolean;
  quote(table: string): string;
  close(): Promise<void>;
}

function describeOldTables(name: string, schema: (table: string) => readonly string[], makeHarness: () => Promise<OldTableHarness>): void {
  describe(`${name}: a table created before rate limits and quotas`, () => {
    let h: OldTableHarness;
    const tables: string[] = [];
    const managers: KeyManager[] = [];
    /** What the managers reported through onError (a failed last-used write lands here, not in a call). */
    const reported: unknown[] = [];
    const table = (): string => {
      const t = randomTable('kg_old');
      tables.push(t);
      return t;
    };
    const manager = (store: SqlStore): KeyManager => {
      const m = createKeyManager({ store, storeTimeoutMs: 10_000, lastUsedFlushMs: 60_000, onError: (error) => reported.push(error) });
      managers.push(m);
      return m;
    };

    beforeAll(async () => {
      h = await makeHarness();
    });
    afterAll(async () => {
      for (const m of managers) await m.close();
      if (!h) return;
      for (const t of tables) await h.run(`DROP TABLE IF EXISTS ${h.quote(t)}`);
      await h.close();
    });

    /** An old table holding one key written as an earlier keygate wrote it (its old columns, copied from a current table). */
    async function oldTableWithKey(): Promise<{ old: string; id: string; token: string }> {
      const old = table();
      for (const statement of schema(old)) await h.run(statement);
      const current = table();
      const source = h.open(current);
      await source.migrate();
      const { key, token } = await manager(source).create({
        name: 'written before quotas',
        scopes: ['orders:list'],
        ownerId: 'shop-1',
        metadata: { plan: 'basic' },
      });
      await h.run(`INSERT INTO ${h.quote(old)} (${OLD_COLUMNS}) SELECT ${OLD_COLUMNS} FROM ${h.quote(current)}`);
      expect(await h.columns(old)).not.toContain('remaining');
      return { old, id: key.id, token };
    }

    it('reads, lists, verifies and edits its keys before migrate(), and refuses only the new fields, saying to run migrate()', async () => {
      const { old, id, token } = await oldTableWithKey();
      const store = h.open(old);
      const keys = manager(store);
      const verified = await keys.verify(token, { scope: 'orders:list' });
      expect(verified).toMatchObject({ valid: true, key: { id, ownerId: 'shop-1', rateLimit: null, remaining: null, refill: null } });
      expect(verified.valid && verified.key.metadata).toEqual({ plan: 'basic' });
      // The last use is written without its address, which has no column yet.
      await keys.verify(token, { ip: '203.0.113.7' });
      await keys.flush();
      expect(reported).toEqual([]);
      expect(await keys.get(id)).toMatchObject({ lastUsedAt: expect.any(Date), lastUsedIp: null });
      expect((await keys.list({ ownerId: 'shop-1' })).keys.map((k) => k.id)).toEqual([id]);
      expect((await keys.update(id, { name: 'renamed' })).name).toBe('renamed');

      const { key: plain, token: plainToken } = await keys.create({ name: 'plain', scopes: ['all'] });
      expect((await keys.verify(plainToken)).valid).toBe(true);
      await keys.deactivate(plain.id);
      expect(await keys.verify(plainToken)).toMatchObject({ valid: false, code: 'INACTIVE' });

      const refusals: Array<[string, Promise<unknown>, string]> = [
        ['rateLimit', keys.create({ name: 'limited', scopes: ['all'], rateLimit: { limit: 10, windowMs: 1000 } }), 'rate_limit'],
        ['remaining', keys.create({ name: 'metered', scopes: ['all'], remaining: 10 }), 'remaining'],
        ['remaining', keys.update(id, { remaining: 5 }), 'remaining'],
        ['rateLimit', keys.update(id, { rateLimit: { limit: 1, windowMs: 1000 } }), 'rate_limit'],
      ];
      for (const [field, attempt, column] of refusals) {
        await expect(attempt).rejects.toMatchObject({
          code: 'VALIDATION_FAILED',
          field,
          message: expect.stringMatching(new RegExp(`no column ${column}\\b.*[Rr]un migrate\\(\\)`)),
        });
      }
      await expect(store.spend(id, 1, null, Date.now())).rejects.toThrow(/no column remaining.*run migrate\(\)/);
      // Nothing was written by the refused calls.
      expect((await keys.list({ limit: 10 })).keys.map((k) => k.name).sort()).toEqual(['plain', 'renamed']);
      expect(await h.columns(old)).not.toContain('remaining');

      await store.migrate();
      expect(await h.columns(old)).toEqual(expect.arrayContaining(NEW_COLUMNS));
      const { token: meteredToken } = await keys.create({
        name: 'metered',
        scopes: ['all'],
        remaining: 2,
        rateLimit: { limit: 100, windowMs: 60_000 },
      });
      expect(await keys.verify(meteredToken)).toMatchObject({ valid: true, key: { remaining: 1 } });
      expect(await keys.verify(meteredToken)).toMatchObject({ valid: true, key: { remaining: 0 } });
      expect(await keys.verify(meteredToken)).toMatchObject({ valid: false, code: 'USAGE_EXCEEDED' });
      expect(await keys.update(id, { remaining: 1 })).toMatchObject({ remaining: 1 });
      expect(await keys.verify(token, { ip: '::ffff:203.0.113.8' })).toMatchObject({
        valid: true,
        key: { id, name: 'renamed', remaining: 0 },
      });
      await keys.flush();
      expect(reported).toEqual([]);
      expect(await keys.get(id)).toMatchObject({ lastUsedIp: '203.0.113.8' });
    });

    it('migrate() adds the columns once, run concurrently from several stores and then again, keeping every key', async () => {
      const { old, id, token } = await oldTableWithKey();
      await Promise.all([h.open(old).migrate(), h.open(old).migrate(), h.open(old).migrate()]);
      await h.open(old).migrate();
      const columns = await h.columns(old);
      expect(columns.filter((c) => NEW_COLUMNS.includes(c)).sort()).toEqual([...NEW_COLUMNS].sort());
      expect(new Set(columns).size).toBe(columns.length);
      const keys = manager(h.open(old));
      expect(await keys.verify(token)).toMatchObject({ valid: true, key: { id, remaining: null } });
      await keys.update(id, { remaining: 3, refill: { amount: 3, intervalMs: 60_000 } });
      expect(await keys.verify(token, { cost: 2, ip: '2001:DB8::9' })).toMatchObject({ valid: true, key: { remaining: 1 } });
      await keys.flush();
      expect(await keys.get(id)).toMatchObject({ lastUsedIp: '2001:db8::9' });
    });

    it('a store that found columns missing notices a migration run elsewhere, and then keeps the quota', async () => {
      const { old, token } = await oldTableWithKey();
      const early = manager(h.open(old));
      expect((await early.verify(token)).valid).toBe(true);
      const migrated = h.open(old);
      await migrated.migrate();
      const { token: metered } = await manager(migrated).create({ name: 'one use', scopes: ['all'], remaining: 1 });
      // The early store reads the column list again at most once a second.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      expect(await early.verify(metered)).toMatchObject({ valid: true, key: { remaining: 0 } });
      expect(await early.verify(metered)).toMatchObject({ valid: false, code: 'USAGE_EXCEEDED' });
    });

    it('the upgrade script adds the columns for a migration tool', async () => {
      const { old, id, token } = await oldTableWithKey();
      const script = h.upgrade(old);
      for (const column of NEW_COLUMNS) expect(script).toContain(column);
      await h.run(script);
      if (h.upgradeRepeats) await h.run(script);
      expect(await h.columns(old)).toEqual(expect.arrayContaining(NEW_COLUMNS));
      const store = h.open(old);
      const keys = manager(store);
      expect(await keys.verify(token)).toMatchObject({ valid: true, key: { id } });
      const { key } = await keys.create({ name: 'quota', scopes: ['all'], remaining: 5, refill: { amount: 5, intervalMs: 1000 } });
      expect(await store.spend(key.id, 2, { amount: 5, intervalMs: 1000 }, key.createdAt.getTime())).toMatchObject({
        spent: true,
        remaining: 3,
      });
      await keys.verify(token, { ip: '192.0.2.77' });
      await keys.flush();
      expect(await keys.get(id)).toMatchObject({ lastUsedIp: '192.0.2.77' });
      // A migrate() after the script finds nothing to add.
      await store.migrate();
      expect((await h.columns(old)).length).toBe(21);
    });

    it('a table of the version before last_used_ip: the last use is written without its address until migrate() adds the column', async () => {
      // A current table without the newest column, holding one key.
      const previous = table();
      const early = h.open(previous);
      await early.migrate();
      await h.run(`ALTER TABLE ${h.quote(previous)} DROP COLUMN last_used_ip`);
      expect(await h.columns(previous)).not.toContain('last_used_ip');
      expect(await h.columns(previous)).toContain('refilled_at');
      // The store still has the statements of the whole table: the first one that names the
      // column fails, and the store reads the column list and goes on without it.
      const keys = manager(early);
      const { key, token } = await keys.create({ name: 'before the address', scopes: ['all'], remaining: 10 });
      expect(await keys.verify(token, { ip: '203.0.113.7' })).toMatchObject({ valid: true, key: { lastUsedIp: null, remaining: 9 } });
      await keys.flush();
      expect(reported).toEqual([]);
      const used = (await keys.get(key.id)) as ApiKey;
      expect(used).toMatchObject({ lastUsedAt: expect.any(Date), lastUsedIp: null, remaining: 9 });
      // A touch with an address, and an update carrying one, write the rest and skip the address.
      const later = new Date((used.lastUsedAt as Date).getTime() + 1);
      await early.touch([{ id: key.id, lastUsedAt: later, ip: '198.51.100.1' }]);
      expect(await early.findById(key.id)).toMatchObject({ lastUsedAt: later, lastUsedIp: null });
      const stored = (await early.findById(key.id)) as KeyRecord;
      const newer = new Date(later.getTime() + 1);
      expect(await early.update({ ...stored, name: 'edited', version: 2, lastUsedAt: newer, lastUsedIp: '198.51.100.2' }, 1)).toBe(true);
      expect(await early.findById(key.id)).toMatchObject({ name: 'edited', lastUsedAt: newer, lastUsedIp: null });
      expect((await keys.update(key.id, { name: 'renamed' })).name).toBe('renamed');

      // migrate(), run by another store, adds the one column; this store notices within a second.
      const migrated = h.open(previous);
      await migrated.migrate();
      // The managers' clock is the real one: the next use must come after the times written above.
      while (Date.now() <= newer.getTime()) await new Promise((resolve) => setTimeout(resolve, 1));
      expect((await h.columns(previous)).filter((c) => c === 'last_used_ip')).toEqual(['last_used_ip']);
      const other = manager(migrated);
      await other.verify(token, { ip: '::ffff:192.0.2.5' });
      await other.flush();
      expect(await other.get(key.id)).toMatchObject({ lastUsedIp: '192.0.2.5' });
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await keys.verify(token, { ip: '2001:db8::5' });
      await keys.flush();
      expect(reported).toEqual([]);
      expect(await keys.get(key.id)).toMatchObject({ lastUsedIp: '2001:db8::5', name: 'renamed' });
    });
  });
}

const postgresUrl = serviceUrl('postgres');
describe.skipIf(!postgresUrl)('PostgreSQL', () => {
  describeOldTables('PostgreSQL', OLD_SCHEMA.postgres, async () => {
    const pool = new pg.Pool({ connectionString: postgresUrl, max: 6 });
    return {
      open: (table) => postgresStore(pool, { table }),
      run: async (sql) => void (await pool.query(sql)),
      columns: async (table) =>
        (await pool.query('SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY 1', [table])).rows.map(
          (r: { column_name: string }) => r.column_name,
        ),
      upgrade: (table) => postgresSchema({ table, upgrade: true }),
      upgradeRepeats: true,
      quote: (table) => `"${table}"`,
      close: () => pool.end(),
    };
  });
});

const mysqlUrl = serviceUrl('mysql');
describe.skipIf(!mysqlUrl)('MySQL', () => {
  describeOldTables('MySQL', OLD_SCHEMA.mysql, async () => {
    const pool = mysql.createPool({ uri: mysqlUrl, connectionLimit: 6, multipleStatements: true });
    return {
      open: (table) => mysqlStore(pool, { table }),
      run: async (sql) => void (await pool.query(sql)),
      columns: async (table) => {
        const [rows] = await pool.query(
          'SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY 1',
          [table],
        );
        return (rows as Array<{ name: string }>).map((r) => r.name);
      },
      upgrade: (table) => mysqlSchema({ table, upgrade: true }),
      upgradeRepeats: false,
      quote: (table) => `\`${table}\``,
      close: () => pool.end(),
    };
  });
});

for (const driver of SQLITE_DRIVERS) {
  const name = `SQLite (better-sqlite3 ${driver.major}, file)`;
  const runs = runsHere(driver);
  describe.skipIf(!runs)(runs ? name : `${name} needs Node >= ${driver.minNode}`, () => {
    describeOldTables(name, OLD_SCHEMA.sqlite, async () => {
      const Database = await driver.load();
      const dir = mkdtempSync(join(tmpdir(), 'keygate-sqlite-old-'));
      const file = join(dir, 'keys.db');
      const admin = new Database(file);
      admin.pragma('journal_mode = WAL');
      const connections = [admin];
      return {
        // A connection of its own for each store, as separate processes would have.
        open: (table) => {
          const db = new Database(file);
          connections.push(db);
          return sqliteStore(db, { table });
        },
        run: async (sql) => void admin.exec(sql),
        columns: async (table) =>
          (admin.prepare('SELECT name FROM pragma_table_info(?) ORDER BY 1').all(table) as Array<{ name: string }>).map((r) => r.name),
        upgrade: (table) => sqliteSchema({ table, upgrade: true }),
        upgradeRepeats: false,
        quote: (table) => `"${table}"`,
        close: async () => {
          for (const db of connections) db.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    });
  });
}
