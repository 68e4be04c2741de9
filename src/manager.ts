// createKeyManager(): wires the parts (lookup, rules, last-used buffer, lifecycle writes) into the public KeyManager.

import type { KeyObject } from 'node:crypto';
import type { BreakerOptions } from './breaker.js';
import type { InvalidationBus, VerifyCacheOptions } from './cache.js';
import { decide, FAILURES } from './decide.js';
import { Deadlines, settledBy } from './deadline.js';
import { InvalidationUnconfirmedError, StoreUnavailableError, ValidationError } from './errors.js';
import { type KeyEvent, Listeners } from './events.js';
import { toApiKey } from './fields.js';
import { LastUsedBuffer } from './last-used.js';
import {
  assertOpen,
  Confirmations,
  createKey,
  deactivateListed,
  InDoubt,
  deleteKey,
  type ManagerParts,
  rotateKey,
  setActive,
  updateKey,
  waitOf,
} from './lifecycle.js';
import { CachedLookup } from './lookup.js';
import type { Acknowledged, BusStatus } from './presence.js';
import { QUOTA_MAX, quotaRetryAfter } from './quota.js';
import {
  checkRateLimit,
  describe,
  IN_PROCESS,
  type LimiterAnswer,
  type TakeOne,
  memoryLimiter,
  type RateLimit,
  type RateLimitBucket,
  type RateLimiter,
  type RateLimitStatus,
} from './rate-limit.js';
import { b2bWaveScopes, type ScopeCatalog } from './scopes.js';
import type { KeyRecord, KeyStore, SpendResult } from './store.js';
import { syncSpendOf } from './sync-lookup.js';
import { assertPrefix, createDigester, isWellFormedToken, randomTokenSource, TOKEN_SOURCE, type TokenSource } from './token.js';
import type {
  ApiKey,
  CreateKeyInput,
  CreateOptions,
  DeactivateAllOptions,
  DeactivateAllResult,
  KeyWithToken,
  ListOptions,
  ListResult,
  RotateOptions,
  UpdateKeyInput,
  UpdateOptions,
  VerifyFailureCode,
  VerifyOptions,
  VerifyResult,
  WriteOptions,
} from './types.js';
import { checkActor, checkBoolean, checkDate, checkId, checkOwner, checkWholeNumber, decodeCursor, encodeCursor } from './validate.js';

export type { KeyChangeEvent, KeyEvent } from './events.js';

/** Rate limits of the manager: where the counters live, and the limits of keys that set none. */
export interface RateLimitsOptions {
  /** Where counters live: `memoryLimiter()` (one instance), `redisLimiter(client)`, `postgresLimiter(pool)`, …. @default memoryLimiter() */
  limiter?: RateLimiter | undefined;
  /** The limit of every key whose own `rateLimit` is `null`. @default none */
  default?: RateLimit | null | undefined;
  /**
   * A limit shared by all keys of one owner (on top of each key's own): one limit for every owner,
   * or a function giving an owner's limit (`null`: none). Keys without an owner have none. Called
   * on every verify of an owned key: keep it a lookup, not a query.
   * @default none
   */
  owner?: RateLimit | ((ownerId: string) => RateLimit | null) | null | undefined;
  /**
   * When the limiter fails (or times out): `false` refuses the request with
   * `StoreUnavailableError` (503) like a failing key store; `true` lets it through unlimited and
   * reports the failure through `onError`. Fail-open keeps the API up while the limiter is down,
   * at the cost of every limit while it is.
   * @default false
   */
  failOpen?: boolean | undefined;
}

/** Acknowledged invalidation over the bus: how writes wait for the other instances. */
export interface RevocationOptions {
  /**
   * Whether every write (update, activate, deactivate, rotate, delete) waits until each instance
   * listening on the invalidation bus has dropped the key from its verify cache. A call's own
   * `{ wait }` overrides it.
   * @default false
   */
  wait?: boolean | undefined;
  /**
   * How long a write waits for the acknowledgements, in ms; past it, `InvalidationUnconfirmedError`
   * (the write itself is done, and the error holds its result). Right after start-up, a write may
   * first wait up to two heartbeats more, while the instance joins the bus.
   * @default 1000
   */
  timeoutMs?: number | undefined;
  /**
   * How often each instance publishes a heartbeat on the bus, in ms. An instance not heard from for
   * four heartbeats is no longer waited for; one whose own heartbeats stop coming back for two turns
   * its cache off until they do (within three, as it checks once a heartbeat: before the others
   * stop waiting for it). A new instance caches after one heartbeat.
   * @default 1000
   */
  heartbeatMs?: number | undefined;
}

