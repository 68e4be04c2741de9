// What a custom store rejects with: a conflict or a refused input keeps its meaning where a store may raise it; anything else is a 503, never a 400/500 and never a pass.
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  createGuardCore,
  createKeyManager,
  KeygateError,
  KeyNotFoundError,
  ManagerClosedError,
  StoreConflictError,
  StoreOutcomeUnknownError,
  StoreUnavailableError,
  ValidationError,
  VersionConflictError,
  type KeyManager,
  type KeyRecord,
  type StoreListQuery,
  type TouchEntry,
} from '../../src/index.js';
import { createDigester } from '../../src/token.js';
import { DelegatingStore, type StoreMethod } from '../support/counting-store.js';

/** A store that works, except that one method rejects with the error it is given. */
class RefusingStore extends DelegatingStore {
  failing: StoreMethod | null = null;
  error: unknown = null;

  private refuse(method: StoreMethod): Promise<never> | null {
    return this.failing === method ? Promise.reject(this.error) : null;
  }
  override insert(record: KeyRecord): Promise<void> {
    return this.refuse('insert') ?? super.insert(record);
  }
  override findById(id: string): Promise<KeyRecord | null> {
    return this.refuse('findById') ?? super.findById(id);
  }
  override findByDigest(digest: string): Promise<KeyRecord | null> {
    return this.refuse('findByDigest') ?? super.findByDigest(digest);
  }
  override list(query: StoreListQuery): Promise<KeyRecord[]> {
    return this.refuse('list') ?? super.list(query);
  }
  override update(next: KeyRecord, expectedVersion: number): Promise<boolean> {
    return this.refuse('update') ?? super.update(next, expectedVersion);
  }
  override delete(id: string): Promise<boolean> {
    return this.refuse('delete') ?? super.delete(id);
  }
  override touch(entries: readonly TouchEntry[]): Promise<void> {
    return this.refuse('touch') ?? super.touch(entries);
  }
}

/** Errors a store's own code might reject with, by a short label. */
const STORE_ERRORS: Record<string, () => unknown> = {
  'a plain KeygateError': () => new KeygateError('MANAGER_CLOSED', 500, 'the store gave up'),
  ValidationError: () => new ValidationError('digest', 'is not one this store can hold'),
  StoreConflictError: () => new StoreConflictError('a key with this token digest already exists'),
  KeyNotFoundError: () => new KeyNotFoundError('k1'),
  VersionConflictError: () => new VersionConflictError('k1', 1, 2),
  ManagerClosedError: () => new ManagerClosedError(),
  // The same errors from another copy of keygate (a CommonJS store next to an ESM manager).
  "another copy's StoreConflictError": () =>
    Object.assign(new Error('a key with this id already exists'), { name: 'StoreConflictError', code: 'STORE_CONFLICT', status: 409 }),
  "another copy's ValidationError": () =>
    Object.assign(new Error('id: too long for this store'), { name: 'ValidationError', code: 'VALIDATION_FAILED', status: 400 }),
};

/** Each manager call, the store method it reaches, and the errors of that method that keep their meaning. */
const CALLS: Array<{
  call: string;
  method: StoreMethod;
  kept: string[];
  run: (keys: KeyManager, id: string, token: string) => Promise<unknown>;
}> = [
  { call: 'verify', method: 'findByDigest', kept: [], run: (keys, _id, token) => keys.verify(token) },
  { call: 'get', method: 'findById', kept: ['VALIDATION_FAILED'], run: (keys, id) => keys.get(id) },
  { call: 'list', method: 'list', kept: ['VALIDATION_FAILED'], run: (keys) => keys.list() },
  {
    call: 'create',
    method: 'insert',
    kept: ['VALIDATION_FAILED', 'STORE_CONFLICT'],
    run: (keys) => keys.create({ name: 'second', scopes: ['all'] }),
  },
  {
    call: 'update',
    method: 'update',
    kept: ['VALIDATION_FAILED', 'STORE_CONFLICT'],
    run: (keys, id) => keys.update(id, { name: 'renamed' }),
  },
  { call: 'rotate', method: 'update', kept: ['VALIDATION_FAILED', 'STORE_CONFLICT'], run: (keys, id) => keys.rotate(id) },
  { call: 'deactivate', method: 'update', kept: ['VALIDATION_FAILED', 'STORE_CONFLICT'], run: (keys, id) => keys.deactivate(id) },
  { call: 'delete', method: 'delete', kept: ['VALIDATION_FAILED'], run: (keys, id) => keys.delete(id) },
];

async function setup(): Promise<{ store: RefusingStore; keys: KeyManager; id: string; token: string }> {
  const store = new RefusingStore();
  const keys = createKeyManager({ store, lastUsedFlushMs: 60_000 });
  const { key, token } = await keys.create({ name: 'first', scopes: ['all'] });
  return { store, keys, id: key.id, token };
}

