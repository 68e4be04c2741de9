// Rate limits: the sliding-window counter every limiter computes, the RateLimiter interface, and the in-process limiter.

import { ValidationError } from './errors.js';
import { checkWholeNumber } from './validate.js';

/** At most `limit` requests (or units of `cost`) per `windowMs`. */
export interface RateLimit {
  /** Requests allowed per window, 1..1,000,000,000. */
  limit: number;
  /** The window, in ms: 1 ms .. 366 days. */
  windowMs: number;
}

/** The largest `limit` and `windowMs`. */
export const RATE_LIMIT_MAX = 1_000_000_000;
export const RATE_WINDOW_MAX_MS = 366 * 24 * 3600 * 1000;
/**
 * The largest `limit × windowMs`: 2^51. Every term `slide()` compares is then at most three times
 * that, below 2^53, so JavaScript, Lua (doubles) and SQL (BIGINT) all compute it exactly. It allows
 * a billion requests a minute, 26 million a day, 870,000 per 30 days; longer budgets are quotas.
 */
export const RATE_PRODUCT_MAX = 2 ** 51;

/** `value` as a frozen RateLimit, `null` for `null`; else a ValidationError naming `field`. */
export function checkRateLimit(field: string, value: unknown): Readonly<RateLimit> | null {
  if (value === null) return null;
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new ValidationError(field, 'must be { limit, windowMs } (e.g. { limit: 100, windowMs: 60000 }) or null for no limit');
  }
  const { limit, windowMs, ...rest } = value as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw new ValidationError(field, `has unknown field '${extra[0]}'; only limit and windowMs are allowed`);
  const checked = Object.freeze({
    limit: checkWholeNumber(`${field}.limit`, limit, { max: RATE_LIMIT_MAX }),
    windowMs: checkWholeNumber(`${field}.windowMs`, windowMs, { max: RATE_WINDOW_MAX_MS, unit: 'ms' }),
  });
  if (checked.limit * checked.windowMs > RATE_PRODUCT_MAX) {
    const most = Math.floor(RATE_PRODUCT_MAX / checked.windowMs);
    throw new ValidationError(
      `${field}.limit`,
      `must be at most ${most} for a window of ${checked.windowMs} ms (limit × windowMs at most 2^51, so every store counts exactly); for a budget over a long period, use a quota (remaining with a refill)`,
    );
  }
  return checked;
}

/**
 * The state of one counter: the window it counts (`floor(now / windowMs)`), what it admitted in
 * that window (`count`) and in the one before (`previous`). Three integers per key: O(1).
 */
export interface WindowState {
  window: number;
  count: number;
  previous: number;
}

/**
 * The sliding-window counter (the one Cloudflare and nginx-style limiters use), in integers.
 * Windows are aligned to the epoch; a request at `elapsed` ms into window `w` sees
 * `previous * (windowMs - elapsed) / windowMs + count` requests in the last `windowMs`, and is
 * admitted when that plus its cost is at most `limit`. So no aligned window ever admits more
 * than `limit` (`count` alone never exceeds it), and a limit is never admitted twice over at a
 * window boundary as a fixed window would. Every limiter (memory, Redis, SQL) computes exactly
 * this, on integers, so they agree to the request.
 *
 * Returns the state to keep and whether the request was admitted. `state` may be `null` (no
 * requests yet). A clock behind the stored window counts in the stored window.
 */
export function slide(
  state: WindowState | null,
  limit: number,
  windowMs: number,
  cost: number,
  now: number,
): { state: WindowState; allowed: boolean } {
  const current = Math.floor(now / windowMs);
  let window = current;
  let count = 0;
  let previous = 0;
  if (state !== null) {
    if (state.window >= current) {
      window = state.window;
      count = state.count;
      previous = state.previous;
    } else if (state.window === current - 1) {
      previous = state.count;
    }
  }
  const weight = windowMs - Math.max(0, now - window * windowMs);
  // A cost above the limit can never pass; refused before the products, which then stay below 2^53.
  const allowed = cost <= limit && previous * weight + (count + cost) * windowMs <= limit * windowMs;
  if (allowed) count += cost;
  return { state: { window, count, previous }, allowed };
}

