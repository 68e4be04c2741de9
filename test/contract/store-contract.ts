// The one suite of KeyStore behaviour that every store passes, through the manager and directly.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createKeyManager,
  KeyNotFoundError,
  StoreConflictError,
  VersionConflictError,
  type KeyManager,
  type KeyManagerOptions,
  type KeyStore,
  type ApiKey,
} from '../../src/index.js';
import { sampleRecord } from '../support/records.js';

/** What a store's test file hands the suite. */
export interface StoreFixture {
  store: KeyStore;
  /** Every byte the store keeps, as text (rows, values, internals), for the secret-leak checks. */
  dump(): Promise<string>;
  /** Drops what the fixture created (tables, key prefixes). */
  cleanup(): Promise<void>;
}

export interface ContractOptions {
  /** How many concurrent creates to run. @default 1000 */
  concurrentCreates?: number;
  /** How many concurrent scope edits race on one version. @default 50 */
  concurrentEdits?: number;
}

/** A clock the test moves by hand. */
function manualClock(start = Date.UTC(2030, 0, 1)): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/**
 * Registers the contract suite for one store.
 *
 * @param name shown in the test report, e.g. `MemoryStore`
 * @param setup creates a fresh, empty store (own table / key prefix) for this suite
 */
export function describeStoreContract(name: string, setup: () => Promise<StoreFixture>, options: ContractOptions = {}): void {
  const concurrentCreates = options.concurrentCreates ?? 1000;
  const concurrentEdits = options.concurrentEdits ?? 50;

  describe(`${name}: store contract`, () => {
    let fixture: StoreFixture;
    let store: KeyStore;
    const clock = manualClock();
    const managers: KeyManager[] = [];
    const manager = (extra: Partial<KeyManagerOptions> = {}): KeyManager => {
      const m = createKeyManager({ store, now: clock.now, storeTimeoutMs: 10_000, ...extra });
      managers.push(m);
      return m;
    };

    beforeAll(async () => {
      fixture = await setup();
      store = fixture.store;
    }, 60_000);

    afterAll(async () => {
      for (const m of managers) await m.close();
      await fixture?.cleanup();
    }, 60_000);

    it('creates a key and reads back every field exactly', async () => {
      const keys = manager();
      const expiresAt = new Date(clock.now() + 86_400_000);
      const { key, token } = await keys.create({
        name: '  ERP sync  ',
        scopes: ['products:list', 'orders:edit'],
        allowedIps: '203.0.113.7,2001:DB8::1',
        ownerId: 'shop-42',
        expiresAt,
        metadata: { team: 'ops', nested: { n: 1, list: [true, null, 'x'] } },
      });
      expect(token).toMatch(/^kg_[0-9A-Za-z]{38}$/);
      const read = await keys.get(key.id);
      expect(read).toEqual(key);
      expect(read).toMatchObject({
        name: 'ERP sync',
        active: true,
        scopes: ['orders:edit', 'products:list'],
        allowedIps: ['203.0.113.7', '2001:db8::1'],
        ownerId: 'shop-42',
        lastUsedAt: null,
        version: 1,
        metadata: { team: 'ops', nested: { n: 1, list: [true, null, 'x'] } },
      });
      expect(read?.expiresAt?.getTime()).toBe(expiresAt.getTime());
      expect(read?.createdAt.getTime()).toBe(clock.now());
      expect((await keys.verify(token, { scope: 'orders:list', ip: '203.0.113.7' })).valid).toBe(true);
    });

    it('returns null for an id that does not exist', async () => {
      expect(await manager().get('does-not-exist')).toBeNull();
      expect(await store.findById('does-not-exist')).toBeNull();
      expect(await store.findByDigest('no-such-digest')).toBeNull();
    });

    it('keeps hostile and unicode text exactly as given, through bound parameters', async () => {
      const keys = manager();
      const names = ["'); DROP TABLE keys;--", 'Zürich ☕ 東京 𝄞', '"quoted" \\ back\\slash %_ like'];
      for (const n of names) {
        const { key, token } = await keys.create({ name: n, scopes: ['all'], ownerId: `${n}-owner`, metadata: { n } });
        expect((await keys.get(key.id))?.name).toBe(n);
        expect((await keys.get(key.id))?.metadata).toEqual({ n });
        expect((await keys.verify(token)).valid).toBe(true);
        expect((await keys.list({ ownerId: `${n}-owner` })).keys.map((k) => k.id)).toEqual([key.id]);
      }
    });

    it('lists with cursor pagination, by owner and by active flag', async () => {
      const keys = manager();
      const owner = `owner-${Math.random().toString(36).slice(2)}`;
      const created: string[] = [];
      for (let i = 0; i < 25; i++) {
        const { key } = await keys.create({ name: `k${i}`, scopes: ['orders:list'], ownerId: owner, active: i % 5 !== 0 });
        created.push(key.id);
        if (i % 3 === 0) clock.advance(1); // some keys share a creation millisecond
      }
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page = await keys.list({ ownerId: owner, limit: 10, cursor });
        expect(page.keys.length).toBeLessThanOrEqual(10);
        seen.push(...page.keys.map((k) => k.id));
        cursor = page.nextCursor;
        pages++;
      } while (cursor !== null);
      expect(pages).toBe(3);
      expect(new Set(seen).size).toBe(25);
      expect(seen.sort()).toEqual([...created].sort());
      // Order: creation time, then id.
      const all = (await keys.list({ ownerId: owner, limit: 100 })).keys;
      const sorted = [...all].sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      expect(all.map((k) => k.id)).toEqual(sorted.map((k) => k.id));
      const inactive = await keys.list({ ownerId: owner, active: false });
      expect(inactive.keys).toHaveLength(5);
      expect(inactive.keys.every((k) => !k.active)).toBe(true);
      expect((await keys.list({ ownerId: owner, active: true })).keys).toHaveLength(20);
      expect((await keys.list({ ownerId: `${owner}-none` })).keys).toEqual([]);
    });

    it('updates with compare-and-set on version', async () => {
      const keys = manager();
      const { key, token } = await keys.create({ name: 'cas', scopes: ['orders:list'] });
      const v2 = await keys.update(key.id, { scopes: ['orders:edit'] }, { expectedVersion: 1 });
      expect(v2.version).toBe(2);
      expect(v2.scopes).toEqual(['orders:edit']);
      await expect(keys.update(key.id, { name: 'stale' }, { expectedVersion: 1 })).rejects.toBeInstanceOf(VersionConflictError);
      expect((await keys.get(key.id))?.name).toBe('cas');
      expect((await keys.verify(token, { scope: 'orders:edit' })).valid).toBe(true);
      await expect(keys.update('missing-id', { name: 'x' })).rejects.toBeInstanceOf(KeyNotFoundError);
    });

    it(`lets exactly one of ${concurrentEdits} parallel edits of one version win`, async () => {
      const keys = manager();
      const { key } = await keys.create({ name: 'race', scopes: ['orders:list'] });
      const scopes = ['orders:edit', 'products:list', 'products:edit', 'customers:list', 'customers:edit'];
      const results = await Promise.allSettled(
        Array.from({ length: concurrentEdits }, (_, i) =>
          keys.update(key.id, { scopes: [scopes[i % scopes.length] as string] }, { expectedVersion: 1 }),
        ),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost.every((r) => (r as PromiseRejectedResult).reason instanceof VersionConflictError)).toBe(true);
      const final = await keys.get(key.id);
      expect(final?.version).toBe(2);
      expect(final?.scopes).toEqual((won[0] as PromiseFulfilledResult<ApiKey>).value.scopes);
    });

    it('applies concurrent edits without expectedVersion one after another, losing none', async () => {
      const keys = manager();
      const { key } = await keys.create({ name: 'merge', scopes: ['orders:list'] });
      await Promise.all([
        keys.update(key.id, { name: 'renamed' }),
        keys.update(key.id, { metadata: { a: 1 } }),
        keys.update(key.id, { allowedIps: '127.0.0.1' }),
      ]);
      const final = await keys.get(key.id);
      expect(final).toMatchObject({ name: 'renamed', metadata: { a: 1 }, allowedIps: ['127.0.0.1'], version: 4 });
    });

    it('never brings back a key when an update races its delete', async () => {
      const keys = manager();
      for (let i = 0; i < 20; i++) {
        const { key, token } = await keys.create({ name: `doomed ${i}`, scopes: ['orders:list'] });
        const ops = [
          keys.update(key.id, { name: `edited ${i}` }).catch((e: unknown) => e),
          keys.delete(key.id),
          keys.deactivate(key.id).catch((e: unknown) => e),
        ];
        if (i % 2) ops.reverse();
        await Promise.all(ops);
        expect(await keys.get(key.id)).toBeNull();
        expect((await keys.verify(token)).valid).toBe(false);
        expect(await store.update(sampleRecord({ id: key.id, version: 99 }), 98)).toBe(false);
        expect(await keys.get(key.id)).toBeNull();
      }
    });

    it('deactivates, activates and deletes', async () => {
      const keys = manager();
      const { key, token } = await keys.create({ name: 'toggle', scopes: ['all'] });
      expect((await keys.deactivate(key.id)).active).toBe(false);
      expect(await keys.verify(token)).toMatchObject({ valid: false, code: 'INACTIVE' });
      expect((await keys.activate(key.id)).active).toBe(true);
      expect((await keys.verify(token)).valid).toBe(true);
      expect(await keys.delete(key.id)).toBe(true);
      expect(await keys.delete(key.id)).toBe(false);
      expect(await keys.verify(token)).toMatchObject({ valid: false, code: 'NOT_FOUND' });
      await expect(keys.activate(key.id)).rejects.toBeInstanceOf(KeyNotFoundError);
    });

    it('rotates: the old token works during the grace period only', async () => {
      const keys = manager();
      const { key, token: oldToken } = await keys.create({ name: 'rotate', scopes: ['all'] });
      const { key: rotated, token: newToken } = await keys.rotate(key.id, { gracePeriodMs: 60_000 });
      expect(newToken).not.toBe(oldToken);
      expect(rotated.hint).not.toBe(key.hint);
      expect(rotated.version).toBe(2);
      expect((await keys.verify(newToken)).valid).toBe(true);
      expect((await keys.verify(oldToken)).valid).toBe(true);
      clock.advance(60_001);
      expect((await keys.verify(newToken)).valid).toBe(true);
      expect(await keys.verify(oldToken)).toMatchObject({ valid: false, code: 'NOT_FOUND' });
      // Without a grace period the old token stops at once.
      const { token: third } = await keys.rotate(key.id);
      expect(await keys.verify(newToken)).toMatchObject({ valid: false, code: 'NOT_FOUND' });
      expect((await keys.verify(third)).valid).toBe(true);
    });

    it('ends a rotation grace period no later than the key expires', async () => {
      const keys = manager();
      const { key, token: oldToken } = await keys.create({
        name: 'expiring',
        scopes: ['all'],
        expiresAt: new Date(clock.now() + 10_000),
      });
      const { token: newToken } = await keys.rotate(key.id, { gracePeriodMs: 3_600_000 });
      clock.advance(5_000);
      expect((await keys.verify(oldToken)).valid).toBe(true);
      clock.advance(5_001);
      expect((await keys.verify(oldToken)).valid).toBe(false);
      expect(await keys.verify(newToken)).toMatchObject({ valid: false, code: 'EXPIRED' });
    });

    it('refuses an expired key with EXPIRED', async () => {
      const keys = manager();
      const { token } = await keys.create({ name: 'short', scopes: ['all'], expiresAt: clock.now() + 1000 });
      expect((await keys.verify(token)).valid).toBe(true);
      clock.advance(1000);
      expect(await keys.verify(token)).toMatchObject({ valid: false, code: 'EXPIRED' });
    });

    it('never returns or keeps a token or digest', async () => {
      const events: unknown[] = [];
      const keys = manager({ onEvent: (e) => events.push(e) });
      const { key, token } = await keys.create({ name: 'secret', scopes: ['all'], ownerId: 'leak-check' });
      const { token: rotated } = await keys.rotate(key.id, { gracePeriodMs: 1000 });
      await keys.verify(token);
      await keys.verify(rotated);
      await keys.flush();
      const stored = await store.findById(key.id);
      const reads = JSON.stringify([await keys.get(key.id), await keys.list({ ownerId: 'leak-check' }), events]);
      const dump = await fixture.dump();
      for (const t of [token, rotated]) {
        const secret = t.slice(3);
        expect(dump).not.toContain(secret);
        expect(dump).not.toContain(secret.slice(0, 32));
        expect(reads).not.toContain(secret);
      }
      expect(stored?.digest).toBeTruthy();
      expect(reads).not.toContain(stored?.digest);
      expect(reads).not.toContain(stored?.previousDigest);
      expect(reads).not.toMatch(/digest/i);
    });

    it(`gives ${concurrentCreates} concurrent creates distinct ids and digests`, async () => {
      const keys = manager();
      const results = await Promise.all(
        Array.from({ length: concurrentCreates }, (_, i) => keys.create({ name: `bulk ${i}`, scopes: ['orders:list'], ownerId: 'bulk' })),
      );
      expect(new Set(results.map((r) => r.key.id)).size).toBe(concurrentCreates);
      expect(new Set(results.map((r) => r.token)).size).toBe(concurrentCreates);
      const sample = results.filter((_, i) => i % Math.ceil(concurrentCreates / 20) === 0);
      for (const r of sample) expect((await keys.verify(r.token)).valid).toBe(true);
      let count = 0;
      let cursor: string | null = null;
      do {
        const page = await keys.list({ ownerId: 'bulk', limit: 1000, cursor });
        count += page.keys.length;
        cursor = page.nextCursor;
      } while (cursor);
      expect(count).toBe(concurrentCreates);
    }, 120_000);

    it('rejects an insert whose id or digest is taken', async () => {
      const a = sampleRecord();
      await store.insert(a);
      await expect(store.insert(sampleRecord({ id: a.id, digest: 'other-digest' }))).rejects.toBeInstanceOf(StoreConflictError);
      await expect(store.insert(sampleRecord({ digest: a.digest }))).rejects.toBeInstanceOf(StoreConflictError);
      expect((await store.findById(a.id))?.digest).toBe(a.digest);
    });

    it('finds a record by its previous digest too', async () => {
      const a = sampleRecord({ previousDigest: 'prev-digest-x', previousDigestExpiresAt: new Date(Date.UTC(2031, 0, 1)) });
      await store.insert(a);
      expect((await store.findByDigest('prev-digest-x'))?.id).toBe(a.id);
      expect((await store.findByDigest(a.digest))?.id).toBe(a.id);
      expect((await store.findByDigest(a.digest))?.previousDigestExpiresAt?.getTime()).toBe(Date.UTC(2031, 0, 1));
    });

    it('update never creates a record', async () => {
      const ghost = sampleRecord();
      expect(await store.update(ghost, 1)).toBe(false);
      expect(await store.findById(ghost.id)).toBeNull();
      expect(await store.findByDigest(ghost.digest)).toBeNull();
    });

    it('writes lastUsedAt in batches without changing version, and never for deleted keys', async () => {
      const keys = manager({ lastUsedFlushMs: 60_000 });
      const { key, token } = await keys.create({ name: 'used', scopes: ['all'] });
      const { key: gone, token: goneToken } = await keys.create({ name: 'gone', scopes: ['all'] });
      for (let i = 0; i < 10; i++) await keys.verify(token);
      await keys.verify(goneToken);
      expect((await keys.get(key.id))?.lastUsedAt).toBeNull();
      await store.delete(gone.id);
      await keys.flush();
      const used = await keys.get(key.id);
      expect(used?.lastUsedAt?.getTime()).toBe(clock.now());
      expect(used?.version).toBe(1);
      expect(await keys.get(gone.id)).toBeNull();
      // An older time never overwrites a newer one.
      await store.touch([{ id: key.id, lastUsedAt: new Date(clock.now() - 10_000) }]);
      expect((await keys.get(key.id))?.lastUsedAt?.getTime()).toBe(clock.now());
      await store.touch([]);
    });
  });
}
