// redisLimiter(): rate-limit counters in Redis, shared by every instance, one script per request.

import { ValidationError } from '../../src/errors.js';
import {
  type LimiterAnswer,
  RATE_LIMIT_MAX,
  RATE_WINDOW_MAX_MS,
  type RateLimitBucket,
  type RateLimiter,
  type WindowState,
} from '../../src/rate-limit.js';
import { commandSender, LuaScript, type RedisClientLike, refuseKeyPrefix, type SendCommand } from './client.js';

/** Options of {@link redisLimiter}. */
export interface RedisLimiterOptions {
  /**
   * Starts the name of every counter. It must not contain `{` or `}`: the limiter puts a Redis
   * Cluster hash tag of its own after it, one per group of buckets. Use one prefix per
   * application (or per environment) sharing a Redis database.
   * @default 'keygate:rl:'
   */
  prefix?: string | undefined;
}

/** The most cost one take may count: the largest cost a verify takes. */
const COST_MAX = 1_000_000_000;

/**
 * How long a counter outlives the window after the one it counts, in ms. Past that window its
 * count weighs nothing in `slide()`, so the counter is dropped; the margin covers clocks of
 * instances that run a little behind. A counter dropped early only admits more, never less.
 */
export const EXPIRY_MARGIN_MS = 1000;

/**
 * One take. KEYS: one counter per bucket. ARGV: cost, now (ms), expiry margin (ms), then the
 * limit and windowMs of each bucket in KEYS order. A counter is a string
 * `<window>:<count>:<previous>` (absent: no requests yet).
 *
 * Each bucket is computed exactly as `slide()` (src/rate-limit.ts) does, operation for operation:
 * Lua numbers are IEEE doubles like JavaScript's, so each step rounds the same way and the
 * decision is the same bit for bit, whatever the size of the products. Counters are written with
 * `%.0f` (every value is a whole number), never with tostring, which keeps 14 digits.
 *
 * All or nothing: the request is counted in every bucket only when every bucket admits it; a
 * refused take writes each counter back rolled over to its window with its count unchanged, as
 * slide() leaves it. A counter is `windowMs:window:count:previous`: one kept for another window
 * length starts afresh. Each written counter
 * expires when its count stops weighing: at the end of the window after its own, plus the margin.
 *
 * Returns [allowed 1|0, window1, count1, previous1, window2, …]: each bucket's state after the take.
 */
export const TAKE = new LuaScript(`
local cost = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local margin = tonumber(ARGV[3])
local n = #KEYS
local windows, counts, previouses, sizes = {}, {}, {}, {}
local allowed = true
for i = 1, n do
  local limit = tonumber(ARGV[2 + 2 * i])
  local windowMs = tonumber(ARGV[3 + 2 * i])
  local current = math.floor(now / windowMs)
  local window, count, previous = current, 0, 0
  local stored = redis.call('GET', KEYS[i])
  if stored then
    local size, w, c, p = string.match(stored, '^(%d+):(%-?%d+):(%d+):(%d+)$')
    -- A counter kept for another window length counts windows of another size: start afresh.
    if size and tonumber(size) == windowMs then
      w, c, p = tonumber(w), tonumber(c), tonumber(p)
      if w >= current then
        window, count, previous = w, c, p
      elseif w == current - 1 then
        previous = c
      end
    end
  end
  local weight = windowMs - math.max(0, now - window * windowMs)
  if cost > limit or not (previous * weight + (count + cost) * windowMs <= limit * windowMs) then allowed = false end
  windows[i], counts[i], previouses[i], sizes[i] = window, count, previous, windowMs
end
local out = { allowed and 1 or 0 }
for i = 1, n do
  -- Refused: no counter counts it, but each is kept rolled over to its window, as slide() leaves it.
  if allowed then counts[i] = counts[i] + cost end
  local ttl = math.ceil((windows[i] + 2) * sizes[i] - now) + margin
  if ttl > 0 then
    redis.call('SET', KEYS[i], string.format('%.0f:%.0f:%.0f:%.0f', sizes[i], windows[i], counts[i], previouses[i]), 'PX', ttl)
  end
  out[#out + 1] = windows[i]
  out[#out + 1] = counts[i]
  out[#out + 1] = previouses[i]
end
return out
`);

/** Characters kept as they are in counter names; every other UTF-16 unit becomes `%` and 4 hex digits. */
const PLAIN = /^[A-Za-z0-9:._-]*$/;
const ESCAPED = /[^A-Za-z0-9:._-]/g;

/**
 * A name as it appears in a counter's key: readable when it is plain, never with `{`, `}`, spaces
 * or control characters, and different for different names (`%` itself is escaped, and escaping
 * works on UTF-16 units, so even a lone surrogate keeps its own spelling).
 */
