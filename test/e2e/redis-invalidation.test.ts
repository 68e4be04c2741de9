// Two instances in two processes on one Redis (standalone, then a Redis Cluster), both caching: deactivate, delete or rotate on A, and B refuses within the broadcast latency.
//
// The other instance runs test/e2e/fixtures/redis-instance.ts, compiled from source with tsup's API
// into .keygate-tmp/ before the tests (no dist/ needed, always the current source).

import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { build } from 'tsup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisClientLike, type RedisInvalidationOptions, redisInvalidation, redisStore } from '../../adapters/redis/index.js';
import { createKeyManager, type KeyManager } from '../../src/index.js';
import { cacheServing } from '../support/bus.js';
import { serviceUrl } from '../support/services.js';
import {
  closeRedis,
  connectRedis,
  deletePrefix,
  duplicateRedis,
  observeSubscription,
  randomPrefix,
  REDIS_CLIENT_KINDS,
  type AnyRedisClient,
  type RedisClientKind,
} from '../support/redis.js';
import {
  type AnyRedisCluster,
  closeCluster,
  clusterUrls,
  connectCluster,
  deleteStorePrefix,
  duplicateCluster,
  type RedisClusterKind,
} from '../support/redis-cluster.js';
import type { InstanceConfig, InstanceReply, InstanceRequest } from './fixtures/redis-instance.js';

const url = serviceUrl('redis');
const clusterList = serviceUrl('redisCluster');
const root = fileURLToPath(new URL('../..', import.meta.url));
/** Trials per change and client pair; fewer on the cluster, whose pairs run one after another too. */
const TRIALS = 100;
const CLUSTER_TRIALS = 30;
/** Long enough that only an invalidation, never the expiry of a cache entry, can explain a refusal. */
const TTL_MS = 60_000;
/** How long B may keep accepting a changed key before the trial fails. */
const WATCH_TIMEOUT_MS = 10_000;

const clock = (): number => performance.timeOrigin + performance.now();

