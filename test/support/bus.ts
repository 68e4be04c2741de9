// Test help for invalidation buses, whichever server carries them.
import type { InvalidationBus } from '../../src/cache.js';

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
