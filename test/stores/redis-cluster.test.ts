// redisStore() on a Redis Cluster with ioredis 5 and 6 Cluster and node-redis 4, 5 and 6 createCluster: the contract suite, one slot per store, not-ready and keyPrefix refusals.

import { randomBytes } from 'node:crypto';
import { Cluster as IoCluster6 } from 'ioredis';
import { createCluster as createCluster6 } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandSender, LuaScript } from '../../adapters/redis/client.js';
import { redisStore, type RedisClientLike } from '../../adapters/redis/index.js';
import { storeContractSuite } from '../../adapters/testing/index.js';
import { createKeyManager, StoreUnavailableError, ValidationError } from '../../src/index.js';
import { dumpPrefix, keysUnder, randomPrefix } from '../support/redis.js';
import {
  closeCluster,
  clusterPrimaries,
  clusterUrls,
  connectCluster,
  connectSlotOwner,
  deleteStorePrefix,
  keySlot,
  newIoCluster,
  REDIS_CLUSTER_KINDS,
  type AnyRedisCluster,
} from '../support/redis-cluster.js';
import { serviceUrl } from '../support/services.js';

const list = serviceUrl('redisCluster');
const urls = list ? clusterUrls(list) : [];

for (const kind of REDIS_CLUSTER_KINDS) {
  describe.skipIf(!list)(`redisStore on a Redis Cluster (${kind})`, () => {
    storeContractSuite(
      { describe, it, beforeAll, afterAll },
      async () => {
        const client = await connectCluster(kind, urls);
        const prefix = randomPrefix('cluster-contract');
        const owner = await connectSlotOwner(urls, prefix);
        return {
          store: redisStore(client as RedisClientLike, { prefix }),
          dump: () => dumpPrefix(owner, prefix),
          cleanup: async () => {
            await deleteStorePrefix(urls, prefix);
            owner.disconnect();
            await closeCluster(client);
          },
        };
      },
      { name: `RedisStore on a cluster (${kind})` },
    );

    describe(`cluster specifics (${kind})`, () => {
      let client: AnyRedisCluster;
      const prefixes: string[] = [];

      beforeAll(async () => {
        client = await connectCluster(kind, urls);
      });

      afterAll(async () => {
        for (const prefix of prefixes) await deleteStorePrefix(urls, prefix);
        if (client) await closeCluster(client);
      });

      it('keeps every key of a store in the slot of its hash tag, through create, rotate, list, spend and delete', async () => {
        const prefix = randomPrefix('cluster-slot');
        prefixes.push(prefix);
        const keys = createKeyManager({ store: redisStore(client as RedisClientLike, { prefix }), lastUsedFlushMs: 60_000 });
        try {
          const { key, token } = await keys.create({ name: 'slot', scopes: ['all'], ownerId: 'shop-1', remaining: 5 });
          await keys.create({ name: 'ownerless', scopes: ['all'] });
          expect((await keys.verify(token)).valid).toBe(true);
          const rotated = await keys.rotate(key.id, { gracePeriodMs: 60_000 });
          expect((await keys.verify(token)).valid).toBe(true);
          expect((await keys.verify(rotated.token)).valid).toBe(true);
          expect((await keys.list({ ownerId: 'shop-1' })).keys.map((k) => k.id)).toEqual([key.id]);
          expect((await keys.list({ ownerId: null })).keys).toHaveLength(1);
          await keys.flush();
          const owner = await connectSlotOwner(urls, prefix);
          try {
            const names = await keysUnder(owner, prefix);
            expect(names.length).toBeGreaterThanOrEqual(6); // 2 records, 3 digests, all, owner
            const slot = await keySlot(urls, prefix);
            for (const name of names) expect(await keySlot(urls, name)).toBe(slot);
          } finally {
            owner.disconnect();
          }
          expect(await keys.delete(key.id)).toBe(true);
          expect((await keys.verify(rotated.token)).valid).toBe(false);
        } finally {
          await keys.close();
        }
      });

      it('is refused by the cluster when a script reaches a key on another primary (what every store script avoids)', async () => {
        const send = commandSender(client as RedisClientLike, 'client');
        const primaries = await clusterPrimaries(urls);
        const ownerOf = async (key: string): Promise<string | undefined> => {
          const slot = await keySlot(urls, key);
          return primaries.find((p) => p.slots.some(([from, to]) => slot >= from && slot <= to))?.id;
        };
        const prefix = randomPrefix('cluster-cross');
        let other = randomPrefix('cluster-other');
        while ((await ownerOf(other)) === (await ownerOf(prefix))) other = randomPrefix('cluster-other');
        const script = new LuaScript(`return redis.call('GET', ARGV[1])`);
        await expect(script.run(send, 'test', [`${prefix}a`], [`${other}b`])).rejects.toThrow(/slot|node/i);
        // The same key name given in the script's own slot is fine.
        expect(await script.run(send, 'test', [`${prefix}a`], [`${prefix}b`])).toBeNull();
      });

      it('rejects at once, without queueing, when the cluster client is closed', async () => {
        const closed = await connectCluster(kind, urls);
        const store = redisStore(closed as RedisClientLike, { prefix: randomPrefix('cluster-closed') });
        await closeCluster(closed);
        await new Promise((resolve) => setTimeout(resolve, 50));
        const started = Date.now();
        const error = await store.findById('x').catch((e: unknown) => e);
        expect(error).toBeInstanceOf(StoreUnavailableError);
        expect(Date.now() - started).toBeLessThan(1000);
      });
    });
  });
}

describe.skipIf(!list)('a cluster client created with a key prefix is refused', () => {
  it('ioredis Cluster: keyPrefix, and keyPrefix in redisOptions', () => {
    const prefix = `{kgt-${randomBytes(4).toString('hex')}}:`;
    const top = new IoCluster6([{ host: '127.0.0.1', port: 7301 }], { lazyConnect: true, keyPrefix: 'app:' });
    const nodes = newIoCluster('ioredis@6', urls, { redisOptions: { keyPrefix: 'app:' } });
    const plainCluster = newIoCluster('ioredis@6', urls);
    try {
      expect(() => redisStore(top, { prefix })).toThrow(ValidationError);
      expect(() => redisStore(nodes, { prefix })).toThrow(/keyPrefix option \("app:"\)/);
      expect(() => redisStore(plainCluster, { prefix })).not.toThrow();
    } finally {
      top.disconnect();
      nodes.disconnect();
      plainCluster.disconnect();
    }
  });

  it('node-redis 6 cluster: keyPrefix', () => {
    const prefix = `{kgt-${randomBytes(4).toString('hex')}}:`;
    const rootNodes = urls.map((url) => ({ url }));
    expect(() => redisStore(createCluster6({ rootNodes, keyPrefix: 'app:' }), { prefix })).toThrow(/keyPrefix option \("app:"\)/);
    // Not connected: a store on it rejects every call at once, which is no refusal.
    expect(() => redisStore(createCluster6({ rootNodes }), { prefix })).not.toThrow();
  });

  it('a node-redis cluster not yet connected makes every call reject at once', async () => {
    const store = redisStore(createCluster6({ rootNodes: urls.map((url) => ({ url })) }), { prefix: randomPrefix('cluster-unconnected') });
    await expect(store.findById('x')).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});
