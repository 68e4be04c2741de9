// createKeyManager(): the key lifecycle and verify, the one place where the rules meet.

import type { KeyObject } from 'node:crypto';
import { VerifyCache, type InvalidationBus, type VerifyCacheOptions } from './cache.js';
import { Deadlines } from './deadline.js';
import { KeyNotFoundError, ManagerClosedError, ValidationError, VersionConflictError } from './errors.js';
import { isIpAllowed, parseAllowedIps } from './ip.js';
import { b2bWaveScopes, type ScopeCatalog } from './scopes.js';
import type { KeyRecord, KeyStore, ListPosition, TouchEntry } from './store.js';
import { assertPrefix, createDigester, hintOf, isWellFormedToken, randomTokenSource, TOKEN_SOURCE, type TokenSource } from './token.js';
import type {
  ApiKey,
  CreateKeyInput,
  KeyMetadata,
  KeyWithToken,
  ListOptions,
  ListResult,
  RotateOptions,
  UpdateKeyInput,
  UpdateOptions,
  VerifyFailureCode,
  VerifyOptions,
  VerifyResult,
} from './types.js';

/** What changed, for audit logs. Events never carry a token or a digest. */
export type KeyEvent =
  | {
      readonly type: 'created' | 'updated' | 'activated' | 'deactivated' | 'deleted' | 'rotated';
      readonly keyId: string;
      readonly at: Date;
    }
  | { readonly type: 'verified'; readonly keyId: string; readonly at: Date; readonly ip: string | null }
  | {
      readonly type: 'rejected';
      readonly code: VerifyFailureCode;
      /** The key the token belongs to, when it was found. */
      readonly keyId: string | null;
      readonly at: Date;
      readonly ip: string | null;
    };

export interface KeyManagerOptions {
  /** Where keys live: `new MemoryStore()`, `postgresStore(pool)`, `redisStore(client)`, …. */
  store: KeyStore;
  /**
   * The token prefix, e.g. `kg` gives `kg_…` tokens. Lower-case letters and digits, starting with a
   * letter, with at most one `_` part (`shop_live`). Changing it invalidates every issued token.
   * @default 'kg'
   */
  prefix?: string;
  /** The scope catalog. @default b2bWaveScopes */
  scopes?: ScopeCatalog;
  /**
   * A server-side secret. When set, digests are HMAC-SHA-256(pepper, token), so a leaked database
   * alone cannot be used to check guessed tokens. Changing it invalidates every issued token.
   */
  pepper?: string | Buffer | KeyObject;
  /** Cache verify lookups in memory (see {@link VerifyCacheOptions}). @default off */
  cache?: VerifyCacheOptions | false;
  /** Tells other instances which key changed, so their caches drop it at once. @default none */
  invalidation?: InvalidationBus;
  /** Every store call is bounded; past it, `StoreUnavailableError`. @default 2000 */
  storeTimeoutMs?: number;
  /** How often pending `lastUsedAt` times are written, in one store call. @default 1000 */
  lastUsedFlushMs?: number;
  /** Receives every lifecycle and verify event. A throwing listener is ignored. */
  onEvent?: (event: KeyEvent) => void;
  /** Receives failures of background work (last-used flushes, the invalidation bus). @default none */
  onError?: (error: unknown) => void;
  /** The clock, in ms since the epoch; for tests. @default Date.now */
  now?: () => number;
}

export interface KeyManager {
  /** The scope catalog in use. */
  readonly scopes: ScopeCatalog;
  /** The token prefix in use. */
  readonly prefix: string;
  /** Creates a key. The token is returned this once and never stored. */
  create(input: CreateKeyInput): Promise<KeyWithToken>;
  /** The key with this id, or `null`. */
  get(id: string): Promise<ApiKey | null>;
  /** One page of keys, ordered by creation time. */
  list(options?: ListOptions): Promise<ListResult>;
  /** Edits a key; with `expectedVersion`, only if nobody changed it since. */
  update(id: string, changes: UpdateKeyInput, options?: UpdateOptions): Promise<ApiKey>;
  /** Sets Active on: the key works again. */
  activate(id: string): Promise<ApiKey>;
  /** Sets Active off: every request with the key fails until it is activated. */
  deactivate(id: string): Promise<ApiKey>;
  /** Deletes a key for good. Resolves `true` if it existed. */
  delete(id: string): Promise<boolean>;
  /** Issues a new token; the old one works for `gracePeriodMs` more (never past `expiresAt`). */
  rotate(id: string, options?: RotateOptions): Promise<KeyWithToken>;
  /** Checks a token. Never throws for a bad token; throws `StoreUnavailableError` when the store fails. */
  verify(token: unknown, options?: VerifyOptions): Promise<VerifyResult>;
  /** Writes pending `lastUsedAt` times now. */
  flush(): Promise<void>;
  /** Flushes, stops background work and the bus subscription. The store and its client stay open. */
  close(): Promise<void>;
}

