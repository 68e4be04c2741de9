// createTestKeys(): an in-memory key manager with a hand-moved clock, and keys minted in any state, for apps' own tests.

import { memoryStore } from '../memory/index.js';
import { ValidationError } from '../../src/errors.js';
import { createKeyManager, type KeyManager, type KeyManagerOptions } from '../../src/manager.js';
import type { KeyStore } from '../../src/store.js';
import { randomTokenSource, TOKEN_SOURCE, type TokenSource } from '../../src/token.js';
import type { AllowedIpsInput, ApiKey, KeyMetadata } from '../../src/types.js';
import { seededTokenSource } from './seeded.js';

/** A date as the manager takes one: a Date, an ISO 8601 string or ms since 1970. */
export type DateInput = Date | string | number;

/** The clock of a {@link TestKeys} manager. It moves only when you move it. */
export interface TestClock {
  /** The current time, in ms since 1970. */
  now(): number;
  /** The current time as a Date. */
  date(): Date;
  /** Moves the clock forward by `ms` (a whole number, 0 or more) and returns the new time. */
  advance(ms: number): number;
  /** Sets the clock to `at`, forward or back. */
  set(at: DateInput): void;
}

/** Options of {@link createTestKeys}: every option of `createKeyManager` except `now`, plus these. */
export interface TestKeysOptions extends Omit<KeyManagerOptions, 'store' | 'now'> {
  /** Where the keys live. @default memoryStore() */
  store?: KeyStore;
  /**
   * Makes tokens and key ids the same in every run (for snapshots), given the same calls in the same
   * order. Such tokens are predictable: never use this outside tests.
   * @default none: tokens come from the CSPRNG, as in production
   */
  seed?: string;
  /**
   * Where the clock starts.
   * @default the real current time; with `seed`, 2025-01-01T00:00:00.000Z so that dates are stable too
   */
  startAt?: DateInput;
}

/** What {@link TestKeys.mint} makes. Every field is optional; without any, an active key with scope `all`. */
export interface MintOptions {
  /** @default 'test key 1', 'test key 2', … */
  name?: string;
  /** @default ['all'] */
  scopes?: readonly string[];
  /** The key's allow-list, e.g. `'127.0.0.1'` (what supertest connects from). @default any address */
  allowedIps?: AllowedIpsInput;
  /** @default null */
  ownerId?: string | null;
  /** @default {} */
  metadata?: KeyMetadata;
  /** `false`: the key is created, then deactivated (verify says `INACTIVE`). @default true */
  active?: boolean;
  /** A future expiry. For a key that has already expired, use `expired`. @default null (never) */
  expiresAt?: DateInput | null;
  /**
   * The key has expired: `true` = it expired at the clock's current time, a date = it expired then
   * (not after now). It is created one day before it expires (or at `createdAt`). @default false
   */
  expired?: boolean | DateInput;
  /**
   * The key has been rotated: `true` = the old token (`previousToken`) no longer works;
   * `{ gracePeriodMs }` = it still works for that long from now. @default false
   */
  rotated?: boolean | { gracePeriodMs: number };
  /** When the key was created, not after now. @default now (one day before the expiry with `expired`) */
  createdAt?: DateInput;
}

/** A minted key: the key as `get` returns it and its token(s). */
export interface MintedKey {
  key: ApiKey;
  /** The key's current token. */
  token: string;
  /** With `rotated`, the token of before the rotation (working only during a grace period). */
  previousToken?: string;
}

/** What {@link createTestKeys} returns. */
export interface TestKeys {
  /** The manager: hand it to your app, its guards and your assertions. */
  readonly keys: KeyManager;
  /** The store behind it. */
  readonly store: KeyStore;
  /** The manager's clock: expiries and grace periods follow it, not the real time. */
  readonly clock: TestClock;
  /** Creates a key in the asked state through the manager's own API, and returns its token(s). */
  mint(options?: MintOptions): Promise<MintedKey>;
  /** A well-formed token (right prefix and checksum) that belongs to no key: verify says `NOT_FOUND`. */
  unknownToken(): string;
  /** Closes the manager: pending `lastUsedAt` writes are flushed. A store you passed stays open. */
  close(): Promise<void>;
}

const DAY_MS = 86_400_000;
const SEEDED_START = Date.UTC(2025, 0, 1);

function toMs(field: string, value: DateInput): number {
  const ms =
    value instanceof Date
      ? value.getTime()
      : typeof value === 'string' || typeof value === 'number'
        ? new Date(value).getTime()
        : Number.NaN;
  if (!Number.isFinite(ms)) throw new ValidationError(field, `must be a Date, an ISO 8601 string or ms since 1970; got ${String(value)}`);
  return ms;
}

