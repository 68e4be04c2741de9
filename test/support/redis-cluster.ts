// Redis Cluster test helpers: connected cluster clients of each tested major, and plain connections to the primaries for dumping and deleting a prefix.

import { Cluster as IoCluster6, Redis as IoRedis6 } from 'ioredis';
import { Cluster as IoCluster5 } from 'ioredis5';
import { createCluster as createCluster6 } from 'redis';
import { createCluster as createCluster4 } from 'redis4';
import { createCluster as createCluster5 } from 'redis5';
import { deletePrefix, keysUnder, rawCommand } from './redis.js';

/** The cluster clients the Redis adapters are tested with. */
export const REDIS_CLUSTER_KINDS = ['ioredis@6', 'ioredis@5', 'node-redis@6', 'node-redis@5', 'node-redis@4'] as const;
export type RedisClusterKind = (typeof REDIS_CLUSTER_KINDS)[number];

export type IoRedisCluster = IoCluster6 | IoCluster5;
export type NodeRedisCluster = ReturnType<typeof createCluster6> | ReturnType<typeof createCluster5> | ReturnType<typeof createCluster4>;
export type AnyRedisCluster = IoRedisCluster | NodeRedisCluster;

/** The node-redis cluster methods these helpers call, alike in 4, 5 and 6. */
interface NodeRedisClusterCalls {
  readonly isOpen: boolean;
  connect(): Promise<unknown>;
  disconnect(): Promise<void>;
  duplicate(): NodeRedisCluster;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

/** The ioredis Cluster options the tests may set, alike in 5 and 6. */
export interface IoClusterOptions {
  lazyConnect?: boolean;
  scaleReads?: 'master';
  enableOfflineQueue?: boolean;
  enableReadyCheck?: boolean;
  maxRedirections?: number;
  retryDelayOnFailover?: number;
  retryDelayOnClusterDown?: number;
  retryDelayOnTryAgain?: number;
  retryDelayOnMoved?: number;
  slotsRefreshTimeout?: number;
  slotsRefreshInterval?: number;
  clusterRetryStrategy?: (times: number) => number | null;
  redisOptions?: {
    maxRetriesPerRequest?: number | null;
    connectTimeout?: number;
    commandTimeout?: number;
    keyPrefix?: string;
    connectionName?: string;
  };
}

/** The root nodes of a cluster URL list (`redis://h:p,redis://h:p`). */
export function clusterUrls(list: string): string[] {
  return list
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);
}

function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 6379) };
}

export function isIoRedisCluster(client: AnyRedisCluster): client is IoRedisCluster {
  return client instanceof IoCluster6 || client instanceof IoCluster5;
}

/** A new, unconnected ioredis Cluster of the kind's major (lazyConnect is forced on). */
export function newIoCluster(kind: RedisClusterKind, urls: readonly string[], options: IoClusterOptions = {}): IoRedisCluster {
  const nodes = urls.map(hostPort);
  const all = { scaleReads: 'master' as const, ...options, lazyConnect: true };
  if (kind === 'ioredis@6') return new IoCluster6(nodes, all);
  if (kind === 'ioredis@5') return new IoCluster5(nodes, all);
  throw new Error(`${kind} is not an ioredis kind`);
}

/** A connected cluster client of the given kind; connection errors are collected instead of thrown. */
export async function connectCluster(
  kind: RedisClusterKind,
  urls: readonly string[],
  errors: unknown[] = [],
  ioOptions: IoClusterOptions = {},
  nodeDefaults: { name?: string } = {},
): Promise<AnyRedisCluster> {
  if (kind.startsWith('ioredis@')) {
    const cluster = newIoCluster(kind, urls, ioOptions);
    cluster.on('error', (error: unknown) => errors.push(error));
    await cluster.connect();
    return cluster;
  }
  const options = { rootNodes: urls.map((url) => ({ url })), defaults: nodeDefaults };
  const cluster = (
    kind === 'node-redis@6' ? createCluster6(options) : kind === 'node-redis@5' ? createCluster5(options) : createCluster4(options)
  ) as NodeRedisCluster;
  (cluster as unknown as NodeRedisClusterCalls).on('error', (error) => errors.push(error));
  await (cluster as unknown as NodeRedisClusterCalls).connect();
  return cluster;
}

