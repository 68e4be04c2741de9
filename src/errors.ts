// The error classes keygate throws: one base with a stable `code` and an HTTP `status`.

/** Stable, machine-readable error codes. They never change meaning between releases. */
export type KeygateErrorCode =
  | 'VALIDATION_FAILED'
  | 'KEY_NOT_FOUND'
  | 'VERSION_CONFLICT'
  | 'STORE_UNAVAILABLE'
  | 'STORE_OUTCOME_UNKNOWN'
  | 'STORE_CONFLICT'
  | 'MANAGER_CLOSED'
  | 'INVALIDATION_UNCONFIRMED';

/** Every code, for recognising errors from another copy of keygate. */
const CODES: Readonly<Record<KeygateErrorCode, true>> = {
  VALIDATION_FAILED: true,
  KEY_NOT_FOUND: true,
  VERSION_CONFLICT: true,
  STORE_UNAVAILABLE: true,
  STORE_OUTCOME_UNKNOWN: true,
  STORE_CONFLICT: true,
  MANAGER_CLOSED: true,
  INVALIDATION_UNCONFIRMED: true,
};

/** Base class of every error keygate throws on purpose. */
export class KeygateError extends Error {
  /** Stable code, safe to switch on. */
  readonly code: KeygateErrorCode;
  /** The HTTP status a server should answer with. */
  readonly status: number;

  constructor(code: KeygateErrorCode, status: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
  }
}

/** An input was rejected. `field` names it (`name`, `scopes`, `allowedIps[1]`, …); nothing was written. */
export class ValidationError extends KeygateError {
  /** The input field at fault, e.g. `allowedIps` or `scopes`. */
  readonly field: string;
  /** Why it was rejected, without the field name. */
  readonly reason: string;

  constructor(field: string, reason: string) {
    super('VALIDATION_FAILED', 400, `${field}: ${reason}`);
    this.field = field;
    this.reason = reason;
  }
}

/** No key has the given id (it never existed or was deleted). */
export class KeyNotFoundError extends KeygateError {
  readonly keyId: string;
  constructor(keyId: string) {
    super('KEY_NOT_FOUND', 404, `No API key with id '${keyId}' exists; it may have been deleted.`);
    this.keyId = keyId;
  }
}

/** The key changed since it was read: `expectedVersion` did not match. Re-read it and apply the edit again. */
export class VersionConflictError extends KeygateError {
  readonly keyId: string;
  readonly expectedVersion: number;
  /** The version now stored, when known. */
  readonly actualVersion: number | null;
  constructor(keyId: string, expectedVersion: number, actualVersion: number | null) {
    super(
      'VERSION_CONFLICT',
      409,
      `API key '${keyId}' is at version ${actualVersion ?? 'unknown'}, not ${expectedVersion}: it was changed by someone else. Read it again and re-apply the edit.`,
    );
    this.keyId = keyId;
    this.expectedVersion = expectedVersion;
    this.actualVersion = actualVersion;
  }
}

/** The key store failed or did not answer within `storeTimeoutMs`. No decision was made. */
export class StoreUnavailableError extends KeygateError {
  /** The store operation that failed, e.g. `findByDigest`. */
  readonly operation: string;
  constructor(operation: string, message: string, options?: { cause?: unknown }) {
    super('STORE_UNAVAILABLE', 503, `Key store unavailable during ${operation}: ${message}`, options);
    this.operation = operation;
  }
}

/**
 * A write was sent to the store, but the store did not confirm it in time (or the connection broke
 * while it was on its way): it may have been applied, now or later, or not at all. keygate has
 * already dropped the key from every verify cache, and does so again when the store finally
 * answers. Every keygate write is safe to repeat: read the key again, or retry the call (a rotate
 * that may have landed keeps the old token working until a rotation is confirmed, so a retry never
 * locks the caller out). HTTP 503, like {@link StoreUnavailableError}, of which it is a kind.
 */
export class StoreOutcomeUnknownError extends StoreUnavailableError {
  override readonly code: KeygateErrorCode = 'STORE_OUTCOME_UNKNOWN';
  constructor(operation: string, reason: string, options?: { cause?: unknown }) {
    super(operation, `${reason}. The write may or may not have been applied; read the key again, or repeat the call`, options);
  }
}

/** A store refused a write because an id or digest already exists (a store bug or a re-used record). */
export class StoreConflictError extends KeygateError {
  constructor(message: string) {
    super('STORE_CONFLICT', 409, message);
  }
}

/** The manager was closed with `close()`; create a new one. */
export class ManagerClosedError extends KeygateError {
  constructor() {
    super('MANAGER_CLOSED', 500, 'This key manager was closed; create a new one with createKeyManager().');
  }
}

/**
 * A write asked to wait for every instance (`wait: true`, or `revocation.wait`) was applied, but
 * not every instance listening on the invalidation bus said in time that it dropped the key from
 * its verify cache. Those that did not drop it on their own: at their next bus message about it,
 * when their subscription fails (their cache then turns off), or within `cache.ttlMs` at the
 * latest. `result` holds what the call returns on success (the new token of a rotation among
 * it): nothing is lost. Calling again sends the invalidation again (activate, deactivate and
 * delete are safe to repeat). HTTP 503.
 */
export class InvalidationUnconfirmedError<T = unknown> extends KeygateError {
  readonly keyId: string;
  /** What the call returns on success: the write is done. */
  readonly result: T;
  /** Instances (this one left out) that had to drop the key. */
  readonly instances: number;
  /** How many of them did not confirm in time. */
  readonly unanswered: number;
  constructor(operation: string, keyId: string, result: T, outcome: { instances: number; unanswered: number; reason: string }) {
    super(
      'INVALIDATION_UNCONFIRMED',
      503,
      `${operation} of API key '${keyId}' is done, but ${outcome.unanswered} of ${outcome.instances} other instances on the invalidation bus did not confirm that they dropped it from their caches (${outcome.reason}). They drop it within cache.ttlMs at the latest. The call's result is in error.result; calling again sends the invalidation again.`,
    );
    this.keyId = keyId;
    this.result = result;
    this.instances = outcome.instances;
    this.unanswered = outcome.unanswered;
  }
}

/**
 * Whether `value` is an error keygate threw on purpose, with a stable `code` and an HTTP `status`.
 * Unlike `instanceof KeygateError`, it also recognises errors from another copy of keygate (the
 * CJS build loaded next to the ESM one).
 *
 * @example
 * catch (error) { if (isKeygateError(error)) res.status(error.status).json({ code: error.code }) }
 */
export function isKeygateError(value: unknown): value is KeygateError {
  if (value instanceof KeygateError) return true;
  if (!(value instanceof Error)) return false;
  const { code, status } = value as { code?: unknown; status?: unknown };
  return typeof code === 'string' && Object.hasOwn(CODES, code) && typeof status === 'number';
}
