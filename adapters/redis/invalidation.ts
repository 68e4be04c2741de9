// redisInvalidation(): the cross-instance invalidation bus over Redis pub/sub, for ioredis and node-redis.

import type { InvalidationBus, InvalidationSubscriber } from '../../src/cache.js';
import { ValidationError } from '../../src/errors.js';
import { clientKind, commandSender, type RedisClientLike } from './client.js';

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

export interface RedisInvalidationOptions {
  /** Sends the invalidations; usually the client the store uses. */
  publisher: RedisClientLike;
  /**
   * A connection of its own for SUBSCRIBE (a client in subscriber mode can run no other
   * command): `client.duplicate()`, connected like the first (node-redis: `await sub.connect()`).
   * The bus never connects or closes it.
   */
  subscriber: IoRedisSubscriberLike | NodeRedisSubscriberLike;
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
  return {
    async publish(keyId) {
      await send('invalidation.publish', ['PUBLISH', channel, keyId]);
    },
    subscribe(target) {
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
