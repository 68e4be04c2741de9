// A lost invalidation subscription is never silent: once it is cut (refused, reset, killed on the server, or blackholed), the instance stops answering from its verify cache, and answers from it again once the subscription is back and proven.
//
// A and B run in this process on one store; only B's subscriber connection passes through a TCP
// proxy. Both cache for two minutes, so a refusal on B can come only from reading the store.

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresInvalidation, postgresStore } from '../../adapters/postgres/index.js';
import { redisInvalidation, redisStore } from '../../adapters/redis/index.js';
import { createKeyManager, type KeyManager, type KeyStore } from '../../src/index.js';
import { cacheServing } from '../support/bus.js';
import { countingStore } from '../support/counting-store.js';
import { serviceUrl } from '../support/services.js';
import { TcpProxy } from '../support/tcp.js';

const TTL_MS = 120_000;
const HEARTBEAT_MS = 100;
const TRIALS = 102;
const FREEZES = 5;
/** How soon a blackholed subscription must turn the cache off: two heartbeats, a tick, and slack for a busy machine. */
const FREEZE_BOUND_MS = 3 * HEARTBEAT_MS + 500;

const suffix = randomBytes(5).toString('hex');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A and B, B's subscription through `proxy`, and a way to kill that subscription on the server. */
interface World {
  a: KeyManager;
  b: KeyManager;
  /** B's store lookups by digest so far. */
  bLookups(): number;
  /** What B's manager reported to `onError`. */
  bErrors: unknown[];
  proxy: TcpProxy;
  /** Kills B's subscriber connection on the server and returns once the server has dropped it. */
  killOnServer(): Promise<void>;
  cleanup(): Promise<void>;
}

interface LossSetup {
  label: string;
  url: string | undefined;
  open(url: string): Promise<World>;
}

function manager(store: KeyStore, bus: Parameters<typeof createKeyManager>[0]['invalidation'], errors?: unknown[]): KeyManager {
  return createKeyManager({
    store,
    cache: { ttlMs: TTL_MS },
    invalidation: bus,
    storeTimeoutMs: 5000,
    revocation: { heartbeatMs: HEARTBEAT_MS },
    ...(errors ? { onError: (error: unknown) => void errors.push(error) } : {}),
  });
}

/** The id of the Redis connection named `name`, from CLIENT LIST. */
async function redisClientId(admin: Redis, name: string): Promise<string> {
  const end = Date.now() + 5000;
  for (;;) {
    const list = String(await admin.call('CLIENT', 'LIST'));
    const line = list.split('\n').find((l) => l.split(' ').includes(`name=${name}`));
    const id = line?.match(/(?:^|\s)id=(\d+)/)?.[1];
    if (id) return id;
    if (Date.now() > end) throw new Error(`no Redis connection named ${name}`);
    await sleep(5);
  }
}

async function redisWorld(url: string, family: 'ioredis' | 'node-redis'): Promise<World> {
  const target = new URL(url);
  const proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port || 6379) });
  const prefix = `{kgt-loss-${suffix}-${family}}:`;
  const channel = `kgt-loss-${suffix}-${family}`;
  const subscriberName = `kgt-loss-sub-${suffix}-${family}`;
  const admin = new Redis(url, { maxRetriesPerRequest: 1 });
  const aSubscriber = admin.duplicate();
  const a = manager(redisStore(admin, { prefix }), redisInvalidation({ publisher: admin, subscriber: aSubscriber, channel }));
  const bErrors: unknown[] = [];
  let bStore: ReturnType<typeof countingStore>;
  let b: KeyManager;
  let closeB: () => Promise<void>;
  if (family === 'ioredis') {
    const publisher = new Redis(url, { maxRetriesPerRequest: 1 });
    const subscriber = new Redis({
      host: '127.0.0.1',
      port: proxy.port,
      connectionName: subscriberName,
      retryStrategy: () => 20,
      maxRetriesPerRequest: null,
    });
    subscriber.on('error', () => {});
    bStore = countingStore(redisStore(publisher, { prefix }));
    b = manager(bStore, redisInvalidation({ publisher, subscriber, channel }), bErrors);
    closeB = async () => {
      subscriber.disconnect();
      publisher.disconnect();
    };
  } else {
    const publisher = createClient({ url });
    const subscriber = createClient({ socket: { host: '127.0.0.1', port: proxy.port, reconnectStrategy: () => 20 }, name: subscriberName });
    publisher.on('error', () => {});
    subscriber.on('error', () => {});
    await publisher.connect();
    await subscriber.connect();
    bStore = countingStore(redisStore(publisher, { prefix }));
    b = manager(bStore, redisInvalidation({ publisher, subscriber, channel }), bErrors);
    closeB = async () => {
      await subscriber.disconnect().catch(() => {});
      await publisher.disconnect().catch(() => {});
    };
  }
  return {
    a,
    b,
    bLookups: () => bStore.calls.findByDigest,
    bErrors,
    proxy,
    async killOnServer() {
      const id = await redisClientId(admin, subscriberName);
      // Redis closes another client's connection before it replies.
      await admin.call('CLIENT', 'KILL', 'ID', id);
    },
    async cleanup() {
      await b.close();
      await a.close();
      await closeB();
      await proxy.close();
      let cursor = '0';
      do {
        const [next, found] = await admin.scan(cursor, 'MATCH', `${prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`, 'COUNT', 1000);
        if (found.length > 0) await admin.unlink(...found);
        cursor = next;
      } while (cursor !== '0');
      aSubscriber.disconnect();
      admin.disconnect();
    },
  };
}