function createClock(start: number): TestClock {
  let t = start;
  return {
    now: () => t,
    date: () => new Date(t),
    advance(ms) {
      if (!Number.isInteger(ms) || ms < 0)
        throw new ValidationError('ms', 'must be a whole number of ms, 0 or more; use clock.set() to go back');
      t += ms;
      return t;
    },
    set(at) {
      t = toMs('at', at);
    },
  };
}

/**
 * An in-memory key manager for your app's tests, with a clock you move by hand and keys minted in
 * any state (inactive, expired, rotated, in a grace period, allow-listed, …).
 *
 * @example
 * const t = createTestKeys()
 * const { token } = await t.mint({ scopes: ['orders:list'], expired: true })
 * await t.keys.verify(token) // { valid: false, code: 'EXPIRED', … }
 */
export function createTestKeys(options: TestKeysOptions = {}): TestKeys {
  const { store: givenStore, seed, startAt, ...managerOptions } = options;
  if (seed !== undefined && (typeof seed !== 'string' || seed.length === 0)) {
    throw new ValidationError('seed', 'must be a non-empty string, e.g. { seed: "snapshots" }');
  }
  const store = givenStore ?? memoryStore();
  const clock = createClock(startAt !== undefined ? toMs('startAt', startAt) : seed !== undefined ? SEEDED_START : Date.now());
  const source: TokenSource = seed !== undefined ? seededTokenSource(seed) : randomTokenSource;
  const keys = createKeyManager({ ...managerOptions, store, now: clock.now, [TOKEN_SOURCE]: source } as KeyManagerOptions);
  const unknown = seed !== undefined ? seededTokenSource(`${seed}\u0000unknown`) : randomTokenSource;

  let minted = 0;
  // Mints run one at a time: a mint may set the clock back while it creates a key.
  let queue: Promise<unknown> = Promise.resolve();

  const mintNow = async (o: MintOptions): Promise<MintedKey> => {
    if (!o || typeof o !== 'object') throw new ValidationError('options', 'must be an object such as { scopes: ["orders:list"] }');
    const target = clock.now();
    const expiredAt = o.expired === undefined || o.expired === false ? null : o.expired === true ? target : toMs('expired', o.expired);
    if (expiredAt !== null) {
      if (o.expiresAt !== undefined && o.expiresAt !== null) {
        throw new ValidationError('expiresAt', 'cannot be combined with expired; expired sets the (past) expiry itself');
      }
      if (expiredAt > target) throw new ValidationError('expired', 'must be now or in the past; for a future expiry use expiresAt');
    }
    const createdAt = o.createdAt !== undefined ? toMs('createdAt', o.createdAt) : expiredAt !== null ? expiredAt - DAY_MS : target;
    if (createdAt > target) throw new ValidationError('createdAt', 'must not be after the clock’s current time');
    if (expiredAt !== null && createdAt >= expiredAt) throw new ValidationError('createdAt', 'must be before the time the key expired');
    const rotation = o.rotated === undefined || o.rotated === false ? null : o.rotated === true ? { gracePeriodMs: 0 } : o.rotated;
    // An expired key changed state before it expired; any other key changes now.
    const changeAt = expiredAt !== null ? createdAt : target;
    try {
      clock.set(createdAt);
      const created = await keys.create({
        name: o.name ?? `test key ${minted + 1}`,
        scopes: o.scopes ?? ['all'],
        allowedIps: o.allowedIps,
        ownerId: o.ownerId,
        metadata: o.metadata,
        expiresAt: expiredAt ?? o.expiresAt,
      });
      minted++;
      let key = created.key;
      let token = created.token;
      let previousToken: string | undefined;
      clock.set(changeAt);
      if (rotation) {
        const rotated = await keys.rotate(key.id, rotation);
        previousToken = token;
        ({ key, token } = rotated);
      }
      if (o.active === false) key = await keys.deactivate(key.id);
      return previousToken === undefined ? { key, token } : { key, token, previousToken };
    } finally {
      clock.set(target);
    }
  };

  return {
    keys,
    store,
    clock,
    mint(mintOptions = {}) {
      const result = queue.then(() => mintNow(mintOptions));
      queue = result.catch(() => undefined);
      return result;
    },
    unknownToken: () => unknown.token(keys.prefix),
    close: () => keys.close(),
  };
}
