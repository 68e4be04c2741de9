// Acknowledged invalidation and bus liveness, in one process: instances on a bus whose deliveries a test can hold, drop or cut.
import { afterEach, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import type { InvalidationBus, InvalidationSubscriber } from '../../src/cache.js';
import {
  createKeyManager,
  InvalidationUnconfirmedError,
  type KeyManager,
  type KeyManagerOptions,
  type KeyStore,
  type KeyWithToken,
  ValidationError,
} from '../../src/index.js';
import { cacheServing } from '../support/bus.js';
import { HeldStore as CountingStore } from '../support/counting-store.js';

const HEARTBEAT_MS = 40;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** One subscriber's end of the hub: its deliveries but heartbeats can be held (kept in order), or all dropped. */
interface Tap {
  subscriber: InvalidationSubscriber;
  held: string[] | null;
  dropping: boolean;
  /** Messages this subscriber was sent, for tests that look at the traffic. */
  seen: string[];
}

/**
 * A bus in this process that delivers every message to every subscriber a tick later, in one
 * order, like Redis pub/sub: and lets a test hold one subscriber's deliveries, drop them, or tell
 * it the subscription was lost.
 */
class Hub {
  readonly taps: Tap[] = [];
  published: string[] = [];

  bus(): InvalidationBus & { tap: Promise<Tap> } {
    let found: (tap: Tap) => void = () => {};
    const tap = new Promise<Tap>((resolve) => (found = resolve));
    let mine: Tap | null = null;
    return {
      tap,
      publish: async (message) => {
        if (mine?.dropping) return;
        this.published.push(message);
        await new Promise((resolve) => setImmediate(resolve));
        for (const t of [...this.taps]) this.deliver(t, message);
      },
      subscribe: async (subscriber) => {
        const t: Tap = { subscriber, held: null, dropping: false, seen: [] };
        this.taps.push(t);
        mine = t;
        found(t);
        return async () => {
          this.taps.splice(this.taps.indexOf(t), 1);
        };
      },
    };
  }

  private deliver(t: Tap, message: string): void {
    if (t.dropping) return;
    // Heartbeats pass a hold: an instance that hears none of its own turns its cache off.
    if (t.held && !/^\u0001[hp]\u0001/.test(message)) t.held.push(message);
    else {
      t.seen.push(message);
      t.subscriber.invalidate(message);
    }
  }

  static hold(t: Tap): void {
    t.held ??= [];
  }

  static release(t: Tap): void {
    const held = t.held ?? [];
    t.held = null;
    for (const m of held) {
      t.seen.push(m);
      t.subscriber.invalidate(m);
    }
  }
}

const managers: KeyManager[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
});

async function instance(
  hub: Hub,
  store: KeyStore,
  options: Partial<KeyManagerOptions> = {},
): Promise<{ keys: KeyManager; tap: Tap; errors: unknown[] }> {
  const bus = hub.bus();
  const errors: unknown[] = [];
  const keys = createKeyManager({
    store,
    cache: { ttlMs: 60_000 },
    invalidation: bus,
    revocation: { heartbeatMs: HEARTBEAT_MS, timeoutMs: 500 },
    onError: (error) => errors.push(error),
    ...options,
  });
  managers.push(keys);
  // A test's own bus (wrapping one of the hub's) carries the tap of the one it wraps.
  const tap = await ((options.invalidation as { tap?: Promise<Tap> } | undefined)?.tap ?? bus.tap);
  if (options.cache !== false) await cacheServing(keys);
  return { keys, tap, errors };
}

/** Verifies until the store was not asked: the key is in this instance's cache. */
async function warm(keys: KeyManager, store: CountingStore, token: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const before = store.lookups;
    expect((await keys.verify(token)).valid).toBe(true);
    if (store.lookups === before) return;
  }
  throw new Error('never served from the cache');
}