async function postgresWorld(url: string): Promise<World> {
  const target = new URL(url);
  const proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
  const table = `kg_loss_${suffix}`;
  const channel = `kg_loss_${suffix}`;
  const applicationName = `kg_loss_listen_${suffix}`;
  const poolA = new pg.Pool({ connectionString: url, max: 4 });
  const poolB = new pg.Pool({ connectionString: url, max: 4 });
  const storeA = postgresStore(poolA, { table });
  await storeA.migrate();
  const a = manager(storeA, postgresInvalidation(poolA, { channel }));
  const bErrors: unknown[] = [];
  const bStore = countingStore(postgresStore(poolB, { table }));
  const connect = async (): Promise<pg.Client> => {
    const client = new pg.Client({
      host: '127.0.0.1',
      port: proxy.port,
      user: decodeURIComponent(target.username) || 'postgres',
      database: target.pathname.slice(1) || 'test',
      application_name: applicationName,
      connectionTimeoutMillis: 2000,
    });
    try {
      await client.connect();
    } catch (error) {
      client.on('error', () => {});
      await client.end().catch(() => {});
      throw error;
    }
    return client;
  };
  const b = manager(bStore, postgresInvalidation(poolB, { channel, connect, reconnectDelayMs: 10, maxReconnectDelayMs: 50 }), bErrors);
  return {
    a,
    b,
    bLookups: () => bStore.calls.findByDigest,
    bErrors,
    proxy,
    async killOnServer() {
      const end = Date.now() + 5000;
      let pid: number | undefined;
      while (pid === undefined) {
        const { rows } = await poolA.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [
          applicationName,
        ]);
        pid = rows[0]?.pid;
        if (pid === undefined) {
          if (Date.now() > end) throw new Error(`no PostgreSQL backend named ${applicationName}`);
          await sleep(5);
        }
      }
      await poolA.query('SELECT pg_terminate_backend($1)', [pid]);
      // pg_terminate_backend only signals: wait until the backend is gone.
      for (;;) {
        const { rowCount } = await poolA.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
        if (rowCount === 0) return;
        if (Date.now() > end) throw new Error(`backend ${pid} did not end`);
        await sleep(1);
      }
    },
    async cleanup() {
      await b.close();
      await a.close();
      await proxy.close();
      await poolA.query(`DROP TABLE IF EXISTS "${table}"`);
      await poolA.end();
      await poolB.end();
    },
  };
}

const SETUPS: LossSetup[] = [
  { label: 'Redis pub/sub, B subscribed with ioredis', url: serviceUrl('redis'), open: (url) => redisWorld(url, 'ioredis') },
  { label: 'Redis pub/sub, B subscribed with node-redis', url: serviceUrl('redis'), open: (url) => redisWorld(url, 'node-redis') },
  { label: 'PostgreSQL LISTEN/NOTIFY', url: serviceUrl('postgres'), open: (url) => postgresWorld(url) },
];

