// The breaker, seen through the manager: it opens after failures in a row, sends one trial call per retryMs, closes on any answer, bounds the calls a store holds, and never counts what is not a store failure.
import { afterEach, describe, expect, it } from 'vitest';
import {
  createKeyManager,
  type KeyManager,
  type KeyManagerOptions,
  type KeyRecord,
  StoreConflictError,
  StoreOutcomeUnknownError,
  StoreUnavailableError,
  type TouchEntry,
  ValidationError,
} from '../../src/index.js';
import { localBus, observeSubscription } from '../support/bus.js';
import { DelegatingStore, type StoreMethod } from '../support/counting-store.js';

/**
 * How a store call behaves: `ok` forwards it; `fail` rejects (connection reset); `refused`
 * rejects with ECONNREFUSED (nothing was sent); `conflict` rejects with StoreConflictError;
 * `hang` holds it until `release()`, then forwards it.
 */
type Mode = 'ok' | 'fail' | 'refused' | 'conflict' | 'hang';

/** A remote-like store whose calls are counted and behave as the test says, per method or all at once. */
class ScriptedStore extends DelegatingStore {
  calls = 0;
  mode: Mode = 'ok';
  modes: Partial<Record<StoreMethod, Mode>> = {};
  private held: Array<{ go: () => void; fail: (error: Error) => void }> = [];

  /** Lets every held call go on to the memory store. */
  release(): void {
    for (const { go } of this.held.splice(0)) go();
  }

  /** Fails every held call with `error`. */
  failHeld(error: Error): void {
    for (const { fail } of this.held.splice(0)) fail(error);
  }

  private act<T>(method: StoreMethod, forward: () => Promise<T>): Promise<T> {
    this.calls++;
    switch (this.modes[method] ?? this.mode) {
      case 'ok':
        return forward();
      case 'fail':
        return Promise.reject(new Error('connection reset'));
      case 'refused':
        return Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }));
      case 'conflict':
        return Promise.reject(new StoreConflictError('a key with this token digest already exists'));
      case 'hang':
        return new Promise<T>((resolve, reject) => this.held.push({ go: () => void forward().then(resolve, reject), fail: reject }));
    }
  }

  override insert(record: KeyRecord): Promise<void> {
    return this.act('insert', () => super.insert(record));
  }
  override findById(id: string): Promise<KeyRecord | null> {
    return this.act('findById', () => super.findById(id));
  }
  override findByDigest(digest: string): Promise<KeyRecord | null> {
    return this.act('findByDigest', () => super.findByDigest(digest));
  }
  override update(next: KeyRecord, expectedVersion: number): Promise<boolean> {
    return this.act('update', () => super.update(next, expectedVersion));
  }
  override delete(id: string): Promise<boolean> {
    return this.act('delete', () => super.delete(id));
  }
  override touch(entries: readonly TouchEntry[]): Promise<void> {
    return this.act('touch', () => super.touch(entries));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const opened: Array<{ keys: KeyManager; store: ScriptedStore }> = [];

afterEach(async () => {
  for (const { keys, store } of opened.splice(0)) {
    store.mode = 'ok';
    store.modes = {};
    store.release();
    await keys.close();
  }
});

/**
 * A manager over a ScriptedStore, with `count` keys created while the store works. Last-used
 * times are flushed only on close, so no touch call mixes into the counts.
 */
async function setup(options: Partial<KeyManagerOptions>, count = 1) {
  const store = new ScriptedStore();
  const keys = createKeyManager({ store, storeTimeoutMs: 100, lastUsedFlushMs: 60_000, ...options });
  opened.push({ keys, store });
  const tokens: string[] = [];
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const { key, token } = await keys.create({ name: `key ${i}`, scopes: ['orders:list'] });
    tokens.push(token);
    ids.push(key.id);
  }
  store.calls = 0;
  return { store, keys, tokens, ids };
}

/** What a call settled with: the value, or the error. */
async function outcome<T>(call: Promise<T>): Promise<T | Error> {
  return call.catch((error: Error) => error);
}

/** Expects `error` to be a StoreUnavailableError for a call the breaker did not send. */
function expectNotSent(error: unknown): void {
  expect(error).toBeInstanceOf(StoreUnavailableError);
  expect(error).not.toBeInstanceOf(StoreOutcomeUnknownError);
  expect((error as Error).message).toMatch(/not sent/);
}

/** Expects `error` to be a store failure that did reach the store. */
function expectSent(error: unknown): void {
  expect(error).toBeInstanceOf(StoreUnavailableError);
  expect((error as Error).message).not.toMatch(/not sent/);
}

