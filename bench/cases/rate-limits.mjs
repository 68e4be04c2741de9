// Case: what a rate limit or a quota adds to keys.verify, as ratios measured in the same rounds; on Redis,
// the round trips each verify makes, counted at the client, not timed.

import { compare } from '../lib/harness.mjs';
import { skippedRow, timeRow } from '../lib/report.mjs';
import { assertValid, createKeys, hasDist, loadDist } from '../lib/keygate.mjs';
import { BENCH_STORES } from '../lib/stores.mjs';

const TOKENS = 1000;
/** Never reached in a run: every verify is admitted and the measured path is the admitting one. */
const WIDE = { limit: 1_000_000_000, windowMs: 60_000 };

/**
 * Round trips per verify: commands the ioredis client sends (every keygate call goes through its
 * `call`), over `n` verifies run one after another. Counted, not timed.
 */
async function commandsPerVerify(client, keys, tokens, n = 200) {
  const call = client.call;
  let sent = 0;
  client.call = function counted(...args) {
    sent++;
    return call.apply(this, args);
  };
  try {
    for (let i = 0; i < n; i++) assertValid(await keys.verify(tokens[i % tokens.length]), 'redis round trips');
  } finally {
    delete client.call;
  }
  return sent / n;
}

export async function run({ quick, log }) {
  const { createKeyManager, memoryLimiter } = await loadDist('index');
  const { memoryStore } = await loadDist('memory');
  const rows = [];
  const options = { rounds: quick ? 4 : 12, batchMs: quick ? 40 : 80, warmupMs: quick ? 150 : 400 };

  // Memory: the in-process limiter and the memory store's quota, against the same verify without either.
  {
    const store = memoryStore();
    const keys = createKeyManager({ store, rateLimits: { limiter: memoryLimiter() } });
    const plain = await createKeys(keys, TOKENS);
    const limited = [];
    const metered = [];
    for (let i = 0; i < TOKENS; i++) {
      limited.push((await keys.create({ name: `limited ${i}`, scopes: ['all'], rateLimit: WIDE })).token);
      metered.push((await keys.create({ name: `metered ${i}`, scopes: ['all'], remaining: 1_000_000_000 })).token);
    }
    assertValid(await keys.verify(limited[0], { scope: 'orders:list' }), 'memory, limited');
    const results = await compare(
      [
        { id: 'plain', fn: (i) => keys.verify(plain[i % TOKENS], { scope: 'orders:list' }) },
        { id: 'limited', fn: (i) => keys.verify(limited[i % TOKENS], { scope: 'orders:list' }) },
        { id: 'metered', fn: (i) => keys.verify(metered[i % TOKENS], { scope: 'orders:list' }) },
      ],
      options,
    );
    rows.push(
      timeRow({
        id: 'memory-rate-limit',
        label: 'keys.verify, MemoryStore + memoryLimiter: key with a rate limit against one without',
        samples: results.limited,
        against: results.plain,
        ratioLabel: 'of no limit',
        target: { text: '≤ 1.3×', check: (r) => r <= 1.3 },
      }),
      timeRow({
        id: 'memory-quota',
        label: 'keys.verify, MemoryStore: key with a quota (remaining) against one without',
        samples: results.metered,
        against: results.plain,
        ratioLabel: 'of no quota',
      }),
    );
  }

  // Redis: keys and counters on one server, no verify cache (every verify reads the key), then with the cache.
  const spec = BENCH_STORES.redis;
  if (!hasDist('redis')) {
    rows.push(skippedRow('redis-rate-limit', 'keys.verify, Redis + redisLimiter', 'dist/redis.js is not built'));
    return rows;
  }
  const connection = await spec.open();
  if (connection.skip) {
    rows.push(skippedRow('redis-rate-limit', 'keys.verify, Redis + redisLimiter', connection.skip));
    return rows;
  }
  const mod = await loadDist('redis');
  const { store, drop } = await spec.make(mod, connection.client);
  const prefix = `kgbenchrl${process.pid}:`;
  try {
    const limiter = mod.redisLimiter(connection.client, { prefix });
    const keys = createKeyManager({ store, rateLimits: { limiter } });
    const cached = createKeyManager({ store, rateLimits: { limiter }, cache: { ttlMs: 60_000 } });
    const plain = await createKeys(keys, TOKENS, 16);
    const limited = [];
    for (let i = 0; i < TOKENS; i++) limited.push((await keys.create({ name: `limited ${i}`, scopes: ['all'], rateLimit: WIDE })).token);
    for (const t of [...plain, ...limited]) assertValid(await cached.verify(t), 'redis cached, priming');
    const trips = {
      plain: await commandsPerVerify(connection.client, keys, plain),
      limited: await commandsPerVerify(connection.client, keys, limited),
      cachedPlain: await commandsPerVerify(connection.client, cached, plain),
      cachedLimited: await commandsPerVerify(connection.client, cached, limited),
    };
    log(`redis commands per verify: ${JSON.stringify(trips)}`);
    const results = await compare(
      [
        { id: 'plain', fn: (i) => keys.verify(plain[i % TOKENS], { scope: 'orders:list' }) },
        { id: 'limited', fn: (i) => keys.verify(limited[i % TOKENS], { scope: 'orders:list' }) },
        { id: 'cachedPlain', fn: (i) => cached.verify(plain[i % TOKENS], { scope: 'orders:list' }) },
        { id: 'cachedLimited', fn: (i) => cached.verify(limited[i % TOKENS], { scope: 'orders:list' }) },
      ],
      options,
    );
    rows.push(
      timeRow({
        id: 'redis-rate-limit',
        label: `keys.verify, Redis store + redisLimiter, no cache: rate limit against none (round trips per verify, counted at the client: ${trips.limited} against ${trips.plain})`,
        samples: results.limited,
        against: results.plain,
        ratioLabel: 'of no limit',
        target: { text: 'the limit adds one round trip', check: () => trips.limited - trips.plain === 1 },
      }),
      timeRow({
        id: 'redis-rate-limit-cached',
        label: `keys.verify, Redis store + redisLimiter, cache on: rate limit against none (round trips per verify: ${trips.cachedLimited} against ${trips.cachedPlain})`,
        samples: results.cachedLimited,
        against: results.cachedPlain,
        ratioLabel: 'of no limit',
      }),
    );
    await keys.close();
    await cached.close();
  } finally {
    await drop();
    const keysLeft = await connection.client.keys(`${prefix}*`);
    if (keysLeft.length > 0) await connection.client.del(...keysLeft);
    await connection.close();
  }
  return rows;
}
