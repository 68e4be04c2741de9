// The audit trail of key changes: who made each one, whose key it is, which fields it changed; and deactivateAll, which off-boards an owner.
import { afterEach, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import type { InvalidationBus } from '../../src/cache.js';
import {
  createKeyManager,
  InvalidationUnconfirmedError,
  type KeyChangeEvent,
  type KeyEvent,
  type KeyManager,
  type KeyManagerOptions,
  type KeyRecord,
  type KeyStore,
  type StoreListQuery,
  StoreUnavailableError,
  ValidationError,
} from '../../src/index.js';
import { localBus, cacheServing } from '../support/bus.js';
import { countingStore, DelegatingStore } from '../support/counting-store.js';

const managers: KeyManager[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
});

function setup(extra: Partial<KeyManagerOptions> = {}) {
  let t = Date.UTC(2030, 5, 1);
  const store = countingStore(extra.store ?? memoryStore());
  const events: KeyEvent[] = [];
  const keys = createKeyManager({ now: () => t, onEvent: (e) => events.push(e), ...extra, store });
  managers.push(keys);
  /** The lifecycle events so far (verify events left out), and forgets them. */
  const changes = (): KeyChangeEvent[] =>
    events.splice(0).filter((e): e is KeyChangeEvent => e.type !== 'verified' && e.type !== 'rejected');
  return { keys, store, changes, advance: (ms: number) => void (t += ms), now: () => t };
}

