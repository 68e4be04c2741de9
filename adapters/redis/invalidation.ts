// redisInvalidation(): the cross-instance invalidation bus over Redis pub/sub, for ioredis and node-redis.

import type { InvalidationBus, InvalidationSubscriber } from '../../src/cache.js';
import { ValidationError } from '../../src/errors.js';
import { clientKind, commandSender, type NodeRedisClusterLike, type RedisClientLike } from './client.js';

/** Event methods of the subscriber connection (both clients are Node.js event emitters). */
interface Emitter {
  on(event: string, listener: (...args: string[]) => void): unknown;
  removeListener(event: string, listener: (...args: string[]) => void): unknown;
}

/**
 * The part of an ioredis client (5 or 6, RESP2 or RESP3) that the bus needs for its subscriber
 * connection; messages come as 'message' events in every case.
 */
export interface IoRedisSubscriberLike extends Emitter {
  readonly status: string;
  call(command: string, args: string[]): Promise<unknown>;
  subscribe(channel: string): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
}

/**
 * The part of a node-redis client (4.6+, 5 or 6, RESP2 or RESP3) that the bus needs for its
 * subscriber connection.
 */
export interface NodeRedisSubscriberLike extends Emitter {
  readonly isReady: boolean;
  sendCommand(args: string[]): Promise<unknown>;
  subscribe(channel: string, listener: (message: string, channel: string) => void): Promise<unknown>;
  unsubscribe(channel: string, listener: (message: string, channel: string) => void): Promise<unknown>;
}

/**
 * The part of a node-redis cluster (`createCluster()`, `redis` 5 or 6) that the bus needs for its
 * subscriber: `cluster.duplicate()`, connected. node-redis 4 clusters are refused: they do not
 * report when their pub/sub connection drops, so missed messages could not be made up for.
 */
export interface NodeRedisClusterSubscriberLike extends Emitter, NodeRedisClusterLike {
  subscribe(channel: string, listener: (message: string, channel: string) => void): Promise<unknown>;
  unsubscribe(channel: string, listener: (message: string, channel: string) => void): Promise<unknown>;
}

export interface RedisInvalidationOptions {
  /** Sends the invalidations; usually the client the store uses. */
  publisher: RedisClientLike;
  /**
   * A connection of its own for SUBSCRIBE (a client in subscriber mode can run no other
   * command): `client.duplicate()`, connected like the first (node-redis: `await sub.connect()`).
   * With an ioredis `Cluster` or a node-redis cluster (5 or 6), `cluster.duplicate()`: PUBLISH
   * reaches every node of a cluster, so one subscription anywhere hears it. The bus never
   * connects or closes it.
   */
  subscriber: IoRedisSubscriberLike | NodeRedisSubscriberLike | NodeRedisClusterSubscriberLike;
  /**
   * The pub/sub channel. Every instance sharing the keys must use the same one.
   * @default 'keygate:invalidate'
   */
  channel?: string;
}

/**
 * Tells every instance which key changed, over Redis pub/sub, so that each drops it from its
 * verify cache. Messages published while a subscriber is disconnected are lost, so a subscriber
 * flushes its whole cache when its connection drops and again once it has subscribed anew.
 *
 * @example
 * import { Redis } from 'ioredis'
 * const client = new Redis(process.env.REDIS_URL)
 * const keys = createKeyManager({
 *   store: redisStore(client),
 *   cache: { ttlMs: 30_000 },
 *   invalidation: redisInvalidation({ publisher: client, subscriber: client.duplicate() }),
 * })
 */
