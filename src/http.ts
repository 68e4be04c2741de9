// Framework-neutral guard core: token extraction, client-IP resolution and verify result -> HTTP response.

import { Deadlines } from './deadline.js';
import { StoreUnavailableError, ValidationError } from './errors.js';
import { type AddressMatcher, compileTrustedProxies } from './ip.js';
import type { KeyManager } from './manager.js';
import {
  checkRateLimit,
  describe,
  IN_PROCESS,
  type LimiterAnswer,
  memoryLimiter,
  type RateLimitBucket,
  type RateLimiter,
  type RateLimitStatus,
} from './rate-limit.js';
import type { ApiKey, VerifyFailureCode, VerifyOptions, VerifyResult } from './types.js';
import { checkWholeNumber } from './validate.js';

/** Request headers as Node gives them: lower-case names; repeated headers may arrive as arrays. */
export type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

/**
 * Where a request may carry its API key.
 * - `bearer`: `Authorization: Bearer <token>`
 * - `x-api-key`: `X-API-Key: <token>`
 * - `basic`: `Authorization: Basic base64(<token>:)` (the token as user name or as password, the
 *   other part empty or anything), for clients built for B2B Wave-style APIs
 *
 * The query string is never read: URLs end up in access logs, proxies and browser history.
 */
export type TokenCarrier = 'bearer' | 'x-api-key' | 'basic';

/** The `error.code` of a guard's rejection body. */
export type GuardErrorCode =
  | 'invalid_api_key'
  | 'insufficient_scope'
  | 'ip_not_allowed'
  | 'rate_limited'
  | 'usage_exceeded'
  | 'key_store_unavailable';

/**
 * Why a request was rejected: the verify code; `TOO_MANY_FAILED_ATTEMPTS` when the client address
 * used up its `failedAttempts` budget; `STORE_UNAVAILABLE` when the key store or a limiter failed.
 */
export type GuardRejectionReason = VerifyFailureCode | 'TOO_MANY_FAILED_ATTEMPTS' | 'STORE_UNAVAILABLE';

/** The JSON body of a rejection. */
export interface GuardErrorBody {
  error: {
    code: GuardErrorCode;
    message: string;
    /** The verify code of a 401 (`MISSING`, `EXPIRED`, …); present only with `exposeReasons`. */
    reason?: VerifyFailureCode;
  };
}

/**
 * A refused request and the response the guard sends for it. `onReject` hooks receive a fresh copy
 * and may change `status`, `body` and `headers` before it is sent.
 */
export interface GuardRejection {
  readonly ok: false;
  /** 401, 403, 429 or 503. */
  status: number;
  body: GuardErrorBody;
  /** Response headers, e.g. `WWW-Authenticate`, `Retry-After`, `RateLimit` and `RateLimit-Policy`. */
  headers: Record<string, string>;
  /**
   * Why, for logs: the verify code, `TOO_MANY_FAILED_ATTEMPTS` or `STORE_UNAVAILABLE`. Sent to the
   * client only with `exposeReasons` (401).
   */
  readonly reason: GuardRejectionReason;
  /** The store or limiter failure behind a 503, for logs; `null` otherwise. It never carries the token. */
  readonly error: StoreUnavailableError | null;
}

/** A request the guard lets through. */
export interface GuardPass {
  readonly ok: true;
  readonly key: ApiKey;
  /**
   * Headers for the response: the `RateLimit` and `RateLimit-Policy` fields when a rate limit
   * applied to the key, else none (one shared, frozen empty object). The framework guards set them.
   */
  readonly headers: Readonly<Record<string, string>>;
}

/** What the guard decided: let the request through with its key, or refuse it. */
export type GuardOutcome = GuardPass | GuardRejection;

/** The parts of a request the guard reads. */
export interface GuardRequest {
  /** Request headers with lower-case names, as Node's `IncomingMessage.headers`. */
  headers: HeaderBag;
  /** The socket's peer address (`req.socket.remoteAddress`); `undefined` once the socket closed. */
  remoteAddress: string | undefined;
  /**
   * The header lines as received, names and values alternating: Node's `req.rawHeaders` (HTTP/1
   * and HTTP/2 compat requests alike). Node keeps only the first `Authorization` header in
   * `headers`; with `rawHeaders` the guard reads every one, so a request carrying two different
   * keys there is refused as malformed. The Express, Koa and Fastify guards pass it.
   * @default none: only the first `Authorization` header is read
   */
  rawHeaders?: readonly string[] | undefined;
}