describe('lifecycle events', () => {
  it('carry the actor, the owner and the changed field names of every kind of change', async () => {
    const { keys, changes } = setup();
    const { key } = await keys.create({ name: 'ERP', scopes: ['orders:list'], ownerId: 'shop-1' }, { actor: 'user-7' });
    await keys.update(key.id, { name: 'ERP 2' }, { actor: 'user-8' });
    await keys.deactivate(key.id, { actor: 'support' });
    await keys.activate(key.id, { actor: 'system' });
    await keys.rotate(key.id, { actor: 'user-7', gracePeriodMs: 1000 });
    await keys.delete(key.id, { actor: 'user-9' });
    const events = changes();
    expect(events.map(({ type, keyId, actor, ownerId, changed }) => ({ type, keyId, actor, ownerId, changed }))).toEqual([
      { type: 'created', keyId: key.id, actor: 'user-7', ownerId: 'shop-1', changed: ['ownerId', 'name', 'scopes'] },
      { type: 'updated', keyId: key.id, actor: 'user-8', ownerId: 'shop-1', changed: ['name'] },
      { type: 'deactivated', keyId: key.id, actor: 'support', ownerId: 'shop-1', changed: ['active'] },
      { type: 'activated', keyId: key.id, actor: 'system', ownerId: 'shop-1', changed: ['active'] },
      { type: 'rotated', keyId: key.id, actor: 'user-7', ownerId: 'shop-1', changed: ['token'] },
      { type: 'deleted', keyId: key.id, actor: 'user-9', ownerId: 'shop-1', changed: [] },
    ]);
    for (const e of events) expect(Object.keys(e).sort()).toEqual(['actor', 'at', 'changed', 'keyId', 'ownerId', 'type']);
  });

  it('give actor null when none is given, and ownerId null for a key without an owner', async () => {
    const { keys, changes } = setup();
    const { key } = await keys.create({ name: 'No owner', scopes: ['orders:list'] });
    await keys.update(key.id, { scopes: ['orders:edit'] });
    await keys.deactivate(key.id, { actor: null });
    await keys.activate(key.id);
    await keys.rotate(key.id);
    await keys.delete(key.id);
    const events = changes();
    expect(events).toHaveLength(6);
    for (const e of events) expect(e).toMatchObject({ actor: null, ownerId: null });
  });

  it('created: names every field the input gave, in ApiKey order, even one given its default', async () => {
    const { keys, changes } = setup();
    await keys.create({
      refill: { amount: 10, intervalMs: 60_000 },
      remaining: 10,
      rateLimit: { limit: 5, windowMs: 1000 },
      metadata: { team: 'ops' },
      expiresAt: Date.UTC(2031, 0, 1),
      allowedIps: '',
      scopes: ['all'],
      active: true,
      name: 'Everything',
      ownerId: 'shop-2',
    });
    await keys.create({ name: 'Some', scopes: ['all'], allowedIps: ['10.0.0.1'], expiresAt: undefined, active: false });
    expect(changes().map((e) => e.changed)).toEqual([
      ['ownerId', 'name', 'active', 'scopes', 'allowedIps', 'expiresAt', 'metadata', 'rateLimit', 'remaining', 'refill'],
      ['name', 'active', 'scopes', 'allowedIps'],
    ]);
  });

  it('updated: names only the fields whose value differs, comparing lists, times and JSON by value', async () => {
    const { keys, changes } = setup();
    const expiresAt = new Date(Date.UTC(2031, 0, 1));
    const { key } = await keys.create({
      name: 'Same',
      scopes: ['orders:list', 'products:list'],
      allowedIps: '10.0.0.1,10.0.0.2',
      expiresAt,
      metadata: { a: 1, nested: { b: [1, 2] } },
      rateLimit: { limit: 5, windowMs: 1000 },
      remaining: 7,
      refill: { amount: 7, intervalMs: 60_000 },
    });
    changes();
    // Every field given its current value, in other spellings: a new version, but nothing changed.
    const same = await keys.update(key.id, {
      name: '  Same  ',
      active: true,
      scopes: ['orders:list', 'products:list'],
      allowedIps: ['10.0.0.1', '10.0.0.2'],
      expiresAt: expiresAt.toISOString(),
      metadata: { nested: { b: [1, 2] }, a: 1 },
      rateLimit: { windowMs: 1000, limit: 5 },
      remaining: 7,
      refill: { intervalMs: 60_000, amount: 7 },
    });
    expect(same.version).toBe(2);
    expect(changes()).toMatchObject([{ type: 'updated', changed: [] }]);
    // Scopes are kept in catalog order: another order is the same list. An array's order counts in metadata.
    await keys.update(key.id, { scopes: ['products:list', 'orders:list'], metadata: { a: 1, nested: { b: [2, 1] } }, name: 'Same' });
    expect(changes()).toMatchObject([{ changed: ['metadata'] }]);
    await keys.update(key.id, { scopes: ['orders:list'], allowedIps: '10.0.0.2,10.0.0.1' });
    expect(changes()).toMatchObject([{ changed: ['scopes', 'allowedIps'] }]);
    await keys.update(key.id, { expiresAt: expiresAt.getTime() + 1, rateLimit: null, remaining: 6, allowedIps: '' });
    expect(changes()).toMatchObject([{ changed: ['allowedIps', 'expiresAt', 'rateLimit', 'remaining'] }]);
    await keys.update(key.id, { refill: null, active: false, expiresAt: null });
    expect(changes()).toMatchObject([{ changed: ['active', 'expiresAt', 'refill'] }]);
    await keys.update(key.id, {});
    expect(changes()).toMatchObject([{ type: 'updated', changed: [] }]);
  });

  it('updated: compares with the key as the written attempt read it, after a lost race', async () => {
    // Another writer renames the key between this update's read and its write: the retry reads it again.
    class Racing extends DelegatingStore {
      race: (() => Promise<void>) | null = null;
      override async update(next: KeyRecord, expectedVersion: number): Promise<boolean> {
        const race = this.race;
        this.race = null;
        if (race) await race();
        return this.inner.update(next, expectedVersion);
      }
    }
    const store = new Racing();
    const { keys, changes } = setup({ store });
    const other = createKeyManager({ store: store.inner });
    managers.push(other);
    const { key } = await keys.create({ name: 'Before', scopes: ['orders:list'] });
    store.race = async () => void (await other.update(key.id, { name: 'After' }));
    changes();
    const updated = await keys.update(key.id, { name: 'After', scopes: ['orders:edit'] });
    expect(updated.version).toBe(3);
    expect(changes()).toMatchObject([{ type: 'updated', changed: ['scopes'] }]);
  });

  it('activated / deactivated of a key already in that state: emitted as before, with nothing changed and nothing written', async () => {
    const { keys, store, changes } = setup();
    const { key } = await keys.create({ name: 'Idle', scopes: ['all'], active: false, ownerId: 'o' });
    changes();
    const writes = store.calls.update;
    const again = await keys.deactivate(key.id, { actor: 'a' });
    await keys.activate(key.id, { actor: 'b' });
    await keys.activate(key.id, { actor: 'c' });
    expect(again.version).toBe(1);
    expect(store.calls.update - writes).toBe(1);
    expect(changes().map(({ type, actor, ownerId, changed }) => ({ type, actor, ownerId, changed }))).toEqual([
      { type: 'deactivated', actor: 'a', ownerId: 'o', changed: [] },
      { type: 'activated', actor: 'b', ownerId: 'o', changed: ['active'] },
      { type: 'activated', actor: 'c', ownerId: 'o', changed: [] },
    ]);
  });

  it('rotated: carries the actor when the second write of the rotation fails and the token is delivered anyway', async () => {
    // The second update call from now on (the rotation's confirmation) fails.
    class FailsSecondUpdate extends DelegatingStore {
      countdown = 0;
      override update(next: KeyRecord, expectedVersion: number): Promise<boolean> {
        if (this.countdown > 0 && --this.countdown === 0) return Promise.reject(new Error('connection reset'));
        return this.inner.update(next, expectedVersion);
      }
    }
    const store = new FailsSecondUpdate();
    const errors: unknown[] = [];
    const { keys, changes } = setup({ store, onError: (e) => errors.push(e) });
    const { key } = await keys.create({ name: 'Rotated', scopes: ['all'], ownerId: 'shop-r' });
    changes();
    store.countdown = 2;
    const { token } = await keys.rotate(key.id, { actor: 'on-call' });
    expect(errors).toHaveLength(1);
    expect((await keys.verify(token)).valid).toBe(true);
    expect(changes()).toMatchObject([{ type: 'rotated', keyId: key.id, actor: 'on-call', ownerId: 'shop-r', changed: ['token'] }]);
  });

  it('deleted: only when the key existed, and without reading it when nobody listens', async () => {
    const { keys, changes } = setup();
    const { key } = await keys.create({ name: 'Gone', scopes: ['all'], ownerId: 'shop-d' });
    changes();
    expect(await keys.delete(key.id, { actor: 'x' })).toBe(true);
    expect(await keys.delete(key.id, { actor: 'x' })).toBe(false);
    expect(changes()).toMatchObject([{ type: 'deleted', ownerId: 'shop-d', actor: 'x', changed: [] }]);
    const quiet = countingStore(memoryStore());
    const silent = createKeyManager({ store: quiet });
    managers.push(silent);
    const { key: other } = await silent.create({ name: 'Gone', scopes: ['all'] });
    expect(await silent.delete(other.id)).toBe(true);
    expect(quiet.calls.findById).toBe(0);
  });

  it('never carry a token, a digest or a field value', async () => {
    const { keys, store, changes } = setup();
    const { key, token } = await keys.create(
      { name: 'Secret name', scopes: ['orders:list'], metadata: { note: 'secret note' }, allowedIps: '198.51.100.23' },
      { actor: 'user-1' },
    );
    await keys.update(key.id, { name: 'Other secret', metadata: { note: 'another note' }, allowedIps: '198.51.100.99' });
    const { token: next } = await keys.rotate(key.id, { gracePeriodMs: 1000 });
    const record = (await store.findById(key.id)) as KeyRecord;
    const events = changes();
    // The names of what changed, and who changed it: never the values.
    expect(events.map((e) => [e.type, e.actor, e.changed])).toEqual([
      ['created', 'user-1', ['name', 'scopes', 'allowedIps', 'metadata']],
      ['updated', null, ['name', 'allowedIps', 'metadata']],
      ['rotated', null, ['token']],
    ]);
    const text = JSON.stringify(events);
    for (const secret of [
      token.slice(3),
      next.slice(3),
      record.digest,
      record.previousDigest as string,
      'Secret name',
      'Other secret',
      'secret note',
      'another note',
      '198.51.100',
      key.hint,
    ]) {
      expect(text).not.toContain(secret);
    }
  });

  it('freeze the changed list: a listener cannot alter what the next one sees', async () => {
    const seen: Array<readonly string[]> = [];
    const { keys } = setup({
      onEvent: (e) => {
        if (e.type === 'created' || e.type === 'deactivated') {
          seen.push([...e.changed]);
          (e.changed as string[]).push?.('tampered');
        }
      },
      onError: () => {},
    });
    const { key } = await keys.create({ name: 'A', scopes: ['all'] });
    await keys.deactivate(key.id);
    const { key: b } = await keys.create({ name: 'B', scopes: ['all'] });
    await keys.deactivate(b.id);
    expect(seen).toEqual([['name', 'scopes'], ['active'], ['name', 'scopes'], ['active']]);
  });

  it.each([
    ['', 'empty'],
    ['x'.repeat(201), 'too long'],
    ['user\n7', 'a control character'],
    ['\ud800', 'a lone surrogate'],
    [7, 'a number'],
  ])('refuse an actor %j (%s) with a ValidationError naming actor, before any store call', async (actor, _what) => {
    const { keys, store } = setup();
    const { key } = await keys.create({ name: 'Target', scopes: ['all'], ownerId: 'o' });
    const before = store.calls.total;
    const bad = { actor } as never;
    const calls: Array<() => Promise<unknown>> = [
      () => keys.create({ name: 'New', scopes: ['all'] }, bad),
      () => keys.update(key.id, { name: 'New' }, bad),
      () => keys.activate(key.id, bad),
      () => keys.deactivate(key.id, bad),
      () => keys.rotate(key.id, bad),
      () => keys.delete(key.id, bad),
      () => keys.deactivateAll({ ownerId: 'o', ...(bad as object) }),
    ];
    for (const call of calls) {
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ field: 'actor' });
    }
    expect(store.calls.total).toBe(before);
    expect(await keys.get(key.id)).toMatchObject({ name: 'Target', version: 1, active: true });
  });

  it('accept an actor of 200 characters', async () => {
    const { keys, changes } = setup();
    await keys.create({ name: 'Long actor', scopes: ['all'] }, { actor: 'a'.repeat(200) });
    expect(changes()[0]?.actor).toBe('a'.repeat(200));
  });
});