export interface KeyManagerOptions {
  /** Where keys live: `memoryStore()`, `postgresStore(pool)`, `redisStore(client)`, …. */
  store: KeyStore;
  /**
   * The token prefix, e.g. `kg` gives `kg_…` tokens. Lower-case letters and digits, starting with a
   * letter, with at most one `_` part (`shop_live`). Changing it invalidates every issued token.
   * @default 'kg'
   */
  prefix?: string | undefined;
  /** The scope catalog. @default b2bWaveScopes */
  scopes?: ScopeCatalog | undefined;
  /**
   * A server-side secret. When set, digests are HMAC-SHA-256(pepper, token), so a leaked database
   * alone cannot be used to check guessed tokens. At least 16 bytes (a string counts its UTF-8
   * bytes); a secret `KeyObject` from `createSecretKey` works too. Checked when the manager is
   * created. Changing it invalidates every issued token.
   * @default none: digests are plain SHA-256
   */
  pepper?: string | Uint8Array | KeyObject | undefined;
  /** Cache verify lookups in memory (see {@link VerifyCacheOptions}). @default off */
  cache?: VerifyCacheOptions | false | undefined;
  /**
   * Tells other instances which key changed, so their caches drop it. With a bus, each instance
   * also announces itself on it (see `revocation.heartbeatMs`) and its cache answers only while its
   * subscription is proven to work. @default none
   */
  invalidation?: InvalidationBus | undefined;
  /** Writes that return only once every instance dropped the key (docs/scale-out.md). @default writes do not wait */
  revocation?: RevocationOptions | undefined;
  /**
   * Every store call is bounded; past it, `StoreUnavailableError` (for a write,
   * `StoreOutcomeUnknownError`). A write that loses a race with another writer retries for this
   * long too, and `close()` finishes within it plus a small margin.
   * @default 2000
   */
  storeTimeoutMs?: number | undefined;
  /**
   * Sheds load while the store fails: after `failures` failed calls in a row, calls fail at once
   * (503) but for one trial every `retryMs`, and never more than `maxPending` calls wait on the
   * store. `false` turns it off (see docs/faults.md).
   * @default { failures: 5, retryMs: 250, maxPending: 10000 }
   */
  breaker?: BreakerOptions | false | undefined;
  /** Per-key rate limits: the limiter and the defaults (docs/rate-limits.md). @default memory counters, no default limit */
  rateLimits?: RateLimitsOptions | undefined;
  /** How often pending `lastUsedAt` times (and their `lastUsedIp`) are written, in one store call. @default 1000 */
  lastUsedFlushMs?: number | undefined;
  /** Receives every lifecycle and verify event. A throwing listener is ignored. */
  onEvent?: ((event: KeyEvent) => void) | undefined;
  /** Receives failures of background work (last-used flushes, the invalidation bus). @default none */
  onError?: ((error: unknown) => void) | undefined;
  /** The clock, in ms since the epoch; for tests. @default Date.now */
  now?: (() => number) | undefined;
}

export interface KeyManager {
  /** The scope catalog in use. */
  readonly scopes: ScopeCatalog;
  /** The token prefix in use. */
  readonly prefix: string;
  /** Creates a key. The token is returned this once and never stored. */
  create(input: CreateKeyInput, options?: CreateOptions): Promise<KeyWithToken>;
  /** The key with this id, or `null`. */
  get(id: string): Promise<ApiKey | null>;
  /** One page of keys, ordered by creation time. */
  list(options?: ListOptions): Promise<ListResult>;
  /** Edits a key; with `expectedVersion`, only if nobody changed it since. */
  update(id: string, changes: UpdateKeyInput, options?: UpdateOptions): Promise<ApiKey>;
  /** Sets Active on: the key works again. */
  activate(id: string, options?: WriteOptions): Promise<ApiKey>;
  /**
   * Sets Active off: every request with the key fails until it is activated. With `{ wait: true }`
   * it returns only once every instance on the invalidation bus has dropped the key.
   */
  deactivate(id: string, options?: WriteOptions): Promise<ApiKey>;
  /** Deletes a key for good. Resolves `true` if it existed. */
  delete(id: string, options?: WriteOptions): Promise<boolean>;
  /**
   * Deactivates every active key of one owner (`ownerId: null`: the keys without an owner), page
   * by page, each as `deactivate` does it: caches dropped, one `deactivated` event per key with the
   * `actor`. A key deleted or deactivated meanwhile is skipped. When the store fails part way, it
   * throws and the keys already deactivated stay so: calling it again finishes the job. With
   * `{ wait: true }`, an instance that did not confirm for some key gives an
   * `InvalidationUnconfirmedError` at the end, whose `result` holds the count.
   */
  deactivateAll(options: DeactivateAllOptions): Promise<DeactivateAllResult>;
  /** Issues a new token; the old one works for `gracePeriodMs` more (never past `expiresAt`). */
  rotate(id: string, options?: RotateOptions): Promise<KeyWithToken>;
  /** Checks a token. Never throws for a bad token; throws `StoreUnavailableError` when the store fails. */
  verify(token: unknown, options?: VerifyOptions): Promise<VerifyResult>;
  /**
   * The key a token belongs to (its current token, or a rotated-out one still in its grace
   * period), whatever the key's state (inactive, expired), or `null` for a malformed or unknown
   * token. Asks the store, not the verify cache; records no use, spends nothing, emits no event.
   * For revoking a leaked token.
   */
  findByToken(token: unknown): Promise<ApiKey | null>;
  /** Writes pending `lastUsedAt` times now. */
  flush(): Promise<void>;
  /**
   * What this instance knows of the invalidation bus, from the heartbeats: whether its
   * subscription works, whether its cache answers, and how many instances with a cache listen.
   * Costs no call to the bus.
   */
  busStatus(): BusStatus;
  /**
   * Stops the manager: waits for verifies in flight, writes their `lastUsedAt` times with the
   * others still pending, stops background work and the bus subscription. Finishes within
   * `storeTimeoutMs` plus a small margin whatever the store does. What it had to give up is
   * reported through `onError`, as a `StoreUnavailableError` of operation `close` that counts the
   * `lastUsedAt` times not written and the rotations whose old token's end was not written (those
   * old tokens keep working until the key is rotated again, deactivated or deleted). The store
   * and its client stay open.
   */
  close(): Promise<void>;
}

