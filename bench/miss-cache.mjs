// What remembering misses (cache.maxMisses) buys and costs: store calls per workload with and without it, and heap per remembered miss.
// Usage: node --expose-gc bench/miss-cache.mjs   (KEYGATE_BENCH_DIST=<dir> measures another build than dist/)

import { randomBytes } from 'node:crypto';
import { loadDist } from './lib/keygate.mjs';

if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc');
const { createKeyManager } = await loadDist('index');
const { memoryStore } = await loadDist('memory');

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** CRC32 is public: a well-formed token with a valid checksum, of no key, as anyone can make one. */
const CRC = new Int32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});
function forged() {
  let head = 'kg_';
  for (const byte of randomBytes(32)) head += BASE62[byte % 62];
  let crc = -1;
  for (let i = 0; i < head.length; i++) crc = CRC[(crc ^ head.charCodeAt(i)) & 0xff] ^ (crc >>> 8);
  let value = (crc ^ -1) >>> 0;
  let sum = '';
  for (let i = 0; i < 6; i++) {
    sum = BASE62[value % 62] + sum;
    value = Math.floor(value / 62);
  }
  return head + sum;
}

/** A memory store that answers only asynchronously (so verify goes through the cache), counting lookups. */
function remote(inner) {
  const store = {
    lookups: 0,
    insert: (r) => inner.insert(r),
    findById: (id) => inner.findById(id),
    findByDigest: (d) => {
      store.lookups++;
      return inner.findByDigest(d);
    },
    list: (q) => inner.list(q),
    update: (r, v) => inner.update(r, v),
    delete: (id) => inner.delete(id),
    touch: (e) => inner.touch(e),
  };
  return store;
}

/** Tokens of keys that were deleted: a client that keeps sending one is the case remembered misses serve. */
async function revokedTokens(keys, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const { key, token } = await keys.create({ name: `revoked ${i}`, scopes: ['orders:list'] });
    await keys.delete(key.id);
    out.push(token);
  }
  return out;
}

/** Each workload: a list of tokens to verify in order. */
const WORKLOADS = {
  'forgery flood: 100,000 distinct forged tokens': () => Array.from({ length: 100_000 }, forged),
  'revoked tokens retried: 100 deleted keys, each sent 100 times': (revoked) => Array.from({ length: 10_000 }, (_, i) => revoked[i % 100]),
  // A retried token stays remembered while fewer than maxMisses other misses come between two of its retries.
  'both: the retries above, 5 forgeries after each': (revoked) =>
    Array.from({ length: 10_000 }, (_, i) => [revoked[i % 100], ...Array.from({ length: 5 }, forged)]).flat(),
  'both: the retries above, 20 forgeries after each': (revoked) =>
    Array.from({ length: 10_000 }, (_, i) => [revoked[i % 100], ...Array.from({ length: 20 }, forged)]).flat(),
  'typos: 10,000 tokens with one character changed': (_, live) =>
    Array.from({ length: 10_000 }, (_, i) => {
      const token = live[i % live.length];
      const at = 3 + (i % 38);
      return token.slice(0, at) + (token[at] === 'A' ? 'B' : 'A') + token.slice(at + 1);
    }),
};

async function lookupsFor(maxMisses, workload) {
  const store = remote(memoryStore());
  const keys = createKeyManager({ store, cache: { ttlMs: 600_000, maxMisses } });
  const revoked = await revokedTokens(keys, 100);
  const live = [];
  for (let i = 0; i < 10; i++) live.push((await keys.create({ name: `live ${i}`, scopes: ['orders:list'] })).token);
  const tokens = workload(revoked, live);
  store.lookups = 0;
  for (const token of tokens) {
    const result = await keys.verify(token);
    if (result.valid) throw new Error('a workload token was accepted');
  }
  await keys.close();
  return { verifies: tokens.length, lookups: store.lookups };
}

/** Heap (after GC) of a manager whose cache is empty, then holding `n` misses, per miss slot. */
async function heapPerMiss(n) {
  const heap = () => {
    globalThis.gc();
    globalThis.gc();
    return process.memoryUsage().heapUsed;
  };
  const tokens = Array.from({ length: n }, forged);
  const store = remote(memoryStore());
  const base = heap();
  const keys = createKeyManager({ store, cache: { ttlMs: 600_000, maxMisses: n } });
  const empty = heap();
  for (const token of tokens) await keys.verify(token);
  const full = heap();
  await keys.close();
  return { reserved: (empty - base) / n, filled: (full - base) / n };
}

console.log(`Node ${process.version}\n`);
console.log('| workload | verifies | store lookups, maxMisses 1000 (default) | store lookups, maxMisses 0 |');
console.log('| --- | --- | --- | --- |');
for (const [name, workload] of Object.entries(WORKLOADS)) {
  const withMisses = await lookupsFor(1000, workload);
  const without = await lookupsFor(0, workload);
  console.log(
    `| ${name} | ${withMisses.verifies.toLocaleString('en-US')} | ${withMisses.lookups.toLocaleString('en-US')} | ${without.lookups.toLocaleString('en-US')} |`,
  );
}
const per = await heapPerMiss(100_000);
console.log(
  `\nHeap per remembered miss (100,000 slots): ${Math.round(per.reserved)} bytes reserved when the cache is made, ${Math.round(per.filled)} bytes once filled.`,
);
