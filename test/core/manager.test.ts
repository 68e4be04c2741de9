// The key manager: lifecycle rules, verify's order of checks, store failures, events and last-used batching.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type MemoryStore, memoryStore } from '../../adapters/memory/index.js';
import {
  type ApiKey,
  createKeyManager,
  KeygateError,
  ManagerClosedError,
  StoreUnavailableError,
  ValidationError,
  type KeyEvent,
  type KeyManager,
  type KeyManagerOptions,
  type KeyRecord,
  type ListOptions,
  type ListResult,
  type StoreListQuery,
} from '../../src/index.js';
import { brokenStore, countingStore, DelegatingStore } from '../support/counting-store.js';

function setup(extra: Partial<KeyManagerOptions> = {}) {
  let t = Date.UTC(2030, 5, 1);
  const store = countingStore(memoryStore());
  const keys = createKeyManager({ store, now: () => t, ...extra });
  return { keys, store, advance: (ms: number) => void (t += ms), now: () => t };
}

describe('create', () => {
  it('gives a new key its defaults: active, any address, no owner, no expiry, version 1', async () => {
    const { keys } = setup();
    const { key } = await keys.create({ name: 'Defaults', scopes: ['orders:list'] });
    expect(key).toMatchObject({ active: true, allowedIps: [], ownerId: null, expiresAt: null, metadata: {}, version: 1, lastUsedAt: null });
    expect(key.id).toMatch(/^[0-9A-Za-z]{20}$/);
  });

  it.each([
    [{ name: '', scopes: ['all'] }, 'name', 'is required'],
    [{ name: '   ', scopes: ['all'] }, 'name', 'is required'],
    [{ name: 'x'.repeat(101), scopes: ['all'] }, 'name', 'at most 100 characters'],
    [{ name: 'line\nbreak', scopes: ['all'] }, 'name', 'control characters'],
    [{ name: 'no scopes', scopes: [] }, 'scopes', 'choose at least one scope'],
    [{ name: 'bad scope', scopes: ['orders:delete'] }, 'scopes', "unknown scope 'orders:delete'"],
    [{ name: 'bad ip', scopes: ['all'], allowedIps: '10.0.0.1,10.0.0.*' }, 'allowedIps', "entry 2 '10.0.0.*': wildcard masks"],
    [{ name: 'bad active', scopes: ['all'], active: 'yes' }, 'active', 'must be true or false'],
    [{ name: 'past', scopes: ['all'], expiresAt: Date.UTC(2020, 0, 1) }, 'expiresAt', 'must be in the future'],
    [{ name: 'nan', scopes: ['all'], expiresAt: 'soon' }, 'expiresAt', 'not a valid date'],
    [{ name: 'meta', scopes: ['all'], metadata: [] }, 'metadata', 'plain object'],
    [{ name: 'meta', scopes: ['all'], metadata: { big: 'x'.repeat(20_000) } }, 'metadata', 'at most 16384 bytes'],
    [{ name: 'owner', scopes: ['all'], ownerId: '' }, 'ownerId', 'must be null or a string'],
  ])('refuses %j with a ValidationError naming %s, and writes nothing', async (input, field, reason) => {
    const { keys, store } = setup();
    const error = await keys.create(input as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ field, code: 'VALIDATION_FAILED', status: 400 });
    expect((error as Error).message).toContain(reason);
    expect(store.calls.total).toBe(0);
  });
});