const LIST_MAX = 1000;
/** How many records a list read asks for at least when the manager filters on its own (expiry, last use). */
const LIST_SCAN = 200;
/** The page size of `deactivateAll`, and how many of a page's keys it deactivates at a time. */
const DEACTIVATE_PAGE = 100;
const DEACTIVATE_CONCURRENCY = 8;
/** How often the end of a rotated-out token is written again when the store did not take it. */
const CONFIRM_RETRY_MS = 1000;

/**
 * Creates the object that manages and verifies API keys.
 *
 * @example
 * const keys = createKeyManager({ store: memoryStore() })
 * const { key, token } = await keys.create({ name: 'ERP sync', scopes: ['orders:edit'] })
 * await keys.verify(token, { scope: 'orders:list' }) // { valid: true, key }
 */
export function createKeyManager(options: KeyManagerOptions): KeyManager {
  const parts = wire(options);
  return {
    scopes: parts.catalog,
    prefix: parts.prefix,
    create: (input, createOptions) => createKey(parts, input, createOptions ?? {}),
    get: (id) => getKey(parts, id),
    list: (query) => listKeys(parts, query ?? {}),
    update: (id, changes, updateOptions) => updateKey(parts, id, changes, updateOptions ?? {}),
    activate: (id, writeOptions) => setActive(parts, id, true, writeOptions ?? {}),
    deactivate: (id, writeOptions) => setActive(parts, id, false, writeOptions ?? {}),
    delete: (id, writeOptions) => deleteKey(parts, id, writeOptions ?? {}),
    deactivateAll: (allOptions) => deactivateAll(parts, allOptions),
    rotate: (id, rotateOptions) => rotateKey(parts, id, rotateOptions ?? {}),
    verify: (token, verifyOptions) => verify(parts, token, verifyOptions),
    findByToken: (token) => findByToken(parts, token),
    flush: () => parts.lastUsed.flush(),
    busStatus: () => parts.lookup.status(),
    close: () => close(parts),
  };
}

/** Checks the options and builds the parts every operation shares. */
function wire(options: KeyManagerOptions): ManagerParts {
  if (!options || typeof options !== 'object') throw new ValidationError('options', 'must be an object with at least { store }');
  const { store } = options;
  if (!store || typeof store.findByDigest !== 'function') {
    throw new ValidationError('store', 'is required: pass a KeyStore such as memoryStore()');
  }
  const prefix = options.prefix ?? 'kg';
  assertPrefix(prefix);
  const storeTimeoutMs = checkWholeNumber('storeTimeoutMs', options.storeTimeoutMs ?? 2000, { unit: 'ms' });
  const flushMs = checkWholeNumber('lastUsedFlushMs', options.lastUsedFlushMs ?? 1000, { unit: 'ms' });
  const listeners = new Listeners(options.onEvent, options.onError);
  const revocation = checkRevocation(options.revocation, options.invalidation);
  const deadlines = new Deadlines(storeTimeoutMs, options.breaker);
  const parts: ManagerParts = {
    store,
    prefix,
    catalog: options.scopes ?? b2bWaveScopes,
    digest: createDigester(options.pepper),
    // Internal hook: keygate/testing passes seeded tokens for snapshot tests; everyone else gets the CSPRNG.
    tokens: (options as { [TOKEN_SOURCE]?: TokenSource })[TOKEN_SOURCE] ?? randomTokenSource,
    now: options.now ?? Date.now,
    deadlines,
    lookup: new CachedLookup(store, deadlines, options.cache, options.invalidation ?? null, listeners.report, revocation.heartbeatMs),
    revocation,
    // Last-used writes are bookkeeping: they neither open the breaker nor wait for it (one runs at a time).
    lastUsed: new LastUsedBuffer(
      (entries) => deadlines.run('touch', () => store.touch(entries), { shed: false }),
      flushMs,
      listeners.report,
    ),
    listeners,
    confirmations: new Confirmations(CONFIRM_RETRY_MS),
    inDoubt: new InDoubt(options.breaker ? (options.breaker.retryMs ?? 250) : 250, storeTimeoutMs),
    raceBudgetMs: storeTimeoutMs,
    remoteVerifies: 0,
    verifiesDone: null,
    closed: false,
  };
  limitsOf.set(parts, wireLimits(options.rateLimits, storeTimeoutMs, options.breaker, listeners.report, syncSpendOf(store)));
  parts.confirmations.bind(parts);
  parts.inDoubt.bind(parts);
  return parts;
}