/** Options shared by the Express, Koa and Fastify guards. */
export interface GuardOptions {
  /**
   * The scope(s) a request needs; with several, all are required. Checked against the manager's
   * scope catalog when the guard is created, so a typo fails at startup.
   * @default none (any valid key passes)
   */
  scope?: string | readonly string[];
  /**
   * Which headers may carry the key. A request carrying two different keys is refused as malformed,
   * also in two `Authorization` headers (read from `rawHeaders`); the same key twice is fine.
   * @default ['bearer', 'x-api-key']
   */
  carriers?: readonly TokenCarrier[];
  /**
   * The proxies whose `X-Forwarded-For` is believed: addresses, CIDR ranges (`10.0.0.0/8`) and the
   * names `loopback`, `linklocal`, `uniquelocal`, as an array or a comma-separated string. The
   * client address is the right-most address that is not a trusted proxy (proxy-addr's rule), every
   * hop parsed strictly. The guard reads the socket itself and ignores Express's `trust proxy`, Koa's
   * `app.proxy` and Fastify's `trustProxy`.
   * @default none: the socket's peer address is the client address and `X-Forwarded-For` is ignored
   */
  trustedProxies?: string | readonly string[];
  /**
   * Put the verify code (`MISSING`, `MALFORMED`, `NOT_FOUND`, `INACTIVE`, `EXPIRED`) in 401 bodies as
   * `error.reason`. Off, every bad key gets the same body, which tells a guesser nothing.
   * @default false
   */
  exposeReasons?: boolean;
  /**
   * The `Retry-After` value, in seconds, of the 503 sent when the key store fails.
   * @default 5
   */
  retryAfterSeconds?: number;
  /**
   * Throttles guessing: a client address that sent `limit` bad keys (malformed, unknown, inactive
   * or expired; a missing key, a 403 and a success do not count) within `windowMs` gets 429
   * `rate_limited` with `Retry-After` for every request, a valid key included, without a key
   * lookup, until its count slides out of the window. The address is the one the guard computes
   * (`trustedProxies` applies); requests with none share one counter. `limiter` holds the counters:
   * pass one limiter to several guards to share them, and one whose counters every instance reaches
   * to share them across instances. A failing limiter fails closed: 503 with `Retry-After`, as a
   * failing key store.
   * @default off; with it, `limiter` defaults to `memoryLimiter()`, one per guard
   */
  failedAttempts?: FailedAttemptsOptions | undefined;
  /**
   * The clock of `failedAttempts`, in ms since the epoch; for tests.
   * @default Date.now
   */
  now?: (() => number) | undefined;
}

/** Options of a guard's bad-key throttling (`failedAttempts`). */
export interface FailedAttemptsOptions {
  /** Bad keys one client address may send per window, 1..1,000,000,000. */
  limit: number;
  /** The window, in ms: 1 ms .. 366 days. */
  windowMs: number;
  /**
   * Where the counters live, under the keys `ip:<windowMs>:<address>` (`ip:<windowMs>:none` without an address).
   * @default memoryLimiter(), one per guard
   */
  limiter?: RateLimiter | undefined;
}

/** A compiled guard: one per route or middleware, created at startup. */
export interface GuardCore {
  /**
   * Decides on one request. Resolves a rejection for bad keys (401/403), rate limits and quotas
   * (429) and store or limiter failures (503); rejects only for errors that are bugs or misuse (e.g.
   * a closed manager), which belong to the framework's error handling.
   */
  authenticate(request: GuardRequest): Promise<GuardOutcome>;
}

const CARRIERS: readonly TokenCarrier[] = ['bearer', 'x-api-key', 'basic'];
const DEFAULT_CARRIERS: readonly TokenCarrier[] = ['bearer', 'x-api-key'];
/** Longer header values cannot hold a key (tokens are under 80 characters) and are refused unread. */
const MAX_CREDENTIAL_LENGTH = 4096;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const INVALID_401 = 'A valid API key is required.';
const FORBIDDEN_SCOPE = 'The API key does not grant the scope this request needs.';
const FORBIDDEN_IP = 'The client address is not allowed to use this API key.';
const UNAVAILABLE = 'The API key store is unavailable; retry later.';
const THROTTLED = 'Too many requests with invalid API keys from this address; retry later.';
/** The headers of a pass without rate limits: one object for all, so such a pass allocates none. */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
/** How long a `failedAttempts` limiter that is not in this process may take, as a key store call by default. */
const FAILED_ATTEMPTS_TIMEOUT_MS = 2000;

