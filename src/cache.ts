// The bounded verify cache and the interface of cross-instance invalidation buses.

import { LRUCache } from 'lru-cache';
import { freezeLazyJson } from './fields.js';
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
  /**
   * The most keys kept; the least recently used go first. Tokens that were not found are kept
   * apart (see `maxMisses`), so they never push a key out.
   * @default 10000
   */
  maxEntries?: number | undefined;
  /**
   * The most tokens remembered as not found, the least recently used going first; `0` remembers
   * none. A remembered miss saves the store call when the same unknown token comes back (a client
   * still sending a deleted key's token); forged tokens are all different, so against them it
   * saves nothing, and being kept apart from the keys they cannot evict one. A remembered miss
   * takes about 120 bytes of heap (`bench/miss-cache.mjs`).
   * @default 1000
   */
  maxMisses?: number | undefined;
}

/** Receives invalidations from other instances. */
export interface InvalidationSubscriber {
  /** The key with this id changed or was deleted: forget it. */
  invalidate(keyId: string): void;
  /**
   * The subscription is back after a loss (messages may have been missed): forget everything. The
   * cache serves again once the instance's own heartbeat has come back over the bus.
   */
  reset(): void;
  /**
   * The subscription is lost (the connection dropped): the cache is emptied and bypassed until
   * `reset()`. A bus that cannot tell calls `reset()` instead; the instance's heartbeats then find
   * the loss within three heartbeats.
   */
  lost?(): void;
}

/**
 * Tells every other instance which key changed, so that each can drop it from its verify cache.
 * `redisInvalidation` (keygate/redis) and `postgresInvalidation` (keygate/postgres) implement it.
 */
export interface InvalidationBus {
  /** Sends a message (a key id that changed, or a heartbeat) to every subscriber. Resolves once it is sent. */
  publish(keyId: string): Promise<void>;
  /**
   * Starts delivering messages to `subscriber`, including this instance's own, each message as
   * published (besides key ids, keygate sends heartbeats and acknowledgements that start with
   * U+0001; a key id never holds a control character). Resolves once listening, with a function
   * that stops it.
   */
  subscribe(subscriber: InvalidationSubscriber): Promise<() => Promise<void>>;
}

/**
 * A verify cache: digest -> record, invalidated by key id, and apart from it a bounded set of
 * digests remembered as not found. Misses never share the records' LRU: anyone can make
 * well-formed tokens that pass the checksum, and each of them is a miss.
 */
export class VerifyCache {
  private readonly hits: LRUCache<string, KeyRecord>;
  /** Digests the store did not find; `null` when `maxMisses` is 0. */
  private readonly missed: LRUCache<string, true> | null;
  /** key id -> digests cached for it (current and, during a grace period, previous). */
  private readonly digestsById = new Map<string, string[]>();
  /** Bumped by every invalidation; a lookup that raced one is not cached. */
  private epoch = 0;

  constructor(options: VerifyCacheOptions) {
    const ttlMs = checkWholeNumber('cache.ttlMs', options.ttlMs ?? 5000, { unit: 'ms' });
    const maxEntries = checkWholeNumber('cache.maxEntries', options.maxEntries ?? 10_000);
    const maxMisses = checkWholeNumber('cache.maxMisses', options.maxMisses ?? 1000, { min: 0 });
    this.hits = new LRUCache<string, KeyRecord>({
      max: maxEntries,
      ttl: ttlMs,
      ttlAutopurge: false,
      dispose: (record, digest) => {
        const digests = this.digestsById.get(record.id);
        if (!digests) return;
        const rest = digests.filter((d) => d !== digest);
        if (rest.length === 0) this.digestsById.delete(record.id);
        else this.digestsById.set(record.id, rest);
      },
    });
    this.missed = maxMisses === 0 ? null : new LRUCache<string, true>({ max: maxMisses, ttl: ttlMs, ttlAutopurge: false });
  }

  /** The cached record, `null` for a remembered miss, `undefined` when not cached. */
  get(digest: string): KeyRecord | null | undefined {
    const record = this.hits.get(digest);
    if (record !== undefined) return record;
    return this.missed?.get(digest) ? null : undefined;
  }

  /** The epoch to pass to `set` after a store read started now. */
  begin(): number {
    return this.epoch;
  }

  /** Caches a lookup unless an invalidation happened since `begin()`. */
  set(digest: string, record: KeyRecord | null, startedAt: number): void {
    if (startedAt !== this.epoch) return;
    if (record === null) {
      this.missed?.set(digest, true);
      return;
    }
    freezeShared(record);
    this.missed?.delete(digest);
    this.hits.set(digest, record);
    const digests = this.digestsById.get(record.id);
    if (!digests) this.digestsById.set(record.id, [digest]);
    else if (!digests.includes(digest)) digests.push(digest);
  }

  /**
   * Forgets every lookup of this key, any lookup in flight, and every remembered miss: the key
   * may now answer to a digest remembered as missing (a rotation to a predictable token), and an
   * invalidation from another instance does not say which digest.
   */
  invalidate(keyId: string): void {
    this.epoch++;
    this.missed?.clear();
    const digests = this.digestsById.get(keyId);
    if (!digests) return;
    for (const digest of [...digests]) this.hits.delete(digest);
    this.digestsById.delete(keyId);
  }

  /** A key with this digest now exists: forget it as a miss, and any lookup in flight. */
  created(digest: string): void {
    this.epoch++;
    this.missed?.delete(digest);
  }

  /** Forgets everything. */
  clear(): void {
    this.epoch++;
    this.hits.clear();
    this.missed?.clear();
    this.digestsById.clear();
  }

  /** How many keys are cached (under each digest they answer to). */
  get size(): number {
    return this.hits.size;
  }

  /** How many digests are remembered as not found. */
  get misses(): number {
    return this.missed?.size ?? 0;
  }
}

/**
 * One cached record serves many verifies: make what they hand out unchangeable, without parsing
 * metadata a store parses on first read (`defineLazyJson`), so that caching a record whose token
 * verify then refuses costs no parse. A store's own metadata getter is wrapped to the same end.
 */
function freezeShared(record: KeyRecord): void {
  Object.freeze(record.scopes);
  Object.freeze(record.allowedIps);
  if (freezeLazyJson(record, 'metadata')) return;
  const property = Object.getOwnPropertyDescriptor(record, 'metadata');
  const read = property?.get;
  if (read && property.configurable) {
    const frozenOnRead: PropertyDescriptor = {
      get: () => deepFreeze(read.call(record) as KeyRecord['metadata']),
      enumerable: true,
      configurable: true,
    };
    if (property.set) frozenOnRead.set = property.set;
    Object.defineProperty(record, 'metadata', frozenOnRead);
  } else {
    deepFreeze(record.metadata);
  }
}
