// redisLimiter() on the limiter contract with every client and protocol, plus its key layout, expiry, round trips and races across connections.

import { randomBytes } from 'node:crypto';
import { Redis as IoRedis6 } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { escapeName, EXPIRY_MARGIN_MS } from '../../adapters/redis/limiter.js';
import { redisLimiter, redisStore, type RedisClientLike, type RedisLimiter } from '../../adapters/redis/index.js';
import { limiterContractSuite } from '../../adapters/testing/index.js';
import {
  createKeyManager,
  RATE_LIMIT_MAX,
  RATE_WINDOW_MAX_MS,
  slide,
  StoreUnavailableError,
  ValidationError,
  type KeyManager,
  type RateLimitBucket,
  type WindowState,
} from '../../src/index.js';
import { serviceUrl } from '../support/services.js';
import {
  closeRedis,
  connectRedis,
  deletePrefix,
  familyOf,
  isIoRedis,
  keysUnder,
  newIoRedis,
  newNodeRedis,
  randomPrefix,
  rawCommand,
  REDIS_CLIENT_KINDS,
  REDIS_CLIENT_SETUPS,
  setupLabel,
  type AnyRedisClient,
} from '../support/redis.js';

const url = serviceUrl('redis');

/** A counter prefix of its own (no hash tag: the limiter adds one per group). */
function limiterPrefix(label: string): string {
  return `kgt-rl-${label}-${randomBytes(6).toString('hex')}:`;
}

/** The same client, counting the commands sent through it. */
function counting(client: AnyRedisClient): { client: RedisClientLike; count: () => number } {
  let n = 0;
  if (isIoRedis(client)) {
    return {
      client: {
        get status() {
          return client.status;
        },
        call: (command: string, args: string[]) => {
          n++;
          return client.call(command, args);
        },
      },
      count: () => n,
    };
  }
  const node = client as { readonly isReady: boolean; sendCommand(args: string[]): Promise<unknown> };
  return {
    client: {
      get isReady() {
        return node.isReady;
      },
      sendCommand: (args: string[]) => {
        n++;
        return node.sendCommand(args);
      },
    },
    count: () => n,
  };
}