/**
 * Stands for credentials that cannot be one token (two different keys, an undecodable Basic header).
 * `verify` answers MALFORMED for any non-string, so the rejection is reported like any other.
 */
const INVALID: unique symbol = Symbol('keygate.invalidCredentials');
type Credential = string | null | typeof INVALID;

/** Combines what two carriers hold: an absent value defers to the other; two different values are invalid. */
function merge(found: Credential, next: Credential): Credential {
  if (next === null || found === INVALID) return found;
  if (found === null) return next;
  return found === next ? found : INVALID;
}

function isSpace(code: number): boolean {
  return code === 32 || code === 9;
}

/** `Basic base64(user:password)`: the token is whichever part looks like one of ours. */
function fromBasic(encoded: string, tokenStart: string): Credential {
  if (!BASE64.test(encoded)) return INVALID;
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return INVALID;
  const user = decoded.slice(0, colon);
  const password = decoded.slice(colon + 1);
  if (password === '') return user === '' ? INVALID : user;
  if (user === '') return password;
  const userIsToken = user.startsWith(tokenStart);
  const passwordIsToken = password.startsWith(tokenStart);
  if (userIsToken && passwordIsToken) return user === password ? user : INVALID;
  if (userIsToken) return user;
  if (passwordIsToken) return password;
  return INVALID;
}

/** One `Authorization` value; `null` when its scheme is not an enabled carrier. */
function fromAuthorization(value: string, bearer: boolean, basic: boolean, tokenStart: string): Credential {
  let start = 0;
  while (start < value.length && isSpace(value.charCodeAt(start))) start++;
  let end = start;
  while (end < value.length && !isSpace(value.charCodeAt(end))) end++;
  const scheme = end - start === 6 || end - start === 5 ? value.slice(start, end).toLowerCase() : '';
  const isBearer = bearer && scheme === 'bearer';
  if (!isBearer && !(basic && scheme === 'basic')) return null;
  if (value.length - end > MAX_CREDENTIAL_LENGTH) return INVALID;
  const credentials = value.slice(end).trim();
  if (credentials === '') return INVALID;
  if (isBearer) return /\s/.test(credentials) ? INVALID : credentials;
  return fromBasic(credentials, tokenStart);
}

/** One `X-API-Key` value. Node joins repeated headers with `, `: every part must be the same key. */
function fromApiKeyHeader(value: string): Credential {
  if (value.length > MAX_CREDENTIAL_LENGTH) return INVALID;
  if (!value.includes(',')) {
    const token = value.trim();
    return token === '' ? null : token;
  }
  let found: Credential = null;
  for (const part of value.split(',')) {
    const token = part.trim();
    if (token !== '') found = merge(found, token);
  }
  return found;
}

function eachValue(value: string | readonly string[] | undefined, read: (value: string) => Credential, found: Credential): Credential {
  if (value === undefined) return found;
  if (typeof value === 'string') return merge(found, read(value));
  for (const item of value) {
    if (typeof item === 'string') found = merge(found, read(item));
  }
  return found;
}

/** Whether a raw header name is `Authorization`, in any case, without allocating for the usual spellings. */
function isAuthorizationName(name: unknown): boolean {
  if (name === 'Authorization' || name === 'authorization') return true;
  return typeof name === 'string' && name.length === 13 && name.toLowerCase() === 'authorization';
}

/**
 * Adds the `Authorization` lines of `rawHeaders` that `headers` dropped (Node keeps the first one
 * only). A line equal to the one in `headers` is skipped unread: it is the same credential.
 */
function rawAuthorizations(
  raw: readonly string[],
  seen: string | readonly string[],
  read: (value: string) => Credential,
  found: Credential,
): Credential {
  for (let i = 0; i + 1 < raw.length && found !== INVALID; i += 2) {
    if (!isAuthorizationName(raw[i])) continue;
    const value = raw[i + 1];
    if (typeof value === 'string' && value !== seen) found = merge(found, read(value));
  }
  return found;
}

