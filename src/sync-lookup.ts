// An internal store capability: a synchronous digest lookup, so verify on an in-process store needs no promise. Not exported by the package.

import type { QuotaRefill } from './quota.js';
import type { KeyRecord, KeyStore, SpendResult } from './store.js';

/**
 * The method a store that holds every key in this process (the memory store) implements under
 * this symbol: the same answer as `findByDigest`, returned at once. A store that does I/O must
 * not implement it. `Symbol.for`, so that an ESM and a CJS copy of keygate agree on it.
 */
export const findByDigestSync: unique symbol = Symbol.for('keygate.findByDigestSync');

/** A store with the synchronous lookup. */
export interface SyncLookupStore {
  [findByDigestSync](digest: string): KeyRecord | null;
}

/** The store's synchronous lookup, bound to it, or `null` when it has none. */
export function syncLookupOf(store: KeyStore): ((digest: string) => KeyRecord | null) | null {
  const method = (store as Partial<SyncLookupStore>)[findByDigestSync];
  return typeof method === 'function' ? method.bind(store) : null;
}

/** The same for `spend`: a quota spent at once by a store that holds it in this process. */
export const spendSync: unique symbol = Symbol.for('keygate.spendSync');

/** A store with the synchronous spend. */
export interface SyncSpendStore {
  [spendSync](id: string, cost: number, refill: QuotaRefill | null, now: number): SpendResult | null;
}

/** The store's synchronous spend, bound to it, or `null` when it has none. */
export function syncSpendOf(
  store: KeyStore,
): ((id: string, cost: number, refill: QuotaRefill | null, now: number) => SpendResult | null) | null {
  const method = (store as Partial<SyncSpendStore>)[spendSync];
  return typeof method === 'function' ? method.bind(store) : null;
}
