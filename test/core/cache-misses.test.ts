// Remembered misses: forged well-formed tokens never push cached keys out, misses stay bounded, and a remembered miss never hides a key.

import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { seededTokenSource } from '../../adapters/testing/seeded.js';
import { VerifyCache } from '../../src/cache.js';
import { createKeyManager, ValidationError, type KeyManager, type KeyManagerOptions, type KeyStore } from '../../src/index.js';
import { TOKEN_SOURCE } from '../../src/token.js';
import { cacheServing, localBus } from '../support/bus.js';
import { countingStore, DelegatingStore, HeldStore } from '../support/counting-store.js';
import { forgedToken } from '../support/forged-tokens.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const managers: KeyManager[] = [];
function manager(store: KeyStore, options: Partial<KeyManagerOptions> = {}): KeyManager {
  const m = createKeyManager({ store, cache: { ttlMs: 600_000 }, ...options });
  managers.push(m);
  return m;
}

/** Options that make the manager issue the tokens of this seed, in order. */
function seeded(seed: string): Partial<KeyManagerOptions> {
  return { [TOKEN_SOURCE]: seededTokenSource(seed) } as Partial<KeyManagerOptions>;
}

/** The first token a manager with `seededTokenSource(seed)` issues. */
function firstTokenOf(seed: string): string {
  return seededTokenSource(seed).token('kg');
}

afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
});

describe('remembered misses', () => {
  it('forged well-formed tokens never evict cached keys', async () => {
    const store = countingStore(memoryStore());
    const keys = manager(store, { cache: { ttlMs: 600_000, maxEntries: 100 } });
    const tokens: string[] = [];
    for (let i = 0; i < 100; i++) tokens.push((await keys.create({ name: `warm ${i}`, scopes: ['orders:list'] })).token);
    for (const token of tokens) expect((await keys.verify(token)).valid).toBe(true);
    expect(store.calls.findByDigest).toBe(100);

    for (let i = 0; i < 100_000; i++) {
      const result = await keys.verify(forgedToken());
      if (result.valid || result.code !== 'NOT_FOUND') throw new Error(`a forged token gave ${JSON.stringify(result)}`);
    }
    expect(store.calls.findByDigest).toBe(100_100); // each forgery costs one lookup: the checksum cannot stop them

    for (const token of tokens) expect((await keys.verify(token)).valid).toBe(true);
    expect(store.calls.findByDigest).toBe(100_100); // every warm key was still cached
  }, 60_000);

  it('keeps at most maxMisses of them, the least recently used going first', async () => {
    const store = countingStore(memoryStore());
    const keys = manager(store, { cache: { ttlMs: 600_000, maxMisses: 3 } });
    const unknown = Array.from({ length: 4 }, () => forgedToken());
    for (const token of unknown.slice(0, 3)) await keys.verify(token);
    for (const token of unknown.slice(0, 3)) await keys.verify(token);
    expect(store.calls.findByDigest).toBe(3); // remembered
    await keys.verify(unknown[0] as string); // now the most recently used
    await keys.verify(unknown[3] as string); // evicts unknown[1]
    expect(store.calls.findByDigest).toBe(4);
    await keys.verify(unknown[0] as string);
    expect(store.calls.findByDigest).toBe(4);
    await keys.verify(unknown[1] as string);
    expect(store.calls.findByDigest).toBe(5);

    const cache = new VerifyCache({ maxEntries: 10, maxMisses: 5 });
    for (let i = 0; i < 1000; i++) cache.set(`digest-${i}`, null, cache.begin());
    expect(cache.misses).toBe(5);
    expect(cache.size).toBe(0);
  });

  it('maxMisses: 0 remembers none: every unknown token asks the store', async () => {
    const store = countingStore(memoryStore());
    const keys = manager(store, { cache: { ttlMs: 600_000, maxMisses: 0 } });
    const { token } = await keys.create({ name: 'known', scopes: ['all'] });
    const unknown = forgedToken();
    for (let i = 0; i < 3; i++) {
      expect(await keys.verify(unknown)).toMatchObject({ code: 'NOT_FOUND' });
      expect((await keys.verify(token)).valid).toBe(true);
    }
    expect(store.calls.findByDigest).toBe(4); // three for the unknown token, one for the key
  });

  it('rejects a maxMisses that is not a whole number of 0 or more', () => {
    expect(() => createKeyManager({ store: memoryStore(), cache: { maxMisses: -1 } })).toThrow(ValidationError);
    expect(() => createKeyManager({ store: memoryStore(), cache: { maxMisses: 2.5 } })).toThrow(ValidationError);
  });

  it('a key created with a token remembered as a miss is found at once', async () => {
    // Only predictable tokens (keygate/testing's seeded ones, or a custom token source) can be
    // looked up before they exist; a random token is known to nobody before create returns it.
    const seed = `created-${randomBytes(4).toString('hex')}`;
    const token = firstTokenOf(seed);
    const keys = manager(new DelegatingStore(), seeded(seed));
    expect(await keys.verify(token)).toMatchObject({ code: 'NOT_FOUND' });
    expect(await keys.verify(token)).toMatchObject({ code: 'NOT_FOUND' });
    const created = await keys.create({ name: 'predictable', scopes: ['all'] });
    expect(created.token).toBe(token);
    expect((await keys.verify(token)).valid).toBe(true);
  });

  it('a lookup in flight while the key is created is not remembered as a miss', async () => {
    const seed = `race-${randomBytes(4).toString('hex')}`;
    const token = firstTokenOf(seed);
    const store = new HeldStore();
    const keys = manager(store, seeded(seed));
    store.hold();
    const inFlight = keys.verify(token); // reads "no such key", then waits
    await tick();
    await keys.create({ name: 'racing', scopes: ['all'] });
    store.release();
    expect(await inFlight).toMatchObject({ code: 'NOT_FOUND' }); // it read the store before the insert
    expect((await keys.verify(token)).valid).toBe(true);
  });

  it('a key rotated to a token remembered as a miss is found at once, here and on other instances', async () => {
    const store = new DelegatingStore();
    const { bus } = localBus();
    // Both managers issue the same seeded sequence; a takes the first token, so its rotation issues the second.
    const seed = `rotated-${randomBytes(4).toString('hex')}`;
    const source = seededTokenSource(seed);
    source.token('kg');
    const next = source.token('kg');
    const a = manager(store, { ...seeded(seed), invalidation: bus, revocation: { heartbeatMs: 20 } });
    const b = manager(store, { invalidation: bus, revocation: { heartbeatMs: 20 } });
    await cacheServing(a);
    await cacheServing(b);
    const { key } = await a.create({ name: 'rotating', scopes: ['all'] });
    for (const m of [a, b]) expect(await m.verify(next)).toMatchObject({ code: 'NOT_FOUND' });
    const rotated = await a.rotate(key.id);
    expect(rotated.token).toBe(next);
    for (const m of [a, b]) expect((await m.verify(next)).valid).toBe(true);
  });
});
