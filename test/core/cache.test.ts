// The verify cache: what it saves, what it may serve stale and for how long, and how invalidation reaches it.

import { afterEach, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { sampleRecord } from '../../adapters/testing/records.js';
import { VerifyCache } from '../../src/cache.js';
import { createKeyManager, ValidationError, type KeyManager, type KeyManagerOptions, type KeyStore } from '../../src/index.js';
import { cacheServing, localBus } from '../support/bus.js';
import { HeldStore as CountingStore } from '../support/counting-store.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const managers: KeyManager[] = [];
function manager(store: KeyStore, options: Partial<KeyManagerOptions> = {}): KeyManager {
  const m = createKeyManager({ store, cache: { ttlMs: 60_000 }, revocation: { heartbeatMs: 20 }, ...options });
  managers.push(m);
  return m;
}

afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
});

describe('verify cache', () => {
  it('is off by default: every verify asks the store', async () => {
    const store = new CountingStore();
    const keys = manager(store, { cache: undefined });
    const { token } = await keys.create({ name: 'plain', scopes: ['all'] });
    for (let i = 0; i < 3; i++) expect((await keys.verify(token)).valid).toBe(true);
    expect(store.lookups).toBe(3);
  });

  it('serves repeated verifies of a key from memory, without a store call', async () => {
    const store = new CountingStore();
    const keys = manager(store);
    const { token } = await keys.create({ name: 'hot', scopes: ['orders:edit'], allowedIps: '203.0.113.7' });
    for (let i = 0; i < 100; i++) expect((await keys.verify(token, { ip: '203.0.113.7' })).valid).toBe(true);
    expect(store.lookups).toBe(1);
    // The checks still run on the cached key: a wrong address or scope is refused from memory.
    expect(await keys.verify(token, { ip: '198.51.100.1' })).toMatchObject({ code: 'IP_NOT_ALLOWED' });
    expect(await keys.verify(token, { ip: '203.0.113.7', scope: 'customers:list' })).toMatchObject({ code: 'INSUFFICIENT_SCOPE' });
    expect(store.lookups).toBe(1);
  });

  it('remembers a miss too', async () => {
    const store = new CountingStore();
    const keys = manager(store);
    const { token: unknown } = await manager(memoryStore()).create({ name: 'elsewhere', scopes: ['all'] });
    for (let i = 0; i < 5; i++) expect(await keys.verify(unknown)).toMatchObject({ valid: false, code: 'NOT_FOUND' });
    expect(store.lookups).toBe(1);
  });

  it('never asks the store, nor fills the cache, for a malformed token', async () => {
    const store = new CountingStore();
    const keys = manager(store);
    const { token } = await keys.create({ name: 'typo', scopes: ['all'] });
    const typo = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
    expect(await keys.verify(typo)).toMatchObject({ code: 'MALFORMED' });
    expect(store.lookups).toBe(0);
  });

  describe('every write through the manager drops the key from its own cache before it returns', () => {
    const cases: Array<{
      name: string;
      change: (keys: KeyManager, id: string) => Promise<unknown>;
      after: (keys: KeyManager, token: string) => Promise<void>;
    }> = [
      {
        name: 'update (scopes)',
        change: (keys, id) => keys.update(id, { scopes: ['orders:list'] }),
        after: async (keys, token) => {
          expect(await keys.verify(token, { scope: 'orders:edit' })).toMatchObject({ code: 'INSUFFICIENT_SCOPE' });
        },
      },
      {
        name: 'update (allowed IPs)',
        change: (keys, id) => keys.update(id, { allowedIps: '203.0.113.9' }),
        after: async (keys, token) => {
          expect(await keys.verify(token, { scope: 'orders:edit', ip: '203.0.113.7' })).toMatchObject({ code: 'IP_NOT_ALLOWED' });
        },
      },
      {
        name: 'deactivate',
        change: (keys, id) => keys.deactivate(id),
        after: async (keys, token) => {
          expect(await keys.verify(token, { scope: 'orders:edit' })).toMatchObject({ code: 'INACTIVE' });
        },
      },
      {
        name: 'delete',
        change: (keys, id) => keys.delete(id),
        after: async (keys, token) => {
          expect(await keys.verify(token, { scope: 'orders:edit' })).toMatchObject({ code: 'NOT_FOUND' });
        },
      },
      {
        name: 'rotate',
        change: (keys, id) => keys.rotate(id),
        after: async (keys, token) => {
          expect(await keys.verify(token, { scope: 'orders:edit' })).toMatchObject({ code: 'NOT_FOUND' });
        },
      },
    ];
    for (const { name, change, after } of cases) {
      it(name, async () => {
        const store = new CountingStore();
        const keys = manager(store);
        const { key, token } = await keys.create({ name: 'cached', scopes: ['orders:edit'] });
        expect((await keys.verify(token, { scope: 'orders:edit' })).valid).toBe(true);
        expect((await keys.verify(token, { scope: 'orders:edit' })).valid).toBe(true);
        expect(store.lookups).toBe(1); // the key is in the cache
        await change(keys, key.id);
        await after(keys, token);
      });
    }

    it('activate', async () => {
      const store = new CountingStore();
      const keys = manager(store);
      const { key, token } = await keys.create({ name: 'off', scopes: ['all'], active: false });
      expect(await keys.verify(token)).toMatchObject({ code: 'INACTIVE' });
      expect(await keys.verify(token)).toMatchObject({ code: 'INACTIVE' });
      expect(store.lookups).toBe(1);
      await keys.activate(key.id);
      expect((await keys.verify(token)).valid).toBe(true);
    });

    it('rotate: the new token works at once, the old one until its grace period ends, even from the cache', async () => {
      let now = Date.UTC(2030, 0, 1);
      const store = new CountingStore();
      const keys = manager(store, { now: () => now });
      const { key, token: old } = await keys.create({ name: 'rotating', scopes: ['all'] });
      expect((await keys.verify(old)).valid).toBe(true);
      const { token: fresh } = await keys.rotate(key.id, { gracePeriodMs: 30_000 });
      expect((await keys.verify(fresh)).valid).toBe(true);
      expect((await keys.verify(old)).valid).toBe(true);
      const lookups = store.lookups;
      now += 30_000;
      expect(await keys.verify(old)).toMatchObject({ code: 'NOT_FOUND' });
      expect((await keys.verify(fresh)).valid).toBe(true);
      expect(store.lookups).toBe(lookups); // decided from the cached key
    });
  });

  it('refuses a cached key once it expires, without a store call', async () => {
    let now = Date.UTC(2030, 0, 1);
    const store = new CountingStore();
    const keys = manager(store, { now: () => now });
    const { token } = await keys.create({ name: 'expiring', scopes: ['all'], expiresAt: now + 1000 });
    expect((await keys.verify(token)).valid).toBe(true);
    now += 1000;
    expect(await keys.verify(token)).toMatchObject({ code: 'EXPIRED' });
    expect(store.lookups).toBe(1);
  });

  it('ttlMs bounds how long a change made by another instance goes unseen without a bus', async () => {
    const store = new CountingStore();
    const cached = manager(store, { cache: { ttlMs: 300 } });
    const other = manager(store, { cache: false });
    const { key, token } = await other.create({ name: 'shared', scopes: ['all'] });
    expect((await cached.verify(token)).valid).toBe(true);
    await other.deactivate(key.id);
    // The trade-off of a cache without a bus: the other instance's change is not seen at once…
    expect((await cached.verify(token)).valid).toBe(true);
    await sleep(450);
    // …but no later than ttlMs.
    expect(await cached.verify(token)).toMatchObject({ code: 'INACTIVE' });
  });

  it('maxEntries bounds its size; the least recently used lookups go first', async () => {
    const store = new CountingStore();
    const keys = manager(store, { cache: { ttlMs: 60_000, maxEntries: 3 } });
    const tokens: string[] = [];
    for (let i = 0; i < 5; i++) tokens.push((await keys.create({ name: `k${i}`, scopes: ['all'] })).token);
    for (const t of tokens) await keys.verify(t);
    expect(store.lookups).toBe(5);
    for (const t of tokens.slice(2)) await keys.verify(t);
    expect(store.lookups).toBe(5); // the last three are cached
    await keys.verify(tokens[0] as string);
    expect(store.lookups).toBe(6); // the first was evicted

    const cache = new VerifyCache({ maxEntries: 10 });
    for (let i = 0; i < 1000; i++) cache.set(`digest-${i}`, sampleRecord({ digest: `digest-${i}` }), cache.begin());
    expect(cache.size).toBe(10);
  });

  it('does not cache a lookup that raced an invalidation', async () => {
    const store = new CountingStore();
    const keys = manager(store);
    const { key, token } = await keys.create({ name: 'race', scopes: ['all'] });
    store.hold();
    const inFlight = keys.verify(token); // reads the active key, then waits
    await tick();
    await keys.deactivate(key.id); // invalidates while the lookup is in flight
    store.release();
    expect((await inFlight).valid).toBe(true); // it read the key before the change
    // Had the stale read been cached, this would still pass.
    expect(await keys.verify(token)).toMatchObject({ code: 'INACTIVE' });
    expect(store.lookups).toBe(2);
  });

  it('rejects options that are not positive whole numbers', () => {
    expect(() => createKeyManager({ store: memoryStore(), cache: { ttlMs: 0 } })).toThrow(ValidationError);
    expect(() => createKeyManager({ store: memoryStore(), cache: { maxEntries: 1.5 } })).toThrow(ValidationError);
  });
});

