// Case: keys.verify on SQLite, PostgreSQL, MariaDB/MySQL and Redis (10k keys), without and with the verify cache, against MemoryStore.

import { compare } from '../lib/harness.mjs';
import { skippedRow, timeRow } from '../lib/report.mjs';
import { assertValid, createKeys, fillStore, hasDist, loadDist } from '../lib/keygate.mjs';
import { BENCH_STORES } from '../lib/stores.mjs';

const KEYS = 10_000;
const REAL_KEYS = 1000;
const CACHE = { ttlMs: 60_000, maxEntries: 100_000 };

/** The stores measured, against MemoryStore. */
const STORES = [BENCH_STORES.sqlite, BENCH_STORES.postgres, BENCH_STORES.mysql, BENCH_STORES.redis];

export async function run({ quick, log }) {
  const { createKeyManager } = await loadDist('index');
  const { memoryStore } = await loadDist('memory');
  const rows = [];
  const memorySamples = [];

  // The reference: MemoryStore with the same number of keys, measured in the same rounds.
  const reference = memoryStore();
  await fillStore(reference, KEYS - REAL_KEYS);
  const memoryKeys = createKeyManager({ store: reference });
  const memoryTokens = await createKeys(memoryKeys, REAL_KEYS);

  for (const spec of STORES) {
    const label = `keys.verify, ${spec.label}, 10k keys`;
    if (!hasDist(spec.dist)) {
      rows.push(
        skippedRow(
          `${spec.id}-nocache`,
          label,
          `dist/${spec.dist}.js is not built (adapters/${spec.dist} missing when the library was built)`,
        ),
      );
      continue;
    }
    const connection = await spec.open();
    if (connection.skip) {
      rows.push(skippedRow(`${spec.id}-nocache`, label, connection.skip));
      continue;
    }
    const mod = await loadDist(spec.dist);
    const { store, drop } = await spec.make(mod, connection.client);
    try {
      const started = Date.now();
      const parallel = spec.id === 'sqlite' ? 1 : 16;
      await fillStore(store, KEYS - REAL_KEYS, parallel);
      const plain = createKeyManager({ store });
      // The same without the breaker: what shedding costs a verify that reaches the store.
      const unguarded = createKeyManager({ store, breaker: false });
      const cached = createKeyManager({ store, cache: CACHE });
      const tokens = await createKeys(plain, REAL_KEYS, parallel);
      log(`${spec.id}: ${KEYS} keys stored in ${Date.now() - started} ms`);
      assertValid(await plain.verify(tokens[0], { scope: 'orders:list' }), spec.id);
      // Prime the cache with every token: the rows measure the cache's hits.
      for (const token of tokens) assertValid(await cached.verify(token, { scope: 'orders:list' }), `${spec.id} (cached)`);

      const n = tokens.length;
      const results = await compare(
        [
          { id: 'memory', fn: (i) => memoryKeys.verify(memoryTokens[i % n], { scope: 'orders:list' }) },
          { id: 'plain', fn: (i) => plain.verify(tokens[i % n], { scope: 'orders:list' }) },
          { id: 'unguarded', fn: (i) => unguarded.verify(tokens[i % n], { scope: 'orders:list' }) },
          { id: 'cached', fn: (i) => cached.verify(tokens[i % n], { scope: 'orders:list' }) },
        ],
        { rounds: quick ? 4 : 12, batchMs: quick ? 40 : 80, warmupMs: quick ? 150 : 400 },
      );
      memorySamples.push(...results.memory);
      rows.push(
        timeRow({ id: `${spec.id}-nocache`, label, samples: results.plain, against: results.memory, ratioLabel: 'of MemoryStore' }),
        timeRow({
          id: `${spec.id}-breaker`,
          label: `keys.verify, ${spec.label}, 10k keys: breaker on (the default) against breaker: false`,
          samples: results.plain,
          against: results.unguarded,
          ratioLabel: 'of breaker: false',
        }),
        timeRow({
          id: `${spec.id}-cache`,
          label: `keys.verify, ${spec.label}, 10k keys, cache on`,
          samples: results.cached,
          against: results.memory,
          ratioLabel: 'of MemoryStore',
          target: { text: '≤ 2× MemoryStore', check: (r) => r <= 2 },
        }),
      );
      await plain.close();
      await unguarded.close();
      await cached.close();
    } finally {
      await drop();
      await connection.close();
    }
  }
  if (memorySamples.length > 0) {
    rows.unshift(
      timeRow({
        id: 'memory-10k',
        label: 'keys.verify, MemoryStore, 10k keys (reference for the stores; all their rounds)',
        samples: memorySamples,
      }),
    );
  }
  return rows;
}