describe('update', () => {
  it('changes only the fields given and bumps version', async () => {
    const { keys, advance } = setup();
    const { key } = await keys.create({ name: 'Orig', scopes: ['orders:list'], allowedIps: '127.0.0.1', metadata: { a: 1 } });
    advance(1000);
    const updated = await keys.update(key.id, { name: 'New name', allowedIps: '' });
    expect(updated).toMatchObject({ name: 'New name', scopes: ['orders:list'], allowedIps: [], metadata: { a: 1 }, version: 2 });
    expect(updated.updatedAt.getTime()).toBe(key.createdAt.getTime() + 1000);
    expect(updated.createdAt).toEqual(key.createdAt);
  });

  it('never loses data on a bad input: the whole edit is refused', async () => {
    const { keys } = setup();
    const { key } = await keys.create({ name: 'Keep', scopes: ['orders:list'], allowedIps: '127.0.0.1' });
    await expect(keys.update(key.id, { name: 'Changed', allowedIps: '127.0.0.1, 10.0.0.1' })).rejects.toMatchObject({
      field: 'allowedIps',
    });
    expect(await keys.get(key.id)).toEqual(key);
    await expect(keys.update(key.id, { scopes: [] })).rejects.toMatchObject({ field: 'scopes' });
    await expect(keys.update(key.id, {}, { expectedVersion: 0 })).rejects.toMatchObject({ field: 'expectedVersion' });
    expect(await keys.get(key.id)).toEqual(key);
  });

  it('shortens a rotation grace period when expiresAt moves before its end', async () => {
    const { keys, advance } = setup();
    const { key, token } = await keys.create({ name: 'g', scopes: ['all'] });
    await keys.rotate(key.id, { gracePeriodMs: 3_600_000 });
    await keys.update(key.id, { expiresAt: Date.UTC(2030, 5, 1) + 10_000 });
    advance(10_000);
    expect(await keys.verify(token)).toMatchObject({ valid: false });
  });

  it('refuses a bad gracePeriodMs', async () => {
    const { keys } = setup();
    const { key } = await keys.create({ name: 'g', scopes: ['all'] });
    await expect(keys.rotate(key.id, { gracePeriodMs: -1 })).rejects.toMatchObject({ field: 'gracePeriodMs' });
  });
});

/** Whether `promise` has settled by the time one microtask has run, i.e. nothing inside it awaited. */
async function settlesAtOnce(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(() => {
    settled = true;
  });
  await Promise.resolve();
  return settled;
}