describe('opening', () => {
  it('opens after exactly `failures` failures in a row; the next call never reaches the store', async () => {
    const { store, keys, tokens } = await setup({ breaker: { failures: 3, retryMs: 60_000 } });
    store.mode = 'fail';
    for (let i = 1; i <= 3; i++) {
      expectSent(await outcome(keys.verify(tokens[0])));
      expect(store.calls).toBe(i);
    }
    const refused = await outcome(keys.verify(tokens[0]));
    expectNotSent(refused);
    expect((refused as StoreUnavailableError).code).toBe('STORE_UNAVAILABLE');
    expect(store.calls).toBe(3);
    // Reads and writes alike.
    expectNotSent(await outcome(keys.get('k_anything')));
    expectNotSent(await outcome(keys.create({ name: 'while open', scopes: ['orders:list'] })));
    expect(store.calls).toBe(3);
  });

  it('stays closed while successes come between the failures', async () => {
    const { store, keys, tokens } = await setup({ breaker: { failures: 3, retryMs: 60_000 } });
    for (let i = 0; i < 30; i++) {
      // Two failures, then a success: never three in a row.
      store.mode = i % 3 === 2 ? 'ok' : 'fail';
      const result = await outcome(keys.verify(tokens[0]));
      if (store.mode === 'ok') expect(result).toMatchObject({ valid: true });
      else expectSent(result);
    }
    expect(store.calls).toBe(30);
  });

  it('counts deadline expiries as failures', async () => {
    const { store, keys, tokens } = await setup({ storeTimeoutMs: 50, breaker: { failures: 2, retryMs: 60_000 } });
    store.mode = 'hang';
    for (let i = 0; i < 2; i++) {
      const error = await outcome(keys.verify(tokens[0]));
      expectSent(error);
      expect((error as Error).message).toMatch(/no answer within 50 ms/);
    }
    expectNotSent(await outcome(keys.verify(tokens[0])));
    expect(store.calls).toBe(2);
  });
});

describe('while open', () => {
  it('lets one trial call through per retryMs; a failed trial keeps it open, a successful one closes it', async () => {
    const { store, keys, tokens } = await setup({ breaker: { failures: 2, retryMs: 150 } });
    store.mode = 'fail';
    await outcome(keys.verify(tokens[0]));
    await outcome(keys.verify(tokens[0]));
    expect(store.calls).toBe(2);
    expectNotSent(await outcome(keys.verify(tokens[0])));
    expect(store.calls).toBe(2);

    // The first trial fails: the store is left alone for another retryMs.
    await sleep(170);
    expectSent(await outcome(keys.verify(tokens[0])));
    expect(store.calls).toBe(3);
    for (let i = 0; i < 5; i++) expectNotSent(await outcome(keys.verify(tokens[0])));
    expect(store.calls).toBe(3);

    // The next trial is held by the store: nothing else goes while it is out.
    await sleep(170);
    store.mode = 'hang';
    const trial = keys.verify(tokens[0]);
    expect(store.calls).toBe(4);
    for (let i = 0; i < 5; i++) expectNotSent(await outcome(keys.verify(tokens[0])));
    expect(store.calls).toBe(4);

    // It succeeds: every call goes again.
    store.mode = 'ok';
    store.release();
    expect(await trial).toMatchObject({ valid: true });
    for (let i = 0; i < 5; i++) expect(await keys.verify(tokens[0])).toMatchObject({ valid: true });
    expect(store.calls).toBe(9);
  });

  it('closes when a call it stopped waiting for is answered late', async () => {
    const { store, keys, tokens } = await setup({ storeTimeoutMs: 50, breaker: { failures: 2, retryMs: 60_000 } });
    store.mode = 'hang';
    expectSent(await outcome(keys.verify(tokens[0])));
    expectSent(await outcome(keys.verify(tokens[0])));
    expectNotSent(await outcome(keys.verify(tokens[0])));
    expect(store.calls).toBe(2);

    // The store answers the two abandoned calls: no trial is due for a minute, yet calls go again.
    store.mode = 'ok';
    store.release();
    await sleep(10);
    expect(await keys.verify(tokens[0])).toMatchObject({ valid: true });
    expect(store.calls).toBe(3);
  });

  it('does not close when a call it stopped waiting for fails late', async () => {
    const { store, keys, tokens } = await setup({ storeTimeoutMs: 50, breaker: { failures: 2, retryMs: 60_000 } });
    store.mode = 'hang';
    await outcome(keys.verify(tokens[0]));
    await outcome(keys.verify(tokens[0]));
    store.failHeld(new Error('connection reset'));
    await sleep(10);
    expectNotSent(await outcome(keys.verify(tokens[0])));
    expect(store.calls).toBe(2);
  });

  it('serves cache hits without the store, and a hit does not close it', async () => {
    const { store, keys, tokens } = await setup({ cache: { ttlMs: 60_000 }, breaker: { failures: 2, retryMs: 60_000 } }, 3);
    expect(await keys.verify(tokens[0])).toMatchObject({ valid: true });
    expect(store.calls).toBe(1);
    store.mode = 'fail';
    expectSent(await outcome(keys.verify(tokens[1])));
    expectSent(await outcome(keys.verify(tokens[2])));
    expectNotSent(await outcome(keys.verify(tokens[1])));
    expect(store.calls).toBe(3);

    for (let i = 0; i < 5; i++) expect(await keys.verify(tokens[0])).toMatchObject({ valid: true });
    expect(store.calls).toBe(3);
    expectNotSent(await outcome(keys.verify(tokens[2])));
  });
});

