// CachedLookup: finds the record of a token digest, from a store in this process, the verify cache or the store, and keeps the cache honest.

import { type InvalidationBus, VerifyCache, type VerifyCacheOptions } from './cache.js';
import { type Acknowledged, BusPresence, type BusStatus } from './presence.js';
import type { Deadlines } from './deadline.js';
import type { KeyRecord, KeyStore } from './store.js';
import { syncLookupOf } from './sync-lookup.js';

/**
 * The verify lookup. It owns the verify cache and the subscription to the invalidation bus: with
 * a bus, the cache serves only while subscribed, since changes made before that could be missed.
 */
export class CachedLookup {
  private readonly cache: VerifyCache | null;
  /** A store that holds keys in this process answers at once: no timer, no promise. */
  private readonly findNow: ((digest: string) => KeyRecord | null) | null;
  /** Whether the cache may answer (it exists and, with a bus, the subscription is proven to work). */
  private live: boolean;
  private unsubscribe: (() => Promise<void>) | null = null;
  private closed = false;
  /** Heartbeats and acknowledgements on the bus; `null` without one. */
  private readonly presence: BusPresence | null;

  constructor(
    private readonly store: KeyStore,
    private readonly deadlines: Deadlines,
    cacheOptions: VerifyCacheOptions | false | undefined,
    private readonly bus: InvalidationBus | null,
    private readonly report: (error: unknown) => void,
    heartbeatMs: number,
  ) {
    const cache = cacheOptions ? new VerifyCache(cacheOptions) : null;
    this.cache = cache;
    this.findNow = syncLookupOf(store);
    this.live = cache !== null && bus === null;
    this.presence = bus
      ? new BusPresence(bus, cache !== null, heartbeatMs, {
          invalidate: (keyId) => cache?.invalidate(keyId),
          clear: () => cache?.clear(),
          serving: (on) => {
            this.live = on && cache !== null && !this.closed;
          },
          report,
        })
      : null;
    if (bus) this.subscribe(bus);
  }

  /** The record if it is known without waiting (`null`: known not to exist), else `undefined`. */
  known(digest: string): KeyRecord | null | undefined {
    if (this.findNow) return this.findNow(digest);
    if (!this.live || (this.presence !== null && !this.presence.fresh())) return undefined;
    return (this.cache as VerifyCache).get(digest);
  }

  /** Asks the store, within the deadline, and caches the answer unless the key changed meanwhile. */
  async remote(digest: string): Promise<KeyRecord | null> {
    const cache = this.live && (this.presence === null || this.presence.fresh()) ? this.cache : null;
    const epoch = cache ? cache.begin() : 0;
    const record = await this.deadlines.run('findByDigest', () => this.store.findByDigest(digest));
    cache?.set(digest, record, epoch);
    return record;
  }

  /**
   * A key with this digest was just stored: it must be found from now on, even if its token was
   * looked up (and remembered as a miss) before. Only this instance can have looked it up: a
   * token nobody could predict reaches other instances only once `create` has returned it.
   */
  created(digest: string): void {
    this.cache?.created(digest);
  }

  /**
   * Drops the key from this instance's cache and tells the others. Never fails the write: without
   * `waitMs` a failed publish goes to `onError`; with it, the others' acknowledgements are awaited
   * for that long and the outcome returned (`null` without a bus: nothing to wait for).
   */
  async changed(keyId: string, waitMs?: number): Promise<Acknowledged | null> {
    this.cache?.invalidate(keyId);
    const bus = this.bus;
    if (!bus) return null;
    if (waitMs !== undefined && this.presence) return this.presence.confirm(keyId, waitMs);
    await this.deadlines.run('invalidation.publish', () => bus.publish(keyId), { shed: false }).catch(this.report);
    return null;
  }

  /** What this instance knows of the bus. */
  status(): BusStatus {
    if (!this.presence) return { subscribed: false, cacheServing: this.live, instances: 0 };
    return this.presence.status(this.live);
  }

  /** Stops the subscription (one still connecting is stopped when it completes) and empties the cache. */
  async close(): Promise<void> {
    this.closed = true;
    this.live = false;
    this.presence?.stop();
    if (this.unsubscribe) await this.unsubscribe().catch(this.report);
    this.cache?.clear();
  }

  private subscribe(bus: InvalidationBus): void {
    const presence = this.presence as BusPresence;
    const cache = this.cache;
    bus
      .subscribe({
        invalidate: (message) => presence.receive(message),
        reset: () => {
          cache?.clear();
          presence.subscribedNow();
        },
        lost: () => presence.lost(),
      })
      .then(
        (stop) => {
          if (this.closed) {
            void stop().catch(this.report);
            return;
          }
          this.unsubscribe = stop;
          presence.subscribedNow();
        },
        (error: unknown) => this.report(error),
      );
  }
}