export function escapeName(name: string): string {
  if (PLAIN.test(name)) return name;
  return name.replace(ESCAPED, (c) => `%${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || prefix.length === 0 || prefix.length > 200 || /[\u0000-\u001f\u007f{}]/.test(prefix)) {
    throw new ValidationError(
      'prefix',
      'must be a string of 1..200 characters without control characters, `{` or `}` (the limiter adds a hash tag per group), such as "keygate:rl:"',
    );
  }
  return prefix;
}

function checkBuckets(buckets: unknown): readonly RateLimitBucket[] {
  if (!Array.isArray(buckets)) throw new ValidationError('buckets', 'must be an array of { key, limit, windowMs }');
  for (const b of buckets as unknown[]) {
    const { key, limit, windowMs } = (b ?? {}) as Partial<RateLimitBucket>;
    if (typeof key !== 'string') throw new ValidationError('buckets', 'each bucket needs a string key');
    if (!Number.isInteger(limit) || (limit as number) < 1 || (limit as number) > RATE_LIMIT_MAX) {
      throw new ValidationError('buckets', `the limit of bucket ${JSON.stringify(key)} must be a whole number from 1 to ${RATE_LIMIT_MAX}`);
    }
    if (!Number.isInteger(windowMs) || (windowMs as number) < 1 || (windowMs as number) > RATE_WINDOW_MAX_MS) {
      throw new ValidationError(
        'buckets',
        `the windowMs of bucket ${JSON.stringify(key)} must be a whole number from 1 to ${RATE_WINDOW_MAX_MS}`,
      );
    }
  }
  return buckets as readonly RateLimitBucket[];
}

/**
 * Rate-limit counters in Redis: what {@link redisLimiter} returns. One `take` is one script, so
 * it is atomic across every instance sharing the Redis database.
 */
export class RedisLimiter implements RateLimiter {
  /** The prefix of every counter this limiter writes. */
  readonly prefix: string;
  private readonly send: SendCommand;

  constructor(client: RedisClientLike, options: RedisLimiterOptions = {}) {
    this.send = commandSender(client, 'client');
    this.prefix = checkPrefix(options.prefix ?? 'keygate:rl:');
    refuseKeyPrefix(client, 'redisLimiter', this.prefix);
  }

  /**
   * The Redis key of a bucket's counter: `<prefix>{<group>}:<bucket>`, both names escaped. The
   * hash tag is the group's, so all buckets of one take share a Cluster slot and different groups
   * spread over the slots. The tag is never empty (an empty group is `%`, which no escaped name
   * is), since Redis would then hash the whole key.
   */
  keyOf(group: string, bucket: string): string {
    return `${this.prefix}{${group === '' ? '%' : escapeName(group)}}:${escapeName(bucket)}`;
  }

  async take(group: string, buckets: readonly RateLimitBucket[], cost: number, now: number): Promise<LimiterAnswer> {
    if (typeof group !== 'string') throw new ValidationError('group', 'must be a string');
    checkBuckets(buckets);
    if (!Number.isInteger(cost) || cost < 0 || cost > COST_MAX) {
      throw new ValidationError('cost', `must be a whole number from 0 to ${COST_MAX}, got ${String(cost)}`);
    }
    if (!Number.isFinite(now)) throw new ValidationError('now', `must be a time in ms, got ${String(now)}`);
    if (buckets.length === 0) return { allowed: true, states: [] };
    const keys: string[] = [];
    const args = [String(cost), String(now), String(EXPIRY_MARGIN_MS)];
    for (const b of buckets) {
      keys.push(this.keyOf(group, b.key));
      args.push(String(b.limit), String(b.windowMs));
    }
    const reply = (await TAKE.run(this.send, 'rateLimit', keys, args)) as unknown[];
    if (!Array.isArray(reply) || reply.length !== 1 + 3 * buckets.length) {
      throw new Error('Redis answered a rate-limit take with something other than its counters');
    }
    const states: WindowState[] = [];
    for (let i = 1; i < reply.length; i += 3) {
      states.push({ window: Number(reply[i]), count: Number(reply[i + 1]), previous: Number(reply[i + 2]) });
    }
    return { allowed: Number(reply[0]) === 1, states };
  }
}

/**
 * Rate-limit counters in Redis, through your own connected ioredis (5, 6) or node-redis (4.6+,
 * 5, 6) client: every instance of the application shares them, so a key gets its limit once, not
 * once per instance. Each request is one Redis command (a Lua script) that checks every bucket
 * (the key's limit, its owner's) with the sliding-window counter of `slide()` and counts the
 * request in all of them or in none. Counters expire on their own about two windows after their
 * last request.
 *
 * Counters are named `<prefix>{<group>}:<bucket>`: a key's and its owner's counters share one hash
 * tag, so the limiter runs on Redis Cluster (ioredis `Cluster`, node-redis `createCluster()`) too,
 * spread over the slots by owner. The client is never opened, closed or reconfigured by the limiter; while it is not ready,
 * every take rejects at once, and the manager answers 503 (or admits, with
 * `rateLimits.failOpen`). A client created with `keyPrefix` is refused: use `prefix`.
 *
 * @example
 * import { Redis } from 'ioredis'
 * import { createKeyManager } from 'keygate'
 * import { redisLimiter, redisStore } from 'keygate/redis'
 * const client = new Redis(process.env.REDIS_URL)
 * await new Promise((resolve) => client.once('ready', resolve))
 * const keys = createKeyManager({
 *   store: redisStore(client),
 *   rateLimits: { limiter: redisLimiter(client), default: { limit: 100, windowMs: 60_000 } },
 * })
 */
export function redisLimiter(client: RedisClientLike, options: RedisLimiterOptions = {}): RedisLimiter {
  return new RedisLimiter(client, options);
}
