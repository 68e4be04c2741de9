// The KeyStore interface that every storage adapter implements, and the record it keeps.

import type { QuotaRefill } from './quota.js';
import type { RateLimit } from './rate-limit.js';
import type { KeyMetadata } from './types.js';

/**
 * One stored key. It is the ApiKey plus the digests used for lookup; the token itself is never
 * part of it. Stores keep it as given and return it as kept (they may return copies).
 */
export interface KeyRecord {
  id: string;
  ownerId: string | null;
  name: string;
  active: boolean;
  scopes: readonly string[];
  allowedIps: readonly string[];
  hint: string;
  createdAt: Date;
  updatedAt: Date;
  lastUsedAt: Date | null;
  /** Touched with `lastUsedAt`: the canonical client address of that use, or `null`. */
  lastUsedIp: string | null;
  expiresAt: Date | null;
  metadata: KeyMetadata;
  rateLimit: RateLimit | null;
  /** A counter: `spend` changes it without a new version (see `KeyStore.update`). */
  remaining: number | null;
  refill: QuotaRefill | null;
  /** A counter: when the last refill was due, in whole intervals from when the quota was set. */
  refilledAt: Date | null;
  version: number;
  /** Hex SHA-256 (or HMAC-SHA-256) of the current token. Unique across the store. */
  digest: string;
  /** Digest of the token replaced by the last rotation, valid until `previousDigestExpiresAt`. */
  previousDigest: string | null;
  previousDigestExpiresAt: Date | null;
}

/** Where a page of `list` starts: strictly after this (createdAt, id) position. */
export interface ListPosition {
  createdAt: Date;
  id: string;
}

export interface StoreListQuery {
  /**
   * A string: only that owner's records. `null`: only the records without an owner, never "any
   * owner" (in SQL `owner_id IS NULL`, which `owner_id = NULL` is not). Absent: every owner. The
   * manager drops what does not match and reads on, so a store that ignores the filter leaks
   * nothing, but pays for it with more and longer reads.
   */
  ownerId?: string | null | undefined;
  /** Only active (`true`) or inactive (`false`) records; absent: both. */
  active?: boolean | undefined;
  /** Return records strictly after this position in (createdAt, id) order. */
  after?: ListPosition | null | undefined;
  /** The most records to return. */
  limit: number;
}

/** What `spend` did: the counters after it, and whether the uses were taken. */
export interface SpendResult {
  spent: boolean;
  remaining: number;
  refilledAt: Date | null;
}

/** One pending last-used write. */
export interface TouchEntry {
  id: string;
  lastUsedAt: Date;
  /**
   * The canonical client address of that use (as `canonicalIp` gives it), or `null` when the
   * verify had none (or one that does not parse). Written together with `lastUsedAt`: when the
   * time is written, so is this, `null` included.
   */
  ip: string | null;
}

/**
 * Persistence for API keys. Every method is async; the manager bounds each call with
 * `storeTimeoutMs`, so a store needs no timeouts of its own but must not queue calls forever.
 * A failing call should reject (with any error); the manager turns it into `StoreUnavailableError`,
 * whose cause keeps only the error's name, code and message. Only `StoreConflictError` from `insert`
 * and `update`, and `ValidationError` from any call but `findByDigest` and `touch`, keep their
 * meaning (docs/writing-a-store.md).
 */
export interface KeyStore {
  /** Adds a new record. Rejects with `StoreConflictError` when its id or a digest is taken. */
  insert(record: KeyRecord): Promise<void>;
  /** The record with this id, or `null`. */
  findById(id: string): Promise<KeyRecord | null>;
  /**
   * The record whose `digest` or `previousDigest` equals `digest`, or `null`. This is the verify
   * path: one indexed read, one round trip. The manager checks `previousDigestExpiresAt` itself.
   */
  findByDigest(digest: string): Promise<KeyRecord | null>;
  /** Records matching the filters, ordered by (createdAt, id) ascending, at most `limit` of them. */
  list(query: StoreListQuery): Promise<KeyRecord[]>;
  /**
   * Compare-and-set: replaces the record with `next.id` only if its stored version is
   * `expectedVersion`. Resolves `true` when written, `false` when the record is missing or at
   * another version. Never creates a record. The counters (`remaining`, `refilledAt`) are written
   * only with `counters: true` (an edit of the quota); otherwise the stored ones stay, since
   * `spend` may have changed them after the caller's read. A touch may also have landed since
   * then: the built-in stores keep the stored `lastUsedAt` and `lastUsedIp` when that time is
   * later than the given one.
   */
  update(next: KeyRecord, expectedVersion: number, counters?: boolean): Promise<boolean>;
  /** Removes the record for good. Resolves `true` if it existed. */
  delete(id: string): Promise<boolean>;
  /**
   * Sets `lastUsedAt` and `lastUsedIp` for several keys in one write, without touching `version`
   * or `updatedAt`. Missing ids are ignored (a touch never re-creates a deleted key). The pair
   * moves together: an entry whose time is later than the stored one sets both (`lastUsedIp` to
   * the entry's `ip`, `null` included); an older or equal time changes neither. Of entries for one
   * id, the latest time wins, with its ip.
   */
  touch(entries: readonly TouchEntry[]): Promise<void>;
  /**
   * Spends `cost` uses of a key's quota in one atomic step: the refills due by `now` (ms), then
   * the spend if that many remain, exactly as `spendQuota()` computes them with the stored
   * counters and the given `refill`. Resolves the counters after it and whether it spent; `null`
   * when the key is missing or has no quota (`remaining` is null). Optional: a store without it
   * cannot hold keys with a quota (create and update refuse them).
   */
  spend?(id: string, cost: number, refill: QuotaRefill | null, now: number): Promise<SpendResult | null>;
  /** Releases what the store itself opened. The user's own client is left open. */
  close?(): Promise<void>;
}
