// Redis test helpers: connected clients of each tested major, a random key prefix, dumping and deleting a prefix, watching a bus subscribe.

import { randomBytes } from 'node:crypto';
import { Redis as IoRedis6 } from 'ioredis';
import { Redis as IoRedis5 } from 'ioredis5';
import { createClient as createClient6 } from 'redis';
import { createClient as createClient4 } from 'redis4';
import { createClient as createClient5 } from 'redis5';
import { redisStore, type RedisStore } from '../../adapters/redis/index.js';
export { observeSubscription } from './bus.js';

/** The client libraries and majors the Redis adapters are tested with. */
export const REDIS_CLIENT_KINDS = ['ioredis@6', 'ioredis@5', 'node-redis@6', 'node-redis@5', 'node-redis@4'] as const;
export type RedisClientKind = (typeof REDIS_CLIENT_KINDS)[number];

/**
 * A client of one major set to the protocol its major does not default to (ioredis 6 and
 * node-redis 6 speak RESP3 by default; node-redis 5 RESP2), so that the store and the bus are
 * tested over both protocols with the same library.
 */
export interface RedisProtocolVariant {
  kind: RedisClientKind;
  protocol: 2 | 3;
  /** ioredis 6 only: RESP3 maps and doubles as JavaScript objects and numbers. */
  replyMapping?: 'resp3';
  label: string;
}

/** The protocol variants tested besides each major's default. */
export const REDIS_PROTOCOL_VARIANTS: readonly RedisProtocolVariant[] = [
  { kind: 'ioredis@6', protocol: 2, label: 'ioredis@6 over RESP2' },
  { kind: 'ioredis@6', protocol: 3, replyMapping: 'resp3', label: "ioredis@6 with replyMapping 'resp3'" },
  { kind: 'node-redis@6', protocol: 2, label: 'node-redis@6 over RESP2' },
  { kind: 'node-redis@5', protocol: 3, label: 'node-redis@5 over RESP3' },
];

/** What connectRedis() takes: a major with its default protocol, or a protocol variant. */
export type RedisClientSetup = RedisClientKind | RedisProtocolVariant;

/** Every major with its default protocol, then every protocol variant. */
export const REDIS_CLIENT_SETUPS: readonly RedisClientSetup[] = [...REDIS_CLIENT_KINDS, ...REDIS_PROTOCOL_VARIANTS];

/** How a setup is named in test titles. */
export function setupLabel(setup: RedisClientSetup): string {
  return typeof setup === 'string' ? setup : setup.label;
}

export type IoRedisClient = IoRedis6 | IoRedis5;
export type NodeRedisClient = ReturnType<typeof createClient6> | ReturnType<typeof createClient5> | ReturnType<typeof createClient4>;
export type AnyRedisClient = IoRedisClient | NodeRedisClient;

/** The node-redis methods these helpers call, alike in 4, 5 and 6 (their declared types differ too much to call on a union). */
interface NodeRedisCalls {
  readonly isOpen: boolean;
  sendCommand(args: string[]): Promise<unknown>;
  connect(): Promise<unknown>;
  disconnect(): Promise<void>;
  duplicate(): NodeRedisClient;
}

/** The ioredis options the tests use, alike in 5 and 6. */
interface IoRedisOptions {
  host?: string;
  port?: number;
  lazyConnect?: boolean;
  maxRetriesPerRequest?: number | null;
  enableReadyCheck?: boolean;
  disableClientInfo?: boolean;
  /** ioredis 6 only (RESP3 by default); ioredis 5 speaks RESP2 and has no such option. */
  protocol?: 2 | 3;
  /** ioredis 6 only. */
  replyMapping?: 'legacy' | 'resp3';
}

/** The node-redis options the tests use, alike in 4, 5 and 6. */
interface NodeRedisOptions {
  url?: string;
  socket?: { host?: string; port?: number; reconnectStrategy?: (retries: number) => number };
  disableClientInfo?: boolean;
  /** node-redis 5 and 6 only (5 defaults to 2, 6 to 3). */
  RESP?: 2 | 3;
}

/** Whether a client is an ioredis one (either major). */
export function isIoRedis(client: AnyRedisClient): client is IoRedisClient {
  return client instanceof IoRedis6 || client instanceof IoRedis5;
}

