// Redis test helpers: connected clients of each kind, a random key prefix, dumping and deleting a prefix, watching a bus subscribe.

import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createClient as createClient4 } from 'redis';
import { createClient as createClient5 } from 'redis5';
import type { InvalidationBus } from '../../src/cache.js';

/** The client libraries the Redis adapters are tested with. */
export const REDIS_CLIENT_KINDS = ['ioredis', 'node-redis@4', 'node-redis@5'] as const;
export type RedisClientKind = (typeof REDIS_CLIENT_KINDS)[number];

export type IoRedisClient = Redis;
export type NodeRedis4Client = ReturnType<typeof createClient4>;
export type NodeRedis5Client = ReturnType<typeof createClient5>;
export type AnyRedisClient = IoRedisClient | NodeRedis4Client | NodeRedis5Client;

/** A key prefix of its own for one test file, with its own hash tag. */
export function randomPrefix(label = 'test'): string {
  return `{kgt-${label}-${randomBytes(6).toString('hex')}}:`;
}

/** A connected client of the given kind; connection errors are collected instead of thrown. */
export async function connectRedis(kind: RedisClientKind, url: string, errors: unknown[] = []): Promise<AnyRedisClient> {
  if (kind === 'ioredis') {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    client.on('error', (error: unknown) => errors.push(error));
    await client.connect();
    return client;
  }
  const client = kind === 'node-redis@4' ? createClient4({ url }) : createClient5({ url });
  client.on('error', (error: unknown) => errors.push(error));
  await client.connect();
  return client;
}

/** A second connection like `client` (for pub/sub), connected. */
export async function duplicateRedis(client: AnyRedisClient, errors: unknown[] = []): Promise<AnyRedisClient> {
  if (client instanceof Redis) {
    const copy = client.duplicate();
    copy.on('error', (error: unknown) => errors.push(error));
    if (copy.status === 'wait')
      await copy.connect(); // lazyConnect is copied too
    else if (copy.status !== 'ready') await new Promise((resolve) => copy.once('ready', resolve));
    return copy;
  }
  const copy = client.duplicate();
  copy.on('error', (error: unknown) => errors.push(error));
  await copy.connect();
  return copy;
}

/** Sends one raw command over any client. */
export function rawCommand(client: AnyRedisClient, args: string[]): Promise<unknown> {
  if (client instanceof Redis) return client.call(args[0] as string, args.slice(1));
  return (client as NodeRedis4Client).sendCommand(args);
}

/** Closes a client, whatever its state. */
export async function closeRedis(client: AnyRedisClient): Promise<void> {
  if (client instanceof Redis) {
    client.disconnect();
    return;
  }
  if (client.isOpen) await (client as NodeRedis4Client).disconnect().catch(() => {});
}

function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** Every key under `prefix` (SCAN, never KEYS). */
export async function keysUnder(client: AnyRedisClient, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = (await rawCommand(client, ['SCAN', cursor, 'MATCH', `${globEscape(prefix)}*`, 'COUNT', '1000'])) as [
      string,
      string[],
    ];
    keys.push(...batch);
    cursor = String(next);
  } while (cursor !== '0');
  return [...new Set(keys)].sort();
}

/** Every key under `prefix` with every value it holds, whatever its type, as text. */
export async function dumpPrefix(client: AnyRedisClient, prefix: string): Promise<string> {
  const out: string[] = [];
  for (const key of await keysUnder(client, prefix)) {
    const type = String(await rawCommand(client, ['TYPE', key]));
    let value: unknown;
    if (type === 'string') value = await rawCommand(client, ['GET', key]);
    else if (type === 'hash') value = await rawCommand(client, ['HGETALL', key]);
    else if (type === 'zset') value = await rawCommand(client, ['ZRANGE', key, '0', '-1', 'WITHSCORES']);
    else if (type === 'set') value = await rawCommand(client, ['SMEMBERS', key]);
    else if (type === 'list') value = await rawCommand(client, ['LRANGE', key, '0', '-1']);
    else if (type === 'stream') value = await rawCommand(client, ['XRANGE', key, '-', '+']);
    else if (type !== 'none') throw new Error(`dumpPrefix: no reader for a ${type} key (${key})`);
    out.push(`${type} ${key} ${JSON.stringify(value)}`);
  }
  return out.join('\n');
}

/** Deletes every key under `prefix`. */
export async function deletePrefix(client: AnyRedisClient, prefix: string): Promise<void> {
  const keys = await keysUnder(client, prefix);
  for (let i = 0; i < keys.length; i += 500) await rawCommand(client, ['UNLINK', ...keys.slice(i, i + 500)]);
}

/** Wraps a bus so that a test can wait until a manager has subscribed through it. */
export function observeSubscription(bus: InvalidationBus): { bus: InvalidationBus; subscribed: Promise<void> } {
  let done: () => void = () => {};
  const subscribed = new Promise<void>((resolve) => (done = resolve));
  return {
    subscribed,
    bus: {
      publish: (keyId) => bus.publish(keyId),
      subscribe: async (subscriber) => {
        const stop = await bus.subscribe(subscriber);
        // The manager turns its cache on in the same tick, right after this resolves.
        setImmediate(done);
        return stop;
      },
    },
  };
}