describe('verify', () => {
  it('answers from an in-process store and from a cache hit without awaiting anything', async () => {
    const keys = createKeyManager({ store: memoryStore() });
    const { token } = await keys.create({ name: 'fast', scopes: ['orders:list'] });
    expect(await settlesAtOnce(keys.verify(token, { scope: 'orders:list' }))).toBe(true);
    const remote = createKeyManager({ store: new DelegatingStore(), cache: {} });
    const { token: cached } = await remote.create({ name: 'cached', scopes: ['orders:list'] });
    // The first verify asks the store; the second is a cache hit.
    expect(await settlesAtOnce(remote.verify(cached))).toBe(false);
    expect(await settlesAtOnce(remote.verify(cached))).toBe(true);
    await Promise.all([keys.close(), remote.close()]);
  });

  it('checks in order: format, lookup, active, expiry, IP, scope', async () => {
    const { keys, advance } = setup();
    const { key, token } = await keys.create({
      name: 'order',
      scopes: ['orders:list'],
      allowedIps: '203.0.113.7',
      expiresAt: Date.UTC(2030, 5, 2),
    });
    await keys.deactivate(key.id);
    // Inactive wins over wrong IP and wrong scope.
    expect(await keys.verify(token, { ip: '198.51.100.1', scope: 'products:edit' })).toMatchObject({ code: 'INACTIVE' });
    await keys.activate(key.id);
    expect(await keys.verify(token, { ip: '198.51.100.1', scope: 'products:edit' })).toMatchObject({ code: 'IP_NOT_ALLOWED' });
    expect(await keys.verify(token, { ip: '203.0.113.7', scope: 'products:edit' })).toMatchObject({ code: 'INSUFFICIENT_SCOPE' });
    expect(await keys.verify(token, { ip: '203.0.113.7', scope: 'orders:list' })).toMatchObject({ valid: true });
    advance(86_400_000);
    expect(await keys.verify(token, { ip: '198.51.100.1', scope: 'products:edit' })).toMatchObject({ code: 'EXPIRED' });
  });

  it('refuses a key with an allow-list when no client address is given', async () => {
    const { keys } = setup();
    const { token } = await keys.create({ name: 'ip', scopes: ['all'], allowedIps: '127.0.0.1' });
    expect(await keys.verify(token)).toMatchObject({ code: 'IP_NOT_ALLOWED' });
    expect(await keys.verify(token, { ip: '0177.0.0.1' })).toMatchObject({ code: 'IP_NOT_ALLOWED' });
    expect(await keys.verify(token, { ip: '::ffff:127.0.0.1' })).toMatchObject({ valid: true });
  });

  it('requires every scope when several are asked for', async () => {
    const { keys } = setup();
    const { token } = await keys.create({ name: 's', scopes: ['orders:edit'] });
    expect((await keys.verify(token, { scope: ['orders:list', 'orders:edit'] })).valid).toBe(true);
    expect(await keys.verify(token, { scope: ['orders:list', 'products:list'] })).toMatchObject({ code: 'INSUFFICIENT_SCOPE' });
  });

  it('throws on a required scope the catalog does not know: a programming error, not a client error', async () => {
    const { keys } = setup();
    const { token } = await keys.create({ name: 's', scopes: ['all'] });
    await expect(keys.verify(token, { scope: 'orders:remove' })).rejects.toBeInstanceOf(ValidationError);
  });

  it('answers MISSING or MALFORMED for any input, never throwing and never asking the store', async () => {
    const { keys, store } = setup();
    expect(await keys.verify(undefined)).toMatchObject({ valid: false, code: 'MISSING' });
    expect(await keys.verify(null)).toMatchObject({ valid: false, code: 'MISSING' });
    expect(await keys.verify('')).toMatchObject({ valid: false, code: 'MISSING' });
    for (const odd of [
      42,
      {},
      [],
      Symbol('x'),
      'kg_',
      ' kg_x',
      'x'.repeat(10 * 1024 * 1024),
      '\u0000'.repeat(41),
      '🔑'.repeat(20),
      `kg_${'é'.repeat(38)}`,
    ]) {
      expect(await keys.verify(odd)).toMatchObject({ valid: false, code: 'MALFORMED' });
    }
    await fc.assert(
      fc.asyncProperty(fc.anything(), async (value) => {
        const result = await keys.verify(value);
        expect(result.valid).toBe(false);
      }),
      { numRuns: 500 },
    );
    expect(store.calls.total).toBe(0);
  });

  it('allocates no new object for a rejection', async () => {
    const { keys } = setup();
    expect(await keys.verify('nope')).toBe(await keys.verify('also nope'));
  });
});

