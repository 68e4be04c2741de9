// Case: how fast a revocation reaches another instance's verify cache over each invalidation bus, and what
// waiting for its acknowledgement ({ wait: true }) costs. This process is instance A; a forked child
// (propagation-peer.mjs) is instance B. Both cache with a 10-minute ttl, so only the bus can make B refuse.
//
// Per trial A creates a key, B caches its token and verifies it in a loop, A deactivates the key. The
// refusal latency is timed on A's clock alone: from just before A calls deactivate() to the arrival of
// B's IPC message saying it refused (so it includes one IPC hop, B -> A). When the call returns, A tells
// B over IPC and B verifies once more: an acceptance then is a token still accepted after the call
// returned. Trials alternate the two modes (without and with { wait: true }) in the same run.

import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { summarize } from '../lib/harness.mjs';
import { hasDist, loadDist } from '../lib/keygate.mjs';
import { skippedRow } from '../lib/report.mjs';
import { URLS, connectPostgres, connectRedis, deleteRedisPrefix, uniqueName } from '../lib/services.mjs';

const PEER = fileURLToPath(new URL('./propagation-peer.mjs', import.meta.url));
/** How long a write waits for acknowledgements; a trial past it counts as unconfirmed. */
const TIMEOUT_MS = 2000;

/** The buses measured, in the order of the table. */
const BUSES = [
  { kind: 'redis', dist: 'redis', label: 'Redis pub/sub (standalone)' },
  { kind: 'postgres', dist: 'postgres', label: 'PostgreSQL LISTEN/NOTIFY' },
  { kind: 'cluster', dist: 'redis', label: 'Redis Cluster pub/sub' },
];

function reason(error) {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0];
}

/** The seed nodes of KEYGATE_TEST_REDIS_CLUSTER_URL (`redis://host:port,redis://host:port`). */
function clusterSeeds() {
  return (process.env.KEYGATE_TEST_REDIS_CLUSTER_URL ?? '')
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean)
    .map((u) => {
      const url = new URL(u);
      return { host: url.hostname, port: Number(url.port || 6379) };
    });
}