describe('acknowledged invalidation', () => {
  it('deactivate({ wait: true }) returns only once every other caching instance has dropped the key', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    const a = await instance(hub, store);
    const b = await instance(hub, store);
    const c = await instance(hub, store);
    expect(a.keys.busStatus()).toEqual({ subscribed: true, cacheServing: true, instances: 3 });
    const { key, token } = await a.keys.create({ name: 'leaked', scopes: ['all'] });
    await warm(b.keys, store, token);
    await warm(c.keys, store, token);
    Hub.hold(c.tap);
    let returned = false;
    const call = a.keys.deactivate(key.id, { wait: true }).then((k) => {
      returned = true;
      return k;
    });
    await sleep(100);
    // C has not heard of it yet, and still answers from its cache: A must not have returned.
    expect(returned).toBe(false);
    expect((await c.keys.verify(token)).valid).toBe(true);
    Hub.release(c.tap);
    await expect(call).resolves.toMatchObject({ active: false });
    for (const i of [b, c]) expect(await i.keys.verify(token)).toMatchObject({ valid: false, code: 'INACTIVE' });
  });

  it('without wait, the same call returns before a slow instance has dropped the key', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    const a = await instance(hub, store);
    const c = await instance(hub, store);
    const { key, token } = await a.keys.create({ name: 'fast', scopes: ['all'] });
    await warm(c.keys, store, token);
    Hub.hold(c.tap);
    await a.keys.deactivate(key.id);
    expect((await c.keys.verify(token)).valid).toBe(true);
    Hub.release(c.tap);
    expect(await c.keys.verify(token)).toMatchObject({ code: 'INACTIVE' });
  });

  it('names how many instances did not answer, and keeps the result of the write (the new token of a rotation)', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    const a = await instance(hub, store);
    const b = await instance(hub, store);
    const c = await instance(hub, store);
    const { key, token } = await a.keys.create({ name: 'silent peer', scopes: ['all'] });
    await warm(b.keys, store, token);
    Hub.hold(c.tap);
    const error = await a.keys.rotate(key.id, { wait: true }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidationUnconfirmedError);
    const unconfirmed = error as InvalidationUnconfirmedError<KeyWithToken>;
    expect(unconfirmed).toMatchObject({ code: 'INVALIDATION_UNCONFIRMED', status: 503, instances: 2, unanswered: 1 });
    expect(unconfirmed.message).toContain('1 of 2 other instances');
    // The rotation is done: the token in the error works, the old one does not.
    expect((await a.keys.verify(unconfirmed.result.token)).valid).toBe(true);
    expect(await b.keys.verify(token)).toMatchObject({ code: 'NOT_FOUND' });
    Hub.release(c.tap);
    expect(await c.keys.verify(token)).toMatchObject({ code: 'NOT_FOUND' });
  });

  it('stops waiting for an instance that closed at once, and for one that went silent after four heartbeats', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    // A waits less than four heartbeats: long enough to miss C, too short to see it go.
    const a = await instance(hub, store, { revocation: { heartbeatMs: HEARTBEAT_MS, timeoutMs: HEARTBEAT_MS * 2 } });
    const b = await instance(hub, store);
    const c = await instance(hub, store);
    const { key } = await a.keys.create({ name: 'members', scopes: ['all'] });
    await b.keys.close();
    await sleep(10);
    expect(a.keys.busStatus().instances).toBe(2);
    // C stops hearing and saying anything (a crashed process says no goodbye).
    c.tap.dropping = true;
    await expect(a.keys.deactivate(key.id, { wait: true })).rejects.toMatchObject({ unanswered: 1 });
    await sleep(HEARTBEAT_MS * 5 + 100);
    expect(a.keys.busStatus().instances).toBe(1);
    await expect(a.keys.activate(key.id, { wait: true })).resolves.toMatchObject({ active: true });
  });

  it('a wait longer than four heartbeats outlasts an instance that went silent: it is then no longer waited for', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    const a = await instance(hub, store, { revocation: { heartbeatMs: HEARTBEAT_MS, timeoutMs: HEARTBEAT_MS * 20 } });
    const c = await instance(hub, store);
    const { key, token } = await a.keys.create({ name: 'outlasted', scopes: ['all'] });
    await warm(c.keys, store, token);
    c.tap.dropping = true;
    const started = performance.now();
    await expect(a.keys.deactivate(key.id, { wait: true })).resolves.toMatchObject({ active: false });
    expect(performance.now() - started).toBeGreaterThanOrEqual(HEARTBEAT_MS * 3);
    // By then C, hearing nothing of its own heartbeats, has turned its cache off: it asks the store.
    expect(c.keys.busStatus().cacheServing).toBe(false);
    expect(await c.keys.verify(token)).toMatchObject({ code: 'INACTIVE' });
  });

  it('an instance without a cache can wait too, and sends nothing but invalidations until it does', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    const admin = await instance(hub, store, { cache: false });
    const server = await instance(hub, store);
    expect(hub.published.some((m) => /^\u0001[hj]\u0001/.test(m))).toBe(true);
    const fromAdmin = () => hub.published.filter((m) => m.startsWith('\u0001p\u0001')).length;
    expect(fromAdmin()).toBe(0);
    // It hears the server's heartbeats, and is not one of the instances with a cache itself.
    expect(admin.keys.busStatus()).toMatchObject({ cacheServing: false, instances: 1 });
    const { key, token } = await admin.keys.create({ name: 'from the admin', scopes: ['all'] });
    await warm(server.keys, store, token);
    await expect(admin.keys.delete(key.id, { wait: true })).resolves.toBe(true);
    expect(fromAdmin()).toBeGreaterThan(0);
    expect(await server.keys.verify(token)).toMatchObject({ code: 'NOT_FOUND' });
    expect(admin.keys.busStatus()).toMatchObject({ subscribed: true, instances: 1 });
  });

  it('revocation.wait makes every write wait; a call can still opt out', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    const a = await instance(hub, store, { revocation: { heartbeatMs: HEARTBEAT_MS, timeoutMs: 300, wait: true } });
    const c = await instance(hub, store);
    const { key } = await a.keys.create({ name: 'always', scopes: ['all'] });
    Hub.hold(c.tap);
    await expect(a.keys.update(key.id, { name: 'renamed' })).rejects.toBeInstanceOf(InvalidationUnconfirmedError);
    await expect(a.keys.update(key.id, { name: 'again' }, { wait: false })).resolves.toMatchObject({ name: 'again' });
    Hub.release(c.tap);
  });

  it('refuses a bad wait before writing, and revocation.wait without a bus', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    const a = await instance(hub, store);
    const { key } = await a.keys.create({ name: 'checked', scopes: ['all'] });
    await expect(a.keys.deactivate(key.id, { wait: 'yes' as unknown as boolean })).rejects.toMatchObject({ field: 'wait' });
    expect((await a.keys.get(key.id))?.active).toBe(true);
    expect(() => createKeyManager({ store: memoryStore(), revocation: { wait: true } })).toThrow(ValidationError);
    expect(() => createKeyManager({ store: memoryStore(), revocation: { heartbeatMs: 5 } })).toThrow(/revocation.heartbeatMs/);
    expect(() => createKeyManager({ store: memoryStore(), revocation: { timeoutMs: 0 } })).toThrow(/revocation.timeoutMs/);
  });

  it('a plain key id on the bus (an instance of an earlier version) still drops the key', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    const b = await instance(hub, store);
    const { key, token } = await b.keys.create({ name: 'mixed', scopes: ['all'] });
    await warm(b.keys, store, token);
    await store.update({ ...(await store.findById(key.id))!, active: false, version: 2 }, 1);
    expect((await b.keys.verify(token)).valid).toBe(true);
    await hub.bus().publish(key.id);
    expect(await b.keys.verify(token)).toMatchObject({ code: 'INACTIVE' });
  });
});