/** Where a counter stands after a request, for the result and the `RateLimit` header fields. */
export interface RateLimitStatus {
  /** Which limit: the key's own (`'key'`) or the one its owner's keys share (`'owner'`). */
  readonly scope: 'key' | 'owner';
  readonly limit: number;
  readonly windowMs: number;
  /** Requests (units of cost) still allowed right now, 0 when refused. */
  readonly remaining: number;
  /** Ms until the current window ends. */
  readonly resetMs: number;
  /** Ms until a request of this cost would be admitted; 0 when it was; `null` when never (cost above the limit). */
  readonly retryAfterMs: number | null;
}

/**
 * What a counter in `state` (as `slide` left it) means at `now`: the remaining budget, the end of
 * the window and, for a refused request of `cost`, the least wait after which `slide` admits it.
 */
export function describe(
  state: WindowState,
  limit: number,
  windowMs: number,
  cost: number,
  now: number,
  allowed: boolean,
): Omit<RateLimitStatus, 'scope' | 'limit' | 'windowMs'> {
  const { window, count, previous } = state;
  const elapsed = Math.max(0, now - window * windowMs);
  const weight = windowMs - elapsed;
  const resetMs = windowMs - elapsed;
  // floor((limit*W - previous*weight) / W) - count, without leaving the integers.
  const remaining = Math.max(0, Math.floor((limit * windowMs - previous * weight) / windowMs) - count);
  if (cost > limit) return { remaining, resetMs, retryAfterMs: null };
  if (allowed || previous * weight + (count + cost) * windowMs <= limit * windowMs) return { remaining, resetMs, retryAfterMs: 0 };
  if (count + cost <= limit) {
    // Within this window, once enough of the previous one has slid out:
    // previous * (W - e) <= (limit - count - cost) * W  <=>  e >= W - floor((limit - count - cost) * W / previous).
    const at = windowMs - Math.floor(((limit - count - cost) * windowMs) / previous);
    return { remaining, resetMs, retryAfterMs: Math.max(1, at - elapsed) };
  }
  // In the next window, this one's count becomes the previous one.
  const at = count === 0 ? 0 : Math.max(0, windowMs - Math.floor(((limit - cost) * windowMs) / count));
  return { remaining, resetMs, retryAfterMs: resetMs + Math.min(at, windowMs) };
}

/** One counter a request is checked against. */
export interface RateLimitBucket {
  /** The counter's name, e.g. `k:<keyId>` or `o:<ownerId>`; any string. */
  readonly key: string;
  readonly limit: number;
  readonly windowMs: number;
}

/** A limiter's answer: whether every bucket admitted the request, and each bucket's state after it. */
export interface LimiterAnswer {
  readonly allowed: boolean;
  /** In the order of the buckets asked. With `allowed: false`, no bucket counted the request. */
  readonly states: readonly WindowState[];
}

/**
 * Where rate-limit counters live. `take` checks `cost` (never above a bucket's limit: the manager
 * refuses such a request without asking) against every bucket with `slide()` and
 * counts it in all of them or in none (all-or-nothing), atomically with respect to every other
 * caller of the same counters, in this process or another. `group` names the buckets that may be
 * asked together (a key's and its owner's): a distributed limiter keeps them where one atomic
 * step reaches all of them (for Redis, under one hash tag). `now` is the manager's clock, so every
 * limiter agrees with `slide()` to the request. A failure rejects; the manager then answers 503
 * (or admits, with `rateLimits.failOpen`).
 */
export interface RateLimiter {
  take(group: string, buckets: readonly RateLimitBucket[], cost: number, now: number): Promise<LimiterAnswer> | LimiterAnswer;
  /** Releases what the limiter opened itself; a client you passed in stays open. */
  close?(): Promise<void>;
}

/**
 * Marks a limiter whose counters live in this process (it answers at once and cannot hang), and
 * holds its one-bucket take, which the verify path calls without building arrays. @internal
 */
export const IN_PROCESS: unique symbol = Symbol('keygate.inProcessLimiter');

