// The public data shapes: ApiKey, VerifyResult and the inputs of the manager's methods.

import type { QuotaRefill } from './quota.js';
import type { RateLimit, RateLimitStatus } from './rate-limit.js';

/** A JSON value, as kept in `metadata`. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** Free-form JSON data attached to a key. */
export type KeyMetadata = { [key: string]: JsonValue };

/** An API key as every read returns it. It never carries the token or its digest. */
export interface ApiKey {
  /** Stable, non-secret identifier. */
  readonly id: string;
  /** Who the key belongs to (a shop, a tenant), or `null`. */
  readonly ownerId: string | null;
  /** Display name, 1..100 characters, trimmed. */
  readonly name: string;
  /** `false` = the key exists but every request with it fails. */
  readonly active: boolean;
  /** Granted scopes, as stored (not expanded). */
  readonly scopes: readonly string[];
  /** Canonical allowed client addresses; empty = any address. */
  readonly allowedIps: readonly string[];
  /** A display form of the token such as `kg_Ab3…x9Qz`; not enough to use it. */
  readonly hint: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** Last successful verify, written in batches; may lag by the flush interval. */
  readonly lastUsedAt: Date | null;
  /**
   * The client address of the verify that set `lastUsedAt`, canonical (`canonicalIp`), written with
   * it. `null` when that verify was given no `ip`, or one that does not parse, or the key was never used.
   */
  readonly lastUsedIp: string | null;
  /** After this instant the key is refused with `EXPIRED`; `null` = never. */
  readonly expiresAt: Date | null;
  readonly metadata: Readonly<KeyMetadata>;
  /** At most this many requests per window, shared by every instance; `null` = the manager's default (if any). */
  readonly rateLimit: Readonly<RateLimit> | null;
  /**
   * Uses left (each verify spends its `cost`); `null` = no quota. As of this read: a verify's
   * result carries the count after its own use.
   */
  readonly remaining: number | null;
  /** How `remaining` is topped up; `null` = never. */
  readonly refill: Readonly<QuotaRefill> | null;
  /** Increases on every edit (by one; by two on a rotation); pass it as `expectedVersion` for compare-and-set updates. */
  readonly version: number;
}

/** Why `verify` refused a token. */
export type VerifyFailureCode =
  | 'MISSING'
  | 'MALFORMED'
  | 'NOT_FOUND'
  | 'INACTIVE'
  | 'EXPIRED'
  | 'IP_NOT_ALLOWED'
  | 'INSUFFICIENT_SCOPE'
  | 'RATE_LIMITED'
  | 'USAGE_EXCEEDED';

/**
 * The outcome of `verify`. A store failure is never a result: it throws `StoreUnavailableError`.
 * `limits` is there when a rate limit applied to the key (its own, its owner's); `retryAfterMs`
 * with `RATE_LIMITED` and `USAGE_EXCEEDED`: the least wait before the same request can pass
 * (`null`: it never will, e.g. a spent quota without refill or a cost above the limit).
 */
export type VerifyResult =
  | { readonly valid: true; readonly key: ApiKey; readonly limits?: readonly RateLimitStatus[] }
  | {
      readonly valid: false;
      readonly code: VerifyFailureCode;
      readonly message: string;
      readonly retryAfterMs?: number | null;
      readonly limits?: readonly RateLimitStatus[];
    };

/** Allowed addresses as the admin form sends them (`'203.0.113.7,2001:db8::1'`), or as an array. */
export type AllowedIpsInput = string | readonly string[] | null;

export interface CreateKeyInput {
  /** Required; trimmed; 1..100 characters. */
  name: string;
  /** @default true */
  active?: boolean | undefined;
  /** At least one scope of the catalog, e.g. `['orders:edit']` or `['all']`. */
  scopes: readonly string[];
  /** Comma-separated exact addresses with no spaces, or an array. Blank / omitted = any address. */
  allowedIps?: AllowedIpsInput | undefined;
  /** Who the key belongs to. @default null */
  ownerId?: string | null | undefined;
  /** When the key stops working. @default null (never) */
  expiresAt?: Date | string | number | null | undefined;
  /** JSON data kept with the key. @default {} */
  metadata?: KeyMetadata | undefined;
  /** At most `limit` requests per `windowMs` with this key. @default null (the manager's default, if any) */
  rateLimit?: RateLimit | null | undefined;
  /** Uses the key may spend; verify refuses with `USAGE_EXCEEDED` when none are left. @default null (no quota) */
  remaining?: number | null | undefined;
  /** Tops `remaining` up to `amount` every `intervalMs`, counted from now. Needs `remaining`. @default null */
  refill?: QuotaRefill | null | undefined;
}