/**
 * The client address: the socket's peer, or with trusted proxies the right-most `X-Forwarded-For`
 * hop that is not one of them (the walk of proxy-addr's `all()`). Every hop is parsed strictly by
 * the matcher, so a hop that does not parse (`0177.0.0.1`) is never a proxy: the walk stops there,
 * and that hop then fails every allow-list.
 */
function clientAddress(
  remote: string | undefined,
  forwardedFor: string | readonly string[] | undefined,
  trust: AddressMatcher | null,
): string | null {
  if (remote === undefined || remote === null) return null;
  if (trust === null || forwardedFor === undefined || !trust(remote)) return remote;
  return forwardedClient(typeof forwardedFor === 'string' ? forwardedFor : forwardedFor.join(','), trust, remote);
}

/**
 * Walks `X-Forwarded-For` from the right: the first hop that `trust` does not match, or the
 * left-most hop when every one does, or `fallback` when the header has no hop. Empty entries are
 * skipped. For a server that sees no socket (Next.js), the right-most hop stands for the peer.
 */
export function forwardedClient(header: string, trust: AddressMatcher, fallback: string | null): string | null {
  let address = fallback;
  let end = header.length;
  while (end > 0) {
    const comma = header.lastIndexOf(',', end - 1);
    const entry = header.slice(comma + 1, end).trim();
    end = Math.max(comma, 0);
    if (entry === '') continue;
    address = entry;
    if (!trust(address)) return address;
  }
  return address;
}

/** A store failure, also when the error class comes from another copy of keygate (ESM next to CJS). */
function isStoreUnavailable(error: unknown): error is StoreUnavailableError {
  return (
    error instanceof StoreUnavailableError ||
    (error instanceof Error && error.name === 'StoreUnavailableError' && (error as { code?: unknown }).code === 'STORE_UNAVAILABLE')
  );
}

function checkScope(keys: KeyManager, scope: unknown): string | readonly string[] | undefined {
  if (scope === undefined) return undefined;
  const list: unknown[] = typeof scope === 'string' ? [scope] : Array.isArray(scope) ? scope : [scope];
  if (list.length === 0) throw new ValidationError('scope', 'must name at least one scope, or be left out to accept any valid key');
  const known = keys.scopes
    .list()
    .map((info) => info.name)
    .join(', ');
  for (const item of list) {
    if (typeof item !== 'string' || !keys.scopes.has(item)) {
      throw new ValidationError('scope', `unknown scope ${JSON.stringify(item)}; known scopes: ${known}`);
    }
  }
  return typeof scope === 'string' ? scope : Object.freeze([...(list as string[])]);
}

function checkCarriers(value: unknown): ReadonlySet<TokenCarrier> {
  if (value === undefined) return new Set(DEFAULT_CARRIERS);
  if (!Array.isArray(value) || value.length === 0) {
    throw new ValidationError('carriers', `must be a non-empty array of ${CARRIERS.map((c) => `'${c}'`).join(', ')}`);
  }
  for (const carrier of value) {
    if (!CARRIERS.includes(carrier as TokenCarrier)) {
      throw new ValidationError(
        'carriers',
        `unknown carrier ${JSON.stringify(carrier)}; use ${CARRIERS.map((c) => `'${c}'`).join(', ')} (the query string is never read)`,
      );
    }
  }
  return new Set(value as TokenCarrier[]);
}

/** A refusal of the request with this status, error body and headers. */
function rejection(
  reason: VerifyFailureCode,
  status: 401 | 403,
  error: GuardErrorBody['error'],
  headers: Record<string, string>,
): GuardRejection {
  return { ok: false, status, body: { error }, headers, reason, error: null };
}

/** Whole seconds, rounded up, of a delay in ms. */
function seconds(ms: number): number {
  return Math.ceil(ms / 1000);
}

/**
 * Adds the `RateLimit-Policy` and `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-10 for
 * the limits that applied: Structured Field lists with one member per limit, named by its scope
 * (`"key"`, `"owner"`). `q` is the limit and `w` the window in whole seconds, rounded up; `r` is
 * what is left and `t` the seconds until more is: the end of the window for a limit that admitted
 * the request, the wait until it would admit it for one that refused it (so `Retry-After` is never
 * earlier than `t`).
 */