const NAME_MAX = 100;
const OWNER_MAX = 200;
const METADATA_MAX_BYTES = 16 * 1024;
const LIST_MAX = 1000;
const TOUCH_BATCH_MAX = 1000;
/** Pending last-used times kept before a flush is forced, whatever the interval. */
const TOUCH_PENDING_MAX = 50_000;
const UPDATE_RETRIES = 8;
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;
const EMPTY: readonly string[] = Object.freeze([]);

const MESSAGES: Record<VerifyFailureCode, string> = {
  MISSING: 'No API key was given.',
  MALFORMED: 'The API key is malformed.',
  NOT_FOUND: 'The API key does not exist.',
  INACTIVE: 'The API key is deactivated.',
  EXPIRED: 'The API key has expired.',
  IP_NOT_ALLOWED: 'The client address is not allowed to use this API key.',
  INSUFFICIENT_SCOPE: 'The API key does not grant the required scope.',
};
/** One frozen result object per failure code: rejections allocate nothing. */
const FAILURES = Object.fromEntries(
  Object.entries(MESSAGES).map(([code, message]) => [code, Object.freeze({ valid: false as const, code, message })]),
) as Record<VerifyFailureCode, VerifyResult>;

/** The public view of a stored record: everything but the digests. */
function toApiKey(r: KeyRecord): ApiKey {
  return {
    id: r.id,
    ownerId: r.ownerId,
    name: r.name,
    active: r.active,
    scopes: r.scopes,
    allowedIps: r.allowedIps,
    hint: r.hint,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    lastUsedAt: r.lastUsedAt,
    expiresAt: r.expiresAt,
    metadata: r.metadata,
    version: r.version,
  };
}

function checkName(value: unknown): string {
  if (typeof value !== 'string') throw new ValidationError('name', 'is required and must be a string');
  const name = value.trim();
  if (name.length === 0) throw new ValidationError('name', 'is required; give the key a name such as "ERP sync"');
  if (name.length > NAME_MAX) throw new ValidationError('name', `must be at most ${NAME_MAX} characters (got ${name.length})`);
  if (CONTROL_CHARS.test(name)) throw new ValidationError('name', 'must not contain control characters (line breaks, tabs, NUL)');
  return name;
}

function checkOwner(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || value.length === 0 || value.length > OWNER_MAX || CONTROL_CHARS.test(value)) {
    throw new ValidationError('ownerId', `must be null or a string of 1..${OWNER_MAX} characters without control characters`);
  }
  return value;
}

function checkBoolean(field: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new ValidationError(field, `must be true or false, got ${JSON.stringify(value) ?? typeof value}`);
  return value;
}

function checkDate(field: string, value: unknown): Date | null {
  if (value === undefined || value === null) return null;
  let date: Date;
  if (value instanceof Date) date = new Date(value.getTime());
  else if (typeof value === 'string' || typeof value === 'number') date = new Date(value);
  else throw new ValidationError(field, 'must be a Date, an ISO 8601 string, a number of ms since 1970, or null');
  if (Number.isNaN(date.getTime())) throw new ValidationError(field, `is not a valid date: ${String(value).slice(0, 40)}`);
  if (date.getTime() < 0 || date.getTime() > 253402300799999) {
    throw new ValidationError(field, 'must be between 1970 and 9999');
  }
  return date;
}