/** CRC16/XMODEM, the hash of Redis Cluster slots. */
function crc16(bytes: Buffer): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** What Redis Cluster hashes of a key: the text between the first `{` and the next `}` when not empty, else the whole key. */
function hashedPart(key: string): string {
  const open = key.indexOf('{');
  if (open === -1) return key;
  const close = key.indexOf('}', open + 1);
  if (close === -1 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

function slotOf(key: string): number {
  return crc16(Buffer.from(hashedPart(key), 'utf8')) % 16384;
}

for (const setup of REDIS_CLIENT_SETUPS) {
  const kind = setupLabel(setup);
  describe.skipIf(!url)(`redisLimiter with ${kind}`, () => {
    limiterContractSuite(
      { describe, it, beforeAll, afterAll },
      async () => {
        const client = await connectRedis(setup, url as string);
        const prefix = limiterPrefix('contract');
        return {
          limiter: redisLimiter(client, { prefix }),
          cleanup: async () => {
            await deletePrefix(client, prefix);
            await closeRedis(client);
          },
        };
      },
      { name: `redisLimiter (${kind})` },
    );

    describe(`Redis specifics (${kind})`, () => {
      let client: AnyRedisClient;
      let prefix: string;
      let limiter: RedisLimiter;

      beforeAll(async () => {
        client = await connectRedis(setup, url as string);
        prefix = limiterPrefix('specifics');
        limiter = redisLimiter(client, { prefix });
      });

      afterAll(async () => {
        if (client) {
          await deletePrefix(client, prefix);
          await closeRedis(client);
        }
      });

      it('sends one command per take, whatever the number of buckets', async () => {
        const counted = counting(client);
        const own = redisLimiter(counted.client, { prefix });
        const group = `o:count-${randomBytes(4).toString('hex')}`;
        const buckets = [
          { key: `k:${group}-a`, limit: 1000, windowMs: 60_000 },
          { key: group, limit: 1000, windowMs: 60_000 },
        ];
        const at = Date.UTC(2030, 0, 1);
        await own.take(group, buckets, 1, at); // the script may need loading once
        const before = counted.count();
        for (let i = 0; i < 20; i++) expect((await own.take(group, buckets, 1, at + i)).allowed).toBe(true);
        for (let i = 0; i < 20; i++) expect((await own.take(group, buckets.slice(0, 1), 1, at + i)).allowed).toBe(true);
        expect(counted.count() - before).toBe(40);
      });

      it('keeps a counter per bucket under the group hash tag, readable for plain names, and never spelled alike for different names', async () => {
        const group = `o:shop-${randomBytes(3).toString('hex')}`;
        const at = Date.UTC(2030, 0, 1) + 5;
        await limiter.take(
          group,
          [
            { key: 'k:abc', limit: 5, windowMs: 60_000 },
            { key: group, limit: 5, windowMs: 60_000 },
          ],
          2,
          at,
        );
        expect(await keysUnder(client, `${prefix}{${group}}:`)).toEqual(
          [`${prefix}{${group}}:k:abc`, `${prefix}{${group}}:${group}`].sort(),
        );
        const stored = await rawCommand(client, ['GET', `${prefix}{${group}}:k:abc`]);
        expect(String(stored)).toBe(`60000:${Math.floor(at / 60_000)}:2:0`);

        // Names a hash tag or a naive escaping would confuse; the last two differ only in a lone surrogate.
        const odd = [
          '',
          '{',
          '}',
          '{x}',
          '}{',
          'a b',
          'a%20b',
          'a%0020b',
          'é',
          'e\u0301',
          '%',
          '%0025',
          '\u0000',
          '🔑',
          '\ud83d',
          '\ufffd',
        ];
        const keys = new Set<string>();
        for (const g of odd) {
          for (const b of odd) {
            const key = limiter.keyOf(g, b);
            keys.add(key);
            expect(key.slice(prefix.length)).toMatch(/^\{[^{}]+\}:[^{}\s]*$/);
            // The hash tag is the group's own spelling: the bucket name never moves it.
            expect(hashedPart(key)).toBe(g === '' ? '%' : escapeName(g));
            expect(slotOf(key)).toBe(slotOf(limiter.keyOf(g, 'k:other')));
          }
        }
        expect(keys.size).toBe(odd.length * odd.length);
        // Each name counts on its own in Redis too.
        for (const b of odd)
          expect((await limiter.take(`g:${group}`, [{ key: b, limit: 1, windowMs: 60_000 }], 1, at)).allowed, b).toBe(true);
        for (const b of odd)
          expect((await limiter.take(`g:${group}`, [{ key: b, limit: 1, windowMs: 60_000 }], 1, at)).allowed, b).toBe(false);
      });

      it('spreads groups over the Cluster slots', () => {
        const slots = new Set<number>();
        for (let i = 0; i < 2000; i++) slots.add(slotOf(limiter.keyOf(`o:shop-${i}`, `k:key-${i}`)));
        expect(slots.size).toBeGreaterThan(1500);
      });

      it('gives each counter a time to live of the window after its own plus a margin, and lets dead counters vanish', async () => {
        const windowMs = 60_000;
        const now = Date.now();
        const group = `k:ttl-${randomBytes(4).toString('hex')}`;
        const answer = await limiter.take(group, [{ key: group, limit: 10, windowMs }], 1, now);
        const ttl = Number(await rawCommand(client, ['PTTL', limiter.keyOf(group, group)]));
        const longest = ((answer.states[0] as WindowState).window + 2) * windowMs - now + EXPIRY_MARGIN_MS;
        expect(ttl).toBeGreaterThan(windowMs);
        expect(ttl).toBeLessThanOrEqual(longest);
        expect(longest).toBeLessThanOrEqual(2 * windowMs + EXPIRY_MARGIN_MS);

        // A 20 ms window: the counter is gone within 2 windows and the margin.
        const short = `k:short-${randomBytes(4).toString('hex')}`;
        await limiter.take(short, [{ key: short, limit: 10, windowMs: 20 }], 1, Date.now());
        const shortTtl = Number(await rawCommand(client, ['PTTL', limiter.keyOf(short, short)]));
        expect(shortTtl).toBeGreaterThan(0);
        expect(shortTtl).toBeLessThanOrEqual(40 + EXPIRY_MARGIN_MS);
        const deadline = Date.now() + 10_000;
        while (Number(await rawCommand(client, ['EXISTS', limiter.keyOf(short, short)])) === 1) {
          expect(Date.now()).toBeLessThan(deadline);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      });

      it('leaves the counts of a refused take as they were', async () => {
        const group = `o:refused-${randomBytes(4).toString('hex')}`;
        const wide = { key: `k:${group}`, limit: 10, windowMs: 60_000 };
        const narrow = { key: group, limit: 1, windowMs: 60_000 };
        const at = Date.UTC(2030, 0, 1) + 7;
        expect((await limiter.take(group, [wide, narrow], 1, at)).allowed).toBe(true);
        const before = await Promise.all([wide, narrow].map((b) => rawCommand(client, ['GET', limiter.keyOf(group, b.key)])));
        const refused = await limiter.take(group, [wide, narrow], 1, at + 1000);
        expect(refused.allowed).toBe(false);
        expect(refused.states.map((s) => s.count)).toEqual([1, 1]);
        const after = await Promise.all([wide, narrow].map((b) => rawCommand(client, ['GET', limiter.keyOf(group, b.key)])));
        expect(after).toEqual(before);
      });

      it('agrees with slide() where its products leave the exact integers (limit 10^9, a 366-day window)', async () => {
        const windowMs = RATE_WINDOW_MAX_MS;
        const limit = RATE_LIMIT_MAX;
        const group = `k:huge-${randomBytes(4).toString('hex')}`;
        const bucket = { key: group, limit, windowMs };
        const w = Math.floor(Date.UTC(2030, 0, 1) / windowMs);
        // A count of 998,602,105 in the previous window, then 95 ms into this one a cost of 1,397,898:
        // previous * weight + cost * windowMs exceeds limit * windowMs by 25, less than the doubles
        // resolve there, so slide() admits it (exact integers would refuse it by one part in 10^18).
        let state: WindowState | null = null;
        const steps: Array<[number, number]> = [
          [998_602_105, (w - 1) * windowMs + 12],
          [1_397_898, w * windowMs + 95],
          [1, w * windowMs + 95],
        ];
        for (const [cost, now] of steps) {
          const want = slide(state, limit, windowMs, cost, now);
          const got = await limiter.take(group, [bucket], cost, now);
          expect(got, `cost ${cost} at ${now}`).toEqual({ allowed: want.allowed, states: [want.state] });
          state = want.state;
        }
        expect(
          998_602_105n * BigInt(windowMs - 95) + 1_397_898n * BigInt(windowMs) > BigInt(limit) * BigInt(windowMs),
          'the second step is one that exact integers refuse',
        ).toBe(true);
        expect(slide({ window: w - 1, count: 998_602_105, previous: 0 }, limit, windowMs, 1_397_898, w * windowMs + 95).allowed).toBe(true);

        // And a walk of large costs at the largest limit and window, compared step by step.
        const walk = { key: `${group}-walk`, limit, windowMs };
        let seed = 11;
        const next = (n: number): number => {
          seed = (seed * 1103515245 + 12345) % 2147483648;
          return seed % n;
        };
        let walked: WindowState | null = null;
        let now = w * windowMs;
        for (let i = 0; i < 300; i++) {
          now += next(3) === 0 ? next(windowMs) : next(1_000_000);
          const cost = next(3) === 0 ? next(RATE_LIMIT_MAX + 1) : next(50_000_000);
          const want = slide(walked, limit, windowMs, cost, now);
          expect(await limiter.take(walk.key, [walk], cost, now), `take ${i}`).toEqual({ allowed: want.allowed, states: [want.state] });
          walked = want.state;
        }
      });

      it('agrees with slide() at times far from now: the epoch, before it, and the last representable date', async () => {
        for (const [label, start, windowMs] of [
          ['epoch', 0, 1000],
          ['before the epoch', -86_400_000 * 365, 60_000],
          ['year 275760', 8_640_000_000_000_000 - 10 * 60_000, 60_000],
          ['1 ms windows', Date.UTC(2030, 0, 1), 1],
          // Window numbers of 16 digits: written with fewer significant digits, they would change.
          ['1 ms windows in year 275760', 8_640_000_000_000_000 - 1000, 1],
        ] as const) {
          const key = `k:far-${randomBytes(4).toString('hex')}`;
          const bucket = { key, limit: 3, windowMs };
          let state: WindowState | null = null;
          for (let i = 0; i < 40; i++) {
            const now = start + Math.floor((i * windowMs) / 7);
            const want = slide(state, bucket.limit, windowMs, 1, now);
            expect(await limiter.take(key, [bucket], 1, now), `${label}, take ${i}`).toEqual({
              allowed: want.allowed,
              states: [want.state],
            });
            state = want.state;
          }
        }
      });
    });
  });
}

describe.skipIf(!url)('redisLimiter across connections and clients', () => {
  const clients: AnyRedisClient[] = [];
  let prefix: string;
  const managers: KeyManager[] = [];

  beforeAll(async () => {
    prefix = limiterPrefix('race');
    for (const kind of REDIS_CLIENT_KINDS) clients.push(await connectRedis(kind, url as string));
  });

  afterAll(async () => {
    for (const m of managers) await m.close();
    if (clients[0]) await deletePrefix(clients[0], prefix);
    for (const client of clients) await closeRedis(client);
  });

  it('admits exactly the owner limit out of 100 concurrent two-bucket takes, and counts each admitted take in both buckets', async () => {
    // One limiter per connection, as instances of an application would have.
    const limiters = clients.map((client) => redisLimiter(client, { prefix }));
    const owner = `o:race-${randomBytes(4).toString('hex')}`;
    const ownerBucket = { key: owner, limit: 10, windowMs: 60_000 };
    const keyIds = Array.from({ length: 5 }, (_, i) => `k:race-${i}`);
    const at = Date.UTC(2030, 0, 1) + 3;
    const takes = Array.from({ length: 100 }, (_, i) => {
      const keyBucket: RateLimitBucket = { key: keyIds[i % keyIds.length] as string, limit: 50, windowMs: 60_000 };
      const limiter = limiters[i % limiters.length] as RedisLimiter;
      return limiter.take(owner, [keyBucket, ownerBucket], 1, at).then((answer) => ({ key: keyBucket.key, answer }));
    });
    const answers = await Promise.all(takes);
    const admitted = answers.filter((a) => a.answer.allowed);
    expect(admitted).toHaveLength(10);
    // Every admitted take saw its own owner count: 1..10, each once.
    expect(admitted.map((a) => a.answer.states[1]?.count).sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(
      Array.from({ length: 10 }, (_, i) => i + 1),
    );
    // The counts as stored: the owner's is 10, the keys' add up to 10, each the takes admitted for it.
    const check = limiters[0] as RedisLimiter;
    const ownerNow = await check.take(owner, [ownerBucket], 0, at);
    expect(ownerNow.states[0]?.count).toBe(10);
    let total = 0;
    for (const key of keyIds) {
      const kept = await check.take(owner, [{ key, limit: 50, windowMs: 60_000 }], 0, at);
      const count = kept.states[0]?.count ?? -1;
      expect(count).toBe(admitted.filter((a) => a.key === key).length);
      total += count;
    }
    expect(total).toBe(10);
  });

  it('limits a key across two managers sharing Redis, and refuses with the time to retry', async () => {
    const store = redisStore(clients[0] as AnyRedisClient, { prefix: randomPrefix('limited') });
    let now = Date.UTC(2030, 0, 1) + 500;
    const make = (client: AnyRedisClient) => {
      const m = createKeyManager({ store, now: () => now, rateLimits: { limiter: redisLimiter(client, { prefix }) } });
      managers.push(m);
      return m;
    };
    const a = make(clients[0] as AnyRedisClient);
    const b = make(clients[clients.length - 1] as AnyRedisClient);
    try {
      const { token } = await a.create({ name: 'limited', scopes: ['all'], rateLimit: { limit: 3, windowMs: 10_000 } });
      expect((await a.verify(token)).valid).toBe(true);
      expect((await b.verify(token)).valid).toBe(true);
      expect((await a.verify(token)).valid).toBe(true);
      // In the next window the 3 weigh 3 * (10,000 - elapsed) / 10,000: one more fits from 3,334 ms in.
      expect(await b.verify(token)).toMatchObject({ valid: false, code: 'RATE_LIMITED', retryAfterMs: 9_500 + 3_334 });
      now += 9_500 + 3_333;
      expect(await a.verify(token)).toMatchObject({ valid: false, code: 'RATE_LIMITED', retryAfterMs: 1 });
      now += 1;
      expect((await b.verify(token)).valid).toBe(true);
    } finally {
      await deletePrefix(clients[0] as AnyRedisClient, store.prefix);
    }
  });
});

describe('redisLimiter() arguments', () => {
  it('takes a prefix without braces, and adds the hash tag itself', () => {
    const client = newIoRedis('ioredis@6', { lazyConnect: true });
    try {
      for (const prefix of ['', '{keygate}:', 'rl:{x}:', 'a}b', 'bad\nprefix', 'x'.repeat(201)]) {
        expect(() => redisLimiter(client, { prefix }), JSON.stringify(prefix)).toThrow(ValidationError);
      }
      expect(redisLimiter(client).prefix).toBe('keygate:rl:');
      expect(redisLimiter(client).keyOf('o:shop 1', 'k:abc')).toBe('keygate:rl:{o:shop%00201}:k:abc');
    } finally {
      client.disconnect();
    }
  });

  it('refuses an object that is neither an ioredis nor a node-redis client, and a client with a keyPrefix', () => {
    for (const client of [null, {}, { get: () => null }, { sendCommand: () => Promise.resolve(null) }]) {
      expect(() => redisLimiter(client as unknown as RedisClientLike)).toThrow(ValidationError);
    }
    const prefixed = new IoRedis6({ keyPrefix: 'app:', lazyConnect: true });
    try {
      expect(() => redisLimiter(prefixed)).toThrow('redisLimiter(client, { prefix: "app:keygate:rl:" })');
    } finally {
      prefixed.disconnect();
    }
  });

  it('refuses a take it cannot count exactly, before sending anything', async () => {
    let sent = 0;
    const limiter = redisLimiter({
      status: 'ready',
      call: async () => {
        sent++;
        return [1];
      },
    });
    const bucket = { key: 'k:x', limit: 5, windowMs: 1000 };
    const bad: Array<[string, () => Promise<unknown>]> = [
      ['cost', () => limiter.take('g', [bucket], -1, 0)],
      ['cost', () => limiter.take('g', [bucket], 1.5, 0)],
      ['now', () => limiter.take('g', [bucket], 1, Number.NaN)],
      ['buckets', () => limiter.take('g', [{ ...bucket, limit: 0 }], 1, 0)],
      ['buckets', () => limiter.take('g', [{ ...bucket, windowMs: RATE_WINDOW_MAX_MS + 1 }], 1, 0)],
      ['buckets', () => limiter.take('g', [{ ...bucket, key: 7 as unknown as string }], 1, 0)],
      ['group', () => limiter.take(null as unknown as string, [bucket], 1, 0)],
    ];
    for (const [field, call] of bad) await expect(call()).rejects.toMatchObject({ code: 'VALIDATION_FAILED', field });
    expect(await limiter.take('g', [], 1, 0)).toEqual({ allowed: true, states: [] });
    expect(sent).toBe(0);
  });

  for (const kind of REDIS_CLIENT_KINDS) {
    it(`rejects at once, without sending, while the client is not connected (${kind})`, async () => {
      let client: AnyRedisClient;
      if (familyOf(kind) === 'ioredis') {
        const io = newIoRedis(kind, { lazyConnect: true });
        io.disconnect(); // status 'end'
        client = io;
      } else {
        client = newNodeRedis(kind, { url: 'redis://127.0.0.1:1' }); // never connected
      }
      const limiter = redisLimiter(client);
      await expect(limiter.take('g', [{ key: 'k', limit: 1, windowMs: 1000 }], 1, Date.now())).rejects.toBeInstanceOf(
        StoreUnavailableError,
      );
    });
  }
});