describe('a store that fails or hangs', () => {
  it.each(['throw', 'reject'] as const)('makes verify throw StoreUnavailableError when the store calls %s', async (behave) => {
    const good = await createKeyManager({ store: memoryStore() }).create({ name: 't', scopes: ['all'] });
    const keys = createKeyManager({ store: brokenStore(behave) });
    const error = await keys.verify(good.token).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error).toBeInstanceOf(KeygateError);
    expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE', status: 503, operation: 'findByDigest' });
    expect(String((error as Error).message)).not.toContain(good.token);
  });

  it('bounds a hanging store by storeTimeoutMs, and keeps answering', async () => {
    const good = await createKeyManager({ store: memoryStore() }).create({ name: 't', scopes: ['all'] });
    const keys = createKeyManager({ store: brokenStore('hang'), storeTimeoutMs: 150 });
    const started = Date.now();
    const results = await Promise.allSettled([keys.verify(good.token), keys.verify(good.token), keys.get('x')]);
    const elapsed = Date.now() - started;
    expect(results.every((r) => r.status === 'rejected' && r.reason instanceof StoreUnavailableError)).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(140);
    expect(elapsed).toBeLessThan(150 + 1000);
    // Garbage is still refused at once, without the store.
    expect(await keys.verify('garbage')).toMatchObject({ code: 'MALFORMED' });
    await expect(keys.create({ name: 'x', scopes: ['all'] })).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});

describe('events', () => {
  it('report every change and verify outcome, never a token or digest', async () => {
    const events: KeyEvent[] = [];
    const { keys } = setup({ onEvent: (e) => events.push(e) });
    const { key, token } = await keys.create({ name: 'ev', scopes: ['orders:list'], allowedIps: '127.0.0.1' });
    await keys.verify(token, { ip: '127.0.0.1' });
    await keys.verify(token, { ip: '127.0.0.2' });
    await keys.verify('garbage', { ip: '127.0.0.1' });
    await keys.update(key.id, { name: 'ev2' });
    await keys.deactivate(key.id);
    await keys.activate(key.id);
    const { token: rotated } = await keys.rotate(key.id);
    await keys.delete(key.id);
    expect(events.map((e) => (e.type === 'rejected' ? `rejected:${e.code}` : e.type))).toEqual([
      'created',
      'verified',
      'rejected:IP_NOT_ALLOWED',
      'rejected:MALFORMED',
      'updated',
      'deactivated',
      'activated',
      'rotated',
      'deleted',
    ]);
    const text = JSON.stringify(events);
    expect(text).not.toContain(token.slice(3));
    expect(text).not.toContain(rotated.slice(3));
  });

  it('survive a throwing listener', async () => {
    const errors: unknown[] = [];
    const { keys } = setup({
      onEvent: () => {
        throw new Error('listener bug');
      },
      onError: (e) => errors.push(e),
    });
    const { token } = await keys.create({ name: 'x', scopes: ['all'] });
    expect((await keys.verify(token)).valid).toBe(true);
    expect(errors).toHaveLength(2);
  });
});

describe('lastUsedAt', () => {
  it('is written in batches: 500 verifies of one key make one store write per flush', async () => {
    const { keys, store } = setup({ lastUsedFlushMs: 50 });
    const { key, token } = await keys.create({ name: 'busy', scopes: ['all'] });
    for (let i = 0; i < 500; i++) await keys.verify(token);
    expect(store.calls.touch).toBe(0);
    await new Promise((r) => setTimeout(r, 120));
    expect(store.calls.touch).toBe(1);
    expect((await keys.get(key.id))?.lastUsedAt).not.toBeNull();
    await keys.close();
  });

  it('never fails a request when the write fails', async () => {
    const errors: unknown[] = [];
    const inner = memoryStore();
    const store = Object.assign(Object.create(inner) as MemoryStore, {
      touch: () => Promise.reject(new Error('disk full')),
    });
    const keys = createKeyManager({ store, onError: (e) => errors.push(e) });
    const { token } = await keys.create({ name: 'x', scopes: ['all'] });
    expect((await keys.verify(token)).valid).toBe(true);
    await keys.flush();
    expect((await keys.verify(token)).valid).toBe(true);
    await keys.flush();
    expect(errors).toHaveLength(2);
    expect(errors[0]).toBeInstanceOf(StoreUnavailableError);
  });
});

describe('close', () => {
  it('flushes pending writes and refuses further use', async () => {
    const { keys } = setup({ lastUsedFlushMs: 60_000 });
    const { key, token } = await keys.create({ name: 'x', scopes: ['all'] });
    await keys.verify(token);
    await keys.close();
    await keys.close();
    await expect(keys.get(key.id)).rejects.toBeInstanceOf(ManagerClosedError);
    await expect(keys.verify(token)).rejects.toBeInstanceOf(ManagerClosedError);
  });
});

describe('list', () => {
  it('refuses a forged cursor and a bad limit', async () => {
    const { keys } = setup();
    await expect(keys.list({ cursor: 'not-a-cursor' })).rejects.toMatchObject({ field: 'cursor' });
    await expect(keys.list({ limit: 0 })).rejects.toMatchObject({ field: 'limit' });
    await expect(keys.list({ limit: 1001 })).rejects.toMatchObject({ field: 'limit' });
  });

  /** Every key of every page, and the ids each cursor points at. */
  async function everyPage(keys: KeyManager, options: ListOptions): Promise<{ ids: string[]; cursorIds: string[] }> {
    const ids: string[] = [];
    const cursorIds: string[] = [];
    let cursor: string | null = null;
    do {
      const page: ListResult = await keys.list({ ...options, cursor });
      ids.push(...page.keys.map((k) => k.id));
      cursor = page.nextCursor;
      if (cursor !== null) cursorIds.push(Buffer.from(cursor, 'base64url').toString().replace(/^\d+:/, ''));
    } while (cursor !== null);
    return { ids, cursorIds };
  }

  it('never widens an owner filter, even over a store that ignores it', async () => {
    // A store written before `ownerId: null` meant "no owner": it reads a falsy owner as "any owner".
    class OldStore extends DelegatingStore {
      override list(query: StoreListQuery): Promise<KeyRecord[]> {
        return this.inner.list({ ...query, ownerId: query.ownerId || undefined });
      }
    }
    // A store that ignores the owner and active filters altogether.
    class IgnoresFilters extends DelegatingStore {
      override list(query: StoreListQuery): Promise<KeyRecord[]> {
        return this.inner.list({ after: query.after, limit: query.limit });
      }
    }
    const inner = memoryStore();
    let t = Date.UTC(2030, 5, 1);
    const writer = createKeyManager({ store: inner, now: () => t });
    const owners = ['shop-a', 'shop-b', null];
    for (let i = 0; i < 30; i++) {
      await writer.create({ name: `k${i}`, scopes: ['orders:list'], ownerId: owners[i % 3] ?? null, active: i % 4 !== 1 });
      if (i % 5 === 0) t += 1;
    }
    const all = (await writer.list({ limit: 1000 })).keys;
    for (const store of [new OldStore(inner), new IgnoresFilters(inner)]) {
      const keys = createKeyManager({ store });
      for (const ownerId of ['shop-a', null]) {
        for (const active of [undefined, true, false]) {
          const expected = all.filter((k) => k.ownerId === ownerId && (active === undefined || k.active === active)).map((k) => k.id);
          for (const limit of [1, 2, 3, 100]) {
            const { ids, cursorIds } = await everyPage(keys, { ownerId, active, limit });
            expect(ids, `${store.constructor.name} ${ownerId} ${active} ${limit}`).toEqual(expected);
            // A cursor names a key of the page it ends, never one of another owner.
            for (const id of cursorIds) expect(expected).toContain(id);
          }
        }
      }
      await keys.close();
    }
  });

  it('asks a store that keeps to the filters once per page', async () => {
    const { keys, store } = setup();
    for (let i = 0; i < 7; i++) await keys.create({ name: `k${i}`, scopes: ['orders:list'], ownerId: i % 2 ? 'shop-a' : null });
    const { ids } = await everyPage(keys, { ownerId: null, limit: 2 });
    expect(ids).toHaveLength(4);
    expect(store.calls.list).toBe(2);
  });

  it('ends, and leaks nothing, over a store that ignores the position too', async () => {
    class IgnoresEverything extends DelegatingStore {
      override list(query: StoreListQuery): Promise<KeyRecord[]> {
        return this.inner.list({ limit: query.limit });
      }
    }
    const store = new IgnoresEverything();
    // One ms apart, so the store's one answer (its first page) holds keys of both kinds.
    let t = Date.UTC(2030, 0, 1);
    const keys = createKeyManager({ store, now: () => t++ });
    for (let i = 0; i < 20; i++) await keys.create({ name: `k${i}`, scopes: ['orders:list'], ownerId: i % 2 ? 'shop-a' : null });
    const page = await keys.list({ ownerId: null, limit: 3 });
    expect(page.keys.length).toBeGreaterThan(0);
    expect(page.keys.every((k) => k.ownerId === null)).toBe(true);
    const { ids } = await everyPage(keys, { ownerId: 'shop-a', limit: 4 });
    expect(ids.length).toBeGreaterThan(0);
    for (const id of ids) expect((await keys.get(id))?.ownerId).toBe('shop-a');
    await keys.close();
  });
});

describe('list filters by expiry and last use', () => {
  /** Every key of every page, and the ids each cursor points at. */
  async function pages(keys: KeyManager, options: ListOptions): Promise<{ ids: string[]; cursorIds: string[]; reads: number }> {
    const ids: string[] = [];
    const cursorIds: string[] = [];
    let cursor: string | null = null;
    let reads = 0;
    do {
      const page: ListResult = await keys.list({ ...options, cursor });
      reads++;
      expect(page.keys.length).toBeLessThanOrEqual(options.limit ?? 100);
      ids.push(...page.keys.map((k) => k.id));
      cursor = page.nextCursor;
      if (cursor !== null) cursorIds.push(Buffer.from(cursor, 'base64url').toString().replace(/^\d+:/, ''));
    } while (cursor !== null);
    return { ids, cursorIds, reads };
  }

  /** 60 keys, of two owners: some expire (some already have), some were used, at different times. */
  async function fleet() {
    const { keys, advance, now } = setup();
    const start = now();
    for (let i = 0; i < 60; i++) {
      const expiresAt = i % 3 === 0 ? null : now() + 1_000 + ((i * 7919) % 100) * 1_000;
      const { token } = await keys.create({ name: `k${i}`, scopes: ['all'], ownerId: i % 2 ? 'shop-a' : 'shop-b', expiresAt });
      if (i % 4 !== 0) {
        advance(i * 10);
        expect((await keys.verify(token)).valid).toBe(true);
      }
      advance(1);
    }
    await keys.flush();
    advance(200_000);
    return { keys, start, all: (await keys.list({ limit: 1000 })).keys };
  }

  it('expiringBefore: only keys with an expiresAt before the instant, across pages, with cursors on matching keys only', async () => {
    const { keys, start, all } = await fleet();
    for (const before of [start + 30_000, new Date(start + 60_000), new Date(start + 90_000).toISOString()]) {
      const at = new Date(before).getTime();
      const expected = all.filter((k) => k.expiresAt !== null && k.expiresAt.getTime() < at).map((k) => k.id);
      expect(expected.length).toBeGreaterThan(3);
      expect(expected.length).toBeLessThan(all.length);
      for (const limit of [1, 3, 100]) {
        const { ids, cursorIds } = await pages(keys, { expiringBefore: before, limit });
        expect(ids, `${String(before)} ${limit}`).toEqual(expected);
        for (const id of cursorIds) expect(expected).toContain(id);
      }
      const owned = await pages(keys, { expiringBefore: before, ownerId: 'shop-a', limit: 2 });
      expect(owned.ids).toEqual(all.filter((k) => expected.includes(k.id) && k.ownerId === 'shop-a').map((k) => k.id));
    }
    await keys.close();
  });

  it('unusedSince: only keys never used, or last used before the instant', async () => {
    const { keys, start, all } = await fleet();
    const used = all.filter((k) => k.lastUsedAt !== null);
    expect(used.length).toBeGreaterThan(10);
    expect(all.length - used.length).toBeGreaterThan(10);
    const middle = (used[Math.floor(used.length / 2)] as ApiKey).lastUsedAt as Date;
    for (const since of [middle, middle.getTime(), middle.toISOString(), start]) {
      const at = new Date(since).getTime();
      const expected = all.filter((k) => k.lastUsedAt === null || k.lastUsedAt.getTime() < at).map((k) => k.id);
      for (const limit of [1, 4, 100]) {
        const { ids, cursorIds } = await pages(keys, { unusedSince: since, limit });
        expect(ids).toEqual(expected);
        for (const id of cursorIds) expect(expected).toContain(id);
      }
    }
    // Both filters, with the others.
    const both = await pages(keys, { unusedSince: middle, expiringBefore: start + 50_000, active: true, ownerId: 'shop-b', limit: 2 });
    expect(both.ids).toEqual(
      all
        .filter(
          (k) =>
            k.ownerId === 'shop-b' &&
            (k.lastUsedAt === null || k.lastUsedAt < middle) &&
            k.expiresAt !== null &&
            k.expiresAt.getTime() < start + 50_000,
        )
        .map((k) => k.id),
    );
    await keys.close();
  });

  it('reads past long runs of keys that do not match in few store reads', async () => {
    const { keys, store, now } = setup();
    for (let i = 0; i < 500; i++) await keys.create({ name: `k${i}`, scopes: ['all'], expiresAt: i % 100 === 99 ? now() + 1000 : null });
    const before = store.calls.list;
    const { ids } = await pages(keys, { expiringBefore: now() + 2000, limit: 2 });
    expect(ids).toHaveLength(5);
    expect(store.calls.list - before).toBeLessThanOrEqual(8);
  });

  it.each([
    [{ expiringBefore: 'soon' }, 'expiringBefore'],
    [{ expiringBefore: {} }, 'expiringBefore'],
    [{ expiringBefore: '2030-13-45' }, 'expiringBefore'],
    [{ unusedSince: 'yesterday' }, 'unusedSince'],
    [{ unusedSince: -1 }, 'unusedSince'],
    [{ unusedSince: [] }, 'unusedSince'],
  ])('refuses %j with a ValidationError naming %s, before any store call', async (options, field) => {
    const { keys, store } = setup();
    const error = await keys.list(options as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ field });
    expect(store.calls.total).toBe(0);
  });
});