describe('maxPending', () => {
  it('refuses calls beyond maxPending unsettled ones, counting those past their deadline, until they settle', async () => {
    const { store, keys, tokens } = await setup({ storeTimeoutMs: 50, breaker: { failures: 1000, maxPending: 10 } });
    store.mode = 'hang';
    const waiting = Array.from({ length: 10 }, () => outcome(keys.verify(tokens[0])));
    expect(store.calls).toBe(10);
    const eleventh = await outcome(keys.verify(tokens[0]));
    expectNotSent(eleventh);
    expect((eleventh as Error).message).toMatch(/maxPending/);
    expect(store.calls).toBe(10);

    // Past their deadline, the ten are still held by the store, so still counted.
    for (const error of await Promise.all(waiting)) expect((error as Error).message).toMatch(/no answer within/);
    expectNotSent(await outcome(keys.verify(tokens[0])));
    expect(store.calls).toBe(10);

    store.mode = 'ok';
    store.release();
    await sleep(10);
    const again = await Promise.all(Array.from({ length: 10 }, () => keys.verify(tokens[0])));
    for (const result of again) expect(result).toMatchObject({ valid: true });
    expect(store.calls).toBe(20);
  });
});

describe('what is not a store failure', () => {
  it('a StoreConflictError from insert is an answer: it keeps its meaning and never opens the breaker', async () => {
    const { store, keys, tokens } = await setup({ breaker: { failures: 2, retryMs: 60_000 } });
    store.modes.insert = 'conflict';
    for (let i = 0; i < 5; i++) {
      expect(await outcome(keys.create({ name: `dup ${i}`, scopes: ['orders:list'] }))).toBeInstanceOf(StoreConflictError);
    }
    expect(store.calls).toBe(5);
    expect(await keys.verify(tokens[0])).toMatchObject({ valid: true });
  });

  it('failed invalidation-bus publishes never open the store breaker', async () => {
    const local = localBus();
    const { bus, subscribed } = observeSubscription(local.bus);
    const errors: unknown[] = [];
    const { store, keys, tokens, ids } = await setup({
      cache: { ttlMs: 60_000 },
      invalidation: bus,
      onError: (error) => errors.push(error),
      // One failure in a row would open it.
      breaker: { failures: 1, retryMs: 60_000 },
    });
    await subscribed;
    local.failPublish(new Error('bus down'));
    await keys.update(ids[0] as string, { name: 'renamed' });
    expect(errors.length).toBeGreaterThan(0);
    expect(String((errors.at(-1) as Error).message)).toMatch(/bus down/);
    const before = store.calls;
    expect(await keys.verify(tokens[0])).toMatchObject({ valid: true });
    expect(store.calls).toBe(before + 1);
    await keys.deactivate(ids[0] as string);
    expect(await keys.get(ids[0] as string)).toMatchObject({ active: false });
  });
});

describe('breaker: false', () => {
  it('never refuses a call, however many fail or wait', async () => {
    const { store, keys, tokens } = await setup({ storeTimeoutMs: 50, breaker: false });
    store.mode = 'fail';
    for (let i = 0; i < 20; i++) expectSent(await outcome(keys.verify(tokens[0])));
    expect(store.calls).toBe(20);

    // More than the default maxPending (1000) held at once.
    store.mode = 'hang';
    const waiting = Array.from({ length: 1001 }, () => outcome(keys.verify(tokens[0])));
    expect(store.calls).toBe(1021);
    for (const error of await Promise.all(waiting)) expectSent(error);
  });
});