function checkMetadata(value: unknown): KeyMetadata {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value) || Object.getPrototypeOf(value) !== Object.prototype) {
    throw new ValidationError('metadata', 'must be a plain object of JSON values');
  }
  let json: string;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new ValidationError('metadata', `must be JSON-serialisable: ${(error as Error).message}`);
  }
  if (Buffer.byteLength(json) > METADATA_MAX_BYTES) {
    throw new ValidationError('metadata', `must be at most ${METADATA_MAX_BYTES} bytes as JSON`);
  }
  if (json.includes('\\u0000')) throw new ValidationError('metadata', 'must not contain NUL characters');
  // A JSON round trip keeps exactly what every store can keep (no undefined, no Dates, no NaN).
  return JSON.parse(json) as KeyMetadata;
}

function checkId(id: unknown): string {
  if (typeof id !== 'string' || id.length === 0 || id.length > 128) {
    throw new ValidationError('id', 'must be the id of an API key (a non-empty string)');
  }
  return id;
}

function encodeCursor(record: KeyRecord): string {
  return Buffer.from(`${record.createdAt.getTime()}:${record.id}`).toString('base64url');
}

function decodeCursor(cursor: unknown): ListPosition | null {
  if (cursor === undefined || cursor === null || cursor === '') return null;
  if (typeof cursor === 'string' && cursor.length < 300) {
    const text = Buffer.from(cursor, 'base64url').toString();
    const match = /^(\d{1,15}):(.{1,128})$/.exec(text);
    if (match) return { createdAt: new Date(Number(match[1])), id: match[2] as string };
  }
  throw new ValidationError('cursor', 'is not a cursor returned by list(); start again without one');
}

/**
 * Creates the object that manages and verifies API keys.
 *
 * @example
 * const keys = createKeyManager({ store: new MemoryStore() })
 * const { key, token } = await keys.create({ name: 'ERP sync', scopes: ['orders:edit'] })
 * await keys.verify(token, { scope: 'orders:list' }) // { valid: true, key }
 */
