// The bounded verify cache and the interface of cross-instance invalidation buses.

import { LRUCache } from 'lru-cache';
import { deepFreeze } from './freeze.js';
import type { KeyRecord } from './store.js';
import { checkWholeNumber } from './validate.js';

/** Options of the verify cache. Off by default: every verify asks the store. */
export interface VerifyCacheOptions {
  /**
   * How long a looked-up key (or a miss) may be served from memory, in ms. Bounds how stale a
   * verify can be when no invalidation bus is set or the bus is down.
   * @default 5000
   */
  ttlMs?: number | undefined;
  /** The most lookups kept; the least recently used go first. @default 10000 */
  maxEntries?: number | undefined;
}

/** Receives invalidations from other instances. */
export interface InvalidationSubscriber {
  /** The key with this id changed or was deleted: forget it. */
  invalidate(keyId: string): void;
  /** Messages may have been lost (the connection dropped and came back): forget everything. */
  reset(): void;
}

/**
 * Tells every other instance which key changed, so that each can drop it from its verify cache.
 * `redisInvalidation` (keygate/redis) and `postgresInvalidation` (keygate/postgres) implement it.
 */
export interface InvalidationBus {
  /** Announces that the key with this id changed. Resolves once the message is sent. */
  publish(keyId: string): Promise<void>;
  /**
   * Starts delivering messages to `subscriber`, including this instance's own. Resolves once
   * listening, with a function that stops it.
   */
  subscribe(subscriber: InvalidationSubscriber): Promise<() => Promise<void>>;
}

const MISS = Symbol('miss');

type Entry = KeyRecord | typeof MISS;

/** A verify cache: digest -> record (or a remembered miss), invalidated by key id. */
export class VerifyCache {
  private readonly lru: LRUCache<string, Entry>;
  /** key id -> digests cached for it (current and, during a grace period, previous). */
  private readonly digestsById = new Map<string, string[]>();
  /** Bumped by every invalidation; a lookup that raced one is not cached. */
  private epoch = 0;

  constructor(options: VerifyCacheOptions) {
    const ttlMs = checkWholeNumber('cache.ttlMs', options.ttlMs ?? 5000, { unit: 'ms' });
    const maxEntries = checkWholeNumber('cache.maxEntries', options.maxEntries ?? 10_000);
    this.lru = new LRUCache<string, Entry>({
      max: maxEntries,
      ttl: ttlMs,
      ttlAutopurge: false,
      dispose: (entry, digest) => {
        if (entry === MISS) return;
        const digests = this.digestsById.get(entry.id);
        if (!digests) return;
        const rest = digests.filter((d) => d !== digest);
        if (rest.length === 0) this.digestsById.delete(entry.id);
        else this.digestsById.set(entry.id, rest);
      },
    });
  }

  /** The cached record, `null` for a remembered miss, `undefined` when not cached. */
  get(digest: string): KeyRecord | null | undefined {
    const entry = this.lru.get(digest);
    return entry === MISS ? null : entry;
  }

  /** The epoch to pass to `set` after a store read started now. */
  begin(): number {
    return this.epoch;
  }

  /** Caches a lookup unless an invalidation happened since `begin()`. */
  set(digest: string, record: KeyRecord | null, startedAt: number): void {
    if (startedAt !== this.epoch) return;
    if (record === null) {
      this.lru.set(digest, MISS);
      return;
    }
    // One cached record serves many verifies: make what they hand out unchangeable.
    Object.freeze(record.scopes);
    Object.freeze(record.allowedIps);
    deepFreeze(record.metadata);
    this.lru.set(digest, record);
    const digests = this.digestsById.get(record.id);
    if (!digests) this.digestsById.set(record.id, [digest]);
    else if (!digests.includes(digest)) digests.push(digest);
  }

  /** Forgets every lookup of this key, and any lookup in flight. */
  invalidate(keyId: string): void {
    this.epoch++;
    const digests = this.digestsById.get(keyId);
    if (!digests) return;
    for (const digest of [...digests]) this.lru.delete(digest);
    this.digestsById.delete(keyId);
  }

  /** Forgets everything. */
  clear(): void {
    this.epoch++;
    this.lru.clear();
    this.digestsById.clear();
  }

  get size(): number {
    return this.lru.size;
  }
}