/** A second cluster client like `client` (for pub/sub), connected. */
export async function duplicateCluster(client: AnyRedisCluster, errors: unknown[] = []): Promise<AnyRedisCluster> {
  if (isIoRedisCluster(client)) {
    const copy = client.duplicate();
    copy.on('error', (error: unknown) => errors.push(error));
    if (copy.status === 'wait') await copy.connect();
    else if (copy.status !== 'ready') await new Promise((resolve) => copy.once('ready', resolve));
    return copy;
  }
  const copy = (client as unknown as NodeRedisClusterCalls).duplicate();
  (copy as unknown as NodeRedisClusterCalls).on('error', (error) => errors.push(error));
  await (copy as unknown as NodeRedisClusterCalls).connect();
  return copy;
}

/** Closes a cluster client, whatever its state. */
export async function closeCluster(client: AnyRedisCluster): Promise<void> {
  if (isIoRedisCluster(client)) {
    client.disconnect();
    return;
  }
  const node = client as unknown as NodeRedisClusterCalls;
  if (node.isOpen) await node.disconnect().catch(() => {});
}

/** A plain connection to one node. */
async function plain(host: string, port: number): Promise<IoRedis6> {
  const client = new IoRedis6({ host, port, lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** The primaries of the cluster, as `{ host, port, id, slots }` (slots as [from, to] ranges). */
export async function clusterPrimaries(
  urls: readonly string[],
): Promise<Array<{ host: string; port: number; id: string; slots: Array<[number, number]> }>> {
  const { host, port } = hostPort(urls[0] as string);
  const client = await plain(host, port);
  try {
    const text = String(await client.call('CLUSTER', ['NODES']));
    const out = [];
    for (const line of text.split('\n')) {
      const parts = line.trim().split(' ');
      if (parts.length < 8 || !(parts[2] as string).includes('master') || (parts[2] as string).includes('fail')) continue;
      const [address = ''] = (parts[1] as string).split('@');
      const colon = address.lastIndexOf(':');
      const slots: Array<[number, number]> = [];
      for (const range of parts.slice(8)) {
        if (range.startsWith('[')) continue;
        const [from, to = from] = range.split('-');
        slots.push([Number(from), Number(to)]);
      }
      if (slots.length > 0)
        out.push({ host: address.slice(0, colon), port: Number(address.slice(colon + 1)), id: parts[0] as string, slots });
    }
    return out;
  } finally {
    client.disconnect();
  }
}

/** The slot of a key, computed by the server. */
export async function keySlot(urls: readonly string[], key: string): Promise<number> {
  const { host, port } = hostPort(urls[0] as string);
  const client = await plain(host, port);
  try {
    return Number(await client.call('CLUSTER', ['KEYSLOT', key]));
  } finally {
    client.disconnect();
  }
}

/** A plain connection to the primary that serves the slot of `key` (all of a store's keys share it). */
export async function connectSlotOwner(urls: readonly string[], key: string): Promise<IoRedis6> {
  const slot = await keySlot(urls, key);
  const owner = (await clusterPrimaries(urls)).find((p) => p.slots.some(([from, to]) => slot >= from && slot <= to));
  if (!owner) throw new Error(`no primary serves slot ${slot}`);
  return plain(owner.host, owner.port);
}

/** Deletes every key under `prefix` on every primary, one key at a time (they may be in many slots). */
export async function deleteClusterPrefix(urls: readonly string[], prefix: string): Promise<void> {
  for (const primary of await clusterPrimaries(urls)) {
    const client = await plain(primary.host, primary.port);
    try {
      for (const key of await keysUnder(client, prefix)) await rawCommand(client, ['UNLINK', key]);
    } finally {
      client.disconnect();
    }
  }
}

/** Every key under a store prefix (one slot), deleted on the primary that holds them. */
export async function deleteStorePrefix(urls: readonly string[], prefix: string): Promise<void> {
  const owner = await connectSlotOwner(urls, prefix);
  try {
    await deletePrefix(owner, prefix);
  } finally {
    owner.disconnect();
  }
}