function addRateLimitFields(limits: readonly RateLimitStatus[], headers: Record<string, string>): Record<string, string> {
  let policy = '';
  let current = '';
  for (const status of limits) {
    const separator = policy === '' ? '' : ', ';
    policy += `${separator}"${status.scope}";q=${status.limit};w=${Math.max(1, seconds(status.windowMs))}`;
    const wait = status.retryAfterMs === null || status.retryAfterMs === 0 ? status.resetMs : status.retryAfterMs;
    current += `${separator}"${status.scope}";r=${status.remaining};t=${seconds(wait)}`;
  }
  headers['RateLimit-Policy'] = policy;
  headers.RateLimit = current;
  return headers;
}

/** A 503 for a failing key store or limiter. */
function unavailable(error: StoreUnavailableError, retryAfter: string): GuardRejection {
  return {
    ok: false,
    status: 503,
    body: { error: { code: 'key_store_unavailable', message: UNAVAILABLE } },
    headers: { 'Retry-After': retryAfter },
    reason: 'STORE_UNAVAILABLE',
    error,
  };
}

/** A 429 for a refusal of verify's rate limits or quota, with `Retry-After` and the rate-limit fields. */
function limited(result: Extract<VerifyResult, { valid: false }>): GuardRejection {
  const headers: Record<string, string> = {};
  const wait = result.retryAfterMs;
  if (wait !== null && wait !== undefined) headers['Retry-After'] = String(Math.max(1, seconds(wait)));
  if (result.limits !== undefined && result.limits.length > 0) addRateLimitFields(result.limits, headers);
  const code: GuardErrorCode = result.code === 'RATE_LIMITED' ? 'rate_limited' : 'usage_exceeded';
  return { ok: false, status: 429, body: { error: { code, message: result.message } }, headers, reason: result.code, error: null };
}

/** The verify codes that count as a failed attempt: a key was sent, and it is not one that works. */
const FAILED_ATTEMPT: ReadonlySet<VerifyFailureCode> = new Set<VerifyFailureCode>(['MALFORMED', 'NOT_FOUND', 'INACTIVE', 'EXPIRED']);

/** Bad-key throttling, compiled: peeks at an address's budget before verify, counts a failed attempt after it. */
interface Throttle {
  /** The counter of a client address (`null`: none known). */
  group(ip: string | null): string;
  /**
   * A 429 (budget used up) or 503 (limiter failed) for the address, or `null` to go on; then the
   * attempt is in flight until `settle`. Attempts in flight count against the budget, so requests
   * sent at once cannot all pass the check before any of them has failed.
   */
  check(group: string): Promise<GuardRejection | null>;
  /** Ends an attempt `check` let through; counts it when it failed. A 503 when the limiter failed, else `null`. */
  settle(group: string, failed: boolean): Promise<GuardRejection | null>;
}

const FAILED_ATTEMPTS_FIELDS = new Set(['limit', 'windowMs', 'limiter']);