/** An ioredis Cluster over the seeds, connected, or `{ skip }` with why not. */
async function connectCluster() {
  const seeds = clusterSeeds();
  if (seeds.length === 0) return { skip: 'KEYGATE_TEST_REDIS_CLUSTER_URL is not set (comma-separated redis://host:port seed nodes)' };
  const { Cluster } = await import('ioredis');
  const client = new Cluster(seeds, {
    lazyConnect: true,
    scaleReads: 'master',
    clusterRetryStrategy: () => null,
    redisOptions: { connectTimeout: 3000, maxRetriesPerRequest: 1 },
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
    return { client, close: () => client.quit() };
  } catch (error) {
    client.disconnect();
    return { skip: `Redis Cluster not reachable at ${process.env.KEYGATE_TEST_REDIS_CLUSTER_URL} (${reason(error)})` };
  }
}

/** Deletes every key under `prefix` on each primary of the cluster (SCAN sees one node only). */
async function deleteClusterPrefix(cluster, prefix) {
  for (const node of cluster.nodes('master')) await deleteRedisPrefix(node, prefix);
}

/**
 * Opens the store and the bus of `kind` with the given names, for A (`owner`: creates the table) or B:
 * `{ createKeyManager, store, bus, drop, close }`, or `{ skip }` with why not.
 */
export async function openBus(kind, { prefix, table, channel }, owner = false) {
  const { createKeyManager } = await loadDist('index');
  if (kind === 'redis' || kind === 'cluster') {
    const connection = kind === 'redis' ? await connectRedis() : await connectCluster();
    if (connection.skip) return connection;
    const { redisStore, redisInvalidation } = await loadDist('redis');
    const client = connection.client;
    const subscriber = client.duplicate();
    subscriber.on('error', () => {});
    if (subscriber.status === 'wait') await subscriber.connect();
    return {
      createKeyManager,
      store: redisStore(client, { prefix }),
      bus: redisInvalidation({ publisher: client, subscriber, channel }),
      drop: () => (kind === 'redis' ? deleteRedisPrefix(client, prefix) : deleteClusterPrefix(client, prefix)),
      close: async () => {
        subscriber.disconnect();
        await connection.close();
      },
    };
  }
  if (kind === 'postgres') {
    const connection = await connectPostgres();
    if (connection.skip) return connection;
    const { postgresStore, postgresInvalidation } = await loadDist('postgres');
    const pool = connection.client;
    const store = postgresStore(pool, { table });
    if (owner) await store.migrate();
    return {
      createKeyManager,
      store,
      bus: postgresInvalidation(pool, { channel }),
      drop: () => pool.query(`DROP TABLE IF EXISTS ${table}`),
      close: connection.close,
    };
  }
  throw new Error(`unknown bus ${kind}`);
}

/** The value at quantile `q` (0..1) of a list, interpolated as the harness does. */
function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function fmt(ms) {
  if (ms >= 100) return `${Math.round(ms)} ms`;
  return `${Number(ms.toPrecision(3))} ms`;
}

/** The messages of instance B, each kept with the time it arrived on A's clock, until awaited. */
function inbox(child) {
  const arrived = new Map();
  const waiting = new Map();
  let failure = null;
  const fail = (error) => {
    failure = error;
    for (const { reject } of waiting.values()) reject(error);
    waiting.clear();
  };
  child.on('message', (message) => {
    const at = performance.now();
    if (message.type === 'error') return fail(new Error(`instance B: ${message.message}`));
    const key = `${message.type}:${message.trial ?? ''}`;
    const waiter = waiting.get(key);
    if (waiter) {
      waiting.delete(key);
      waiter.resolve({ message, at });
    } else arrived.set(key, { message, at });
  });
  child.on('exit', (code, signal) => fail(new Error(`instance B ended (${signal ?? `code ${code}`})`)));
  return {
    /** B's next message of this type (and trial), with its arrival time (performance.now() in A). */
    next(type, trial, timeoutMs = 10_000) {
      if (failure) return Promise.reject(failure);
      const key = `${type}:${trial ?? ''}`;
      const early = arrived.get(key);
      if (early) {
        arrived.delete(key);
        return Promise.resolve(early);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(key);
          reject(new Error(`no '${key}' from instance B within ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(key, {
          resolve: (value) => {
            clearTimeout(timer);
            resolve(value);
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          },
        });
      });
    },
  };
}

/** Polls until `check()` holds, or throws after `timeoutMs`. */
async function until(check, what, timeoutMs = 15_000) {
  const end = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** One trial: a new key cached by B, deactivated by A in `mode` ('plain' or 'wait'). */
async function trial(keys, child, messages, n, mode) {
  const { key, token } = await keys.create({ name: `propagation ${n}`, scopes: ['all'] });
  child.send({ type: 'watch', trial: n, token });
  await messages.next('ready', n);
  let unconfirmed = false;
  const start = performance.now();
  try {
    await keys.deactivate(key.id, { wait: mode === 'wait' });
  } catch (error) {
    if (error?.code !== 'INVALIDATION_UNCONFIRMED') throw error;
    unconfirmed = true;
  }
  const end = performance.now();
  child.send({ type: 'returned', trial: n });
  const refused = await messages.next('refused', n);
  const after = await messages.next('after', n);
  if (refused.message.code !== 'INACTIVE') throw new Error(`trial ${n}: B refused with ${refused.message.code}, not INACTIVE`);
  return {
    call: end - start,
    // On A's clock: B's IPC message arrived `latency` ms after the call began.
    latency: refused.at - start,
    // On the shared wall clock (performance.timeOrigin + now() in both processes), for comparison.
    wallLatency: refused.message.at - (performance.timeOrigin + start),
    acceptedAfter: after.message.accepted,
    unconfirmed,
  };
}

/** Every trial of one bus: `count` of each mode, alternating which goes first. */
async function measure(bus, count, log) {
  const names = {
    prefix: `{${uniqueName('kgbenchprop')}}:`,
    table: uniqueName('kg_bench_prop'),
    channel: uniqueName('kgbench_prop'),
  };
  const opened = await openBus(bus.kind, names, true);
  if (opened.skip) return { skip: opened.skip };
  const errors = [];
  const keys = opened.createKeyManager({
    store: opened.store,
    cache: { ttlMs: 600_000 },
    invalidation: opened.bus,
    revocation: { timeoutMs: TIMEOUT_MS },
    onError: (error) => errors.push(error),
  });
  const child = fork(PEER, {
    env: {
      ...process.env,
      PROPAGATION_BUS: bus.kind,
      PROPAGATION_PREFIX: names.prefix,
      PROPAGATION_TABLE: names.table,
      PROPAGATION_CHANNEL: names.channel,
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const messages = inbox(child);
  try {
    await messages.next('started', undefined, 30_000);
    // Both caches serve (each heard its own heartbeat come back a heartbeat apart) and A knows B.
    await until(async () => {
      child.send({ type: 'status' });
      const { message } = await messages.next('status');
      const mine = keys.busStatus();
      return mine.cacheServing && mine.instances >= 2 && message.status.cacheServing;
    }, 'both caches serving, and A hearing B');
    const results = { plain: [], wait: [] };
    const warmup = Math.min(10, count);
    for (let i = 0; i < warmup; i++) await trial(keys, child, messages, -1 - i, i % 2 === 0 ? 'plain' : 'wait');
    for (let i = 0; i < count; i++) {
      const order = i % 2 === 0 ? ['plain', 'wait'] : ['wait', 'plain'];
      for (const mode of order) results[mode].push(await trial(keys, child, messages, 2 * i + (mode === 'wait' ? 1 : 0), mode));
    }
    if (errors.length > 0) log(`${bus.label}: onError received ${errors.length} error(s), first: ${reason(errors[0])}`);
    return { results };
  } finally {
    if (child.connected) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.send({ type: 'exit' });
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
    }
    if (child.exitCode === null && child.signalCode === null) child.kill();
    await keys.close();
    await opened.drop();
    await opened.close();
  }
}

/** The rows of one bus, and a line of the detailed table. */
function rowsOf(bus, { plain, wait }) {
  const stats = (trials, field) => {
    const values = trials.map((t) => t[field]);
    return { ...summarize(values), p99: quantile(values, 0.99) };
  };
  const count = (trials, field) => trials.filter((t) => t[field]).length;
  const n = plain.length;
  const latency = { plain: stats(plain, 'latency'), wait: stats(wait, 'latency') };
  const call = { plain: stats(plain, 'call'), wait: stats(wait, 'call') };
  const wall = { plain: stats(plain, 'wallLatency'), wait: stats(wait, 'wallLatency') };
  const accepted = { plain: count(plain, 'acceptedAfter'), wait: count(wait, 'acceptedAfter') };
  const unconfirmed = count(wait, 'unconfirmed');
  // Trial i of each mode ran side by side (one right after the other): their ratio, per pair.
  const paired = summarize(wait.map((t, i) => t.call / plain[i].call));
  const value = (s) => ({ median: s.median, q1: s.q1, q3: s.q3, min: s.min, max: s.max, n: s.n, p99: s.p99 });
  const id = `propagation-${bus.kind}`;
  const rows = [
    {
      id: `${id}-latency`,
      label: `${bus.label}: deactivate() → B's first refusal, A's clock (p99 ${fmt(latency.plain.p99)}; B accepted right after the call returned in ${accepted.plain} of ${n} trials)`,
      unit: 'ms',
      value: value(latency.plain),
      acceptedAfterReturn: accepted.plain,
      trials: n,
    },
    {
      id: `${id}-call`,
      label: `${bus.label}: deactivate() call (p99 ${fmt(call.plain.p99)})`,
      unit: 'ms',
      value: value(call.plain),
    },
    {
      id: `${id}-latency-wait`,
      label: `${bus.label}: deactivate({ wait: true }) → B's first refusal, A's clock (p99 ${fmt(latency.wait.p99)})`,
      unit: 'ms',
      value: value(latency.wait),
    },
    {
      id: `${id}-call-wait`,
      label: `${bus.label}: deactivate({ wait: true }) call (p99 ${fmt(call.wait.p99)}; B accepted right after it returned in ${accepted.wait} of ${n} trials; ${unconfirmed} unconfirmed)`,
      unit: 'ms',
      value: value(call.wait),
      ratio: { label: 'of the call without wait', ...paired },
      target: { text: 'no accept after return', met: accepted.wait === 0 && unconfirmed === 0 },
      acceptedAfterReturn: accepted.wait,
      unconfirmed,
      trials: n,
    },
  ];
  const line =
    `| ${bus.label} | ${fmt(latency.plain.median)} / ${fmt(latency.plain.p99)} | ${fmt(call.plain.median)} / ${fmt(call.plain.p99)} | ${accepted.plain}/${n} ` +
    `| ${fmt(latency.wait.median)} / ${fmt(latency.wait.p99)} | ${fmt(call.wait.median)} / ${fmt(call.wait.p99)} | ${accepted.wait}/${n} ` +
    `| ${(call.wait.median / call.plain.median).toFixed(2)}× / ${(call.wait.p99 / call.plain.p99).toFixed(2)}× | ${unconfirmed} ` +
    `| ${fmt(wall.plain.median)} / ${fmt(wall.wait.median)} |`;
  return { rows, line };
}

export async function run({ quick, log }) {
  const count = quick ? 40 : 250;
  const rows = [];
  const lines = [];
  for (const bus of BUSES) {
    const label = `${bus.label}: revocation across two processes`;
    if (!hasDist(bus.dist)) {
      rows.push(skippedRow(`propagation-${bus.kind}`, label, `dist/${bus.dist}.js is not built`));
      continue;
    }
    log(`${bus.label}: ${count} trials of each mode…`);
    const measured = await measure(bus, count, log);
    if (measured.skip) {
      rows.push(skippedRow(`propagation-${bus.kind}`, label, measured.skip));
      lines.push(`| ${bus.label} | skipped: ${measured.skip} | | | | | | | | |`);
      continue;
    }
    const { rows: busRows, line } = rowsOf(bus, measured.results);
    rows.push(...busRows);
    lines.push(line);
  }
  log('');
  log(`Revocation across two processes (A deactivates, B caches with a 10-minute ttl), ${count} trials per mode, p50 / p99.`);
  log("Latency: from just before A's call to the arrival in A of B's IPC message that it refused, on A's clock.");
  log('');
  log(
    '| Bus | Latency, no wait | Call, no wait | Accepted after return, no wait | Latency, wait | Call, wait | Accepted after return, wait | Call ratio wait / no wait (p50 / p99) | Unconfirmed | Latency on the wall clock of both (no wait / wait, p50) |',
  );
  log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const line of lines) log(line);
  log('');
  // The URLs used, as a record of what was measured.
  log(`servers: redis ${URLS.redis}, postgres ${URLS.postgres}, cluster ${process.env.KEYGATE_TEST_REDIS_CLUSTER_URL || '(not set)'}`);
  return rows;
}