describe('verify cache with an invalidation bus', () => {
  it('bypasses the cache until the bus is subscribed', async () => {
    const store = new CountingStore();
    const local = localBus();
    local.holdSubscriptions();
    const keys = manager(store, { invalidation: local.bus });
    const { token } = await keys.create({ name: 'early', scopes: ['all'] });
    await keys.verify(token);
    await keys.verify(token);
    expect(store.lookups).toBe(2); // not subscribed: a change elsewhere could be missed
    local.releaseSubscriptions();
    await cacheServing(keys);
    await keys.verify(token);
    await keys.verify(token);
    expect(store.lookups).toBe(3);
  });

  it("drops a key when another instance's change arrives", async () => {
    const store = new CountingStore();
    const local = localBus();
    const a = manager(store, { invalidation: local.bus });
    const b = manager(store, { invalidation: local.bus });
    await cacheServing(a);
    await cacheServing(b);
    const { key, token } = await a.create({ name: 'shared', scopes: ['all'] });
    expect((await b.verify(token)).valid).toBe(true);
    expect((await b.verify(token)).valid).toBe(true);
    expect(store.lookups).toBe(1);
    await a.deactivate(key.id);
    expect(await b.verify(token)).toMatchObject({ code: 'INACTIVE' });
    await a.activate(key.id);
    expect((await b.verify(token)).valid).toBe(true);
    await a.delete(key.id);
    expect(await b.verify(token)).toMatchObject({ code: 'NOT_FOUND' });
  });

  it('forgets everything on reset() (messages may have been lost)', async () => {
    const store = new CountingStore();
    const local = localBus();
    const keys = manager(store, { invalidation: local.bus });
    await cacheServing(keys);
    const created = [];
    for (let i = 0; i < 3; i++) created.push(await keys.create({ name: `r${i}`, scopes: ['all'] }));
    for (const { token } of created) await keys.verify(token);
    expect(store.lookups).toBe(3);
    for (const s of local.subscribers) s.reset();
    for (const { token } of created) await keys.verify(token);
    expect(store.lookups).toBe(6);
  });

  it('keeps the cache off, and reports, when the bus cannot subscribe', async () => {
    const store = new CountingStore();
    const local = localBus();
    local.failSubscribe(new Error('bus down'));
    const errors: unknown[] = [];
    const keys = manager(store, { invalidation: local.bus, onError: (e) => errors.push(e) });
    await tick();
    const { token } = await keys.create({ name: 'no bus', scopes: ['all'] });
    await keys.verify(token);
    await keys.verify(token);
    expect(store.lookups).toBe(2);
    expect(errors).toHaveLength(1);
  });

  it('never fails a write because the bus cannot publish, and still drops its own cache', async () => {
    const store = new CountingStore();
    const local = localBus();
    const errors: unknown[] = [];
    // Heartbeats far apart: a failed one would be reported too, but only after two and a half.
    const keys = manager(store, { invalidation: local.bus, onError: (e) => errors.push(e), revocation: { heartbeatMs: 1000 } });
    await cacheServing(keys);
    const { key, token } = await keys.create({ name: 'publish fails', scopes: ['all'] });
    await keys.verify(token);
    await keys.verify(token);
    expect(store.lookups).toBe(1);
    local.failPublish(new Error('publish failed'));
    await expect(keys.deactivate(key.id)).resolves.toMatchObject({ active: false });
    expect(errors).toHaveLength(1);
    expect(await keys.verify(token)).toMatchObject({ code: 'INACTIVE' });
  });

  it('stops listening on close()', async () => {
    const local = localBus();
    const keys = createKeyManager({ store: memoryStore(), cache: {}, invalidation: local.bus });
    await tick();
    expect(local.subscribers.size).toBe(1);
    await keys.close();
    expect(local.subscribers.size).toBe(0);
  });
});