/**
 * The hot path. Garbage is refused without a store call; answers known at once (an in-process
 * store, a cache hit) need no await at all; only a store round trip waits.
 */
async function verify(parts: ManagerParts, token: unknown, options: VerifyOptions | undefined): Promise<VerifyResult> {
  if (token === undefined || token === null || token === '') return rejected(parts, 'MISSING', null, options);
  if (typeof token !== 'string' || !isWellFormedToken(token, parts.prefix)) return rejected(parts, 'MALFORMED', null, options);
  assertOpen(parts);
  const digest = parts.digest(token);
  let record = parts.lookup.known(digest);
  if (record === undefined) {
    // Counted, so that close() waits for this verify and writes its last-used time.
    parts.remoteVerifies++;
    try {
      record = await parts.lookup.remote(digest);
    } finally {
      if (--parts.remoteVerifies === 0) parts.verifiesDone?.();
    }
  }
  const at = parts.now();
  let result = decide(record, digest, options, at, parts.catalog);
  if (!result.valid) return rejected(parts, result.code, result.code === 'NOT_FOUND' ? null : (record as KeyRecord).id, options);
  const found = record as KeyRecord;
  const limits = limitsOf.get(parts) as Limits;
  // Limits and quotas come last: a request refused for any other reason spends nothing.
  if (found.remaining !== null || found.rateLimit !== null || limits.any) {
    const spent = spend(parts, limits, found, result.key, options, at);
    result = spent instanceof Promise ? await spent : spent;
    if (!result.valid) return rejected(parts, result.code, found.id, options, result);
  } else if (options?.cost !== undefined) {
    costOf(options);
  }
  const id = found.id;
  // The address as given: the buffer makes it canonical when it writes (once per key and flush).
  parts.lastUsed.touch(id, at, options?.ip);
  if (parts.listeners.wantsEvents) parts.listeners.emit({ type: 'verified', keyId: id, at: new Date(at), ip: options?.ip ?? null });
  return result;
}

/** The manager's rate-limit settings, compiled. */
interface Limits {
  /** Whether any key may be limited without a limit of its own (a default or an owner limit). */
  readonly any: boolean;
  readonly fallback: Readonly<RateLimit> | null;
  readonly owner: ((ownerId: string) => Readonly<RateLimit> | null) | null;
  /** Created on first use: a manager whose keys have no limits never makes one. */
  limiter: RateLimiter | null;
  readonly deadlines: Deadlines;
  readonly failOpen: boolean;
  readonly report: (error: unknown) => void;
  /** The store's synchronous spend, when it keeps its keys in this process. */
  readonly spendNow: ReturnType<typeof syncSpendOf>;
}

const limitsOf = new WeakMap<ManagerParts, Limits>();

function wireLimits(
  options: RateLimitsOptions | undefined,
  storeTimeoutMs: number,
  breaker: KeyManagerOptions['breaker'],
  report: (error: unknown) => void,
  spendNow: Limits['spendNow'],
): Limits {
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw new ValidationError('rateLimits', 'must be an object such as { limiter, default, owner, failOpen }');
  }
  const o = options ?? {};
  if (o.limiter !== undefined && (o.limiter === null || typeof o.limiter.take !== 'function')) {
    throw new ValidationError('rateLimits.limiter', 'must be a RateLimiter such as memoryLimiter() or redisLimiter(client)');
  }
  const fallback = o.default === undefined ? null : checkRateLimit('rateLimits.default', o.default);
  let owner: Limits['owner'] = null;
  if (typeof o.owner === 'function') {
    const lookup = o.owner;
    owner = (ownerId) => {
      const limit = lookup(ownerId);
      return limit === null || limit === undefined ? null : checkRateLimit(`rateLimits.owner(${JSON.stringify(ownerId)})`, limit);
    };
  } else if (o.owner !== undefined && o.owner !== null) {
    const shared = checkRateLimit('rateLimits.owner', o.owner);
    owner = () => shared;
  }
  const failOpen = o.failOpen ?? false;
  if (typeof failOpen !== 'boolean') throw new ValidationError('rateLimits.failOpen', 'must be true or false');
  return {
    any: fallback !== null || owner !== null,
    fallback,
    owner,
    limiter: o.limiter ?? null,
    // The limiter's own breaker: a failing limiter does not shed key-store calls, nor the reverse.
    deadlines: new Deadlines(storeTimeoutMs, breaker),
    failOpen,
    report,
    spendNow,
  };
}

