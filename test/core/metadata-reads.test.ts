// Verify reads a key's metadata only to return a key it accepts: refusing a token costs the same whatever metadata the key carries.

import { afterEach, describe, expect, it } from 'vitest';
import { createKeyManager, type KeyManager, type KeyRecord, type VerifyOptions } from '../../src/index.js';
import { DelegatingStore } from '../support/counting-store.js';

/** Hands out copies of the stored records whose `metadata` is a getter counting its reads. */
class MetadataCountingStore extends DelegatingStore {
  reads = 0;

  private counted(record: KeyRecord | null): KeyRecord | null {
    if (record === null) return null;
    const { metadata, ...rest } = record;
    const store = this;
    let value = metadata;
    return Object.defineProperty({ ...rest } as KeyRecord, 'metadata', {
      get() {
        store.reads++;
        return value;
      },
      set(next: KeyRecord['metadata']) {
        value = next;
      },
      enumerable: true,
      configurable: true,
    });
  }

  override async findByDigest(digest: string): Promise<KeyRecord | null> {
    return this.counted(await this.inner.findByDigest(digest));
  }
}

const managers: KeyManager[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
});

const metadata = { erp: 'sap', notes: 'x'.repeat(1000) };

for (const cache of [false, { ttlMs: 600_000 }] as const) {
  describe(`verify ${cache ? 'with' : 'without'} the cache`, () => {
    it('reads no metadata to refuse a token, whatever the reason', async () => {
      let now = Date.UTC(2030, 0, 1);
      const store = new MetadataCountingStore();
      const keys = createKeyManager({ store, cache, now: () => now });
      managers.push(keys);
      const inactive = await keys.create({ name: 'inactive', scopes: ['all'], active: false, metadata });
      const expiring = await keys.create({ name: 'expiring', scopes: ['all'], expiresAt: now + 1000, metadata });
      const rotated = await keys.create({ name: 'rotated', scopes: ['all'], metadata });
      await keys.rotate(rotated.key.id, { gracePeriodMs: 1000 });
      const fenced = await keys.create({ name: 'fenced', scopes: ['all'], allowedIps: '203.0.113.7', metadata });
      const narrow = await keys.create({ name: 'narrow', scopes: ['orders:list'], metadata });
      now += 2000;

      const refusals: Array<[string, VerifyOptions, string]> = [
        [inactive.token, {}, 'INACTIVE'],
        [expiring.token, {}, 'EXPIRED'],
        [rotated.token, {}, 'NOT_FOUND'],
        [fenced.token, { ip: '198.51.100.1' }, 'IP_NOT_ALLOWED'],
        [narrow.token, { scope: 'orders:edit' }, 'INSUFFICIENT_SCOPE'],
      ];
      for (let round = 0; round < 2; round++) {
        for (const [token, options, code] of refusals) expect(await keys.verify(token, options)).toMatchObject({ code });
      }
      expect(store.reads).toBe(0);

      // The getter does count: an accepted token returns the key with its metadata.
      const accepted = await keys.verify(narrow.token, { scope: 'orders:list' });
      expect(accepted).toMatchObject({ valid: true, key: { metadata } });
      expect(store.reads).toBeGreaterThan(0);
    });
  });
}

it('a cached key hands out frozen metadata, read from a store that parses it on demand', async () => {
  const store = new MetadataCountingStore();
  const keys = createKeyManager({ store, cache: { ttlMs: 600_000 } });
  managers.push(keys);
  const { token } = await keys.create({ name: 'cached', scopes: ['all'], metadata: { nested: { a: 1 } } });
  for (let i = 0; i < 2; i++) {
    const result = await keys.verify(token);
    if (!result.valid) throw new Error('expected a valid key');
    expect(result.key.metadata).toEqual({ nested: { a: 1 } });
    expect(Object.isFrozen(result.key.metadata)).toBe(true);
    expect(Object.isFrozen(result.key.metadata.nested)).toBe(true);
  }
});