describe('deactivateAll', () => {
  /** Keys of two owners and of none, some of them inactive, spread over several list pages. */
  async function tenants(keys: KeyManager, advance: (ms: number) => void) {
    const tokens = new Map<string, string>();
    for (let i = 0; i < 250; i++) {
      const ownerId = i % 5 === 0 ? 'shop-b' : i % 7 === 0 ? null : 'shop-a';
      const { key, token } = await keys.create({ name: `k${i}`, scopes: ['all'], ownerId, active: i % 11 !== 3 });
      tokens.set(key.id, token);
      if (i % 3 === 0) advance(1);
    }
    return tokens;
  }

  it("deactivates every active key of one owner across pages, and no other owner's", async () => {
    const { keys, changes, advance } = setup();
    const tokens = await tenants(keys, advance);
    const before = (await keys.list({ limit: 1000 })).keys;
    changes();
    const result = await keys.deactivateAll({ ownerId: 'shop-a', actor: 'offboarding' });
    const expected = before.filter((k) => k.ownerId === 'shop-a' && k.active);
    expect(expected.length).toBeGreaterThan(100);
    expect(result).toEqual({ deactivated: expected.length });
    const after = new Map((await keys.list({ limit: 1000 })).keys.map((k) => [k.id, k]));
    for (const k of before) {
      const now = after.get(k.id);
      if (k.ownerId === 'shop-a') expect(now).toMatchObject({ active: false });
      else expect(now).toEqual(k);
    }
    const events = changes();
    expect(events).toHaveLength(expected.length);
    expect(new Set(events.map((e) => e.keyId))).toEqual(new Set(expected.map((k) => k.id)));
    for (const e of events) expect(e).toMatchObject({ type: 'deactivated', actor: 'offboarding', ownerId: 'shop-a', changed: ['active'] });
    for (const k of expected) expect(await keys.verify(tokens.get(k.id))).toMatchObject({ valid: false, code: 'INACTIVE' });
    // Nothing left to do: a second run deactivates nothing and emits nothing.
    expect(await keys.deactivateAll({ ownerId: 'shop-a' })).toEqual({ deactivated: 0 });
    expect(changes()).toEqual([]);
  });

  it('with ownerId null, deactivates only the keys without an owner', async () => {
    const { keys, advance } = setup();
    await tenants(keys, advance);
    const before = (await keys.list({ limit: 1000 })).keys;
    const result = await keys.deactivateAll({ ownerId: null });
    expect(result.deactivated).toBe(before.filter((k) => k.ownerId === null && k.active).length);
    expect(result.deactivated).toBeGreaterThan(0);
    const after = (await keys.list({ limit: 1000 })).keys;
    expect(after.filter((k) => k.ownerId === null && k.active)).toEqual([]);
    expect(after.filter((k) => k.ownerId !== null)).toEqual(before.filter((k) => k.ownerId !== null));
  });

  it('drops the keys from the verify cache of the instance that runs it', async () => {
    const { keys } = setup({ cache: { ttlMs: 60_000 } });
    const { token } = await keys.create({ name: 'Cached', scopes: ['all'], ownerId: 'shop-c' });
    expect((await keys.verify(token)).valid).toBe(true);
    await keys.deactivateAll({ ownerId: 'shop-c' });
    expect(await keys.verify(token)).toMatchObject({ code: 'INACTIVE' });
  });

  it('skips a key deleted or deactivated after it was listed, without an error or an event', async () => {
    // Between the list and the writes, another instance deletes one key and deactivates another.
    class Meddling extends DelegatingStore {
      meddle: (() => Promise<void>) | null = null;
      override async list(query: StoreListQuery): Promise<KeyRecord[]> {
        const records = await this.inner.list(query);
        const meddle = this.meddle;
        this.meddle = null;
        if (meddle) await meddle();
        return records;
      }
    }
    const store = new Meddling();
    const { keys, changes } = setup({ store });
    const other = createKeyManager({ store: store.inner });
    managers.push(other);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await keys.create({ name: `k${i}`, scopes: ['all'], ownerId: 'shop-m' })).key.id);
    changes();
    store.meddle = async () => {
      await other.delete(ids[1] as string);
      await other.deactivate(ids[2] as string);
    };
    expect(await keys.deactivateAll({ ownerId: 'shop-m', actor: 'me' })).toEqual({ deactivated: 2 });
    expect(
      changes()
        .map((e) => e.keyId)
        .sort(),
    ).toEqual([ids[0], ids[3]].sort());
    expect(await keys.get(ids[1] as string)).toBeNull();
    for (const id of [ids[0], ids[2], ids[3]]) expect(await keys.get(id as string)).toMatchObject({ active: false });
  });

  it('throws when the store fails part way; the keys done stay inactive, and running it again finishes the job', async () => {
    class FailingWrites extends DelegatingStore {
      /** Update calls left before they fail; `null`: never. */
      okLeft: number | null = null;
      override update(next: KeyRecord, expectedVersion: number): Promise<boolean> {
        if (this.okLeft !== null && this.okLeft-- <= 0) return Promise.reject(new Error('connection reset'));
        return this.inner.update(next, expectedVersion);
      }
    }
    const store = new FailingWrites();
    const { keys, advance } = setup({ store, breaker: false });
    for (let i = 0; i < 150; i++) {
      await keys.create({ name: `k${i}`, scopes: ['all'], ownerId: i % 2 ? 'shop-f' : 'shop-g' });
      advance(1);
    }
    store.okLeft = 30;
    const error = await keys.deactivateAll({ ownerId: 'shop-f' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    const inactive = (await keys.list({ ownerId: 'shop-f', active: false, limit: 1000 })).keys.length;
    // At most one write per worker in flight after the first failure: never all 75, never none.
    expect(inactive).toBeGreaterThanOrEqual(30);
    expect(inactive).toBeLessThan(75);
    store.okLeft = null;
    expect(await keys.deactivateAll({ ownerId: 'shop-f' })).toEqual({ deactivated: 75 - inactive });
    expect((await keys.list({ ownerId: 'shop-f', active: true })).keys).toEqual([]);
    expect((await keys.list({ ownerId: 'shop-g', active: false })).keys).toEqual([]);
  });

  it('refuses a missing or bad ownerId, and a bad wait, before any store call', async () => {
    const { keys, store } = setup();
    await keys.create({ name: 'k', scopes: ['all'] });
    const before = store.calls.total;
    for (const options of [undefined, {}, { ownerId: undefined }, { ownerId: '' }, { ownerId: 7 }, { ownerId: 'o', wait: 'yes' }]) {
      const error = await keys.deactivateAll(options as never).catch((e: unknown) => e);
      expect(error, JSON.stringify(options)).toBeInstanceOf(ValidationError);
    }
    expect(await keys.deactivateAll({ ownerId: undefined as never }).catch((e: unknown) => e)).toMatchObject({ field: 'ownerId' });
    expect(store.calls.total).toBe(before);
    expect((await keys.list({ active: true })).keys).toHaveLength(1);
  });

  it('with wait, finishes every key and then reports an instance that did not confirm, with the count', async () => {
    // Two instances with a cache on one bus; the second stops answering invalidation requests.
    const hub = localBus();
    let deaf = false;
    const deafened: InvalidationBus = {
      publish: (message) => hub.bus.publish(message),
      subscribe: (subscriber) =>
        hub.bus.subscribe({
          ...subscriber,
          invalidate: (message) => {
            if (!(deaf && message.startsWith('\u0001r'))) subscriber.invalidate(message);
          },
        }),
    };
    const store: KeyStore = memoryStore();
    const revocation = { heartbeatMs: 20, timeoutMs: 150 };
    const a = createKeyManager({ store, cache: { ttlMs: 60_000 }, invalidation: hub.bus, revocation });
    const b = createKeyManager({ store, cache: { ttlMs: 60_000 }, invalidation: deafened, revocation });
    managers.push(a, b);
    await Promise.all([cacheServing(a), cacheServing(b)]);
    const tokens: string[] = [];
    for (let i = 0; i < 3; i++) tokens.push((await a.create({ name: `w${i}`, scopes: ['all'], ownerId: 'shop-w' })).token);
    expect(await a.deactivateAll({ ownerId: 'shop-w', wait: true })).toEqual({ deactivated: 3 });
    await a.activate((await a.list({ ownerId: 'shop-w' })).keys[0]?.id as string);
    deaf = true;
    const error = await a.deactivateAll({ ownerId: 'shop-w', wait: true }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidationUnconfirmedError);
    expect(error).toMatchObject({ result: { deactivated: 1 }, unanswered: 1 });
    for (const token of tokens) expect(await a.verify(token)).toMatchObject({ code: 'INACTIVE' });
  });
});