/** The cost of a verify: a whole number 0..QUOTA_MAX, 1 when not given. A bad one is the caller's mistake: thrown. */
function costOf(options: VerifyOptions | undefined): number {
  const cost = options?.cost;
  if (cost === undefined) return 1;
  if (Number.isInteger(cost) && cost >= 0 && cost <= QUOTA_MAX) return cost;
  throw new ValidationError('cost', `must be a whole number from 0 to ${QUOTA_MAX}, got ${JSON.stringify(cost) ?? typeof cost}`);
}

/** What the rate limits said: the statuses for the result, or the refusal. */
interface RateOutcome {
  readonly statuses: RateLimitStatus[] | undefined;
  readonly refused: VerifyResult | null;
}

const UNLIMITED: RateOutcome = { statuses: undefined, refused: null };

/**
 * The rate limits (the key's own or the default, and its owner's), then the quota. A request the
 * rate limit refuses spends no quota; one the quota refuses has still counted against the rate
 * limit, like any request that reached the server. With counters in this process and no quota,
 * everything is answered at once: no promise, as for a verify without limits.
 */
function spend(
  parts: ManagerParts,
  limits: Limits,
  record: KeyRecord,
  key: ApiKey,
  options: VerifyOptions | undefined,
  at: number,
): VerifyResult | Promise<VerifyResult> {
  const cost = costOf(options);
  const rate = checkRate(limits, record, cost, at);
  if (rate instanceof Promise) return rate.then((outcome) => afterRate(parts, limits, outcome, record, key, cost, at));
  return afterRate(parts, limits, rate, record, key, cost, at);
}

function afterRate(
  parts: ManagerParts,
  limits: Limits,
  rate: RateOutcome,
  record: KeyRecord,
  key: ApiKey,
  cost: number,
  at: number,
): VerifyResult | Promise<VerifyResult> {
  if (rate.refused !== null) return rate.refused;
  if (record.remaining === null) return rate.statuses === undefined ? { valid: true, key } : { valid: true, key, limits: rate.statuses };
  // A store that keeps its keys in this process spends at once (no deadline, no promise).
  const now = limits.spendNow;
  if (now === null) return spendQuotaOf(parts, rate.statuses, record, key, cost, at);
  const spent = now(record.id, cost, record.refill, at);
  if (spent !== null) return quotaResult(rate.statuses, record, key, cost, at, spent);
  // Deleted, or its quota removed, since it was read: read it again (rare).
  return parts.deadlines.run('findById', () => parts.store.findById(record.id)).then((again) => quotaGone(rate.statuses, record, again));
}

function checkRate(limits: Limits, record: KeyRecord, cost: number, at: number): RateOutcome | Promise<RateOutcome> {
  const own = record.rateLimit ?? limits.fallback;
  const owner = record.ownerId !== null && limits.owner !== null ? limits.owner(record.ownerId) : null;
  if (own === null && owner === null) return UNLIMITED;
  limits.limiter ??= memoryLimiter();
  const takeOne = (limits.limiter as { [IN_PROCESS]?: TakeOne })[IN_PROCESS];
  if (owner === null && typeof takeOne === 'function') return ownLimitNow(takeOne, own as Readonly<RateLimit>, record.id, cost, at);
  const buckets: Array<RateLimitBucket & { scope: RateLimitStatus['scope'] }> = [];
  // The window is part of a counter's name: a new window starts a new count (a new limit keeps it).
  if (own !== null) buckets.push({ key: `k:${own.windowMs}:${record.id}`, limit: own.limit, windowMs: own.windowMs, scope: 'key' });
  if (owner !== null) {
    buckets.push({ key: `o:${owner.windowMs}:${record.ownerId}`, limit: owner.limit, windowMs: owner.windowMs, scope: 'owner' });
  }
  const group = owner !== null ? `o:${record.ownerId}` : `k:${record.id}`;
  limits.limiter ??= memoryLimiter();
  const limiter = limits.limiter;
  // A cost above a limit never passes: the limiter is only asked where the request stands (cost 0).
  let asked = cost;
  for (const b of buckets) if (cost > b.limit) asked = 0;
  const judge = (answer: LimiterAnswer): RateOutcome => rateOutcome(buckets, asked === cost && answer.allowed, answer.states, cost, at);
  // Counters in this process answer at once and cannot hang: no deadline, no promise.
  if ((limiter as { [IN_PROCESS]?: true })[IN_PROCESS]) return judge(limiter.take(group, buckets, asked, at) as LimiterAnswer);
  return limits.deadlines
    .run('rateLimit', async () => limiter.take(group, buckets, asked, at))
    .then(judge, (error: unknown) => {
      if (!limits.failOpen) throw error;
      limits.report(error);
      return UNLIMITED;
    });
}