export function createKeyManager(options: KeyManagerOptions): KeyManager {
  if (!options || typeof options !== 'object') throw new ValidationError('options', 'must be an object with at least { store }');
  const { store, onEvent, onError } = options;
  if (!store || typeof store.findByDigest !== 'function') {
    throw new ValidationError('store', 'is required: pass a KeyStore such as new MemoryStore()');
  }
  const prefix = options.prefix ?? 'kg';
  assertPrefix(prefix);
  const catalog = options.scopes ?? b2bWaveScopes;
  const digest = createDigester(options.pepper);
  const now = options.now ?? Date.now;
  // Internal hook: keygate/testing passes seeded tokens for snapshot tests; everyone else gets the CSPRNG.
  const tokens = (options as { [TOKEN_SOURCE]?: TokenSource })[TOKEN_SOURCE] ?? randomTokenSource;
  const storeTimeoutMs = options.storeTimeoutMs ?? 2000;
  if (!Number.isInteger(storeTimeoutMs) || storeTimeoutMs < 1) {
    throw new ValidationError('storeTimeoutMs', 'must be a positive whole number of ms');
  }
  const flushMs = options.lastUsedFlushMs ?? 1000;
  if (!Number.isInteger(flushMs) || flushMs < 1) throw new ValidationError('lastUsedFlushMs', 'must be a positive whole number of ms');

  const deadlines = new Deadlines(storeTimeoutMs);
  const cache = options.cache ? new VerifyCache(options.cache) : null;
  const bus = options.invalidation ?? null;
  /** With a bus, the cache is used only while subscribed: before that, changes could be missed. */
  let cacheLive = cache !== null && bus === null;
  let closed = false;

  const report = (error: unknown): void => {
    if (!onError) return;
    try {
      onError(error);
    } catch {
      // A failing error listener must not break the manager.
    }
  };
  const emit = (event: KeyEvent): void => {
    if (!onEvent) return;
    try {
      onEvent(event);
    } catch (error) {
      report(error);
    }
  };

  let unsubscribe: (() => Promise<void>) | null = null;
  if (bus) {
    bus
      .subscribe({
        invalidate: (keyId) => cache?.invalidate(keyId),
        reset: () => cache?.clear(),
      })
      .then(
        (stop) => {
          if (closed) {
            void stop().catch(report);
            return;
          }
          unsubscribe = stop;
          cacheLive = cache !== null;
        },
        (error: unknown) => report(error),
      );
  }

  // lastUsedAt: remembered per key, written in one store call per flush.
  let pendingTouches = new Map<string, number>();
  let touchTimer: NodeJS.Timeout | null = null;
  let flushing: Promise<void> = Promise.resolve();

  const flush = (): Promise<void> => {
    if (touchTimer) {
      clearTimeout(touchTimer);
      touchTimer = null;
    }
    if (pendingTouches.size === 0) return flushing;
    const batch = pendingTouches;
    pendingTouches = new Map();
    const entries: TouchEntry[] = [];
    for (const [id, at] of batch) entries.push({ id, lastUsedAt: new Date(at) });
    flushing = flushing.then(async () => {
      for (let i = 0; i < entries.length; i += TOUCH_BATCH_MAX) {
        const slice = entries.slice(i, i + TOUCH_BATCH_MAX);
        await deadlines.run('touch', () => store.touch(slice)).catch(report);
      }
    });
    return flushing;
  };

  const touch = (id: string, at: number): void => {
    pendingTouches.set(id, at);
    if (pendingTouches.size >= TOUCH_PENDING_MAX) void flush();
    else if (touchTimer === null) {
      touchTimer = setTimeout(() => void flush(), flushMs);
      touchTimer.unref();
    }
  };

  const assertOpen = (): void => {
    if (closed) throw new ManagerClosedError();
  };

  /** Drops the key from this instance's cache and tells the others. Never fails the write. */
  const changed = async (keyId: string): Promise<void> => {
    cache?.invalidate(keyId);
    if (bus) await deadlines.run('invalidation.publish', () => bus.publish(keyId)).catch(report);
  };

  /** A store that holds keys in this process answers lookups at once: no timer, no promise. */
  const findNow = typeof store.findByDigestNow === 'function' ? store.findByDigestNow.bind(store) : null;

  /** A lookup that must wait for the store (not in this process, not cached). */
  const lookupRemote = async (tokenDigest: string): Promise<KeyRecord | null> => {
    if (cacheLive && cache) {
      const epoch = cache.begin();
      const record = await deadlines.run('findByDigest', () => store.findByDigest(tokenDigest));
      cache.set(tokenDigest, record, epoch);
      return record;
    }
    return deadlines.run('findByDigest', () => store.findByDigest(tokenDigest));
  };

  /** Steps 3-6 of verify, once the record (or its absence) is known. */
  const decide = (record: KeyRecord | null, tokenDigest: string, verifyOptions: VerifyOptions | undefined): VerifyResult => {
    const ip = verifyOptions?.ip ?? null;
    if (record === null) return reject('NOT_FOUND', null, ip);
    const at = now();
    if (record.digest !== tokenDigest) {
      // The token of before the last rotation: valid only during its grace period.
      const graceEnd = record.previousDigestExpiresAt;
      if (record.previousDigest !== tokenDigest || graceEnd === null || at >= graceEnd.getTime()) {
        return reject('NOT_FOUND', null, ip);
      }
    }
    if (!record.active) return reject('INACTIVE', record.id, ip);
    if (record.expiresAt !== null && at >= record.expiresAt.getTime()) return reject('EXPIRED', record.id, ip);
    if (record.allowedIps.length > 0 && !isIpAllowed(record.allowedIps, ip)) return reject('IP_NOT_ALLOWED', record.id, ip);
    const scope = verifyOptions?.scope;
    if (scope !== undefined && !catalog.satisfies(record.scopes, scope)) {
      // An unknown required scope is a programming error, not a client's fault.
      for (const s of typeof scope === 'string' ? [scope] : scope) {
        if (!catalog.has(s)) {
          throw new ValidationError(
            'scope',
            `unknown scope '${String(s)}'; known scopes: ${catalog
              .list()
              .map((i) => i.name)
              .join(', ')}`,
          );
        }
      }
      return reject('INSUFFICIENT_SCOPE', record.id, ip);
    }
    touch(record.id, at);
    if (onEvent) emit({ type: 'verified', keyId: record.id, at: new Date(at), ip });
    return { valid: true, key: toApiKey(record) };
  };

  const reject = (code: VerifyFailureCode, keyId: string | null, ip: string | null): VerifyResult => {
    if (onEvent) emit({ type: 'rejected', code, keyId, at: new Date(now()), ip });
    return FAILURES[code];
  };

  /** Re-reads and re-applies `change` until the compare-and-set succeeds. */
  const writeWithRetry = async (
    id: string,
    expectedVersion: number | undefined,
    change: (current: KeyRecord, at: Date) => KeyRecord | null,
  ): Promise<KeyRecord> => {
    for (let attempt = 0; ; attempt++) {
      const current = await deadlines.run('findById', () => store.findById(id));
      if (!current) throw new KeyNotFoundError(id);
      if (expectedVersion !== undefined && current.version !== expectedVersion) {
        throw new VersionConflictError(id, expectedVersion, current.version);
      }
      const at = new Date(now());
      const next = change(current, at);
      if (next === null) return current;
      const written = await deadlines.run('update', () => store.update(next, current.version));
      if (written) return next;
      if (expectedVersion !== undefined || attempt >= UPDATE_RETRIES) {
        const latest = await deadlines.run('findById', () => store.findById(id));
        if (!latest) throw new KeyNotFoundError(id);
        throw new VersionConflictError(id, expectedVersion ?? current.version, latest.version);
      }
    }
  };

  const checkVersion = (value: unknown): number | undefined => {
    if (value === undefined) return undefined;
    if (!Number.isInteger(value) || (value as number) < 1) {
      throw new ValidationError('expectedVersion', 'must be the version of the key as read (a whole number from 1)');
    }
    return value as number;
  };

  const setActive = async (id: string, active: boolean): Promise<ApiKey> => {
    assertOpen();
    checkId(id);
    const record = await writeWithRetry(id, undefined, (current, at) =>
      current.active === active ? null : { ...current, active, updatedAt: at, version: current.version + 1 },
    );
    await changed(id);
    emit({ type: active ? 'activated' : 'deactivated', keyId: id, at: record.updatedAt });
    return toApiKey(record);
  };

  const manager: KeyManager = {
    scopes: catalog,
    prefix,

    async create(input) {
      assertOpen();
      if (!input || typeof input !== 'object') throw new ValidationError('input', 'must be an object with at least { name, scopes }');
      const name = checkName(input.name);
      const active = input.active === undefined ? true : checkBoolean('active', input.active);
      const scopes = catalog.parse(input.scopes, 'scopes');
      const allowedIps = parseAllowedIps(input.allowedIps, 'allowedIps');
      const ownerId = checkOwner(input.ownerId);
      const expiresAt = checkDate('expiresAt', input.expiresAt);
      const createdAt = new Date(now());
      if (expiresAt && expiresAt.getTime() <= createdAt.getTime()) {
        throw new ValidationError('expiresAt', 'must be in the future for a new key');
      }
      const metadata = checkMetadata(input.metadata);
      const token = tokens.token(prefix);
      const record: KeyRecord = {
        id: tokens.id(),
        ownerId,
        name,
        active,
        scopes,
        allowedIps: allowedIps.length === 0 ? EMPTY : allowedIps,
        hint: hintOf(token, prefix),
        createdAt,
        updatedAt: createdAt,
        lastUsedAt: null,
        expiresAt,
        metadata,
        version: 1,
        digest: digest(token),
        previousDigest: null,
        previousDigestExpiresAt: null,
      };
      await deadlines.run('insert', () => store.insert(record));
      emit({ type: 'created', keyId: record.id, at: createdAt });
      return { key: toApiKey(record), token };
    },

    async get(id) {
      assertOpen();
      const record = await deadlines.run('findById', () => store.findById(checkId(id)));
      return record ? toApiKey(record) : null;
    },

    async list(query = {}) {
      assertOpen();
      const limit = query.limit ?? 100;
      if (!Number.isInteger(limit) || limit < 1 || limit > LIST_MAX) {
        throw new ValidationError('limit', `must be a whole number from 1 to ${LIST_MAX}`);
      }
      const after = decodeCursor(query.cursor);
      const ownerId = query.ownerId === undefined ? undefined : (checkOwner(query.ownerId) ?? undefined);
      const active = query.active === undefined ? undefined : checkBoolean('active', query.active);
      const records = await deadlines.run('list', () => store.list({ ownerId, active, after, limit: limit + 1 }));
      const page = records.slice(0, limit);
      const last = page[page.length - 1];
      return {
        keys: page.map(toApiKey),
        nextCursor: records.length > limit && last ? encodeCursor(last) : null,
      };
    },

    async update(id, changes, updateOptions = {}) {
      assertOpen();
      checkId(id);
      if (!changes || typeof changes !== 'object') throw new ValidationError('changes', 'must be an object of fields to change');
      const expectedVersion = checkVersion(updateOptions.expectedVersion);
      // Validate everything before touching the store: a bad field changes nothing.
      const patch: Partial<KeyRecord> = {};
      if (changes.name !== undefined) patch.name = checkName(changes.name);
      if (changes.active !== undefined) patch.active = checkBoolean('active', changes.active);
      if (changes.scopes !== undefined) patch.scopes = catalog.parse(changes.scopes, 'scopes');
      if (changes.allowedIps !== undefined) {
        const ips = parseAllowedIps(changes.allowedIps, 'allowedIps');
        patch.allowedIps = ips.length === 0 ? EMPTY : ips;
      }
      if (changes.expiresAt !== undefined) patch.expiresAt = checkDate('expiresAt', changes.expiresAt);
      if (changes.metadata !== undefined) patch.metadata = checkMetadata(changes.metadata);
      const record = await writeWithRetry(id, expectedVersion, (current, at) => {
        const next: KeyRecord = { ...current, ...patch, updatedAt: at, version: current.version + 1 };
        // The grace period of a rotated token never outlives the key.
        if (next.previousDigestExpiresAt && next.expiresAt && next.previousDigestExpiresAt > next.expiresAt) {
          next.previousDigestExpiresAt = next.expiresAt;
        }
        return next;
      });
      await changed(id);
      emit({ type: 'updated', keyId: id, at: record.updatedAt });
      return toApiKey(record);
    },

    activate: (id) => setActive(id, true),
    deactivate: (id) => setActive(id, false),

    async delete(id) {
      assertOpen();
      checkId(id);
      const existed = await deadlines.run('delete', () => store.delete(id));
      pendingTouches.delete(id);
      await changed(id);
      if (existed) emit({ type: 'deleted', keyId: id, at: new Date(now()) });
      return existed;
    },

    async rotate(id, rotateOptions = {}) {
      assertOpen();
      checkId(id);
      const grace = rotateOptions.gracePeriodMs ?? 0;
      if (!Number.isInteger(grace) || grace < 0) {
        throw new ValidationError('gracePeriodMs', 'must be a whole number of ms, 0 or more');
      }
      const token = tokens.token(prefix);
      const tokenDigest = digest(token);
      const record = await writeWithRetry(id, undefined, (current, at) => {
        let graceEnd: Date | null = grace > 0 ? new Date(at.getTime() + grace) : null;
        if (graceEnd && current.expiresAt && graceEnd > current.expiresAt) graceEnd = current.expiresAt;
        if (graceEnd && graceEnd.getTime() <= at.getTime()) graceEnd = null;
        return {
          ...current,
          hint: hintOf(token, prefix),
          digest: tokenDigest,
          previousDigest: graceEnd ? current.digest : null,
          previousDigestExpiresAt: graceEnd,
          updatedAt: at,
          version: current.version + 1,
        };
      });
      await changed(id);
      emit({ type: 'rotated', keyId: id, at: record.updatedAt });
      return { key: toApiKey(record), token };
    },

    async verify(token, verifyOptions) {
      if (token === undefined || token === null || token === '') return reject('MISSING', null, verifyOptions?.ip ?? null);
      if (typeof token !== 'string' || !isWellFormedToken(token, prefix)) {
        return reject('MALFORMED', null, verifyOptions?.ip ?? null);
      }
      if (closed) throw new ManagerClosedError();
      const tokenDigest = digest(token);
      // Answers known now (an in-process store, a cache hit) need no await at all.
      if (findNow) return decide(findNow(tokenDigest), tokenDigest, verifyOptions);
      if (cacheLive && cache) {
        const hit = cache.get(tokenDigest);
        if (hit !== undefined) return decide(hit, tokenDigest, verifyOptions);
      }
      return decide(await lookupRemote(tokenDigest), tokenDigest, verifyOptions);
    },

    flush,

    async close() {
      if (closed) return;
      closed = true;
      await flush();
      // A subscription still connecting is stopped when it completes: close() never waits for it.
      if (unsubscribe) await (unsubscribe as () => Promise<void>)().catch(report);
      cache?.clear();
    },
  };
  return manager;
}