function compileThrottle(value: unknown, now: () => number, retryAfter: string): Throttle | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ValidationError(
      'failedAttempts',
      'must be { limit, windowMs } (e.g. { limit: 10, windowMs: 600000 }), optionally with a limiter',
    );
  }
  const { limiter: given, ...rest } = value as Record<string, unknown>;
  const extra = Object.keys(value).find((name) => !FAILED_ATTEMPTS_FIELDS.has(name));
  if (extra !== undefined) {
    throw new ValidationError('failedAttempts', `has unknown field '${extra}'; only limit, windowMs and limiter are allowed`);
  }
  if (given !== undefined && (given === null || typeof (given as { take?: unknown }).take !== 'function')) {
    throw new ValidationError('failedAttempts.limiter', 'must be a RateLimiter such as memoryLimiter() or redisLimiter(client)');
  }
  const { limit, windowMs } = checkRateLimit('failedAttempts', rest) as { limit: number; windowMs: number };
  const limiter = (given as RateLimiter | undefined) ?? memoryLimiter();
  // Counters in this process answer at once and cannot hang: no deadline, no timer.
  const deadlines = (limiter as { [IN_PROCESS]?: true })[IN_PROCESS] ? null : new Deadlines(FAILED_ATTEMPTS_TIMEOUT_MS);

  const take = async (group: string, cost: number, at: number): Promise<LimiterAnswer> => {
    const buckets: RateLimitBucket[] = [{ key: group, limit, windowMs }];
    if (deadlines === null) return limiter.take(group, buckets, cost, at);
    return deadlines.run('failedAttempts', async () => limiter.take(group, buckets, cost, at));
  };
  const failed = (error: unknown): GuardRejection => {
    if (isStoreUnavailable(error)) return unavailable(error, retryAfter);
    const message = error instanceof Error ? error.message : String(error);
    return unavailable(new StoreUnavailableError('failedAttempts', message, { cause: error }), retryAfter);
  };

  // Attempts of this guard let through and not yet settled, per address.
  const inFlight = new Map<string, number>();
  return {
    // The window is part of the name: a counter is never read with another window length.
    group: (ip) => `ip:${windowMs}:${ip ?? 'none'}`,
    async check(group) {
      const at = now();
      let state: LimiterAnswer['states'][number] | undefined;
      try {
        // Cost 0: reads the counter (rolling its window over) without counting anything.
        state = (await take(group, 0, at)).states[0];
      } catch (error) {
        return failed(error);
      }
      if (state === undefined) return failed(new Error('the limiter answered without the state of the counter'));
      const status = describe(state, limit, windowMs, 1, at, false);
      const pending = inFlight.get(group) ?? 0;
      if (status.remaining > pending) {
        inFlight.set(group, pending + 1);
        return null;
      }
      return {
        ok: false,
        status: 429,
        body: { error: { code: 'rate_limited', message: THROTTLED } },
        headers: { 'Retry-After': String(Math.max(1, seconds(status.retryAfterMs ?? windowMs))) },
        reason: 'TOO_MANY_FAILED_ATTEMPTS',
        error: null,
      };
    },
    async settle(group, failedAttempt) {
      const pending = (inFlight.get(group) ?? 1) - 1;
      if (pending > 0) inFlight.set(group, pending);
      else inFlight.delete(group);
      if (!failedAttempt) return null;
      try {
        await take(group, 1, now());
        return null;
      } catch (error) {
        return failed(error);
      }
    },
  };
}

/**
 * Compiles a guard. Every option is checked here, so a misconfigured guard fails at startup:
 * an unknown scope, carrier or proxy entry throws `ValidationError` naming the option.
 *
 * @example
 * const guard = createGuardCore(keys, { scope: 'orders:list' })
 * const outcome = await guard.authenticate({ headers: req.headers, rawHeaders: req.rawHeaders, remoteAddress: req.socket.remoteAddress })
 * for (const [name, value] of Object.entries(outcome.headers)) res.setHeader(name, value)
 * if (!outcome.ok) { res.writeHead(outcome.status).end(JSON.stringify(outcome.body)) }
 */