export function redisInvalidation(options: RedisInvalidationOptions): InvalidationBus {
  if (!options || typeof options !== 'object') {
    throw new ValidationError('options', 'must be an object with { publisher, subscriber }');
  }
  const { publisher, subscriber } = options;
  const send = commandSender(publisher, 'publisher');
  const kind = clientKind(subscriber, 'subscriber');
  if ((subscriber as object) === (publisher as object)) {
    throw new ValidationError(
      'subscriber',
      'must be a connection of its own, such as publisher.duplicate(): a subscribed client can run no other command',
    );
  }
  const channel = options.channel ?? 'keygate:invalidate';
  if (typeof channel !== 'string' || channel.length === 0 || channel.length > 200 || /[\u0000-\u001f\u007f]/.test(channel)) {
    throw new ValidationError('channel', 'must be a string of 1..200 characters without control characters');
  }
  if (kind === 'node-redis-cluster') refuseClusterWithoutNodeEvents(subscriber);
  return {
    async publish(keyId) {
      await send('invalidation.publish', ['PUBLISH', channel, keyId]);
    },
    subscribe(target) {
      if (kind === 'node-redis-cluster') return subscribeNodeRedisCluster(subscriber as NodeRedisClusterSubscriberLike, channel, target);
      if (kind === 'ioredis' && (subscriber as { isCluster?: unknown }).isCluster === true) {
        return subscribeIoRedisCluster(subscriber as IoRedisSubscriberLike, channel, target);
      }
      return kind === 'ioredis'
        ? subscribeIoRedis(subscriber as IoRedisSubscriberLike, channel, target)
        : subscribeNodeRedis(subscriber as NodeRedisSubscriberLike, channel, target);
    },
  };
}

/**
 * A subscriber connection's losses: the cache is emptied and bypassed when the connection drops
 * (messages may be missed from then on), and `recovered()` is true once per loss, when the client
 * is ready again.
 */
function connectionLoss(target: InvalidationSubscriber): { lost: () => void; recovered: () => boolean } {
  let lost = false;
  return {
    lost: () => {
      lost = true;
      if (target.lost) target.lost();
      else target.reset();
    },
    recovered: () => {
      if (!lost) return false;
      lost = false;
      return true;
    },
  };
}

async function subscribeIoRedis(sub: IoRedisSubscriberLike, channel: string, target: InvalidationSubscriber): Promise<() => Promise<void>> {
  const loss = connectionLoss(target);
  let stopped = false;
  const onMessage = (from: string, keyId: string): void => {
    if (from === channel) target.invalidate(keyId);
  };
  const onClose = loss.lost;
  const onReady = (): void => {
    if (!loss.recovered()) return;
    // ioredis subscribes again by itself (autoResubscribe); this SUBSCRIBE, sent after its own,
    // answers once the server listens again. Only then is the cache flushed: a lookup cached from
    // that moment on cannot miss a message. A failure means the connection dropped again, and
    // 'close' and the next 'ready' take it from there.
    sub.subscribe(channel).then(
      () => {
        if (!stopped) target.reset();
      },
      () => {},
    );
  };
  sub.on('message', onMessage);
  sub.on('close', onClose);
  sub.on('ready', onReady);
  const detach = (): void => {
    stopped = true;
    sub.removeListener('message', onMessage);
    sub.removeListener('close', onClose);
    sub.removeListener('ready', onReady);
  };
  try {
    await sub.subscribe(channel);
  } catch (error) {
    detach();
    throw error;
  }
  return async () => {
    detach();
    const done = sub.unsubscribe(channel);
    // Never wait on a connection that is down: the client would keep the command queued.
    if (sub.status === 'ready') await done;
    else done.catch(() => {});
  };
}