/** The common case, one key's own limit on counters in this process: no arrays of buckets, no promise. */
function ownLimitNow(takeOne: TakeOne, own: Readonly<RateLimit>, id: string, cost: number, at: number): RateOutcome {
  const { limit, windowMs } = own;
  const asked = cost > limit ? 0 : cost;
  const taken = takeOne(`k:${windowMs}:${id}`, limit, windowMs, asked, at);
  const allowed = asked === cost && taken.allowed;
  const d = describe(taken.state, limit, windowMs, cost, at, allowed);
  const statuses: RateLimitStatus[] = [
    { scope: 'key', limit, windowMs, remaining: d.remaining, resetMs: d.resetMs, retryAfterMs: d.retryAfterMs },
  ];
  if (allowed) return { statuses, refused: null };
  const refused: VerifyResult = {
    valid: false,
    code: 'RATE_LIMITED',
    message: FAILURES.RATE_LIMITED.message,
    retryAfterMs: d.retryAfterMs,
    limits: statuses,
  };
  return { statuses, refused };
}

function rateOutcome(
  buckets: ReadonlyArray<RateLimitBucket & { scope: RateLimitStatus['scope'] }>,
  allowed: boolean,
  states: LimiterAnswer['states'],
  cost: number,
  at: number,
): RateOutcome {
  const statuses: RateLimitStatus[] = [];
  let retryAfterMs: number | null = 0;
  for (let i = 0; i < buckets.length; i++) {
    const b = buckets[i] as (typeof buckets)[number];
    const d = describe(states[i] ?? { window: 0, count: 0, previous: 0 }, b.limit, b.windowMs, cost, at, allowed);
    statuses.push({
      scope: b.scope,
      limit: b.limit,
      windowMs: b.windowMs,
      remaining: d.remaining,
      resetMs: d.resetMs,
      retryAfterMs: d.retryAfterMs,
    });
    retryAfterMs = d.retryAfterMs === null || retryAfterMs === null ? null : Math.max(retryAfterMs, d.retryAfterMs);
  }
  if (allowed) return { statuses, refused: null };
  return {
    statuses,
    refused: { valid: false, code: 'RATE_LIMITED', message: FAILURES.RATE_LIMITED.message, retryAfterMs, limits: statuses },
  };
}

async function spendQuotaOf(
  parts: ManagerParts,
  statuses: RateLimitStatus[] | undefined,
  record: KeyRecord,
  key: ApiKey,
  cost: number,
  at: number,
): Promise<VerifyResult> {
  const store = parts.store;
  const spendUses = store.spend as NonNullable<KeyStore['spend']>;
  const spent = await parts.deadlines.run('spend', () => spendUses.call(store, record.id, cost, record.refill, at), { write: true });
  if (spent === null) {
    // Deleted, or its quota removed, since it was read: read it again (rare).
    const now = await parts.deadlines.run('findById', () => store.findById(record.id));
    return quotaGone(statuses, record, now);
  }
  return quotaResult(statuses, record, key, cost, at, spent);
}

/** The result for a key whose quota the store no longer found: `now` is the key read again. */
function quotaGone(statuses: RateLimitStatus[] | undefined, record: KeyRecord, now: KeyRecord | null): VerifyResult {
  if (now === null) return FAILURES.NOT_FOUND;
  if (now.remaining !== null) throw new StoreUnavailableError('spend', `the store found no quota on key '${record.id}', which has one`);
  const fresh = toApiKey(now);
  return statuses === undefined ? { valid: true, key: fresh } : { valid: true, key: fresh, limits: statuses };
}

function quotaResult(
  statuses: RateLimitStatus[] | undefined,
  record: KeyRecord,
  key: ApiKey,
  cost: number,
  at: number,
  spent: SpendResult,
): VerifyResult {
  if (!spent.spent) {
    const state = { remaining: spent.remaining, refilledAt: spent.refilledAt === null ? null : spent.refilledAt.getTime() };
    const retryAfterMs = quotaRetryAfter(state, record.refill, cost, at);
    const refused = { valid: false as const, code: 'USAGE_EXCEEDED' as const, message: FAILURES.USAGE_EXCEEDED.message, retryAfterMs };
    return statuses === undefined ? refused : { ...refused, limits: statuses };
  }
  const after: ApiKey = { ...key, remaining: spent.remaining };
  return statuses === undefined ? { valid: true, key: after } : { valid: true, key: after, limits: statuses };
}