export function createGuardCore(keys: KeyManager, options: GuardOptions = {}): GuardCore {
  if (!keys || typeof keys.verify !== 'function' || !keys.scopes) {
    throw new ValidationError('keys', 'is required: pass the manager from createKeyManager()');
  }
  if (!options || typeof options !== 'object') throw new ValidationError('options', 'must be an object');
  const scope = checkScope(keys, options.scope);
  const carriers = checkCarriers(options.carriers);
  const trust = compileTrustedProxies(options.trustedProxies, 'trustedProxies');
  const exposeReasons = options.exposeReasons ?? false;
  if (typeof exposeReasons !== 'boolean') throw new ValidationError('exposeReasons', 'must be true or false');
  const retryAfterHeader = String(checkWholeNumber('retryAfterSeconds', options.retryAfterSeconds ?? 5, { min: 0, unit: 'seconds' }));
  const now = options.now ?? Date.now;
  if (typeof now !== 'function') throw new ValidationError('now', 'must be a function that returns the time in ms since the epoch');
  const throttle = compileThrottle(options.failedAttempts, now, retryAfterHeader);
  const bearer = carriers.has('bearer');
  const basic = carriers.has('basic');
  const readsAuthorization = bearer || basic;
  const readsApiKeyHeader = carriers.has('x-api-key');
  const tokenStart = `${keys.prefix}_`;
  const readAuthorization = (value: string): Credential => fromAuthorization(value, bearer, basic, tokenStart);

  const extract = (headers: HeaderBag, raw: readonly string[] | undefined): Credential => {
    let found: Credential = null;
    if (readsAuthorization) {
      const authorization = headers.authorization;
      found = eachValue(authorization, readAuthorization, found);
      // Only when `headers` still has one: a header removed there (say by a middleware) stays removed.
      if (authorization !== undefined && Array.isArray(raw)) found = rawAuthorizations(raw, authorization, readAuthorization, found);
    }
    if (readsApiKeyHeader) found = eachValue(headers['x-api-key'], fromApiKeyHeader, found);
    return found;
  };

  const reject = (result: Extract<VerifyResult, { valid: false }>): GuardRejection => {
    const code = result.code;
    if (code === 'RATE_LIMITED' || code === 'USAGE_EXCEEDED') return limited(result);
    if (code === 'INSUFFICIENT_SCOPE') return rejection(code, 403, { code: 'insufficient_scope', message: FORBIDDEN_SCOPE }, {});
    if (code === 'IP_NOT_ALLOWED') return rejection(code, 403, { code: 'ip_not_allowed', message: FORBIDDEN_IP }, {});
    const error: GuardErrorBody['error'] = exposeReasons
      ? { code: 'invalid_api_key', message: result.message, reason: code }
      : { code: 'invalid_api_key', message: INVALID_401 };
    return rejection(code, 401, error, { 'WWW-Authenticate': 'Bearer' });
  };

  return {
    async authenticate(request) {
      const headers = request.headers;
      const ip = clientAddress(request.remoteAddress, trust === null ? undefined : headers['x-forwarded-for'], trust);
      const group = throttle === null ? null : throttle.group(ip);
      if (throttle !== null) {
        // Before the key is read: an address that used up its budget costs no lookup.
        const refused = await throttle.check(group as string);
        if (refused !== null) return refused;
      }
      let settled = false;
      try {
        const token = extract(headers, request.rawHeaders);
        const verifyOptions: VerifyOptions = scope === undefined ? { ip } : { ip, scope };
        let result: VerifyResult;
        try {
          result = await keys.verify(token, verifyOptions);
        } catch (error) {
          if (!isStoreUnavailable(error)) throw error;
          return unavailable(error, retryAfterHeader);
        }
        if (throttle !== null) {
          settled = true;
          const failed = await throttle.settle(group as string, !result.valid && FAILED_ATTEMPT.has(result.code));
          if (failed !== null) return failed;
        }
        return outcomeOf(result);
      } finally {
        if (throttle !== null && !settled) void throttle.settle(group as string, false);
      }
    },
  };

  function outcomeOf(result: VerifyResult): GuardOutcome {
    if (result.valid) {
      const limits = result.limits;
      return {
        ok: true,
        key: result.key,
        headers: limits === undefined || limits.length === 0 ? NO_HEADERS : addRateLimitFields(limits, {}),
      };
    }
    return reject(result);
  }
}

/**
 * The options with one `failedAttempts` limiter for every guard compiled from them: for adapters
 * that compile a guard per route or scope from shared options, so an address has one budget.
 * @internal
 */
export function shareFailedAttempts<T extends { failedAttempts?: FailedAttemptsOptions | undefined }>(options: T): T {
  const given = options.failedAttempts;
  if (given === undefined || given === null || typeof given !== 'object' || given.limiter !== undefined) return options;
  return { ...options, failedAttempts: { ...given, limiter: memoryLimiter() } };
}

/** Checks an adapter's `onReject` option: a function or nothing. */
export function checkOnReject<T extends (...args: never[]) => unknown>(value: T | undefined): T | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'function') throw new ValidationError('onReject', 'must be a function');
  return value;
}

/** Options of `createOriginCheck`. */
export interface OriginCheckOptions {
  /**
   * The proxies whose `X-Forwarded-Proto` and `X-Forwarded-Host` are believed, written as the
   * guards' `trustedProxies` (addresses, CIDR ranges, `loopback`, `linklocal`, `uniquelocal`). Only
   * when the socket's peer is one of them does the request's origin come from those headers (the
   * first entry of each, as Express reads them); from any other peer they are ignored.
   * @default none: the request's origin is the connection's own scheme and its `Host` header
   */
  trustedProxies?: string | readonly string[] | undefined;
}

/** The parts of a request the origin check reads. */
export interface OriginCheckRequest {
  /** Request headers with lower-case names, as Node's `IncomingMessage.headers`. */
  headers: HeaderBag;
  /** The socket's peer address (`req.socket.remoteAddress`); `undefined` once the socket closed. */
  remoteAddress: string | undefined;
  /**
   * Whether the connection to this server is TLS: `req.socket.encrypted` in Node (`true` on a TLS
   * socket, missing on a plain one).
   * @default false
   */
  encrypted?: boolean | undefined;
}

