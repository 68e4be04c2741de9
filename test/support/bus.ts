// Test help for invalidation buses, whichever server carries them.
import type { InvalidationBus, InvalidationSubscriber } from '../../src/cache.js';

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

/** A bus inside this process, and the handles a test uses to hold back or fail its calls. */
export interface LocalBus {
  bus: InvalidationBus;
  subscribers: Set<InvalidationSubscriber>;
  /** Subscriptions made from now on wait until `releaseSubscriptions()`. */
  holdSubscriptions: () => void;
  releaseSubscriptions: () => void;
  failSubscribe: (error: Error) => void;
  /** `null` makes publishing succeed again. */
  failPublish: (error: Error | null) => void;
}

/** An invalidation bus inside this process, whose subscription can be held back or made to fail. */
export function localBus(): LocalBus {
  const subscribers = new Set<InvalidationSubscriber>();
  let gate: Promise<void> = Promise.resolve();
  let open: () => void = () => {};
  let failSubscribe: Error | null = null;
  let failPublish: Error | null = null;
  const bus: InvalidationBus = {
    async publish(keyId) {
      if (failPublish) throw failPublish;
      for (const s of subscribers) s.invalidate(keyId);
    },
    async subscribe(subscriber) {
      await gate;
      if (failSubscribe) throw failSubscribe;
      subscribers.add(subscriber);
      return async () => void subscribers.delete(subscriber);
    },
  };
  return {
    bus,
    subscribers,
    holdSubscriptions: () => void (gate = new Promise((resolve) => (open = resolve))),
    releaseSubscriptions: () => open(),
    failSubscribe: (error: Error) => void (failSubscribe = error),
    failPublish: (error: Error | null) => void (failPublish = error),
  };
}

/**
 * Resolves once the manager's verify cache answers: with a bus, a heartbeat after it subscribed
 * (pass a short `revocation.heartbeatMs` to keep tests quick). Rejects after `timeoutMs`.
 */
export async function cacheServing(keys: { busStatus(): { cacheServing: boolean } }, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!keys.busStatus().cacheServing) {
    if (Date.now() > end) throw new Error(`the verify cache did not start answering within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