describe('a custom store that rejects with a keygate error', () => {
  for (const { call, method, kept, run } of CALLS) {
    for (const [label, make] of Object.entries(STORE_ERRORS)) {
      const error = make() as { code: string };
      const keeps = kept.includes(error.code);
      // A write the store failed may have been applied all the same (the connection broke on the
      // way back): its outcome is unknown, a kind of StoreUnavailableError.
      const write = method === 'insert' || method === 'update' || method === 'delete';
      const becomes = write ? 'StoreOutcomeUnknownError (503)' : 'StoreUnavailableError (503)';
      it(`${call} (store.${method}) rejecting with ${label}: ${keeps ? 'the same error' : becomes}`, async () => {
        const { store, keys, id, token } = await setup();
        store.failing = method;
        store.error = error;
        const thrown = await run(keys, id, token).then(
          () => null,
          (e: unknown) => e,
        );
        if (keeps) {
          expect(thrown).toBe(error);
        } else {
          expect(thrown).toBeInstanceOf(write ? StoreOutcomeUnknownError : StoreUnavailableError);
          expect(thrown).toMatchObject({ code: write ? 'STORE_OUTCOME_UNKNOWN' : 'STORE_UNAVAILABLE', status: 503, operation: method });
          // What the store said survives, as the message and as a plain copy in the cause.
          expect((thrown as Error).message).toContain((error as unknown as Error).message);
          expect((thrown as Error).cause).toMatchObject({
            name: (error as unknown as Error).name,
            message: (error as unknown as Error).message,
          });
          expect((thrown as Error).cause).not.toBeInstanceOf(KeygateError);
        }
        await keys.close();
      });
    }
  }

  it('a failed last-used write is reported as StoreUnavailableError, whatever the store rejected with', async () => {
    const errors: unknown[] = [];
    const store = new RefusingStore();
    const keys = createKeyManager({ store, lastUsedFlushMs: 60_000, onError: (e) => errors.push(e) });
    const { token } = await keys.create({ name: 'used', scopes: ['all'] });
    store.failing = 'touch';
    for (const make of Object.values(STORE_ERRORS)) {
      store.error = make();
      expect((await keys.verify(token)).valid).toBe(true);
      await keys.flush();
    }
    expect(errors).toHaveLength(Object.keys(STORE_ERRORS).length);
    for (const error of errors) expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE', operation: 'touch' });
    await keys.close();
  });

  it("a store's own StoreUnavailableError is rebuilt: its cause keeps only name, code and message, and no digest", async () => {
    const { store, keys, token } = await setup();
    const digest = createDigester()(token);
    // What ioredis rejects with: the command it sent, the digest's key name among its arguments.
    const driverError = Object.assign(new Error('WRONGTYPE Operation against a key holding the wrong kind of value'), {
      name: 'ReplyError',
      code: 'WRONGTYPE',
      command: { name: 'EVALSHA', args: ['0123abcd', '1', `{keygate}:d:${digest}`] },
    });
    store.failing = 'findByDigest';
    store.error = new StoreUnavailableError('findByDigest', `lookup of {keygate}:d:${digest} failed`, { cause: driverError });
    const thrown = await keys.verify(token).catch((e: unknown) => e);
    expect(thrown).toBeInstanceOf(StoreUnavailableError);
    expect(thrown).not.toBe(store.error);
    expect((thrown as Error).message).toBe('Key store unavailable during findByDigest: lookup of {keygate}:d:[redacted] failed');
    const cause = (thrown as Error).cause as Record<string, unknown>;
    expect(cause).toMatchObject({ name: 'ReplyError', code: 'WRONGTYPE', message: driverError.message });
    expect(Object.keys(cause).sort()).toEqual(['code', 'name']);
    expect(inspect(thrown, { depth: Number.POSITIVE_INFINITY, showHidden: true })).not.toContain(digest);
    await keys.close();
  });

  it("the manager's own checks inside a store call still answer 400", async () => {
    const { keys } = await setup();
    await expect(keys.get('')).rejects.toBeInstanceOf(ValidationError);
    await keys.close();
  });
});

describe('the guard over a store whose lookup rejects with a keygate error', () => {
  for (const [label, make] of Object.entries(STORE_ERRORS)) {
    it(`${label}: 503 with Retry-After, never a pass, never a thrown 400/500`, async () => {
      const { store, keys, token } = await setup();
      const guard = createGuardCore(keys, { scope: 'orders:list' });
      store.failing = 'findByDigest';
      store.error = make();
      const outcome = await guard.authenticate({ headers: { authorization: `Bearer ${token}` }, remoteAddress: '127.0.0.1' });
      expect(outcome).toMatchObject({
        ok: false,
        status: 503,
        reason: 'STORE_UNAVAILABLE',
        headers: { 'Retry-After': '5' },
        body: { error: { code: 'key_store_unavailable' } },
      });
      expect(outcome.ok === false && outcome.error).toBeInstanceOf(StoreUnavailableError);
      await keys.close();
    });
  }
});
