// Behaviour every SQL store shares beyond the contract: migrations, the exported schema, statement counts.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SqlStore } from '../../adapters/sql/index.js';
import { createKeyManager, type KeyRecord } from '../../src/index.js';
import { sampleRecord } from '../../adapters/testing/records.js';

/** How a SQL store's test file gives the shared checks access to its database. */
export interface SqlHarness {
  /** A store on `table` whose client counts the statements it is sent and keeps the last one. */
  open(table: string): { store: SqlStore; statements: () => number; last: () => SentStatement };
  /** The server's plan for a statement on `table`, as text, after the table's statistics are updated. */
  explain(table: string, statement: SentStatement): Promise<string>;
  /** Runs a script of several statements separated by `;` (the exported schema). */
  runScript(script: string): Promise<void>;
  /** The exported schema text for `table`. */
  schema(table: string): string;
  drop(table: string): Promise<void>;
  close(): Promise<void>;
}

/** A statement as a store sent it to its driver. */
export interface SentStatement {
  text: string;
  values: readonly unknown[];
}

/** A random table name for one test, so parallel runs never collide. */
export function randomTable(prefix = 'kg_test'): string {
  return `${prefix}_${Math.random().toString(36).slice(2, 10)}`;
}

/** Every row of a result, as text: binary columns decoded, all values JSON. */
export function rowsAsText(rows: readonly Record<string, unknown>[]): string {
  return JSON.stringify(
    rows.map((row) =>
      Object.fromEntries(
        Object.entries(row).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('utf8') : typeof v === 'bigint' ? String(v) : v]),
      ),
    ),
  );
}

/** A record with the SQL checks' defaults: owner `o`, named after its id, scope `all`, a time with milliseconds. */
function record(id: string, overrides: Partial<KeyRecord> = {}): KeyRecord {
  const at = new Date(Date.UTC(2030, 0, 1, 12, 0, 0, 123));
  return sampleRecord({ id, ownerId: 'o', name: id, scopes: ['all'], createdAt: at, updatedAt: at, digest: `digest-${id}`, ...overrides });
}