/**
 * Whether the request's `Origin` header, when it has one, is the request's own origin. `true`
 * without an `Origin` header; `false` for `Origin: null`, for anything that is not one
 * `scheme://host[:port]`, and when the request's own origin cannot be told (no `Host`).
 */
export type OriginCheck = (request: OriginCheckRequest) => boolean;

/** `host[:port]`, a name or an address in brackets, nothing else (no user info, path or spaces). */
const HOST_AND_PORT = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]{1,5})?$/;
const SCHEME_END = '://';

/**
 * An origin as browsers write it: `scheme://host[:port]`, the host in lower case, the default port
 * left out; `null` unless `scheme` is http or https and `host` is a host with an optional port.
 */
function serializeOrigin(scheme: string, host: string): string | null {
  if (scheme !== 'http' && scheme !== 'https') return null;
  if (!HOST_AND_PORT.test(host)) return null;
  try {
    return new URL(`${scheme}${SCHEME_END}${host}`).origin;
  } catch {
    return null;
  }
}

/** The one value of a header: a string as is, the only item of a one-item array; otherwise undefined. */
function oneValue(value: string | readonly string[] | undefined): string | undefined {
  if (typeof value === 'string') return value;
  return value !== undefined && value.length === 1 ? value[0] : undefined;
}

/** The first entry of a comma-separated header, trimmed; undefined when empty. */
function firstEntry(value: string | readonly string[] | undefined): string | undefined {
  const first = typeof value === 'string' ? value : value?.[0];
  if (first === undefined) return undefined;
  const comma = first.indexOf(',');
  const entry = (comma < 0 ? first : first.slice(0, comma)).trim();
  return entry === '' ? undefined : entry;
}

/** The origin the request was sent to, as the browser sees it; `null` when it cannot be told. */
function ownOrigin(request: OriginCheckRequest, trust: AddressMatcher | null): string | null {
  const headers = request.headers;
  let scheme = request.encrypted === true ? 'https' : 'http';
  // HTTP/2 requests carry :authority instead of Host.
  let host = oneValue(headers.host) ?? oneValue(headers[':authority']);
  if (trust?.(request.remoteAddress)) {
    const proto = firstEntry(headers['x-forwarded-proto']);
    if (proto !== undefined) scheme = proto.toLowerCase();
    host = firstEntry(headers['x-forwarded-host']) ?? host;
  }
  return host === undefined ? null : serializeOrigin(scheme, host.trim());
}

/**
 * Compiles a check that a request's `Origin` header, when present, is the request's own origin:
 * the same scheme, host and port (default ports normalised: `https://shop.example:443` is
 * `https://shop.example`). Use it on writes (POST, PUT, PATCH, DELETE) of pages signed in with
 * cookies or HTTP Basic, which browsers also send with cross-site requests. `Origin: null` (a
 * sandboxed frame, a `file:` page, some redirects) is refused. Behind a reverse proxy that
 * terminates TLS, name it in `trustedProxies`, so the scheme and host it forwards are the ones
 * compared. A bad `trustedProxies` entry throws `ValidationError` here, at startup.
 *
 * @example
 * const isOwnOrigin = createOriginCheck({ trustedProxies: 'loopback' })
 * if (req.method !== 'GET' && !isOwnOrigin({ headers: req.headers, remoteAddress: req.socket.remoteAddress, encrypted: req.socket.encrypted })) {
 *   res.writeHead(403).end()
 * }
 */
export function createOriginCheck(options: OriginCheckOptions = {}): OriginCheck {
  if (!options || typeof options !== 'object') throw new ValidationError('options', 'must be an object');
  const trust = compileTrustedProxies(options.trustedProxies, 'trustedProxies');
  return (request) => {
    const origin = oneValue(request.headers.origin);
    if (origin === undefined) return request.headers.origin === undefined;
    const scheme = origin.indexOf(SCHEME_END);
    if (scheme < 0) return false;
    const claimed = serializeOrigin(origin.slice(0, scheme), origin.slice(scheme + SCHEME_END.length));
    return claimed !== null && claimed === ownOrigin(request, trust);
  };
}
