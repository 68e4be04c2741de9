// Two-step rotation: overlapping rotations, a confirmation the store did not take, and a plain-value store under the breaker.
import { describe, expect, it } from 'vitest';
import { createKeyManager, type KeyManager, type KeyRecord, type KeyStore, type VerifyResult } from '../../src/index.js';
import { DelegatingStore } from '../support/counting-store.js';

const outcome = (result: VerifyResult): string => (result.valid ? 'VALID' : result.code);
const check = async (keys: KeyManager, token: string): Promise<string> => outcome(await keys.verify(token));

/** An asynchronous memory store whose `update` calls can be made to fail, by number (1 = the first from now on). */
class FlakyUpdates extends DelegatingStore {
  private calls = 0;
  failing = new Set<number>();
  /** Update calls (by number) answered late, and how late in ms. */
  slow = new Map<number, number>();
  override update(next: KeyRecord, expectedVersion: number): Promise<boolean> {
    this.calls++;
    if (this.failing.has(this.calls)) return Promise.reject(new Error('connection reset'));
    const delay = this.slow.get(this.calls) ?? 1;
    return new Promise((resolve) => setTimeout(() => resolve(this.inner.update(next, expectedVersion)), delay));
  }
  slowNext(which: number, ms: number): void {
    this.slow = new Map([[this.calls + which, ms]]);
  }
  failNext(...which: number[]): void {
    this.failing = new Set(which.map((n) => this.calls + n));
  }
}

describe('rotation in two steps', () => {
  it('overlapping rotations: the first one’s token is kept for the second one’s grace period, the original token ends', async () => {
    const store = new FlakyUpdates();
    const keys = createKeyManager({ store });
    const { key, token: original } = await keys.create({ name: 'overlap', scopes: ['all'] });
    for (let round = 0; round < 3; round++) {
      // The first rotation's second write is slow: the second rotation starts between its two writes.
      store.slowNext(2, 40);
      const a = keys.rotate(key.id, { gracePeriodMs: 60_000 });
      await new Promise((resolve) => setTimeout(resolve, 10));
      const b = keys.rotate(key.id, { gracePeriodMs: 60_000 });
      const [first, second] = await Promise.all([a, b]);
      // Both callers got a token that works: the second one's, and the first one's in its grace period.
      expect(await check(keys, second.token)).toBe('VALID');
      expect(await check(keys, first.token)).toBe('VALID');
      expect(await check(keys, original)).toBe('NOT_FOUND');
      await keys.rotate(key.id); // no grace: only the newest token is left
      expect(await check(keys, first.token)).toBe('NOT_FOUND');
    }
    await keys.close();
  });

  it('a confirmation the store did not take: the delivered token survives the next rotation, the old one does not', async () => {
    const errors: unknown[] = [];
    const store = new FlakyUpdates();
    const keys = createKeyManager({ store, onError: (e) => errors.push(e) });
    const { key, token: leaked } = await keys.create({ name: 'leaked', scopes: ['all'] });
    store.failNext(2); // the second write of the next rotation fails
    const first = await keys.rotate(key.id);
    expect(errors).toHaveLength(1);
    expect(await check(keys, first.token)).toBe('VALID');
    expect(await check(keys, leaked)).toBe('VALID'); // until the end of the old token is written
    // The next rotation first finishes the one before, so the token in use gets the grace period.
    const second = await keys.rotate(key.id, { gracePeriodMs: 86_400_000 });
    expect(await check(keys, second.token)).toBe('VALID');
    expect(await check(keys, first.token)).toBe('VALID');
    expect(await check(keys, leaked)).toBe('NOT_FOUND');
    await keys.close();
  });

  it('a rotation whose first write failed leaves the old token working, and the retry ends it', async () => {
    const store = new FlakyUpdates();
    const keys = createKeyManager({ store, onError: () => {} });
    const { key, token: old } = await keys.create({ name: 'retry', scopes: ['all'] });
    store.failNext(1);
    await expect(keys.rotate(key.id)).rejects.toMatchObject({ code: 'STORE_OUTCOME_UNKNOWN' });
    expect(await check(keys, old)).toBe('VALID');
    const retried = await keys.rotate(key.id);
    expect(await check(keys, retried.token)).toBe('VALID');
    expect(await check(keys, old)).toBe('NOT_FOUND');
    await keys.close();
  });
});

describe('a store that answers with plain values', () => {
  it('is run like one that answers with promises, and never fills the breaker', async () => {
    // A store in plain JavaScript may return the answer itself, not a promise of it.
    let calls = 0;
    const store = Object.assign(new DelegatingStore(), {
      findById: () => {
        calls++;
        return null;
      },
    }) as unknown as KeyStore;
    const keys = createKeyManager({ store, breaker: { maxPending: 3 } });
    for (let i = 0; i < 10; i++) expect(await keys.get(`missing-${i}`)).toBe(null);
    expect(calls).toBe(10);
    await keys.close();
  });
});
