// Behaviour every SQL store shares beyond the contract: migrations, the exported schema, statement counts.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SqlStore } from '../../adapters/sql/index.js';
import { createKeyManager, spendQuota, type KeyRecord, type QuotaRefill } from '../../src/index.js';
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
        // The longest canonical address: eight groups of four digits.
        lastUsedIp: '2001:db8:1234:5678:9abc:def0:1234:5678',
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

    it('touch writes a whole batch in one statement, keeps the newest time with its address and skips missing ids', async () => {
      const t = table();
      const { store, statements } = harness.open(t);
      await store.migrate();
      const old = new Date(Date.UTC(2030, 0, 2));
      const newer = new Date(Date.UTC(2030, 0, 3));
      await store.insert(record('t1'));
      await store.insert(record('t2', { digest: 'digest-t2', lastUsedAt: newer, lastUsedIp: '192.0.2.2' }));
      await store.insert(record('t3', { digest: 'digest-t3' }));
      const before = statements();
      await store.touch([
        { id: 't1', lastUsedAt: old, ip: '192.0.2.10' },
        { id: 't1', lastUsedAt: newer, ip: '2001:db8::1' },
        { id: 't2', lastUsedAt: old, ip: '192.0.2.20' },
        { id: 'missing', lastUsedAt: newer, ip: '192.0.2.99' },
        { id: 't3', lastUsedAt: old, ip: null },
      ]);
      expect(statements() - before).toBe(1);
      expect(await store.findById('t1')).toMatchObject({ lastUsedAt: newer, lastUsedIp: '2001:db8::1' });
      expect(await store.findById('t2')).toMatchObject({ lastUsedAt: newer, lastUsedIp: '192.0.2.2' });
      expect(await store.findById('t3')).toMatchObject({ lastUsedAt: old, lastUsedIp: null, version: 1 });
      expect(await store.findById('missing')).toBeNull();
      // Batches of every size up to the manager's 1000 are one statement each.
      const many = Array.from({ length: 1000 }, (_, i) => ({
        id: i % 2 ? 't1' : `none-${i}`,
        lastUsedAt: new Date(newer.getTime() + i),
        ip: i % 4 === 3 ? `2001:db8::${i.toString(16)}` : null,
      }));
      const mark = statements();
      await store.touch(many);
      expect(statements() - mark).toBe(1);
      expect(await store.findById('t1')).toMatchObject({ lastUsedAt: new Date(newer.getTime() + 999), lastUsedIp: '2001:db8::3e7' });
      // A later use without an address clears the one before.
      await store.touch([{ id: 't1', lastUsedAt: new Date(newer.getTime() + 1000), ip: null }]);
      expect(await store.findById('t1')).toMatchObject({ lastUsedAt: new Date(newer.getTime() + 1000), lastUsedIp: null });
    });

    it('an update keeps a newer last-used time written meanwhile, with its address, and writes a later one it carries', async () => {
      const t = table();
      const { store } = harness.open(t);
      await store.migrate();
      const r = record('u1');
      await store.insert(r);
      const used = new Date(Date.UTC(2030, 0, 5));
      await store.touch([{ id: 'u1', lastUsedAt: used, ip: '203.0.113.9' }]);
      expect(await store.update({ ...r, name: 'renamed', version: 2 }, 1)).toBe(true);
      expect(await store.findById('u1')).toMatchObject({ name: 'renamed', version: 2, lastUsedAt: used, lastUsedIp: '203.0.113.9' });
      const stale = { ...r, lastUsedAt: new Date(used.getTime() - 1), lastUsedIp: '198.51.100.1' };
      expect(await store.update({ ...stale, name: 'stale', version: 3 }, 2)).toBe(true);
      expect(await store.findById('u1')).toMatchObject({ name: 'stale', lastUsedAt: used, lastUsedIp: '203.0.113.9' });
      // A later time than the stored one is written with its address. (MySQL assigns columns in
      // order, each seeing the ones before: the address must be decided from the stored time.)
      const later = new Date(used.getTime() + 1);
      expect(await store.update({ ...r, name: 'later', version: 4, lastUsedAt: later, lastUsedIp: '2001:db8::7' }, 3)).toBe(true);
      expect(await store.findById('u1')).toMatchObject({ name: 'later', lastUsedAt: later, lastUsedIp: '2001:db8::7' });
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

    it('spend takes the uses in one statement; a refusal reads once more, and writes only a refill that is due', async () => {
      const t = table();
      const { store, statements, last } = harness.open(t);
      await store.migrate();
      const at = Date.UTC(2030, 0, 1);
      await store.insert(record('q1', { remaining: 2 }));
      let before = statements();
      expect(await store.spend('q1', 1, null, at)).toEqual({ spent: true, remaining: 1, refilledAt: null });
      expect(statements() - before).toBe(1);
      expect(last().text).toMatch(/^UPDATE /);
      before = statements();
      expect(await store.spend('q1', 5, null, at)).toEqual({ spent: false, remaining: 1, refilledAt: null });
      expect(statements() - before).toBe(2);
      expect(last().text).toMatch(/^SELECT /);
      expect(await store.spend('missing', 1, null, at)).toBeNull();

      // Refused even after its refill (5 > 3): the refill is still written, as spendQuota() computes it.
      const refill = { amount: 3, intervalMs: 1000 };
      await store.insert(record('q2', { remaining: 0, refill, refilledAt: new Date(at) }));
      before = statements();
      expect(await store.spend('q2', 5, refill, at + 2500)).toEqual({ spent: false, remaining: 3, refilledAt: new Date(at + 2000) });
      expect(statements() - before).toBe(3);
      expect(await store.findById('q2')).toMatchObject({ remaining: 3, refilledAt: new Date(at + 2000), version: 1 });
      // Nothing due: nothing written.
      before = statements();
      expect(await store.spend('q2', 5, refill, at + 2999)).toEqual({ spent: false, remaining: 3, refilledAt: new Date(at + 2000) });
      expect(statements() - before).toBe(2);
    });

    it('spend agrees with spendQuota() for counters far from now, in the future, at the limits of the column', async () => {
      const t = table();
      const { store } = harness.open(t);
      await store.migrate();
      const now = Date.UTC(2030, 5, 1, 12, 30, 0, 7);
      const day = 86_400_000;
      const cases: Array<{ remaining: number; refilledAt: number | null; refill: QuotaRefill | null; cost: number }> = [
        { remaining: 5, refilledAt: now - 200 * day, refill: { amount: 9, intervalMs: 366 * day }, cost: 1 },
        { remaining: 0, refilledAt: now - 400 * day - 17, refill: { amount: 9, intervalMs: 366 * day }, cost: 4 },
        { remaining: 0, refilledAt: now - 250 * day, refill: { amount: 9, intervalMs: 100 * day }, cost: 9 },
        { remaining: 0, refilledAt: now - 250 * day, refill: { amount: 9, intervalMs: 100 * day }, cost: 10 },
        { remaining: 4, refilledAt: now + 2 * day, refill: { amount: 9, intervalMs: day }, cost: 1 },
        { remaining: 4, refilledAt: now - 3 * day, refill: null, cost: 4 },
        { remaining: 4, refilledAt: now - 47 * day, refill: { amount: 1, intervalMs: 366 * day }, cost: 2 },
        { remaining: 2_147_483_647, refilledAt: null, refill: null, cost: 0 },
        { remaining: 2_147_483_647, refilledAt: now, refill: { amount: 1_000_000_000, intervalMs: 1 }, cost: 1_000_000_000 },
        { remaining: 0, refilledAt: now - 1, refill: { amount: 1_000_000_000, intervalMs: 1 }, cost: 1_000_000_000 },
        { remaining: 0, refilledAt: now - 1000, refill: { amount: 2, intervalMs: 1000 }, cost: 0 },
        { remaining: 0, refilledAt: now - 999, refill: { amount: 2, intervalMs: 1000 }, cost: 1 },
      ];
      for (const [i, c] of cases.entries()) {
        const id = `far${i}`;
        await store.insert(
          record(id, { remaining: c.remaining, refill: c.refill, refilledAt: c.refilledAt === null ? null : new Date(c.refilledAt) }),
        );
        const want = spendQuota({ remaining: c.remaining, refilledAt: c.refilledAt }, c.refill, c.cost, now);
        const expected = {
          spent: want.spent,
          remaining: want.state.remaining,
          refilledAt: want.state.refilledAt === null ? null : new Date(want.state.refilledAt),
        };
        expect(await store.spend(id, c.cost, c.refill, now), `case ${i}`).toEqual(expected);
        expect(await store.findById(id), `case ${i}`).toMatchObject({ remaining: expected.remaining, refilledAt: expected.refilledAt });
      }
    });

    it('concurrent spends share one due refill: exactly its uses are taken, and refusals that race keep it', async () => {
      const t = table();
      const { store } = harness.open(t);
      await store.migrate();
      const at = Date.UTC(2030, 0, 1);
      const refill = { amount: 10, intervalMs: 60_000 };
      await store.insert(record('r1', { remaining: 0, refill, refilledAt: new Date(at) }));
      const now = at + 3 * 60_000 + 5;
      const results = await Promise.all(Array.from({ length: 30 }, () => store.spend('r1', 1, refill, now)));
      expect(results.filter((r) => r?.spent).length).toBe(10);
      expect(results.every((r) => r?.refilledAt?.getTime() === at + 3 * 60_000)).toBe(true);
      expect(
        results
          .filter((r) => r?.spent)
          .map((r) => r?.remaining)
          .sort((a, b) => (a ?? 0) - (b ?? 0)),
      ).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(await store.findById('r1')).toMatchObject({ remaining: 0, refilledAt: new Date(at + 3 * 60_000) });
      // Refusals only (cost above the amount), each with the refill due: it is written once.
      await store.insert(record('r2', { remaining: 1, refill, refilledAt: new Date(at) }));
      const refused = await Promise.all(Array.from({ length: 20 }, () => store.spend('r2', 11, refill, now)));
      expect(refused.every((r) => r?.spent === false && r.remaining === 10 && r.refilledAt?.getTime() === at + 3 * 60_000)).toBe(true);
      expect(await store.findById('r2')).toMatchObject({ remaining: 10, refilledAt: new Date(at + 3 * 60_000), version: 1 });
    });

    it('update writes the counters only with counters: true, in a statement of its own', async () => {
      const t = table();
      const { store, last } = harness.open(t);
      await store.migrate();
      const r = record('c1', { remaining: 10, refill: { amount: 10, intervalMs: 1000 }, refilledAt: new Date(Date.UTC(2030, 0, 1)) });
      await store.insert(r);
      await store.spend('c1', 4, r.refill, Date.UTC(2030, 0, 1, 0, 0, 0, 500));
      expect(await store.update({ ...r, name: 'renamed', rateLimit: { limit: 5, windowMs: 1000 }, version: 2 }, 1)).toBe(true);
      const plain = last().text;
      expect(plain).not.toMatch(/remaining|refilled_at/);
      expect(await store.findById('c1')).toMatchObject({ name: 'renamed', remaining: 6, rateLimit: { limit: 5, windowMs: 1000 } });
      expect(await store.update({ ...r, remaining: 3, refilledAt: null, refill: null, version: 3 }, 2, true)).toBe(true);
      expect(last().text).toMatch(/remaining = .*refilled_at = /);
      expect(await store.findById('c1')).toMatchObject({ remaining: 3, refilledAt: null, refill: null, rateLimit: null, version: 3 });
    });

    it('reads the rate limit and refill as frozen objects, and metadata only when asked', async () => {
      const t = table();
      const { store } = harness.open(t);
      await store.migrate();
      await store.insert(
        record('f1', { rateLimit: { limit: 3, windowMs: 1000 }, refill: { amount: 2, intervalMs: 60_000 }, remaining: 2 }),
      );
      const read = (await store.findById('f1')) as KeyRecord;
      expect(read.rateLimit).toEqual({ limit: 3, windowMs: 1000 });
      expect(Object.isFrozen(read.rateLimit)).toBe(true);
      expect(Object.isFrozen(read.refill)).toBe(true);
      expect(Object.getOwnPropertyDescriptor(read, 'rateLimit')?.get).toBeUndefined();
      expect(Object.getOwnPropertyDescriptor(read, 'metadata')?.get).toBeTypeOf('function');
    });

    it('refuses a table name that is not a plain identifier', () => {
      for (const bad of ['keys; DROP TABLE x', 'a-b', '1keys', '"keys"', '', 'x'.repeat(64), 'a.b.c']) {
        expect(() => harness.open(bad)).toThrow(/table: must be a plain identifier|table: must be at most/);
      }
    });
  });
}
