// Two instances in two processes on one Redis Cluster, both caching: deactivate, delete or rotate on A, and B refuses within the broadcast latency.
//
// The other instance runs test/e2e/fixtures/redis-instance.ts with its `cluster` option, compiled from
// source with tsup's API into .keygate-tmp/ before the tests.

import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { build } from 'tsup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisClientLike, type RedisInvalidationOptions, redisInvalidation, redisStore } from '../../adapters/redis/index.js';
import { createKeyManager, type KeyManager } from '../../src/index.js';
import { observeSubscription, randomPrefix } from '../support/redis.js';
import {
  type AnyRedisCluster,
  closeCluster,
  clusterUrls,
  connectCluster,
  deleteStorePrefix,
  duplicateCluster,
  type RedisClusterKind,
} from '../support/redis-cluster.js';
import { serviceUrl } from '../support/services.js';
import type { InstanceConfig, InstanceReply } from './fixtures/redis-instance.js';

const list = serviceUrl('redisCluster');
const urls = list ? clusterUrls(list) : [];
const root = fileURLToPath(new URL('../..', import.meta.url));
const TRIALS = 30;
const TTL_MS = 60_000;
const WATCH_TIMEOUT_MS = 10_000;
const clock = (): number => performance.timeOrigin + performance.now();

/** The other process, spoken to over IPC (the requests of the fixture, by sequence number). */
class Instance {
  private seq = 0;
  private readonly replies: InstanceReply[] = [];
  private constructor(private readonly child: ChildProcess) {
    child.on('message', (reply: InstanceReply) => this.replies.push(reply));
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

  async next(match: (r: InstanceReply) => boolean, timeoutMs = WATCH_TIMEOUT_MS + 5000): Promise<InstanceReply> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const failed = this.replies.find((r) => r.type === 'failed');
      if (failed && failed.type === 'failed') throw new Error(`the other instance failed: ${failed.message}`);
      const index = this.replies.findIndex(match);
      if (index >= 0) return this.replies.splice(index, 1)[0] as InstanceReply;
      if (this.child.exitCode !== null) throw new Error('the other instance exited');
      if (Date.now() > end) throw new Error('no reply from the other instance in time');
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  request(body: Record<string, unknown>): number {
    const seq = ++this.seq;
    this.child.send({ ...body, seq });
    return seq;
  }

  async verify(token: string): Promise<Extract<InstanceReply, { type: 'verified' }>> {
    const seq = this.request({ type: 'verify', token });
    return (await this.next((r) => 'seq' in r && r.seq === seq)) as Extract<InstanceReply, { type: 'verified' }>;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const seq = this.request({ type: 'close' });
    await this.next((r) => 'seq' in r && r.seq === seq, 10_000).catch(() => this.child.kill());
  }
}

const PAIRS: Array<[RedisClusterKind, RedisClusterKind]> = [
  ['ioredis@6', 'node-redis@6'],
  ['node-redis@6', 'ioredis@5'],
  ['ioredis@5', 'node-redis@5'],
];

describe.skipIf(!list)('revocation across processes over Redis Cluster pub/sub', () => {
  let instanceFile: string;
  const outDir = join(root, '.keygate-tmp', `redis-cluster-e2e-${process.pid}-${randomBytes(4).toString('hex')}`);

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

  afterAll(() => rmSync(outDir, { recursive: true, force: true }));

  for (const [kindA, kindB] of PAIRS) {
    describe(`A with ${kindA} in this process, B with ${kindB} in another`, () => {
      const prefix = randomPrefix('cluster-e2e');
      const channel = `kgt-cluster-e2e-${randomBytes(6).toString('hex')}`;
      let a: KeyManager;
      let b: Instance;
      let client: AnyRedisCluster;
      let subscriber: AnyRedisCluster;
      const errors: unknown[] = [];

      beforeAll(async () => {
        client = await connectCluster(kindA, urls);
        subscriber = await duplicateCluster(client);
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
        });
        await observed.subscribed;
        b = await Instance.start(instanceFile, { url: '', cluster: urls, kind: kindB, prefix, channel, ttlMs: TTL_MS });
      }, 60_000);

      afterAll(async () => {
        await b?.close();
        await a?.close();
        await deleteStorePrefix(urls, prefix);
        if (subscriber) await closeCluster(subscriber);
        if (client) await closeCluster(client);
      }, 30_000);

      const trial = async (change: (id: string) => Promise<string | null>, code: string): Promise<number> => {
        const { key, token } = await a.create({ name: 'revocable', scopes: ['all'] });
        const first = await b.verify(token);
        const second = await b.verify(token);
        expect(first.valid && second.valid).toBe(true);
        expect(second.lookups).toBe(first.lookups); // served from B's cache
        const seq = b.request({ type: 'watch', token, timeoutMs: WATCH_TIMEOUT_MS });
        await b.next((r) => 'seq' in r && r.seq === seq && r.type === 'watching');
        const started = clock();
        const newToken = await change(key.id);
        expect(await a.verify(token)).toMatchObject({ valid: false, code });
        const result = await b.next((r) => 'seq' in r && r.seq === seq);
        expect(errors).toEqual([]);
        if (result.type !== 'refused') throw new Error('B kept accepting the key');
        expect(result.code).toBe(code);
        if (newToken) expect((await b.verify(newToken)).valid).toBe(true);
        return result.at - started;
      };

      const report = (what: string, latencies: number[]): void => {
        const sorted = [...latencies].sort((x, y) => x - y);
        const p = (q: number): string => (sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number).toFixed(2);
        console.log(
          `[keygate e2e cluster] ${what}, A=${kindA} -> B=${kindB}, ${sorted.length} trials: B refuses after p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${p(1)} ms`,
        );
      };

      it(`deactivate, delete and rotate on A: B refuses (${TRIALS} trials each)`, async () => {
        const deactivated: number[] = [];
        const deleted: number[] = [];
        const rotated: number[] = [];
        for (let t = 0; t < TRIALS; t++) {
          deactivated.push(await trial(async (id) => (await a.deactivate(id), null), 'INACTIVE'));
          deleted.push(await trial(async (id) => (await a.delete(id), null), 'NOT_FOUND'));
          rotated.push(await trial(async (id) => (await a.rotate(id, { gracePeriodMs: 0 })).token, 'NOT_FOUND'));
        }
        report('deactivate', deactivated);
        report('delete', deleted);
        report('rotate', rotated);
      }, 180_000);
    });
  }
});
