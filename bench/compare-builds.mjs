// Compares two builds of keygate in one process, alternating rounds: verify on the memory store, and a cache-hit verify.
// Usage: node --expose-gc bench/compare-builds.mjs <dist A> <dist B> [keys]   (each a folder holding index.js and memory.js)

import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { compare, pairedRatio, summarize } from './lib/harness.mjs';
import { assertValid, createKeys, fillStore } from './lib/keygate.mjs';

const [distA, distB, size = '100000'] = process.argv.slice(2);
if (!distA || !distB) throw new Error('usage: node --expose-gc bench/compare-builds.mjs <dist A> <dist B> [keys]');
const KEYS = Number(size);
const REAL_KEYS = 1000;

/** A build's manager factory and memory store (memoryStore(), or the constructor of builds before it). */
async function load(dist) {
  const url = (name) => pathToFileURL(`${resolve(dist)}/${name}.js`).href;
  const { createKeyManager } = await import(url('index'));
  const memory = await import(url('memory'));
  const makeStore = memory.memoryStore ?? (() => new memory.MemoryStore());
  return { createKeyManager, makeStore };
}

/** A store that answers only asynchronously (no in-process fast path), so verify reaches the cache. */
function remoteOf(inner) {
  return {
    insert: (r) => inner.insert(r),
    findById: (id) => inner.findById(id),
    findByDigest: (d) => inner.findByDigest(d),
    list: (q) => inner.list(q),
    update: (r, v) => inner.update(r, v),
    delete: (id) => inner.delete(id),
    touch: (e) => inner.touch(e),
  };
}

async function prepare(dist, label) {
  const { createKeyManager, makeStore } = await load(dist);
  const store = makeStore();
  await fillStore(store, KEYS - REAL_KEYS);
  const memory = createKeyManager({ store });
  const tokens = await createKeys(memory, REAL_KEYS);
  const cached = createKeyManager({ store: remoteOf(store), cache: { ttlMs: 3_600_000, maxEntries: 2 * REAL_KEYS } });
  for (const token of tokens) assertValid(await cached.verify(token, { scope: 'orders:list' }), `${label} cache`);
  assertValid(await memory.verify(tokens[0], { scope: 'orders:list' }), `${label} memory`);
  return { memory, cached, tokens };
}

const a = await prepare(distA, 'A');
const b = await prepare(distB, 'B');
globalThis.gc?.();
const n = REAL_KEYS;
const results = await compare(
  [
    { id: 'memoryA', fn: (i) => a.memory.verify(a.tokens[i % n], { scope: 'orders:list' }) },
    { id: 'memoryB', fn: (i) => b.memory.verify(b.tokens[i % n], { scope: 'orders:list' }) },
    { id: 'cachedA', fn: (i) => a.cached.verify(a.tokens[i % n], { scope: 'orders:list' }) },
    { id: 'cachedB', fn: (i) => b.cached.verify(b.tokens[i % n], { scope: 'orders:list' }) },
  ],
  { rounds: 30, batchMs: 80, warmupMs: 1000 },
);
const fmt = (s) => `median ${s.median.toFixed(0)} ns (q1 ${s.q1.toFixed(0)}, q3 ${s.q3.toFixed(0)})`;
for (const what of ['memory', 'cached']) {
  const ratio = pairedRatio(results[`${what}B`], results[`${what}A`]);
  console.log(`${what}: A ${fmt(summarize(results[`${what}A`]))}; B ${fmt(summarize(results[`${what}B`]))}`);
  console.log(`${what}: B/A per round: median ${ratio.median.toFixed(3)} (q1 ${ratio.q1.toFixed(3)}, q3 ${ratio.q3.toFixed(3)})`);
}
for (const m of [a.memory, a.cached, b.memory, b.cached]) await m.close();
