// The memory store on the shared contract suite, and its synchronous lookup against its async one.
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { storeContractSuite } from '../../adapters/testing/index.js';
import type { KeyStore } from '../../src/store.js';
import { findByDigestSync, type SyncLookupStore, syncLookupOf } from '../../src/sync-lookup.js';
import { sampleRecord } from '../../adapters/testing/records.js';

storeContractSuite(
  { describe, it, beforeAll, afterAll },
  async () => {
    const store = memoryStore();
    return {
      store,
      dump: async () => inspect(store, { depth: Infinity, maxArrayLength: Infinity, maxStringLength: Infinity, showHidden: true }),
      cleanup: async () => {},
    };
  },
  { name: 'MemoryStore' },
);

/**
 * For any store with the synchronous lookup: after every kind of write, it answers each digest
 * (current, previous, replaced, deleted, never seen) exactly as `findByDigest` does.
 */
function describeSyncLookup(name: string, makeStore: () => Promise<KeyStore & SyncLookupStore>): void {
  describe(`${name}: synchronous lookup`, () => {
    it('is found by the manager', async () => {
      expect(syncLookupOf(await makeStore())).toBeTypeOf('function');
    });

    it('agrees with findByDigest through insert, rotate, edit, touch and delete', async () => {
      const store = await makeStore();
      const seen = new Set<string>(['never-stored']);
      const agree = async (): Promise<void> => {
        for (const digest of seen) {
          const now = store[findByDigestSync](digest);
          expect(now, digest).toEqual(await store.findByDigest(digest));
        }
      };
      const a = sampleRecord({ id: 'sync-a' });
      const b = sampleRecord({ id: 'sync-b', ownerId: 'shop-1', allowedIps: ['203.0.113.7'], metadata: { n: 1 } });
      for (const r of [a, b]) {
        await store.insert(r);
        seen.add(r.digest);
      }
      await agree();
      const rotated = {
        ...a,
        digest: 'd-sync-a-2',
        previousDigest: a.digest,
        previousDigestExpiresAt: new Date(Date.UTC(2031, 0, 1)),
        version: 2,
      };
      expect(await store.update(rotated, 1)).toBe(true);
      seen.add(rotated.digest);
      await agree();
      const again = { ...rotated, digest: 'd-sync-a-3', previousDigest: null, previousDigestExpiresAt: null, name: 'edited', version: 3 };
      expect(await store.update(again, 2)).toBe(true);
      seen.add(again.digest);
      await agree();
      expect(store[findByDigestSync](a.digest)).toBeNull();
      await store.touch([{ id: 'sync-b', lastUsedAt: new Date(Date.UTC(2030, 5, 1)), ip: '203.0.113.5' }]);
      expect(store[findByDigestSync](b.digest)).toMatchObject({ lastUsedAt: new Date(Date.UTC(2030, 5, 1)), lastUsedIp: '203.0.113.5' });
      await agree();
      expect(await store.delete('sync-b')).toBe(true);
      expect(store[findByDigestSync](b.digest)).toBeNull();
      await agree();
    });
  });
}

describeSyncLookup('MemoryStore', async () => memoryStore());

describe('MemoryStore: last use', () => {
  it('an update keeps a newer last-used time written meanwhile, with its address, and writes a later one it carries', async () => {
    const store = memoryStore();
    const r = sampleRecord({ id: 'used' });
    await store.insert(r);
    const used = new Date(Date.UTC(2030, 0, 5));
    await store.touch([{ id: 'used', lastUsedAt: used, ip: '203.0.113.9' }]);
    // A copy read before the touch.
    expect(await store.update({ ...r, name: 'renamed', version: 2 }, 1)).toBe(true);
    expect(await store.findById('used')).toMatchObject({ name: 'renamed', lastUsedAt: used, lastUsedIp: '203.0.113.9' });
    const stale = { ...r, name: 'stale', version: 3, lastUsedAt: new Date(used.getTime() - 1), lastUsedIp: '198.51.100.1' };
    expect(await store.update(stale, 2)).toBe(true);
    expect(await store.findById('used')).toMatchObject({ name: 'stale', lastUsedAt: used, lastUsedIp: '203.0.113.9' });
    const later = new Date(used.getTime() + 1);
    expect(await store.update({ ...r, name: 'later', version: 4, lastUsedAt: later, lastUsedIp: '2001:db8::7' }, 3)).toBe(true);
    expect(await store.findById('used')).toMatchObject({ name: 'later', lastUsedAt: later, lastUsedIp: '2001:db8::7' });
  });
});