/**
 * One bucket's take in an in-process limiter: `slide()` on the kept counter, which it then keeps.
 * The answer (and its state) may be reused by the next take: read it at once. @internal
 */
export type TakeOne = (key: string, limit: number, windowMs: number, cost: number, now: number) => { state: WindowState; allowed: boolean };

/** Options of {@link memoryLimiter}. */
export interface MemoryLimiterOptions {
  /**
   * The most counters kept. Past it, counters whose windows are over are dropped first, then the
   * oldest; a dropped counter starts again from zero (admits more, never less).
   * @default 100000
   */
  maxCounters?: number | undefined;
}

/**
 * Rate-limit counters in this process: exact for one instance, and no I/O at all. With several
 * instances, each counts on its own (a key gets the limit once per instance): use `redisLimiter`
 * or a SQL limiter to share them.
 *
 * @example
 * const keys = createKeyManager({ store, rateLimits: { limiter: memoryLimiter() } })
 */
export function memoryLimiter(options: MemoryLimiterOptions = {}): RateLimiter & { readonly [IN_PROCESS]: TakeOne } {
  const max = checkWholeNumber('maxCounters', options.maxCounters ?? 100_000);
  // Kept in place: a take updates its entry, so the verify path allocates no Map entry.
  const counters = new Map<string, { state: WindowState; windowMs: number }>();
  const sweep = (now: number): void => {
    for (const [key, entry] of counters) {
      if (entry.state.window < Math.floor(now / entry.windowMs) - 1) counters.delete(key);
    }
    // Still full: drop the oldest tenth (a Map iterates in insertion order), so sweeps stay rare.
    for (const key of counters.keys()) {
      if (counters.size < max - Math.ceil(max / 10)) break;
      counters.delete(key);
    }
  };
  // A counter kept for another window length counts windows of another size: start afresh.
  const stored = (key: string, windowMs: number): WindowState | null => {
    const entry = counters.get(key);
    return entry !== undefined && entry.windowMs === windowMs ? entry.state : null;
  };
  const keep = (key: string, windowMs: number, state: WindowState, now: number): void => {
    const entry = counters.get(key);
    if (entry !== undefined) {
      entry.state = state;
      entry.windowMs = windowMs;
      return;
    }
    if (counters.size >= max) sweep(now);
    counters.set(key, { state, windowMs });
  };
  // The answer of takeOne: one object, reused (its caller reads it before the next take).
  const answer = { state: { window: 0, count: 0, previous: 0 }, allowed: false };
  const takeOne: TakeOne = (key, limit, windowMs, cost, now) => {
    const entry = counters.get(key);
    if (entry !== undefined && entry.windowMs === windowMs) {
      // In place: the kept state is this counter's own object.
      const result = slide(entry.state, limit, windowMs, cost, now);
      const kept = entry.state;
      kept.window = result.state.window;
      kept.count = result.state.count;
      kept.previous = result.state.previous;
      answer.state = kept;
      answer.allowed = result.allowed;
      return answer;
    }
    const result = slide(null, limit, windowMs, cost, now);
    keep(key, windowMs, result.state, now);
    return result;
  };
  return {
    [IN_PROCESS]: takeOne,
    take(_group, buckets, cost, now) {
      if (buckets.length === 1) {
        const b = buckets[0] as RateLimitBucket;
        const { state, allowed } = takeOne(b.key, b.limit, b.windowMs, cost, now);
        return { allowed, states: [{ window: state.window, count: state.count, previous: state.previous }] };
      }
      const taken = buckets.map((b) => slide(stored(b.key, b.windowMs), b.limit, b.windowMs, cost, now));
      const allowed = taken.every((t) => t.allowed);
      const states = buckets.map((b, i) => {
        // Refused by any bucket: none counts it (cost 0 only rolls the window over).
        const state = allowed
          ? (taken[i] as { state: WindowState }).state
          : slide(stored(b.key, b.windowMs), b.limit, b.windowMs, 0, now).state;
        keep(b.key, b.windowMs, state, now);
        return state;
      });
      return { allowed, states };
    },
  };
}