function rejected(
  parts: ManagerParts,
  code: VerifyFailureCode,
  keyId: string | null,
  options: VerifyOptions | undefined,
  result: VerifyResult = FAILURES[code],
): VerifyResult {
  if (parts.listeners.wantsEvents) {
    parts.listeners.emit({ type: 'rejected', code, keyId, at: new Date(parts.now()), ip: options?.ip ?? null });
  }
  return result;
}

async function getKey(parts: ManagerParts, id: string): Promise<ApiKey | null> {
  assertOpen(parts);
  const checked = checkId(id);
  const record = await parts.deadlines.run('findById', () => parts.store.findById(checked));
  return record ? toApiKey(record) : null;
}

async function listKeys(parts: ManagerParts, query: ListOptions): Promise<ListResult> {
  assertOpen(parts);
  const limit = checkWholeNumber('limit', query.limit ?? 100, { max: LIST_MAX });
  let after = decodeCursor(query.cursor);
  // `null` is a filter of its own, the keys without an owner; only an absent ownerId means every owner.
  const ownerId = query.ownerId === undefined ? undefined : checkOwner(query.ownerId);
  const active = query.active === undefined ? undefined : checkBoolean('active', query.active);
  // Filters no store knows: applied here alone, so reads ask for more records at a time.
  const expiringBefore = checkDate('expiringBefore', query.expiringBefore)?.getTime() ?? null;
  const unusedSince = checkDate('unusedSince', query.unusedSince)?.getTime() ?? null;
  const matches = (record: KeyRecord): boolean =>
    (ownerId === undefined || record.ownerId === ownerId) &&
    (active === undefined || record.active === active) &&
    (expiringBefore === null || (record.expiresAt !== null && record.expiresAt.getTime() < expiringBefore)) &&
    (unusedSince === null || record.lastUsedAt === null || record.lastUsedAt.getTime() < unusedSince);
  // A filter never widens, whatever the store does with it: a store written before `ownerId: null`
  // meant "no owner" may read it as "any owner". What does not match is dropped and read past, so
  // a page and its cursor only ever carry keys that match. A store that keeps to the filters (every
  // built-in one) is asked once, as before.
  const found: KeyRecord[] = [];
  let seen: Set<string> | null = null;
  for (;;) {
    // Every read asks for a whole page and one more, so reading past dropped records takes few reads.
    const wanted = expiringBefore === null && unusedSince === null ? limit + 1 : Math.max(limit + 1, LIST_SCAN);
    const position = after;
    const records = await parts.deadlines.run('list', () => parts.store.list({ ownerId, active, after: position, limit: wanted }));
    let fresh = 0;
    for (const record of records) {
      // After a dropped record the store is asked again; one that ignores the position too must not loop.
      if (seen !== null) {
        if (seen.has(record.id)) continue;
        seen.add(record.id);
      }
      fresh++;
      if (matches(record)) found.push(record);
    }
    const last = records[records.length - 1];
    if (found.length > limit || records.length < wanted || fresh === 0 || last === undefined) break;
    seen ??= new Set(records.map((r) => r.id));
    after = { createdAt: last.createdAt, id: last.id };
  }
  const page = found.slice(0, limit);
  const last = page[page.length - 1];
  return { keys: page.map(toApiKey), nextCursor: found.length > limit && last ? encodeCursor(last) : null };
}

async function deactivateAll(parts: ManagerParts, options: DeactivateAllOptions): Promise<DeactivateAllResult> {
  assertOpen(parts);
  if (!options || typeof options !== 'object') throw new ValidationError('options', 'must be an object such as { ownerId, actor }');
  // Required: a forgotten owner must not read as "every owner", nor as "no owner".
  if (options.ownerId === undefined) {
    throw new ValidationError('ownerId', 'is required: an owner id, or null for the keys without an owner');
  }
  const ownerId = checkOwner(options.ownerId);
  const actor = checkActor(options.actor);
  const waitMs = waitOf(parts, options);
  const run: DeactivateRun = { deactivated: 0, unconfirmed: null, failure: null };
  let cursor: string | null = null;
  do {
    // The cursor stays valid while the keys before it turn inactive: it is a position, not an offset.
    const page: ListResult = await listKeys(parts, { ownerId, active: true, limit: DEACTIVATE_PAGE, cursor });
    const ids = page.keys.map((k) => k.id);
    const worker = async (): Promise<void> => {
      for (let id = ids.shift(); id !== undefined && run.failure === null; id = ids.shift()) {
        try {
          const done = await deactivateListed(parts, id, actor, waitMs);
          if (done === null) continue;
          run.deactivated++;
          const reason = done.outcome?.reason ?? null;
          if (done.outcome !== null && reason !== null) run.unconfirmed ??= { keyId: id, outcome: { ...done.outcome, reason } };
        } catch (error) {
          run.failure ??= { error };
        }
      }
    };
    // The keys in flight finish (written or not) before a failure is thrown.
    await Promise.all(Array.from({ length: Math.min(DEACTIVATE_CONCURRENCY, ids.length) }, worker));
    if (run.failure !== null) throw run.failure.error;
    cursor = page.nextCursor;
  } while (cursor !== null);
  const result: DeactivateAllResult = { deactivated: run.deactivated };
  const missed = run.unconfirmed;
  if (missed !== null) throw new InvalidationUnconfirmedError('deactivateAll', missed.keyId, result, missed.outcome);
  return result;
}