describe('a lost bus turns the cache off', () => {
  it('at once when the bus reports the subscription lost, and back on only once proven after reset()', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    const a = await instance(hub, store);
    const b = await instance(hub, store);
    const { key, token } = await a.keys.create({ name: 'lost', scopes: ['all'] });
    await warm(b.keys, store, token);
    b.tap.dropping = true;
    b.tap.subscriber.lost?.();
    expect(b.keys.busStatus()).toMatchObject({ subscribed: false, cacheServing: false });
    await a.keys.deactivate(key.id);
    // B missed the message, but asks the store now.
    expect(await b.keys.verify(token)).toMatchObject({ code: 'INACTIVE' });
    b.tap.dropping = false;
    b.tap.subscriber.reset();
    expect(b.keys.busStatus().cacheServing).toBe(false);
    await cacheServing(b.keys);
    await a.keys.activate(key.id);
    await warm(b.keys, store, token);
  });

  it('within three heartbeats when its own heartbeats stop coming back, reported through onError', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    const a = await instance(hub, store);
    const b = await instance(hub, store);
    const { key, token } = await a.keys.create({ name: 'silent', scopes: ['all'] });
    await warm(b.keys, store, token);
    b.tap.dropping = true;
    const started = performance.now();
    while (b.keys.busStatus().cacheServing) {
      if (performance.now() - started > HEARTBEAT_MS * 10) throw new Error('the cache stayed on');
      await sleep(5);
    }
    expect(performance.now() - started).toBeLessThan(HEARTBEAT_MS * 4 + 200);
    expect(String(b.errors[0])).toContain('heartbeats sent in the last');
    await a.keys.deactivate(key.id);
    expect(await b.keys.verify(token)).toMatchObject({ code: 'INACTIVE' });
    b.tap.dropping = false;
    await cacheServing(b.keys);
  });

  it('the cache never answers from entries cached before a loss', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    const b = await instance(hub, store);
    const { token } = await b.keys.create({ name: 'flushed', scopes: ['all'] });
    await warm(b.keys, store, token);
    b.tap.subscriber.lost?.();
    b.tap.subscriber.reset();
    await cacheServing(b.keys);
    const before = store.lookups;
    await b.keys.verify(token);
    expect(store.lookups).toBe(before + 1);
  });
});