/** Registers the SQL-specific checks for one driver. `harness` is created in beforeAll. */
export function describeSqlStore(name: string, makeHarness: () => Promise<SqlHarness>): void {
  describe(`${name}: SQL store`, () => {
    let harness: SqlHarness;
    const tables: string[] = [];
    const table = (): string => {
      const t = randomTable();
      tables.push(t);
      return t;
    };

    beforeAll(async () => {
      harness = await makeHarness();
    });
    afterAll(async () => {
      if (!harness) return;
      for (const t of tables) await harness.drop(t);
      await harness.close();
    });

    it('migrate() is idempotent: twice in a row, and concurrently, leaves one working table', async () => {
      const t = table();
      const { store } = harness.open(t);
      await store.migrate();
      await store.migrate();
      await Promise.all([store.migrate(), store.migrate(), harness.open(t).store.migrate()]);
      await store.insert(record('m1'));
      expect((await store.findById('m1'))?.name).toBe('m1');
    });

    it('migrates concurrently from scratch without failing', async () => {
      const t = table();
      await Promise.all([harness.open(t).store.migrate(), harness.open(t).store.migrate(), harness.open(t).store.migrate()]);
      const { store } = harness.open(t);
      await store.insert(record('c1'));
      expect((await store.findByDigest('digest-c1'))?.id).toBe('c1');
    });

    it('the exported schema text creates a working table', async () => {
      const t = table();
      const script = harness.schema(t);
      expect(script).toContain(t);
      expect(script).toMatch(/previous_digest_expires_at/);
      await harness.runScript(script);
      const { store } = harness.open(t);
      expect(store.schema).toBe(script);
      const keys = createKeyManager({ store });
      const { key, token } = await keys.create({ name: 'from schema', scopes: ['orders:list'], ownerId: 'x' });
      expect((await keys.verify(token, { scope: 'orders:list' })).valid).toBe(true);
      expect((await keys.list({ ownerId: 'x' })).keys.map((k) => k.id)).toEqual([key.id]);
      await keys.close();
    });

    it('returns Date objects equal to the ones stored, to the millisecond', async () => {
      const t = table();
      const { store } = harness.open(t);
      await store.migrate();
      const r = record('d1', {
        lastUsedAt: new Date(Date.UTC(2031, 5, 6, 7, 8, 9, 999)),
        expiresAt: new Date(Date.UTC(9999, 11, 31, 23, 59, 59, 999)),
        previousDigest: 'prev-d1',
        previousDigestExpiresAt: new Date(1),
      });
      await store.insert(r);
      const read = await store.findById('d1');
      expect(read).toEqual(r);
      expect(read?.createdAt).toBeInstanceOf(Date);
      expect(await store.findByDigest('prev-d1')).toEqual(r);
    });

    it('verify costs one statement, and 1,000 verifies plus their last-used flush cost 1,001', async () => {
      const t = table();
      const { store, statements } = harness.open(t);
      await store.migrate();
      const keys = createKeyManager({ store, lastUsedFlushMs: 3_600_000 });
      const tokens: string[] = [];
      for (let i = 0; i < 10; i++) tokens.push((await keys.create({ name: `v${i}`, scopes: ['all'] })).token);
      const before = statements();
      expect((await keys.verify(tokens[0])).valid).toBe(true);
      expect(statements() - before).toBe(1);
      const start = statements();
      for (let i = 0; i < 1000; i++) expect((await keys.verify(tokens[i % 10])).valid).toBe(true);
      await keys.flush();
      expect(statements() - start).toBe(1001);
      const used = await keys.list({ limit: 100 });
      expect(used.keys.every((k) => k.lastUsedAt !== null)).toBe(true);
      await keys.close();
    });

    it('touch writes a whole batch in one statement, keeps the newest time and skips missing ids', async () => {
      const t = table();
      const { store, statements } = harness.open(t);
      await store.migrate();
      const old = new Date(Date.UTC(2030, 0, 2));
      const newer = new Date(Date.UTC(2030, 0, 3));
      await store.insert(record('t1'));
      await store.insert(record('t2', { digest: 'digest-t2', lastUsedAt: newer }));
      await store.insert(record('t3', { digest: 'digest-t3' }));
      const before = statements();
      await store.touch([
        { id: 't1', lastUsedAt: old },
        { id: 't1', lastUsedAt: newer },
        { id: 't2', lastUsedAt: old },
        { id: 'missing', lastUsedAt: newer },
        { id: 't3', lastUsedAt: old },
      ]);
      expect(statements() - before).toBe(1);
      expect((await store.findById('t1'))?.lastUsedAt).toEqual(newer);
      expect((await store.findById('t2'))?.lastUsedAt).toEqual(newer);
      expect((await store.findById('t3'))?.lastUsedAt).toEqual(old);
      expect((await store.findById('t3'))?.version).toBe(1);
      expect(await store.findById('missing')).toBeNull();
      // Batches of every size up to the manager's 1000 are one statement each.
      const many = Array.from({ length: 1000 }, (_, i) => ({ id: i % 2 ? 't1' : `none-${i}`, lastUsedAt: new Date(newer.getTime() + i) }));
      const mark = statements();
      await store.touch(many);
      expect(statements() - mark).toBe(1);
      expect((await store.findById('t1'))?.lastUsedAt?.getTime()).toBe(newer.getTime() + 999);
    });

    it('an update keeps a newer last-used time written meanwhile', async () => {
      const t = table();
      const { store } = harness.open(t);
      await store.migrate();
      const r = record('u1');
      await store.insert(r);
      const used = new Date(Date.UTC(2030, 0, 5));
      await store.touch([{ id: 'u1', lastUsedAt: used }]);
      expect(await store.update({ ...r, name: 'renamed', version: 2 }, 1)).toBe(true);
      expect(await store.findById('u1')).toMatchObject({ name: 'renamed', version: 2, lastUsedAt: used });
    });

    it('reports a rotated digest that collides with another key as a conflict, changing nothing', async () => {
      const t = table();
      const { store } = harness.open(t);
      await store.migrate();
      await store.insert(record('r1'));
      await store.insert(record('r2'));
      await expect(store.update({ ...record('r2'), digest: 'digest-r1', version: 2 }, 1)).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      expect((await store.findById('r2'))?.digest).toBe('digest-r2');
    });

    it('reads the keys without an owner in index order, never sorting them', async () => {
      const t = table();
      const { store, last } = harness.open(t);
      await store.migrate();
      const at = Date.UTC(2030, 0, 1);
      // One key in a hundred without an owner, as in a table of tenants' keys: too many to sort for
      // every page, too few to find by reading all keys in order.
      const records = Array.from({ length: 10_000 }, (_, i) =>
        record(`n${String(i).padStart(5, '0')}`, { ownerId: i % 100 === 0 ? null : `o${i % 30}`, createdAt: new Date(at + i) }),
      );
      for (let i = 0; i < records.length; i += 500) await Promise.all(records.slice(i, i + 500).map((r) => store.insert(r)));
      const ownerless = records.filter((r) => r.ownerId === null).map((r) => r.id);
      expect((await store.list({ ownerId: null, limit: 10 })).map((r) => r.id)).toEqual(ownerless.slice(0, 10));
      const first = last();
      const after = records[5000] as KeyRecord;
      expect((await store.list({ ownerId: null, active: true, after, limit: 5 })).map((r) => r.id)).toEqual(ownerless.slice(51, 56));
      const next = last();
      for (const sent of [first, next]) {
        expect(sent.text).toMatch(/owner_id IS NULL/);
        const plan = await harness.explain(t, sent);
        expect(plan).toMatch(/__(ownerless|owner_created)\b/);
        expect(plan).not.toMatch(/sort|temp b-tree/i);
      }
    });

    it('refuses a table name that is not a plain identifier', () => {
      for (const bad of ['keys; DROP TABLE x', 'a-b', '1keys', '"keys"', '', 'x'.repeat(64), 'a.b.c']) {
        expect(() => harness.open(bad)).toThrow(/table: must be a plain identifier|table: must be at most/);
      }
    });
  });
}