describe('options', () => {
  const cases: Array<[unknown, string]> = [
    [{ failures: 0 }, 'breaker.failures'],
    [{ failures: 2.5 }, 'breaker.failures'],
    [{ failures: '5' }, 'breaker.failures'],
    [{ retryMs: 0 }, 'breaker.retryMs'],
    [{ retryMs: -1 }, 'breaker.retryMs'],
    [{ maxPending: 0 }, 'breaker.maxPending'],
    [{ maxPending: 1.5 }, 'breaker.maxPending'],
    ['on', 'breaker'],
    [true, 'breaker'],
    [null, 'breaker'],
  ];
  it.each(cases)('breaker %j is refused, naming %s', (breaker, field) => {
    let thrown: unknown;
    try {
      createKeyManager({ store: new DelegatingStore(), breaker: breaker as never });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ValidationError);
    expect((thrown as ValidationError).field).toBe(field);
    expect((thrown as Error).message).toMatch(new RegExp(`^${field.replace('.', '\\.')}: `));
  });

  it('accepts valid options and defaults', () => {
    const valid: Array<KeyManagerOptions['breaker']> = [undefined, false, {}, { failures: 1, retryMs: 1, maxPending: 1 }];
    for (const breaker of valid) {
      expect(() => createKeyManager({ store: new DelegatingStore(), breaker })).not.toThrow();
    }
  });
});

describe('writes', () => {
  it('an update the store does not confirm in time has an unknown outcome', async () => {
    const { store, keys, ids } = await setup({ storeTimeoutMs: 50 });
    store.modes.update = 'hang';
    const error = await outcome(keys.update(ids[0] as string, { name: 'maybe' }));
    expect(error).toBeInstanceOf(StoreOutcomeUnknownError);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as StoreOutcomeUnknownError).code).toBe('STORE_OUTCOME_UNKNOWN');
  });

  it('an update that fails on a broken connection has an unknown outcome', async () => {
    const { store, keys, ids } = await setup({});
    store.modes.update = 'fail';
    const error = await outcome(keys.update(ids[0] as string, { name: 'maybe' }));
    expect(error).toBeInstanceOf(StoreOutcomeUnknownError);
  });

  it('a write the open breaker refused was not sent: a plain StoreUnavailableError', async () => {
    const { store, keys, tokens, ids } = await setup({ breaker: { failures: 2, retryMs: 60_000 } });
    store.mode = 'fail';
    await outcome(keys.verify(tokens[0]));
    await outcome(keys.verify(tokens[0]));
    for (const write of [() => keys.delete(ids[0] as string), () => keys.create({ name: 'refused', scopes: ['orders:list'] })]) {
      const error = await outcome<unknown>(write());
      expectNotSent(error);
      expect((error as StoreUnavailableError).code).toBe('STORE_UNAVAILABLE');
    }
    expect(store.calls).toBe(2);
  });

  it('a write refused by maxPending was not sent either', async () => {
    const { store, keys, tokens, ids } = await setup({ storeTimeoutMs: 50, breaker: { maxPending: 1 } });
    store.mode = 'hang';
    const waiting = outcome(keys.verify(tokens[0]));
    const error = await outcome(keys.delete(ids[0] as string));
    expectNotSent(error);
    expect((error as StoreUnavailableError).code).toBe('STORE_UNAVAILABLE');
    await waiting;
  });

  it('a write that failed with ECONNREFUSED was not applied: a plain StoreUnavailableError', async () => {
    const { store, keys, ids } = await setup({});
    store.modes.update = 'refused';
    store.modes.insert = 'refused';
    store.modes.delete = 'refused';
    for (const write of [
      () => keys.update(ids[0] as string, { name: 'never' }),
      () => keys.create({ name: 'never', scopes: ['orders:list'] }),
      () => keys.delete(ids[0] as string),
    ]) {
      const error = await outcome<unknown>(write());
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect(error).not.toBeInstanceOf(StoreOutcomeUnknownError);
      expect((error as StoreUnavailableError).code).toBe('STORE_UNAVAILABLE');
      expect(((error as Error).cause as { code?: string }).code).toBe('ECONNREFUSED');
    }
  });

  it("a store's own StoreUnavailableError caused by ECONNREFUSED is not an unknown outcome either", async () => {
    const { store, keys, ids } = await setup({});
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    store.update = () => Promise.reject(new StoreUnavailableError('update', 'connect ECONNREFUSED', { cause: refused }));
    const error = await outcome(keys.update(ids[0] as string, { name: 'never' }));
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error).not.toBeInstanceOf(StoreOutcomeUnknownError);
  });
});
