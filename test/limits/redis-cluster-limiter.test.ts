// redisLimiter() on a Redis Cluster with ioredis 5 and 6 Cluster and node-redis 4, 5 and 6 createCluster: the limiter contract, and groups spread over the slots.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisLimiter, type RedisClientLike } from '../../adapters/redis/index.js';
import { limiterContractSuite } from '../../adapters/testing/index.js';
import {
  closeCluster,
  clusterUrls,
  connectCluster,
  deleteClusterPrefix,
  keySlot,
  REDIS_CLUSTER_KINDS,
  type AnyRedisCluster,
} from '../support/redis-cluster.js';
import { serviceUrl } from '../support/services.js';

const list = serviceUrl('redisCluster');
const urls = list ? clusterUrls(list) : [];

/** A counter prefix of its own (no hash tag: the limiter adds one per group). */
function limiterPrefix(label: string): string {
  return `kgt-rl-${label}-${randomBytes(6).toString('hex')}:`;
}

for (const kind of REDIS_CLUSTER_KINDS) {
  describe.skipIf(!list)(`redisLimiter on a Redis Cluster (${kind})`, () => {
    limiterContractSuite(
      { describe, it, beforeAll, afterAll },
      async () => {
        const client = await connectCluster(kind, urls);
        const prefix = limiterPrefix('cluster-contract');
        return {
          limiter: redisLimiter(client as RedisClientLike, { prefix }),
          cleanup: async () => {
            await deleteClusterPrefix(urls, prefix);
            await closeCluster(client);
          },
        };
      },
      { name: `redisLimiter on a cluster (${kind})` },
    );

    describe(`cluster specifics (${kind})`, () => {
      let client: AnyRedisCluster;
      const prefix = limiterPrefix('cluster-groups');

      beforeAll(async () => {
        client = await connectCluster(kind, urls);
      });

      afterAll(async () => {
        await deleteClusterPrefix(urls, prefix);
        if (client) await closeCluster(client);
      });

      it('takes several buckets of a group in one script, and groups of many slots side by side', async () => {
        const limiter = redisLimiter(client as RedisClientLike, { prefix });
        const slots = new Set<number>();
        const now = Date.now();
        for (let g = 0; g < 20; g++) {
          const group = `owner-${g}`;
          const buckets = [
            { key: 'key', limit: 2, windowMs: 60_000 },
            { key: 'owner', limit: 3, windowMs: 60_000 },
          ];
          expect((await limiter.take(group, buckets, 1, now)).allowed).toBe(true);
          expect((await limiter.take(group, buckets, 1, now)).allowed).toBe(true);
          const third = await limiter.take(group, buckets, 1, now);
          expect(third.allowed).toBe(false);
          expect(third.states.map((s) => s.count)).toEqual([2, 2]);
          const slot = await keySlot(urls, limiter.keyOf(group, 'key'));
          expect(await keySlot(urls, limiter.keyOf(group, 'owner'))).toBe(slot);
          slots.add(slot);
        }
        expect(slots.size).toBeGreaterThan(1);
      });
    });
  });
}
