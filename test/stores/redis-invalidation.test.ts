// redisInvalidation(): delivery over Redis pub/sub with ioredis 5 and 6 and node-redis 4, 5 and 6 (RESP2 and RESP3), and a full flush after a lost connection.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisInvalidation, type RedisInvalidationOptions } from '../../adapters/redis/index.js';
import { StoreUnavailableError, ValidationError, type InvalidationSubscriber } from '../../src/index.js';
import { serviceUrl } from '../support/services.js';
import {
  closeRedis,
  connectRedis,
  isClientReady,
  newIoRedis,
  newNodeRedis,
  REDIS_CLIENT_SETUPS,
  setupLabel,
  type AnyRedisClient,
} from '../support/redis.js';
import { TcpProxy } from '../support/tcp.js';

const url = serviceUrl('redis');

type Subscriber = RedisInvalidationOptions['subscriber'];

/** Records what a bus delivers, in order. */
function recorder(onReset?: () => void): InvalidationSubscriber & { events: string[] } {
  const events: string[] = [];
  return {
    events,
    invalidate: (keyId) => void events.push(`invalidate:${keyId}`),
    reset: () => {
      events.push('reset');
      onReset?.();
    },
  };
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const isReady = isClientReady;
const channelName = (): string => `kgt-invalidate-${randomBytes(6).toString('hex')}`;

for (const setup of REDIS_CLIENT_SETUPS) {
  describe.skipIf(!url)(`redisInvalidation with ${setupLabel(setup)}`, () => {
    const clients: AnyRedisClient[] = [];
    const stops: Array<() => Promise<void>> = [];
    let publisher: AnyRedisClient;
    const connect = async (to = url as string): Promise<AnyRedisClient> => {
      const client = await connectRedis(setup, to);
      clients.push(client);
      return client;
    };

    beforeAll(async () => {
      publisher = await connect();
    });

    afterAll(async () => {
      for (const stop of stops) await stop().catch(() => {});
      for (const client of clients) await closeRedis(client);
    });

    it('delivers each invalidation to every subscribed instance, the publishing one included', async () => {
      const channel = channelName();
      const a = redisInvalidation({ publisher, subscriber: await connect(), channel });
      const b = redisInvalidation({ publisher, subscriber: await connect(), channel });
      const ra = recorder();
      const rb = recorder();
      stops.push(await a.subscribe(ra), await b.subscribe(rb));
      await a.publish('key-1');
      await b.publish('key-2');
      await until(() => ra.events.length === 2 && rb.events.length === 2, 'both messages on both instances');
      expect(ra.events).toEqual(['invalidate:key-1', 'invalidate:key-2']);
      expect(rb.events).toEqual(['invalidate:key-1', 'invalidate:key-2']);
    });

    it('keeps channels apart', async () => {
      const subscriber = await connect();
      const mine = redisInvalidation({ publisher, subscriber, channel: channelName() });
      const other = redisInvalidation({ publisher, subscriber: await connect(), channel: channelName() });
      const r = recorder();
      stops.push(await mine.subscribe(r));
      await other.publish('not-for-me');
      await mine.publish('marker');
      // One publisher connection: Redis delivers in publication order, so the first message came first if at all.
      await until(() => r.events.length > 0, 'the marker');
      expect(r.events).toEqual(['invalidate:marker']);
    });

    it('stops delivering once stopped', async () => {
      const channel = channelName();
      const bus = redisInvalidation({ publisher, subscriber: await connect(), channel });
      const witness = redisInvalidation({ publisher, subscriber: await connect(), channel });
      const r = recorder();
      const w = recorder();
      const stop = await bus.subscribe(r);
      stops.push(await witness.subscribe(w));
      await stop();
      await bus.publish('after-stop');
      await until(() => w.events.length === 1, 'the witness to receive the message');
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(r.events).toEqual([]);
    });

    it('flushes everything when its connection drops and again once subscribed anew; messages flow again', async () => {
      const target = new URL(url as string);
      const proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port || 6379) });
      stops.push(() => proxy.close());
      const subscriber = await connect(`redis://127.0.0.1:${proxy.port}`);
      const channel = channelName();
      const bus = redisInvalidation({ publisher, subscriber: subscriber, channel });
      // A message published from inside a reset() must arrive: when the bus flushes, it listens already.
      let reconnected = false;
      const r = recorder(() => {
        if (reconnected) void bus.publish('probe-after-reset');
      });
      stops.push(await bus.subscribe(r));
      await bus.publish('before');
      await until(() => r.events.includes('invalidate:before'), 'the first message');

      await proxy.down();
      await until(() => !isReady(subscriber) && r.events.includes('reset'), 'a flush after the connection dropped');
      await bus.publish('lost-while-away'); // nobody listens: lost, hence the flush
      const resetsWhileAway = r.events.filter((e) => e === 'reset').length;
      reconnected = true;
      await proxy.up();
      await until(() => isReady(subscriber), 'the subscriber to reconnect');
      await until(() => r.events.filter((e) => e === 'reset').length > resetsWhileAway, 'a flush after subscribing again');
      await until(() => r.events.includes('invalidate:probe-after-reset'), 'the message published at the flush');
      await bus.publish('after');
      await until(() => r.events.includes('invalidate:after'), 'a message after reconnecting');
      expect(r.events).not.toContain('invalidate:lost-while-away');
      expect(r.events.indexOf('reset')).toBeGreaterThan(r.events.indexOf('invalidate:before'));
    });

    it('publish fails at once while the publisher is not connected', async () => {
      const down = await connect();
      const bus = redisInvalidation({ publisher: down, subscriber: await connect() });
      await closeRedis(down);
      await until(() => !isReady(down), 'the publisher to close');
      await expect(bus.publish('x')).rejects.toBeInstanceOf(StoreUnavailableError);
    });

    it('refuses the same connection as publisher and subscriber', async () => {
      const client = await connect();
      expect(() => redisInvalidation({ publisher: client, subscriber: client })).toThrow(ValidationError);
    });
  });
}

describe('redisInvalidation() arguments', () => {
  it('refuses what is not a client, and an empty channel', () => {
    const publisher = newIoRedis('ioredis@6', { lazyConnect: true });
    const subscriber = newIoRedis('ioredis@5', { lazyConnect: true });
    const node6 = newNodeRedis('node-redis@6', {});
    const node4 = newNodeRedis('node-redis@4', {});
    try {
      expect(() => redisInvalidation({ publisher, subscriber: {} as Subscriber })).toThrow(ValidationError);
      expect(() => redisInvalidation({ publisher: {} as RedisInvalidationOptions['publisher'], subscriber })).toThrow(ValidationError);
      expect(() => redisInvalidation({ publisher, subscriber, channel: '' })).toThrow(ValidationError);
      expect(() => redisInvalidation({ publisher, subscriber: node6 })).not.toThrow();
      expect(() => redisInvalidation({ publisher: node4, subscriber })).not.toThrow();
      expect(() => redisInvalidation({ publisher: node6, subscriber: node4 })).not.toThrow();
    } finally {
      publisher.disconnect();
      subscriber.disconnect();
    }
  });
});