for (const setup of SETUPS) {
  describe.skipIf(!setup.url)(`bus loss is never silent: ${setup.label}`, () => {
    let w: World;

    beforeAll(async () => {
      w = await setup.open(setup.url as string);
      await Promise.all([cacheServing(w.a), cacheServing(w.b)]);
    }, 30_000);

    afterAll(async () => {
      await w?.cleanup();
    }, 30_000);

    /** A new key that B serves from its cache (after a loss, only once the subscription is proven again). */
    const cachedOnB = async (label: string): Promise<{ id: string; token: string }> => {
      await cacheServing(w.b);
      const { key, token } = await w.a.create({ name: label, scopes: ['all'] });
      for (let tries = 0; tries < 200; tries++) {
        const before = w.bLookups();
        expect((await w.b.verify(token)).valid).toBe(true);
        if (w.bLookups() === before) return { id: key.id, token };
        await sleep(2);
      }
      throw new Error('B never served the key from its cache');
    };

    const cuts: Array<{ cut: string; apply: () => Promise<void>; heal: () => Promise<void> }> = [
      { cut: 'proxy down (reconnects refused)', apply: () => w.proxy.down(), heal: () => w.proxy.up() },
      {
        cut: 'TCP reset (reconnects reset)',
        apply: async () => w.proxy.reset(true),
        heal: async () => w.proxy.pass(),
      },
      { cut: 'killed on the server', apply: () => w.killOnServer(), heal: async () => {} },
    ];

    it(`after the subscription is cut and A deactivates the key, B refuses it (${TRIALS} trials)`, async () => {
      const tally = new Map<string, { trials: number; accepted: number; loopAfter: number }>();
      const accepted: string[] = [];
      for (let t = 0; t < TRIALS; t++) {
        const { cut, apply, heal } = cuts[t % cuts.length] as (typeof cuts)[number];
        const { id, token } = await cachedOnB(`loss ${t}`);
        // B keeps verifying in the background, racing the loss and the change to refill its cache.
        const verifies: Array<{ started: number; valid: boolean }> = [];
        let stop = false;
        const loop = (async () => {
          while (!stop) {
            const started = performance.now();
            const result = await w.b.verify(token);
            verifies.push({ started, valid: result.valid });
            await new Promise((resolve) => setImmediate(resolve));
          }
        })();
        await apply();
        await w.a.deactivate(id);
        const returned = performance.now();
        const lookupsBefore = w.bLookups();
        const check = await w.b.verify(token);
        const readStore = w.bLookups() > lookupsBefore;
        stop = true;
        await loop;
        const late = verifies.filter((v) => v.started > returned);
        const row = tally.get(cut) ?? { trials: 0, accepted: 0, loopAfter: 0 };
        row.trials++;
        row.loopAfter += late.length;
        if (check.valid) accepted.push(`trial ${t} (${cut}): B's check accepted the key`);
        else {
          expect(check.code).toBe('INACTIVE');
          expect(readStore).toBe(true);
        }
        for (const v of late)
          if (v.valid) accepted.push(`trial ${t} (${cut}): a verify of B's loop started after the change accepted the key`);
        row.accepted += (check.valid ? 1 : 0) + late.filter((v) => v.valid).length;
        tally.set(cut, row);
        await heal();
      }
      console.log(
        `[keygate e2e] ${setup.label}: ${TRIALS} cuts; acceptances after A's deactivate returned: ` +
          [...tally].map(([cut, r]) => `${cut} ${r.accepted} in ${r.trials} trials (${r.loopAfter} loop verifies after)`).join('; '),
      );
      expect(accepted).toEqual([]);
      // Every cut was seen: after it the cache serves again (each trial starts by proving that).
      await cachedOnB('after the cuts');
    }, 90_000);

    it(`a blackholed subscription turns B's cache off within ${FREEZE_BOUND_MS} ms and reports it; after the thaw the cache serves again (${FREEZES} rounds)`, async () => {
      const detections: number[] = [];
      for (let round = 0; round < FREEZES; round++) {
        const { id, token } = await cachedOnB(`freeze ${round}`);
        const reported = w.bErrors.length;
        expect(w.b.busStatus().cacheServing).toBe(true);
        const frozen = performance.now();
        w.proxy.freeze();
        try {
          while (w.b.busStatus().cacheServing) {
            expect(performance.now() - frozen).toBeLessThan(FREEZE_BOUND_MS);
            await sleep(1);
          }
          detections.push(performance.now() - frozen);
          expect(w.b.busStatus().subscribed).toBe(false);
          const reports = w.bErrors.slice(reported).map((e) => (e instanceof Error ? e.message : String(e)));
          expect(reports.some((m) => m.includes('delivers no message'))).toBe(true);
          // The cache is bypassed: B reads the store, and sees A's change although no message reaches it.
          const before = w.bLookups();
          expect((await w.b.verify(token)).valid).toBe(true);
          expect(w.bLookups()).toBe(before + 1);
          await w.a.deactivate(id);
          expect(await w.b.verify(token)).toMatchObject({ valid: false, code: 'INACTIVE' });
        } finally {
          w.proxy.thaw();
        }
        // Back: the cache serves again once the subscription is proven.
        await cacheServing(w.b, 5000);
        expect(w.b.busStatus().subscribed).toBe(true);
        await cachedOnB(`after freeze ${round}`);
      }
      const sorted = [...detections].sort((x, y) => x - y);
      console.log(
        `[keygate e2e] ${setup.label}: blackholed subscription, heartbeat ${HEARTBEAT_MS} ms: cache off after ` +
          `${sorted.map((d) => d.toFixed(0)).join(', ')} ms (${FREEZES} rounds, bound ${FREEZE_BOUND_MS} ms)`,
      );
    }, 30_000);
  });
}
