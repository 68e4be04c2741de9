// redisInvalidation() on a Redis Cluster: delivery through ioredis 5 and 6 Cluster and node-redis 5 and 6 cluster subscribers, a flush when the subscriber's connection is killed, and node-redis 4 cluster subscribers refused.

import { randomBytes } from 'node:crypto';
import { Redis as IoRedis6 } from 'ioredis';
import { createCluster as createCluster4 } from 'redis4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisClientLike, type RedisInvalidationOptions, redisInvalidation } from '../../adapters/redis/index.js';
import { type InvalidationSubscriber, ValidationError } from '../../src/index.js';
import {
  type AnyRedisCluster,
  closeCluster,
  clusterUrls,
  connectCluster,
  duplicateCluster,
  type RedisClusterKind,
} from '../support/redis-cluster.js';
import { serviceUrl } from '../support/services.js';

const list = serviceUrl('redisCluster');
const urls = list ? clusterUrls(list) : [];

type Subscriber = RedisInvalidationOptions['subscriber'];
const KINDS: RedisClusterKind[] = ['ioredis@6', 'ioredis@5', 'node-redis@6', 'node-redis@5'];

function recorder(): InvalidationSubscriber & { events: string[] } {
  const events: string[] = [];
  return { events, invalidate: (keyId) => void events.push(`invalidate:${keyId}`), reset: () => void events.push('reset') };
}

async function until(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const channelName = (): string => `kgt-cluster-invalidate-${randomBytes(6).toString('hex')}`;

/** Kills, on every node of the cluster (primaries and replicas), the subscribed connections of this channel. */
async function killSubscribers(channel: string): Promise<number> {
  const first = new URL(urls[0] as string);
  const probe = new IoRedis6({ host: first.hostname, port: Number(first.port), lazyConnect: true });
  await probe.connect();
  const nodes = String(await probe.call('CLUSTER', ['NODES']))
    .split('\n')
    .filter(Boolean)
    .map((line) => (line.split(' ')[1] as string).split('@')[0] as string);
  probe.disconnect();
  let killed = 0;
  for (const address of nodes) {
    const colon = address.lastIndexOf(':');
    const node = new IoRedis6({ host: address.slice(0, colon), port: Number(address.slice(colon + 1)), lazyConnect: true });
    await node.connect();
    // PUBSUB NUMSUB tells whether this node has a subscriber of the channel; CLIENT LIST which.
    const [, count] = (await node.call('PUBSUB', ['NUMSUB', channel])) as [string, number];
    if (Number(count) > 0) {
      for (const line of String(await node.call('CLIENT', ['LIST', 'TYPE', 'PUBSUB'])).split('\n')) {
        const id = /\bid=(\d+)/.exec(line)?.[1];
        const name = /\bname=(\S*)/.exec(line)?.[1] ?? '';
        if (id && name.includes(channel)) killed += Number(await node.call('CLIENT', ['KILL', 'ID', id]));
      }
    }
    node.disconnect();
  }
  return killed;
}

for (const kind of KINDS) {
  describe.skipIf(!list)(`redisInvalidation on a Redis Cluster (${kind})`, () => {
    const clients: AnyRedisCluster[] = [];
    const stops: Array<() => Promise<void>> = [];
    let publisher: AnyRedisCluster;

    beforeAll(async () => {
      publisher = await connectCluster(kind, urls);
      clients.push(publisher);
    });

    afterAll(async () => {
      for (const stop of stops) await stop().catch(() => {});
      for (const client of clients) await closeCluster(client);
    });

    it('delivers each invalidation to every subscribed instance, whichever node each subscriber listens on', async () => {
      const channel = channelName();
      const subA = await duplicateCluster(publisher);
      const other = await connectCluster(kind, urls);
      const subB = await duplicateCluster(other);
      clients.push(subA, other, subB);
      const a = redisInvalidation({ publisher: publisher as RedisClientLike, subscriber: subA as Subscriber, channel });
      const b = redisInvalidation({ publisher: other as RedisClientLike, subscriber: subB as Subscriber, channel });
      const ra = recorder();
      const rb = recorder();
      stops.push(await a.subscribe(ra), await b.subscribe(rb));
      await a.publish('key-1');
      await b.publish('key-2');
      await until(() => ra.events.length === 2 && rb.events.length === 2, 'both messages on both instances');
      expect(ra.events.sort()).toEqual(['invalidate:key-1', 'invalidate:key-2']);
      expect(rb.events.sort()).toEqual(['invalidate:key-1', 'invalidate:key-2']);
    });

    it('flushes when its subscribed connection is killed, subscribes again, and messages flow again', async () => {
      const channel = channelName();
      // The connection name carries the channel, so that the test kills this subscriber and no other.
      const named = await connectCluster(kind, urls, [], { redisOptions: { connectionName: channel } }, { name: channel });
      const subscriber = await duplicateCluster(named);
      clients.push(named, subscriber);
      const bus = redisInvalidation({ publisher: publisher as RedisClientLike, subscriber: subscriber as Subscriber, channel });
      const r = recorder();
      stops.push(await bus.subscribe(r));
      await bus.publish('before');
      await until(() => r.events.includes('invalidate:before'), 'the first message');
      // ioredis 5 may reopen its pub/sub connection right after the first SUBSCRIBE (a flush each
      // time, as for any loss): count only the flushes after the first message.
      const resetsAfterBefore = (): number => r.events.slice(r.events.indexOf('invalidate:before')).filter((e) => e === 'reset').length;
      expect(await killSubscribers(channel)).toBeGreaterThan(0);
      await until(() => resetsAfterBefore() >= 2, 'a flush on the loss and one once subscribed again');
      // Subscribed again: a message published now arrives.
      const end = Date.now() + 15_000;
      let n = 0;
      while (!r.events.some((e) => e.startsWith('invalidate:after-'))) {
        if (Date.now() > end) throw new Error(`no message after the loss: ${r.events.join(', ')}`);
        await bus.publish(`after-${n++}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const from = r.events.indexOf('invalidate:before');
      expect(r.events.slice(from, from + 2)).toEqual(['invalidate:before', 'reset']);
    }, 30_000);
  });
}

describe.skipIf(!list)('redisInvalidation with a node-redis 4 cluster', () => {
  it('refuses it as the subscriber: it does not report a lost pub/sub connection', () => {
    const rootNodes = urls.map((url) => ({ url }));
    const publisher = createCluster4({ rootNodes });
    const subscriber = createCluster4({ rootNodes });
    expect(() => redisInvalidation({ publisher, subscriber: subscriber as unknown as Subscriber })).toThrow(ValidationError);
    expect(() => redisInvalidation({ publisher, subscriber: subscriber as unknown as Subscriber })).toThrow(/node-redis 4 cluster/);
  });

  it('publishes through it', async () => {
    const publisher = await connectCluster('node-redis@4', urls);
    const subscriber = await connectCluster('node-redis@6', urls);
    const channel = channelName();
    try {
      const bus = redisInvalidation({ publisher: publisher as RedisClientLike, subscriber: subscriber as Subscriber, channel });
      const r = recorder();
      const stop = await bus.subscribe(r);
      await bus.publish('from-4');
      await until(() => r.events.length === 1, 'the message');
      expect(r.events).toEqual(['invalidate:from-4']);
      await stop();
    } finally {
      await closeCluster(publisher);
      await closeCluster(subscriber);
    }
  });
});