/** The other process, spoken to over IPC. */
class Instance {
  private seq = 0;
  private readonly replies: InstanceReply[] = [];
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (reply: InstanceReply) => {
      this.replies.push(reply);
      for (const wake of [...this.waiters]) wake();
    });
    child.on('exit', () => {
      for (const wake of [...this.waiters]) wake();
    });
  }

  static async start(file: string, config: InstanceConfig): Promise<Instance> {
    const child = fork(file, [], {
      env: { ...process.env, KEYGATE_INSTANCE: JSON.stringify(config) },
      execArgv: [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const instance = new Instance(child);
    await instance.next((r) => r.type === 'ready', 30_000);
    return instance;
  }

  /** The first reply (not yet taken) that matches, removed from the list. */
  private async next<T extends InstanceReply>(match: (r: InstanceReply) => r is T, timeoutMs?: number): Promise<T>;
  private async next(match: (r: InstanceReply) => boolean, timeoutMs?: number): Promise<InstanceReply>;
  private async next(match: (r: InstanceReply) => boolean, timeoutMs = WATCH_TIMEOUT_MS + 5000): Promise<InstanceReply> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const failed = this.replies.find((r) => r.type === 'failed');
      if (failed && failed.type === 'failed') throw new Error(`the other instance failed: ${failed.message}`);
      const index = this.replies.findIndex(match);
      if (index >= 0) return this.replies.splice(index, 1)[0] as InstanceReply;
      if (this.child.exitCode !== null) throw new Error('the other instance exited');
      const left = end - Date.now();
      if (left <= 0) throw new Error('no reply from the other instance in time');
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          this.waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.waiters.add(wake);
      });
    }
  }

  private send(request: InstanceRequest extends infer R ? (R extends unknown ? Omit<R, 'seq'> : never) : never): number {
    const seq = ++this.seq;
    this.child.send({ ...request, seq });
    return seq;
  }

  async verify(token: string): Promise<Extract<InstanceReply, { type: 'verified' }>> {
    const seq = this.send({ type: 'verify', token });
    return this.next((r): r is Extract<InstanceReply, { type: 'verified' }> => 'seq' in r && r.seq === seq);
  }

  /**
   * Starts verifying `token` in a loop; resolves once the first (valid) try is done, with the
   * outcome still to come (wrapped: an async function would otherwise wait for it).
   */
  async watch(token: string): Promise<{ outcome: Promise<Extract<InstanceReply, { type: 'refused' | 'still-valid' }>> }> {
    const seq = this.send({ type: 'watch', token, timeoutMs: WATCH_TIMEOUT_MS });
    await this.next((r) => 'seq' in r && r.seq === seq && r.type === 'watching');
    const outcome = this.next((r): r is Extract<InstanceReply, { type: 'refused' | 'still-valid' }> => 'seq' in r && r.seq === seq);
    outcome.catch(() => {}); // awaited by the caller; this only keeps an early failure from going unhandled
    return { outcome };
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const seq = this.send({ type: 'close' });
    await this.next((r) => 'seq' in r && r.seq === seq, 10_000).catch(() => this.child.kill());
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

function summary(values: number[]): string {
  const sorted = [...values].sort((x, y) => x - y);
  const ms = (v: number): string => `${v.toFixed(2)} ms`;
  return `p50 ${ms(percentile(sorted, 50))}, p99 ${ms(percentile(sorted, 99))}, max ${ms(sorted[sorted.length - 1] as number)}`;
}

/** Where A and B meet: the standalone Redis or the cluster, and the client pairs tried there. */
interface Setup {
  label: string;
  available: boolean;
  trials: number;
  pairs: Array<[RedisClientKind | RedisClusterKind, RedisClientKind | RedisClusterKind]>;
  connect(kind: string): Promise<AnyRedisClient | AnyRedisCluster>;
  duplicate(client: AnyRedisClient | AnyRedisCluster): Promise<AnyRedisClient | AnyRedisCluster>;
  close(client: AnyRedisClient | AnyRedisCluster): Promise<void>;
  /** Deletes the keys of the store under `prefix`. */
  cleanup(client: AnyRedisClient | AnyRedisCluster, prefix: string): Promise<void>;
  /** How B reaches the same server. */
  where: Pick<InstanceConfig, 'url' | 'cluster'>;
}

const clusterNodes = clusterList ? clusterUrls(clusterList) : [];
const SETUPS: Setup[] = [
  {
    label: 'Redis pub/sub',
    available: Boolean(url),
    trials: TRIALS,
    // Each kind as B, with the next one as A: every client kind on both sides.
    pairs: REDIS_CLIENT_KINDS.map((kindB, i) => [REDIS_CLIENT_KINDS[(i + 1) % REDIS_CLIENT_KINDS.length] as RedisClientKind, kindB]),
    connect: (kind) => connectRedis(kind as RedisClientKind, url as string),
    duplicate: (client) => duplicateRedis(client as AnyRedisClient),
    close: (client) => closeRedis(client as AnyRedisClient),
    cleanup: (client, prefix) => deletePrefix(client as AnyRedisClient, prefix),
    where: { url: url ?? '' },
  },
  {
    label: 'Redis Cluster pub/sub',
    available: clusterNodes.length > 0,
    trials: CLUSTER_TRIALS,
    pairs: [
      ['ioredis@6', 'node-redis@6'],
      ['node-redis@6', 'ioredis@5'],
      ['ioredis@5', 'node-redis@5'],
    ],
    connect: (kind) => connectCluster(kind as RedisClusterKind, clusterNodes),
    duplicate: (client) => duplicateCluster(client as AnyRedisCluster),
    close: (client) => closeCluster(client as AnyRedisCluster),
    cleanup: (_client, prefix) => deleteStorePrefix(clusterNodes, prefix),
    where: { url: '', cluster: clusterNodes },
  },
];

describe.skipIf(!url && clusterNodes.length === 0)('revocation across processes', () => {
  let instanceFile: string;
  const outDir = join(root, '.keygate-tmp', `redis-e2e-${process.pid}-${randomBytes(4).toString('hex')}`);

  beforeAll(async () => {
    await build({
      entry: { 'redis-instance': join(root, 'test/e2e/fixtures/redis-instance.ts') },
      outDir,
      format: ['esm'],
      platform: 'node',
      target: 'node20',
      config: false,
      silent: true,
      dts: false,
      splitting: false,
      sourcemap: false,
      clean: false,
      external: ['ioredis', 'ioredis5', 'redis', 'redis4', 'redis5', 'lru-cache', 'nanoid'],
    });
    const file = readdirSync(outDir).find((f) => f.startsWith('redis-instance.') && /\.m?js$/.test(f));
    if (!file) throw new Error(`tsup produced no redis-instance script in ${outDir}`);
    instanceFile = join(outDir, file);
  }, 60_000);

  afterAll(() => {
    rmSync(outDir, { recursive: true, force: true });
  });

  for (const setup of SETUPS) {
    for (const [kindA, kindB] of setup.pairs) {
      describe.skipIf(!setup.available)(`${setup.label}: A with ${kindA} in this process, B with ${kindB} in another`, () => {
        const prefix = randomPrefix('e2e');
        const channel = `kgt-e2e-${randomBytes(6).toString('hex')}`;
        let a: KeyManager;
        let b: Instance;
        let client: AnyRedisClient | AnyRedisCluster;
        let subscriber: AnyRedisClient | AnyRedisCluster;
        /** Background failures on A (a failed publish would leave B stale until ttlMs). */
        const errors: unknown[] = [];

        beforeAll(async () => {
          client = await setup.connect(kindA);
          subscriber = await setup.duplicate(client);
          const observed = observeSubscription(
            redisInvalidation({
              publisher: client as RedisClientLike,
              subscriber: subscriber as RedisInvalidationOptions['subscriber'],
              channel,
            }),
          );
          a = createKeyManager({
            store: redisStore(client as RedisClientLike, { prefix }),
            cache: { ttlMs: TTL_MS },
            invalidation: observed.bus,
            onError: (error) => errors.push(error),
            revocation: { heartbeatMs: 100 },
          });
          await observed.subscribed;
          await cacheServing(a);
          b = await Instance.start(instanceFile, { ...setup.where, kind: kindB, prefix, channel, ttlMs: TTL_MS });
        }, 60_000);

        afterAll(async () => {
          await b?.close();
          await a?.close();
          if (client) await setup.cleanup(client, prefix);
          if (subscriber) await setup.close(subscriber);
          if (client) await setup.close(client);
        }, 30_000);

        /**
         * One trial: B caches the key, starts verifying it in a loop, A changes it; B must refuse
         * with `code` well before its cache entry could expire. Returns ms from the call on A to the
         * refusal on B, and how long the call on A took.
         */
        const trial = async (change: (id: string) => Promise<string | null>, code: string): Promise<{ latency: number; call: number }> => {
          const { key, token } = await a.create({ name: 'revocable', scopes: ['all'] });
          expect((await a.verify(token)).valid).toBe(true);
          const first = await b.verify(token);
          const second = await b.verify(token);
          expect(first.valid && second.valid).toBe(true);
          expect(second.lookups).toBe(first.lookups); // B serves the key from its cache
          const { outcome } = await b.watch(token);
          const started = clock();
          const newToken = await change(key.id);
          const returned = clock();
          // At once on the instance that made the change.
          expect(await a.verify(token)).toMatchObject({ valid: false, code });
          const result = await outcome;
          expect(errors).toEqual([]);
          expect(result.type).toBe('refused');
          if (result.type !== 'refused') throw new Error('B kept accepting the key');
          expect(result.code).toBe(code);
          expect(result.at - started).toBeLessThan(TTL_MS);
          if (newToken) expect((await b.verify(newToken)).valid).toBe(true);
          return { latency: result.at - started, call: returned - started };
        };

        const report = (what: string, runs: Array<{ latency: number; call: number }>): void => {
          console.log(
            `[keygate e2e] ${setup.label}: ${what}, A=${kindA} -> B=${kindB}, ${runs.length} trials: ` +
              `B refuses after the call on A starts in ${summary(runs.map((r) => r.latency))}; ` +
              `the call on A took ${summary(runs.map((r) => r.call))}`,
          );
        };

        it(`deactivate on A: B refuses with INACTIVE (${setup.trials} trials)`, async () => {
          const runs = [];
          for (let t = 0; t < setup.trials; t++) runs.push(await trial(async (id) => (await a.deactivate(id), null), 'INACTIVE'));
          report('deactivate', runs);
        }, 120_000);

        it(`delete on A: B refuses with NOT_FOUND (${setup.trials} trials)`, async () => {
          const runs = [];
          for (let t = 0; t < setup.trials; t++) runs.push(await trial(async (id) => (await a.delete(id), null), 'NOT_FOUND'));
          report('delete', runs);
        }, 120_000);

        it(`rotate on A with no grace period: B refuses the old token and takes the new one (${setup.trials} trials)`, async () => {
          const runs = [];
          for (let t = 0; t < setup.trials; t++) {
            runs.push(await trial(async (id) => (await a.rotate(id, { gracePeriodMs: 0 })).token, 'NOT_FOUND'));
          }
          report('rotate', runs);
        }, 120_000);
      });
    }
  }
});