async function subscribeNodeRedis(
  sub: NodeRedisSubscriberLike,
  channel: string,
  target: InvalidationSubscriber,
): Promise<() => Promise<void>> {
  const loss = connectionLoss(target);
  const listener = (keyId: string): void => target.invalidate(keyId);
  const onLost = loss.lost;
  const onReady = (): void => {
    // node-redis emits 'ready' after it has subscribed again, so the flush comes after that.
    if (loss.recovered()) target.reset();
  };
  sub.on('reconnecting', onLost);
  sub.on('end', onLost);
  sub.on('ready', onReady);
  const detach = (): void => {
    sub.removeListener('reconnecting', onLost);
    sub.removeListener('end', onLost);
    sub.removeListener('ready', onReady);
  };
  try {
    await sub.subscribe(channel, listener);
  } catch (error) {
    detach();
    throw error;
  }
  return async () => {
    detach();
    const done = sub.unsubscribe(channel, listener);
    if (sub.isReady) await done;
    else done.catch(() => {});
  };
}

/**
 * A node-redis 4 cluster emits no event when one of its nodes (its pub/sub node among them) drops,
 * so a subscriber on it could miss messages without ever flushing. node-redis 5 and 6 clusters
 * emit `node-reconnecting`, `node-disconnect` and `node-ready`; they are told from 4 by
 * `resubscribeAllPubSubListeners`, which came with those events in 5.
 */
function refuseClusterWithoutNodeEvents(subscriber: object): void {
  if (typeof (subscriber as { resubscribeAllPubSubListeners?: unknown }).resubscribeAllPubSubListeners === 'function') return;
  throw new ValidationError(
    'subscriber',
    'is a node-redis 4 cluster, which does not report when its pub/sub connection drops, so the bus could miss invalidations without flushing the cache. Use node-redis 5 or 6 (createCluster().duplicate()) or an ioredis Cluster for the subscriber',
  );
}

/** The internal pub/sub connection of an ioredis Cluster (ioredis 5 and 6), when it can be found. */
function ioRedisClusterSubscriberConnection(sub: IoRedisSubscriberLike): Emitter | null {
  const holder = (sub as { subscriber?: { getInstance?: () => unknown } }).subscriber;
  const instance = typeof holder?.getInstance === 'function' ? holder.getInstance() : null;
  const e = instance as Partial<Emitter> | null;
  return e && typeof e.on === 'function' && typeof e.removeListener === 'function' ? (e as Emitter) : null;
}

/**
 * SUBSCRIBE on an ioredis `Cluster`. ioredis 5 opens its pub/sub connection on the first SUBSCRIBE
 * and, when that command gets there before the connection's ready check, fails the check ("Connection
 * in subscriber mode", or the server's refusal of INFO) and the SUBSCRIBE with it; the connection is
 * then opened again. So that error is retried (five times, 50 ms apart and growing); any other is
 * thrown.
 */
async function subscribeWhenReadied(sub: IoRedisSubscriberLike, channel: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await sub.subscribe(channel);
      return;
    } catch (error) {
      // The client's words ("Connection in subscriber mode") or the server's ("… allowed in this context").
      if (attempt >= 5 || !(error instanceof Error) || !/subscriber mode|allowed in this context/.test(error.message)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
    }
  }
}

/**
 * An ioredis `Cluster` subscribes over one connection to one node of its choice, and when that
 * connection ends it picks another node and subscribes there by itself, without an event of its
 * own. So the bus counts as a loss: the end of that connection (found through the Cluster's
 * internal subscriber, where ioredis 5 and 6 keep it), a node leaving the Cluster's pool
 * (`-node`), and the Cluster closing. The cache is flushed at once; once a SUBSCRIBE of its own
 * is answered (sent a tick later, after ioredis has chosen the new node), the server listens again
 * and the cache is flushed once more.
 */
