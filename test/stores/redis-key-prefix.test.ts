// A Redis client with a keyPrefix of its own is refused by redisStore() and redisLimiter(), which name the remedy; the invalidation bus, whose channels no client prefixes, takes one.

import { randomBytes } from 'node:crypto';
import { Redis as IoRedis6 } from 'ioredis';
import { Redis as IoRedis5 } from 'ioredis5';
import { createClient as createClient6 } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  redisInvalidation,
  redisLimiter,
  redisStore,
  type RedisClientLike,
  type RedisInvalidationOptions,
} from '../../adapters/redis/index.js';
import { createKeyManager, ValidationError } from '../../src/index.js';
import { serviceUrl } from '../support/services.js';
import { closeRedis, connectRedis, deletePrefix, keysUnder, randomPrefix, type AnyRedisClient } from '../support/redis.js';

const url = serviceUrl('redis');

/** The calls these tests make, alike in ioredis 5 and 6 and node-redis 6 (their declared types differ too much to call on a union). */
interface Client {
  on(event: 'error', listener: (error: unknown) => void): unknown;
  connect(): Promise<unknown>;
  duplicate(options: { keyPrefix: string }): Client;
}

const address = url ?? 'redis://127.0.0.1:6379';

/** A client of each library that has a keyPrefix option (node-redis 4 and 5 have none), not yet connected. */
const KINDS: Record<string, (keyPrefix: string) => Client> = {
  'ioredis@6': (keyPrefix) => new IoRedis6(address, { keyPrefix, lazyConnect: true }) as unknown as Client,
  'ioredis@5': (keyPrefix) => new IoRedis5(address, { keyPrefix, lazyConnect: true }) as unknown as Client,
  'node-redis@6': (keyPrefix) => createClient6({ url: address, keyPrefix }) as unknown as Client,
};

async function connect(client: Client): Promise<Client> {
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** A connected copy of `client` with these options changed. */
async function duplicate(client: Client, keyPrefix: string): Promise<Client> {
  return connect(client.duplicate({ keyPrefix }));
}

async function close(client: Client): Promise<void> {
  await closeRedis(client as unknown as AnyRedisClient);
}

for (const [kind, make] of Object.entries(KINDS)) {
  describe(`a ${kind} client with keyPrefix`, () => {
    it('redisStore() refuses it with a ValidationError that names keyPrefix and the prefix to use instead', () => {
      const client = make('app:');
      const error = (() => {
        try {
          redisStore(client as unknown as RedisClientLike, { prefix: '{shop}:' });
          return null;
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ field: 'client' });
      expect((error as Error).message).toContain('keyPrefix option ("app:")');
      expect((error as Error).message).toContain('redisStore(client, { prefix: "app:{shop}:" })');
      // The default store prefix, when none is given.
      expect(() => redisStore(client as unknown as RedisClientLike)).toThrow('prefix: "app:{keygate}:"');
    });

    it('redisLimiter() refuses it too, naming the prefix to use instead, and takes a client without one', () => {
      const client = make('app:');
      expect(() => redisLimiter(client as unknown as RedisClientLike, { prefix: 'rl:' })).toThrow(ValidationError);
      expect(() => redisLimiter(client as unknown as RedisClientLike, { prefix: 'rl:' })).toThrow(
        'redisLimiter(client, { prefix: "app:rl:" })',
      );
      expect(() => redisLimiter(make('') as unknown as RedisClientLike)).not.toThrow();
    });

    it('a client without one (keyPrefix empty, as by default) is taken', () => {
      expect(() => redisStore(make('') as unknown as RedisClientLike)).not.toThrow();
    });

    describe.skipIf(!url)('against Redis', () => {
      let admin: AnyRedisClient;
      const clients: Client[] = [];
      const tag = randomBytes(4).toString('hex');
      beforeAll(async () => {
        admin = await connectRedis('ioredis@6', url as string);
      });
      afterAll(async () => {
        for (const client of clients) await close(client);
        await deletePrefix(admin, `app-${tag}:`);
        await closeRedis(admin);
      });

      it("the remedy works: a copy without keyPrefix, with the store's prefix starting as the keyPrefix did; list and rotation intact", async () => {
        const prefixed = await connect(make(`app-${tag}:`));
        const plain = await duplicate(prefixed, '');
        clients.push(prefixed, plain);
        const storePrefix = `app-${tag}:${randomPrefix('keyprefix')}`;
        const keys = createKeyManager({ store: redisStore(plain as unknown as RedisClientLike, { prefix: storePrefix }) });
        const { key, token } = await keys.create({ name: 'prefixed', scopes: ['all'], ownerId: 'shop-1' });
        const { token: next } = await keys.rotate(key.id, { gracePeriodMs: 60_000 });
        expect((await keys.verify(token)).valid).toBe(true);
        expect((await keys.verify(next)).valid).toBe(true);
        expect((await keys.list()).keys.map((k) => k.id)).toEqual([key.id]);
        expect((await keys.list({ ownerId: 'shop-1' })).keys.map((k) => k.id)).toEqual([key.id]);
        // Every key the store wrote is in the application's namespace.
        expect(await keysUnder(admin, storePrefix)).toHaveLength(5);
        expect(await keysUnder(admin, `app-${tag}:`)).toEqual(await keysUnder(admin, storePrefix));
        await keys.close();
      });

      it('the invalidation bus takes such clients: channels are never prefixed', async () => {
        const publisher = await connect(make(`app-${tag}:`));
        const subscriber = await duplicate(publisher, `app-${tag}:`);
        clients.push(publisher, subscriber);
        const bus = redisInvalidation({
          publisher: publisher as unknown as RedisClientLike,
          subscriber: subscriber as unknown as RedisInvalidationOptions['subscriber'],
          channel: `keygate-test:${tag}:${kind}`,
        });
        const received: string[] = [];
        const stop = await bus.subscribe({ invalidate: (id) => received.push(id), reset: () => {} });
        await bus.publish('key-1');
        const end = Date.now() + 5000;
        while (received.length === 0 && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 10));
        expect(received).toEqual(['key-1']);
        await stop();
      });
    });
  });
}