/** Where a `deactivateAll` stands. */
interface DeactivateRun {
  deactivated: number;
  /** The first key whose invalidation not every instance confirmed (with `wait`). */
  unconfirmed: { keyId: string; outcome: Acknowledged & { reason: string } } | null;
  /** The first failure: no key is started after it. */
  failure: { error: unknown } | null;
}

/**
 * The key of a token, current or in its grace period, in any state; `null` for anything else.
 * The store is asked even with a verify cache: revoking a token must not rest on a cached copy.
 */
async function findByToken(parts: ManagerParts, token: unknown): Promise<ApiKey | null> {
  assertOpen(parts);
  if (typeof token !== 'string' || !isWellFormedToken(token, parts.prefix)) return null;
  const digest = parts.digest(token);
  const record = await parts.deadlines.run('findByDigest', () => parts.store.findByDigest(digest));
  if (record === null) return null;
  if (record.digest === digest) return toApiKey(record);
  // The token of before the last rotation, as verify sees it: until its grace period ends, or with
  // no end while that rotation is not confirmed.
  const graceEnd = record.previousDigestExpiresAt;
  if (record.previousDigest === digest && (graceEnd === null || parts.now() < graceEnd.getTime())) return toApiKey(record);
  return null;
}

/** How long close() may take past `storeTimeoutMs`: for the bus to unsubscribe, and timer slack. */
const CLOSE_MARGIN_MS = 100;

async function close(parts: ManagerParts): Promise<void> {
  if (parts.closed) return;
  parts.closed = true;
  const deadline = performance.now() + parts.raceBudgetMs;
  // Verifies already waiting on the store end within their own deadline, before this one.
  if (parts.remoteVerifies > 0) await new Promise<void>((resolve) => (parts.verifiesDone = resolve));
  const waiting = parts.confirmations.size > 0 ? settledBy(parts.confirmations.retry(), deadline) : Promise.resolve();
  const droppedLastUsed = await parts.lastUsed.close(deadline);
  await waiting;
  const unconfirmedRotations = parts.confirmations.stop();
  parts.inDoubt.stop();
  // A subscription still connecting is stopped when it completes: close() never waits for it.
  await settledBy(parts.lookup.close(), performance.now() + CLOSE_MARGIN_MS);
  if (droppedLastUsed > 0 || unconfirmedRotations > 0) {
    const what = [
      droppedLastUsed > 0 ? `${droppedLastUsed} last-used times were not written` : '',
      unconfirmedRotations > 0 ? `${unconfirmedRotations} rotations were not confirmed (their old tokens still work)` : '',
    ].filter(Boolean);
    parts.listeners.report(new StoreUnavailableError('close', what.join('; ')));
  }
}

/** The longest delay a Node.js timer takes. */
const TIMER_MAX_MS = 2_147_483_647;

/** The `revocation` options, checked, with their defaults. */
function checkRevocation(
  options: RevocationOptions | undefined,
  bus: InvalidationBus | undefined,
): { wait: boolean; timeoutMs: number; heartbeatMs: number } {
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw new ValidationError('revocation', 'must be an object such as { wait: true, timeoutMs: 1000 }');
  }
  const o = options ?? {};
  const wait = o.wait ?? false;
  if (typeof wait !== 'boolean') throw new ValidationError('revocation.wait', 'must be true or false');
  if (wait && !bus) {
    throw new ValidationError('revocation.wait', 'needs an invalidation bus to wait on: set the invalidation option, or leave wait off');
  }
  return {
    wait,
    timeoutMs: checkWholeNumber('revocation.timeoutMs', o.timeoutMs ?? 1000, { max: TIMER_MAX_MS, unit: 'ms' }),
    heartbeatMs: checkWholeNumber('revocation.heartbeatMs', o.heartbeatMs ?? 1000, { min: 10, max: 3_600_000, unit: 'ms' }),
  };
}