async function subscribeIoRedisCluster(
  sub: IoRedisSubscriberLike,
  channel: string,
  target: InvalidationSubscriber,
): Promise<() => Promise<void>> {
  const loss = connectionLoss(target);
  let stopped = false;
  let watched: Emitter | null = null;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let losses = 0;
  const onMessage = (from: string, keyId: string): void => {
    if (from === channel) target.invalidate(keyId);
  };
  const watchConnection = (): void => {
    const connection = ioRedisClusterSubscriberConnection(sub);
    if (connection === watched) return;
    watched?.removeListener('end', onLost);
    watched = connection;
    watched?.on('end', onLost);
  };
  const resubscribe = (): void => {
    retry = undefined;
    if (stopped) return;
    if (sub.status !== 'ready') return; // 'ready' comes back and takes it from there
    const at = losses;
    sub.subscribe(channel).then(
      () => {
        if (stopped) return;
        watchConnection();
        // A loss since this SUBSCRIBE was sent has scheduled the next one, which flushes.
        if (losses === at && loss.recovered()) target.reset();
      },
      () => {
        if (!stopped && retry === undefined) retry = setTimeout(resubscribe, 500);
      },
    );
  };
  function onLost(): void {
    losses++;
    loss.lost();
    if (!stopped && retry === undefined) retry = setTimeout(resubscribe, 0);
  }
  const onReady = (): void => {
    if (!stopped && retry === undefined) retry = setTimeout(resubscribe, 0);
  };
  sub.on('message', onMessage);
  sub.on('-node', onLost);
  sub.on('close', onLost);
  sub.on('ready', onReady);
  const detach = (): void => {
    stopped = true;
    if (retry !== undefined) clearTimeout(retry);
    watched?.removeListener('end', onLost);
    sub.removeListener('message', onMessage);
    sub.removeListener('-node', onLost);
    sub.removeListener('close', onLost);
    sub.removeListener('ready', onReady);
  };
  try {
    await subscribeWhenReadied(sub, channel);
    watchConnection();
  } catch (error) {
    detach();
    throw error;
  }
  return async () => {
    detach();
    const done = sub.unsubscribe(channel);
    if (sub.status === 'ready') await done;
    else done.catch(() => {});
  };
}

/**
 * A node-redis cluster (5, 6) subscribes over one client to one node; it reconnects that client,
 * or moves it to another node when the topology changes, and subscribes again by itself. Any node
 * reconnecting or disconnecting counts as a loss (the events do not say which client is the pub/sub
 * one, and node-redis 5 says `node-ready` only once per client). At each loss the bus sends a
 * SUBSCRIBE of its own (with a listener that does nothing, removed at once): the cluster answers
 * it only once its pub/sub client is connected and subscribed again, and then the cache is
 * flushed, unless another loss came in the meantime, which sends the next one.
 */
async function subscribeNodeRedisCluster(
  sub: NodeRedisClusterSubscriberLike,
  channel: string,
  target: InvalidationSubscriber,
): Promise<() => Promise<void>> {
  const loss = connectionLoss(target);
  let stopped = false;
  let losses = 0;
  let probing = false;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const listener = (keyId: string): void => target.invalidate(keyId);
  const probe = (): void => {};
  const confirm = (): void => {
    retry = undefined;
    if (probing || stopped) return;
    probing = true;
    const at = losses;
    sub.subscribe(channel, probe).then(
      () => {
        probing = false;
        sub.unsubscribe(channel, probe).catch(() => {});
        if (stopped) return;
        if (losses !== at) confirm();
        else if (loss.recovered()) target.reset();
      },
      () => {
        probing = false;
        if (!stopped && retry === undefined) retry = setTimeout(confirm, 500);
      },
    );
  };
  const onLost = (): void => {
    losses++;
    loss.lost();
    confirm();
  };
  sub.on('node-reconnecting', onLost);
  sub.on('node-disconnect', onLost);
  const detach = (): void => {
    stopped = true;
    if (retry !== undefined) clearTimeout(retry);
    sub.removeListener('node-reconnecting', onLost);
    sub.removeListener('node-disconnect', onLost);
  };
  try {
    await sub.subscribe(channel, listener);
  } catch (error) {
    detach();
    throw error;
  }
  return async () => {
    detach();
    const done = sub.unsubscribe(channel, listener);
    if (sub.isOpen) await done;
    else done.catch(() => {});
  };
}