describe('findByToken', () => {
  for (const pepper of [undefined, 'a pepper of at least sixteen bytes']) {
    describe(pepper ? 'with a pepper' : 'without a pepper', () => {
      it('finds the key of its current token, whatever its state, and records nothing', async () => {
        const events: KeyEvent[] = [];
        const { keys, store, advance } = setup({ pepper, onEvent: (e) => events.push(e) });
        const { key, token } = await keys.create({ name: 'Leaked', scopes: ['all'], expiresAt: Date.UTC(2030, 5, 2), remaining: 5 });
        events.length = 0;
        expect(await keys.findByToken(token)).toEqual(key);
        await keys.deactivate(key.id);
        expect(await keys.findByToken(token)).toMatchObject({ id: key.id, active: false });
        advance(2 * 86_400_000);
        expect(await keys.verify(token)).toMatchObject({ code: 'INACTIVE' });
        await keys.activate(key.id);
        expect(await keys.verify(token)).toMatchObject({ code: 'EXPIRED' });
        events.length = 0;
        const touches = store.calls.touch;
        expect(await keys.findByToken(token)).toMatchObject({ id: key.id, active: true, remaining: 5, lastUsedAt: null });
        await keys.flush();
        expect(events).toEqual([]);
        expect(store.calls.touch).toBe(touches);
        expect(await keys.get(key.id)).toMatchObject({ remaining: 5, lastUsedAt: null });
        await keys.close();
      });

      it('finds the key of a rotated-out token during its grace period only', async () => {
        const { keys, advance } = setup({ pepper });
        const { key, token: first } = await keys.create({ name: 'Rotated', scopes: ['all'] });
        const { token: second } = await keys.rotate(key.id, { gracePeriodMs: 60_000 });
        expect(await keys.findByToken(first)).toMatchObject({ id: key.id });
        expect(await keys.findByToken(second)).toMatchObject({ id: key.id });
        advance(59_999);
        expect(await keys.findByToken(first)).toMatchObject({ id: key.id });
        advance(1);
        expect(await keys.verify(first)).toMatchObject({ code: 'NOT_FOUND' });
        expect(await keys.findByToken(first)).toBeNull();
        expect(await keys.findByToken(second)).toMatchObject({ id: key.id });
        await keys.rotate(key.id);
        expect(await keys.findByToken(second)).toBeNull();
        await keys.delete(key.id);
        expect(await keys.findByToken(first)).toBeNull();
        await keys.close();
      });

      it('gives null for a malformed token without a store call, and for an unknown one', async () => {
        const { keys, store } = setup({ pepper });
        const { token } = await keys.create({ name: 'k', scopes: ['all'] });
        const calls = store.calls.total;
        const cut = token.slice(0, -1);
        const wrongPrefix = `zz${token.slice(2)}`;
        for (const bad of [undefined, null, '', 42, {}, 'garbage', `${token}x`, cut, wrongPrefix, 'x'.repeat(100_000)]) {
          expect(await keys.findByToken(bad)).toBeNull();
        }
        expect(store.calls.total).toBe(calls);
        const elsewhere = createKeyManager({ store: memoryStore(), pepper });
        const { token: unknown } = await elsewhere.create({ name: 'other', scopes: ['all'] });
        expect(await keys.findByToken(unknown)).toBeNull();
        expect(store.calls.findByDigest).toBe(1);
        await Promise.all([keys.close(), elsewhere.close()]);
      });
    });
  }

  it('digests the token as verify does: with the pepper, not without it', async () => {
    const store = memoryStore();
    const peppered = createKeyManager({ store, pepper: 'a pepper of at least sixteen bytes' });
    const plain = createKeyManager({ store });
    const other = createKeyManager({ store, pepper: 'another pepper, sixteen bytes or more' });
    const { key, token } = await peppered.create({ name: 'Peppered', scopes: ['all'] });
    expect(await peppered.findByToken(token)).toMatchObject({ id: key.id });
    expect(await plain.findByToken(token)).toBeNull();
    expect(await other.findByToken(token)).toBeNull();
    const { key: unpeppered, token: plainToken } = await plain.create({ name: 'Plain', scopes: ['all'] });
    expect(await plain.findByToken(plainToken)).toMatchObject({ id: unpeppered.id });
    expect(await peppered.findByToken(plainToken)).toBeNull();
    await Promise.all([peppered.close(), plain.close(), other.close()]);
  });

  it('asks the store, not the verify cache: a key deleted by another instance is gone at once', async () => {
    const store = memoryStore();
    // Counted, and so asynchronous: verify goes through the cache.
    const counted = countingStore(store);
    const cached = createKeyManager({ store: counted, cache: { ttlMs: 60_000 } });
    const admin = createKeyManager({ store });
    const { key, token } = await admin.create({ name: 'Cached', scopes: ['all'] });
    expect((await cached.verify(token)).valid).toBe(true);
    expect((await cached.verify(token)).valid).toBe(true);
    expect(counted.calls.findByDigest).toBe(1);
    await admin.delete(key.id);
    expect((await cached.verify(token)).valid).toBe(true); // the cache has not heard of it
    expect(await cached.findByToken(token)).toBeNull();
    await Promise.all([cached.close(), admin.close()]);
  });

  it('throws ManagerClosedError once closed', async () => {
    const { keys } = setup();
    const { token } = await keys.create({ name: 'k', scopes: ['all'] });
    await keys.close();
    await expect(keys.findByToken(token)).rejects.toBeInstanceOf(ManagerClosedError);
  });
});

describe('two managers on one store, without a cache', () => {
  it('see deactivate, delete and rotate at once', async () => {
    const store = memoryStore();
    const a = createKeyManager({ store });
    const b = createKeyManager({ store });
    const { key, token } = await a.create({ name: 'shared', scopes: ['all'] });
    expect((await b.verify(token)).valid).toBe(true);
    await a.deactivate(key.id);
    expect(await b.verify(token)).toMatchObject({ code: 'INACTIVE' });
    await a.activate(key.id);
    const { token: next } = await a.rotate(key.id);
    expect(await b.verify(token)).toMatchObject({ code: 'NOT_FOUND' });
    expect((await b.verify(next)).valid).toBe(true);
    await a.delete(key.id);
    expect(await b.verify(next)).toMatchObject({ code: 'NOT_FOUND' });
  });
});