describe('a bus that hangs never holds a write or close() up', () => {
  /** A's bus: every publish but heartbeats never settles once `hang` is set. */
  function hanging(hub: Hub): { bus: InvalidationBus & { tap: Promise<Tap> }; hang: () => void } {
    const inner = hub.bus();
    let hang = false;
    return {
      hang: () => void (hang = true),
      bus: {
        tap: inner.tap,
        publish: (message) => (hang && !/^\u0001[hjp]\u0001/.test(message) ? new Promise<void>(() => {}) : inner.publish(message)),
        subscribe: (subscriber) => inner.subscribe(subscriber),
      },
    };
  }

  it('an acknowledged write whose publish hangs ends at its timeout', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    const { bus, hang } = hanging(hub);
    const a = await instance(hub, store, { invalidation: bus, revocation: { heartbeatMs: HEARTBEAT_MS, timeoutMs: 200 } });
    await instance(hub, store);
    const { key } = await a.keys.create({ name: 'hung', scopes: ['all'] });
    hang();
    const started = performance.now();
    await expect(a.keys.deactivate(key.id, { wait: true })).rejects.toBeInstanceOf(InvalidationUnconfirmedError);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('close() stops listening even when the goodbye never leaves, and a write caught by close() ends at once', async () => {
    const hub = new Hub();
    const store = new CountingStore();
    const { bus, hang } = hanging(hub);
    const a = await instance(hub, store, { invalidation: bus, revocation: { heartbeatMs: HEARTBEAT_MS, timeoutMs: 60_000 } });
    const { key } = await a.keys.create({ name: 'closing', scopes: ['all'] });
    expect(hub.taps).toHaveLength(1);
    hang();
    const write = a.keys.deactivate(key.id, { wait: true }).catch((error: unknown) => error);
    await sleep(20);
    const started = performance.now();
    await a.keys.close();
    expect(await write).toMatchObject({ code: 'INVALIDATION_UNCONFIRMED', message: expect.stringContaining('closed') });
    expect(performance.now() - started).toBeLessThan(2000);
    expect(hub.taps).toHaveLength(0);
  });
});
