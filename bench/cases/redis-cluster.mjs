// Case: keys.verify without a cache, many worker threads at once, on one store on the standalone Redis, one store on a
// Redis Cluster (one hash tag: one slot, one primary), and N stores whose tags land on N different primaries.
// Runs alone: `node bench/cases/redis-cluster.mjs` (needs dist/, KEYGATE_TEST_REDIS_URL and
// KEYGATE_TEST_REDIS_CLUSTER_URL, or their defaults 127.0.0.1:6379 and 127.0.0.1:7301..7303).
//
// Options (environment): BENCH_WORKERS (threads, default 6), BENCH_INFLIGHT (verifies in flight per
// thread, default 32), BENCH_MS (length of one measurement, default 3000), BENCH_ROUNDS (default 3).

import { randomBytes } from 'node:crypto';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Cluster, Redis } from 'ioredis';
import { loadDist } from '../lib/keygate.mjs';

const REDIS_URL = process.env.KEYGATE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const CLUSTER_URLS = (process.env.KEYGATE_TEST_REDIS_CLUSTER_URL ?? 'redis://127.0.0.1:7301,redis://127.0.0.1:7302,redis://127.0.0.1:7303')
  .split(',')
  .map((u) => u.trim())
  .filter(Boolean);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 6);
const INFLIGHT = Number(process.env.BENCH_INFLIGHT ?? 32);
const MS = Number(process.env.BENCH_MS ?? 3000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TOKENS_PER_STORE = 200;

function nodes(urls) {
  return urls.map((url) => {
    const u = new URL(url);
    return { host: u.hostname, port: Number(u.port || 6379) };
  });
}

async function connect(target) {
  if (target === 'cluster') {
    const cluster = new Cluster(nodes(CLUSTER_URLS), { lazyConnect: true, scaleReads: 'master' });
    await cluster.connect();
    return cluster;
  }
  const client = new Redis(REDIS_URL, { lazyConnect: true });
  await client.connect();
  return client;
}

/** One thread: a key manager per store on a connection of its own, verifying its store's tokens as fast as it can. */
async function worker() {
  const { target, stores, ms, inflight } = workerData;
  const { createKeyManager } = await loadDist('index');
  const { redisStore } = await loadDist('redis');
  const client = await connect(target);
  const { prefix, tokens } = stores[workerData.index % stores.length];
  const keys = createKeyManager({ store: redisStore(client, { prefix }), lastUsedFlushMs: 60_000 });
  parentPort.postMessage({ type: 'ready' });
  await new Promise((resolve) => parentPort.once('message', resolve));
  const end = Date.now() + ms;
  let count = 0;
  let invalid = 0;
  await Promise.all(
    Array.from({ length: inflight }, async (_, lane) => {
      let i = lane;
      while (Date.now() < end) {
        const result = await keys.verify(tokens[i++ % tokens.length]);
        if (!result.valid) invalid++;
        count++;
      }
    }),
  );
  await keys.close();
  client.disconnect();
  parentPort.postMessage({ type: 'done', count, invalid });
}

/** Runs one measurement: every thread at once; verifies per second, summed. */
async function measure(target, stores) {
  const threads = Array.from(
    { length: WORKERS },
    (_, index) => new Worker(new URL(import.meta.url), { workerData: { target, stores, ms: MS, inflight: INFLIGHT, index } }),
  );
  const next = (w, type) =>
    new Promise((resolve, reject) => {
      const on = (m) => {
        if (m.type === type) {
          w.off('message', on);
          resolve(m);
        }
      };
      w.on('message', on);
      w.once('error', reject);
    });
  await Promise.all(threads.map((w) => next(w, 'ready')));
  const started = performance.now();
  const done = threads.map((w) => next(w, 'done'));
  for (const w of threads) w.postMessage('go');
  const results = await Promise.all(done);
  const seconds = (performance.now() - started) / 1000;
  const invalid = results.reduce((s, r) => s + r.invalid, 0);
  if (invalid > 0) throw new Error(`${invalid} verifies were refused`);
  return results.reduce((s, r) => s + r.count, 0) / seconds;
}

/** `count` store prefixes; on the cluster, each on a different primary. */
async function prefixes(client, count, target) {
  const out = [];
  const owners = new Set();
  while (out.length < count) {
    const prefix = `{kgt-bench-${randomBytes(4).toString('hex')}}:`;
    if (target === 'cluster') {
      const slot = Number(await client.call('CLUSTER', ['KEYSLOT', prefix]));
      const owner = client.slots[slot]?.[0];
      if (owners.has(owner)) continue;
      owners.add(owner);
    }
    out.push(prefix);
  }
  return out;
}

async function main() {
  const { createKeyManager } = await loadDist('index');
  const { redisStore } = await loadDist('redis');
  const setups = {};
  const cleanups = [];
  const primaries = CLUSTER_URLS.length;
  for (const target of ['standalone', 'cluster']) {
    const client = await connect(target);
    const made = [];
    for (const prefix of await prefixes(client, primaries, target)) {
      const keys = createKeyManager({ store: redisStore(client, { prefix }) });
      const tokens = [];
      for (let i = 0; i < TOKENS_PER_STORE; i++) tokens.push((await keys.create({ name: `b${i}`, scopes: ['all'] })).token);
      await keys.close();
      made.push({ prefix, tokens });
    }
    setups[target] = made;
    cleanups.push(async () => {
      for (const { prefix } of made) {
        const { redisStore: rs } = await loadDist('redis');
        const store = rs(client, { prefix });
        const all = await store.list({ limit: 10_000 });
        for (const r of all) await store.delete(r.id);
      }
      client.disconnect();
    });
  }
  const cases = [
    ['standalone, 1 store', 'standalone', setups.standalone.slice(0, 1)],
    ['cluster, 1 store (one slot)', 'cluster', setups.cluster.slice(0, 1)],
    [`standalone, ${primaries} stores`, 'standalone', setups.standalone],
    [`cluster, ${primaries} stores on ${primaries} primaries`, 'cluster', setups.cluster],
  ];
  const samples = new Map(cases.map(([label]) => [label, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [label, target, stores] of cases) samples.get(label).push(await measure(target, stores));
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`keys.verify without cache, ${WORKERS} threads x ${INFLIGHT} in flight, ${MS} ms x ${ROUNDS} rounds (median verifies/s):`);
  const base = median(samples.get(cases[0][0]));
  for (const [label] of cases) {
    const m = median(samples.get(label));
    console.log(
      `  ${label.padEnd(40)} ${Math.round(m).toString().padStart(8)} /s  (x${(m / base).toFixed(2)} of standalone, 1 store; rounds: ${samples
        .get(label)
        .map((x) => Math.round(x))
        .join(', ')})`,
    );
  }
  for (const cleanup of cleanups) await cleanup();
}

if (isMainThread) {
  main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
} else {
  worker().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
