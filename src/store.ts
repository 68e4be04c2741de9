// The KeyStore interface that every storage adapter implements, and the record it keeps.

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
  expiresAt: Date | null;
  metadata: KeyMetadata;
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

/** One pending last-used write. */
export interface TouchEntry {
  id: string;
  lastUsedAt: Date;
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
   * another version. Never creates a record.
   */
  update(next: KeyRecord, expectedVersion: number): Promise<boolean>;
  /** Removes the record for good. Resolves `true` if it existed. */
  delete(id: string): Promise<boolean>;
  /**
   * Sets `lastUsedAt` for several keys in one write, without touching `version` or `updatedAt`.
   * Missing ids are ignored (a touch never re-creates a deleted key); an older time never
   * overwrites a newer one.
   */
  touch(entries: readonly TouchEntry[]): Promise<void>;
  /** Releases what the store itself opened. The user's own client is left open. */
  close?(): Promise<void>;
}
