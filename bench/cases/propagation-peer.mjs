// Instance B of the propagation case: a second process with its own manager, verify cache and bus subscription.
// It primes its cache with a token, verifies it in a loop (yielding to I/O between verifies) and tells
// instance A over IPC when it is first refused; told that A's call returned, it verifies once more.
// Started by cases/propagation.mjs, which passes the bus and store in PROPAGATION_* variables.

import { setImmediate as yieldToIo } from 'node:timers/promises';
import { openBus } from './propagation.mjs';

const send = (message) => process.send(message);
/** A clock both processes share: the wall clock at process start plus the monotonic time since. */
const wallNow = () => performance.timeOrigin + performance.now();

const bench = await openBus(process.env.PROPAGATION_BUS, {
  prefix: process.env.PROPAGATION_PREFIX,
  table: process.env.PROPAGATION_TABLE,
  channel: process.env.PROPAGATION_CHANNEL,
});
let lookups = 0;
// Counts store lookups, to tell a verify served by the cache from one that asked the store.
const store = new Proxy(bench.store, {
  get(target, name) {
    const value = Reflect.get(target, name, target);
    if (name === 'findByDigest') {
      return (digest) => {
        lookups++;
        return value.call(target, digest);
      };
    }
    return typeof value === 'function' ? value.bind(target) : value;
  },
});
const keys = bench.createKeyManager({ store, cache: { ttlMs: 600_000 }, invalidation: bench.bus, onError: () => {} });

/** The trial in progress: its token, and whether the loop still runs. */
let current = null;

async function watch({ trial, token }) {
  // Served from the cache: a verify that did not ask the store.
  for (let attempt = 0; ; attempt++) {
    const before = lookups;
    const result = await keys.verify(token);
    if (!result.valid) return send({ type: 'error', message: `trial ${trial}: the token was refused before the change (${result.code})` });
    if (lookups === before) break;
    if (attempt > 200) return send({ type: 'error', message: `trial ${trial}: the cache never served the token` });
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  const watching = { trial, token, running: true };
  current = watching;
  send({ type: 'ready', trial });
  while (watching.running) {
    const result = await keys.verify(token);
    if (!result.valid) {
      watching.running = false;
      send({ type: 'refused', trial, code: result.code, at: wallNow() });
      return;
    }
    await yieldToIo();
  }
}

async function returned({ trial }) {
  if (current?.trial !== trial) return send({ type: 'error', message: `trial ${trial}: told of a return for a trial not watched` });
  const result = await keys.verify(current.token);
  send({ type: 'after', trial, accepted: result.valid === true });
}

process.on('message', (message) => {
  if (message.type === 'watch') void watch(message);
  else if (message.type === 'returned') void returned(message);
  else if (message.type === 'status') send({ type: 'status', status: keys.busStatus() });
  else if (message.type === 'exit') {
    if (current) current.running = false;
    void keys
      .close()
      .then(() => bench.close())
      .finally(() => process.exit(0));
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'started' });