/** Whether the client is connected and ready for commands. */
export function isClientReady(client: AnyRedisClient): boolean {
  return isIoRedis(client) ? client.status === 'ready' : client.isReady;
}

/** The library family of a kind. */
export function familyOf(kind: RedisClientKind): 'ioredis' | 'node-redis' {
  return kind.startsWith('ioredis@') ? 'ioredis' : 'node-redis';
}

/** A new ioredis client of the kind's major; it connects by itself unless `lazyConnect` is set. */
export function newIoRedis(kind: RedisClientKind, options: IoRedisOptions, url?: string): IoRedisClient {
  if (familyOf(kind) !== 'ioredis') throw new Error(`${kind} is not an ioredis kind`);
  if (kind === 'ioredis@6') return url === undefined ? new IoRedis6(options) : new IoRedis6(url, options);
  return url === undefined ? new IoRedis5(options) : new IoRedis5(url, options);
}

/** A new, unconnected node-redis client of the kind's major. */
export function newNodeRedis(kind: RedisClientKind, options: NodeRedisOptions): NodeRedisClient {
  if (kind === 'node-redis@6') return createClient6(options);
  if (kind === 'node-redis@5') return createClient5(options);
  if (kind === 'node-redis@4') return createClient4(options);
  throw new Error(`${kind} is not a node-redis kind`);
}

/** A key prefix of its own for one test file, with its own hash tag. */
export function randomPrefix(label = 'test'): string {
  return `{kgt-${label}-${randomBytes(6).toString('hex')}}:`;
}

/** A connected client of the given kind or variant; connection errors are collected instead of thrown. */
export async function connectRedis(setup: RedisClientSetup, url: string, errors: unknown[] = []): Promise<AnyRedisClient> {
  const variant = typeof setup === 'string' ? null : setup;
  const kind = variant ? variant.kind : (setup as RedisClientKind);
  if (familyOf(kind) === 'ioredis') {
    const protocol = variant ? { protocol: variant.protocol, ...(variant.replyMapping ? { replyMapping: variant.replyMapping } : {}) } : {};
    const client = newIoRedis(kind, { lazyConnect: true, maxRetriesPerRequest: 1, ...protocol }, url);
    client.on('error', (error: unknown) => errors.push(error));
    await client.connect();
    return client;
  }
  const client = newNodeRedis(kind, variant ? { url, RESP: variant.protocol } : { url });
  client.on('error', (error: unknown) => errors.push(error));
  await (client as NodeRedisCalls).connect();
  return client;
}

/** A second connection like `client` (for pub/sub), connected. */
export async function duplicateRedis(client: AnyRedisClient, errors: unknown[] = []): Promise<AnyRedisClient> {
  if (isIoRedis(client)) {
    const copy = client.duplicate();
    copy.on('error', (error: unknown) => errors.push(error));
    if (copy.status === 'wait')
      await copy.connect(); // lazyConnect is copied too
    else if (copy.status !== 'ready') await new Promise((resolve) => copy.once('ready', resolve));
    return copy;
  }
  const copy = (client as NodeRedisCalls).duplicate();
  copy.on('error', (error: unknown) => errors.push(error));
  await (copy as NodeRedisCalls).connect();
  return copy;
}

/** Sends one raw command over any client. */
export function rawCommand(client: AnyRedisClient, args: string[]): Promise<unknown> {
  if (isIoRedis(client)) return client.call(args[0] as string, args.slice(1));
  return (client as NodeRedisCalls).sendCommand(args);
}

/** Closes a client, whatever its state. */
export async function closeRedis(client: AnyRedisClient): Promise<void> {
  if (isIoRedis(client)) {
    client.disconnect();
    return;
  }
  const node = client as NodeRedisCalls;
  if (node.isOpen) await node.disconnect().catch(() => {});
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

/** A store on a random key prefix through a new client of `setup`; `cleanup` deletes the keys and closes the client. */
export async function redisPrefixStore(
  setup: RedisClientSetup,
  url: string,
  label: string,
): Promise<{ client: AnyRedisClient; prefix: string; store: RedisStore; cleanup(): Promise<void> }> {
  const client = await connectRedis(setup, url);
  const prefix = randomPrefix(label);
  return {
    client,
    prefix,
    store: redisStore(client, { prefix }),
    cleanup: async () => {
      await deletePrefix(client, prefix);
      await closeRedis(client);
    },
  };
}