export interface UpdateKeyInput {
  name?: string | undefined;
  active?: boolean | undefined;
  scopes?: readonly string[] | undefined;
  allowedIps?: AllowedIpsInput | undefined;
  expiresAt?: Date | string | number | null | undefined;
  metadata?: KeyMetadata | undefined;
  /** `null` removes the key's own limit. */
  rateLimit?: RateLimit | null | undefined;
  /** Sets the uses left (and restarts the refill interval); `null` removes the quota. */
  remaining?: number | null | undefined;
  /** `null` stops refills. Needs a quota (`remaining`). Refills fall due whole intervals after `remaining` was last set. */
  refill?: QuotaRefill | null | undefined;
}

/** Options of `create`. */
export interface CreateOptions {
  /**
   * Who creates the key (a user id, `'system'`, …), passed on in the `created` event for audit
   * logs. A string of 1..200 characters without control characters, or `null`.
   * @default null
   */
  actor?: string | null | undefined;
}

/** Options of every write: update, activate, deactivate, rotate, delete. */
export interface WriteOptions {
  /**
   * Who makes the change (a user id, `'system'`, …), passed on in the change's event for audit
   * logs. A string of 1..200 characters without control characters, or `null`.
   * @default null
   */
  actor?: string | null | undefined;
  /**
   * Return only once every instance listening on the invalidation bus has dropped the key from its
   * verify cache (acknowledged over the bus), or throw `InvalidationUnconfirmedError` (which holds
   * the result: the write is done) after `revocation.timeoutMs`. Without a bus there is nothing to
   * wait for. See docs/scale-out.md.
   * @default the manager's `revocation.wait` (false)
   */
  wait?: boolean | undefined;
}

export interface UpdateOptions extends WriteOptions {
  /** Apply the edit only if the key is still at this version; otherwise `VersionConflictError`. */
  expectedVersion?: number | undefined;
}

export interface ListOptions {
  /**
   * A string: only the keys of this owner. `null`: only the keys without an owner (created with
   * `ownerId: null` or none), never those of every owner. Leave it out for the keys of every owner.
   * @default undefined (every owner)
   */
  ownerId?: string | null | undefined;
  /** Only active (`true`) or inactive (`false`) keys. */
  active?: boolean | undefined;
  /**
   * Only the keys with an `expiresAt` before this instant (a Date, an ISO 8601 string or ms since
   * 1970); keys that never expire are left out. Already expired keys match too.
   * @default no filter
   */
  expiringBefore?: Date | string | number | null | undefined;
  /**
   * Only the keys never used, or last used before this instant (a Date, an ISO 8601 string or ms
   * since 1970). `lastUsedAt` is written in batches, so a use within the last `lastUsedFlushMs`
   * may not count yet.
   * @default no filter
   */
  unusedSince?: Date | string | number | null | undefined;
  /** Page size, 1..1000. @default 100 */
  limit?: number | undefined;
  /** The `nextCursor` of the previous page. */
  cursor?: string | null | undefined;
}

export interface ListResult {
  /** Keys ordered by creation time, then id. */
  keys: ApiKey[];
  /** Pass as `cursor` for the next page; `null` on the last page. */
  nextCursor: string | null;
}

/** Options of `deactivateAll`. */
export interface DeactivateAllOptions {
  /**
   * Whose keys to deactivate: an owner's id, or `null` for the keys without an owner. Required:
   * leaving it out is a `ValidationError`, never "every owner".
   */
  ownerId: string | null;
  /** Who makes the change, passed on in each key's `deactivated` event. @default null */
  actor?: string | null | undefined;
  /** As `WriteOptions.wait`, for each key. @default the manager's `revocation.wait` (false) */
  wait?: boolean | undefined;
}

/** What `deactivateAll` did. */
export interface DeactivateAllResult {
  /** How many keys this call deactivated (keys already inactive or deleted meanwhile are not counted). */
  deactivated: number;
}

export interface RotateOptions extends WriteOptions {
  /** How long the old token keeps working, in ms. Never past the key's `expiresAt`. @default 0 */
  gracePeriodMs?: number | undefined;
}

export interface VerifyOptions {
  /** Scope(s) the request needs; with several, all are required. */
  scope?: string | readonly string[] | undefined;
  /**
   * The client address, checked against the key's allow-list (an unparsable address never
   * matches), and kept canonical as the key's `lastUsedIp` when the verify succeeds.
   */
  ip?: string | null | undefined;
  /**
   * What this request spends of the key's rate limit and quota, 0..1,000,000,000 (0 checks
   * without spending). Spent only once every other check has passed.
   * @default 1
   */
  cost?: number | undefined;
}

/** What `create` and `rotate` return: the key and its token, shown this once. */
export interface KeyWithToken {
  key: ApiKey;
  /** The full secret token. It is not stored and cannot be read again. */
  token: string;
}
