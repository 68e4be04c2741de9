// The store contract suite: every KeyStore behaviour the built-in stores pass, for any test runner.

import assert from 'node:assert/strict';
import { ValidationError } from '../../src/errors.js';
import { spendQuota, type QuotaState } from '../../src/quota.js';
import { createKeyManager, type KeyManager, type KeyManagerOptions } from '../../src/manager.js';
import type { KeyStore } from '../../src/store.js';
import { syncLookupOf } from '../../src/sync-lookup.js';
import type { ApiKey, CreateKeyInput, ListOptions, ListResult } from '../../src/types.js';
import { sampleRecord } from './records.js';
import { hooksOf, type TestRunner } from './runner.js';

/** What your setup function hands the suite: a fresh, empty store and how to inspect and remove it. */
export interface StoreFixture {
  /** The store under test, empty, with its own table / key prefix. */
  store: KeyStore;
  /**
   * Every byte the store keeps, as text (rows, values, internals), for the check that no token or
   * secret part is ever kept. A store that cannot show its raw contents leaves it out: that check
   * then covers reads and events only.
   * @default none
   */
  dump?: () => Promise<string>;
  /** Drops what the setup created (tables, key prefixes) and closes its clients. @default none */
  cleanup?: () => Promise<void>;
}

/** Options of {@link storeContractSuite}; the counts are also the flags for what a backend cannot take. */
export interface StoreContractOptions {
  /** Shown in the report as `<name>: store contract`. @default 'KeyStore' */
  name?: string;
  /** How many creates run at once; lower it for a backend with a request rate limit (at least 2). @default 1000 */
  concurrentCreates?: number;
  /** How many scope edits of one version race each other (at least 2). @default 50 */
  concurrentEdits?: number;
  /**
   * Whether the store spends quotas (`spend()`). `false` for a store without it: the quota checks
   * are replaced by one that keys with a quota are refused.
   * @default true
   */
  quotas?: boolean;
  /** The timeout of each check, in ms, for runners that take one (vitest, jest). @default 30000 */
  timeoutMs?: number;
  /** The timeout of setup and cleanup, in ms, for runners that take one. @default 60000 */
  hookTimeoutMs?: number;
}

/** The clock the suite moves by hand, starting at 2030-01-01T00:00Z. */
function manualClock(start = Date.UTC(2030, 0, 1)): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/** Asserts that each listed field of `actual` deep-equals the expected value (the others are not compared). */
function assertFields(actual: object | null | undefined, expected: Record<string, unknown>): void {
  assert.ok(actual, `expected an object with ${Object.keys(expected).join(', ')}, got ${String(actual)}`);
  for (const [field, value] of Object.entries(expected)) {
    assert.deepStrictEqual((actual as Record<string, unknown>)[field], value, `field '${field}'`);
  }
}

/**
 * Asserts that `promise` rejects with a keygate error of this code. The code, not the class, is
 * compared, so an error class loaded through `require` matches one loaded through `import`.
 */
async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof Error, `expected an Error with code ${code}, got ${String(error)}`);
    assert.equal((error as { code?: unknown }).code, code, `expected code ${code}: ${error.message}`);
    return true;
  });
}

/** Asserts that `text` does not contain `secret`, without printing either on failure. */
function assertAbsent(text: string, secret: string, where: string): void {
  assert.ok(!text.includes(secret), `a token or digest occurs in ${where}`);
}

/** Asserts that `promise` rejects with a ValidationError naming `field` (compared by code, as above). */
async function rejectsOnField(promise: Promise<unknown>, field: string, what: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof Error, `${what}: expected a ValidationError on ${field}, got ${String(error)}`);
    const { code, field: named } = error as { code?: unknown; field?: unknown };
    assert.equal(code, 'VALIDATION_FAILED', `${what}: expected VALIDATION_FAILED on ${field}: ${error.message}`);
    assert.equal(named, field, `${what}: ${error.message}`);
    return true;
  });
}

/** `store` with every call counted, for the checks that an input is refused before the store is asked. */
function countingCalls(store: KeyStore): { store: KeyStore; calls: () => number } {
  let n = 0;
  const counted: KeyStore = {
    insert: (record) => (n++, store.insert(record)),
    findById: (id) => (n++, store.findById(id)),
    findByDigest: (digest) => (n++, store.findByDigest(digest)),
    list: (query) => (n++, store.list(query)),
    update: (next, expectedVersion, counters) => (n++, store.update(next, expectedVersion, counters)),
    delete: (id) => (n++, store.delete(id)),
    touch: (entries) => (n++, store.touch(entries)),
  };
  const spend = store.spend;
  if (spend) counted.spend = (id, cost, refill, now) => (n++, spend.call(store, id, cost, refill, now));
  return { store: counted, calls: () => n };
}

/** Every key `list` gives for these options, page after page. */
async function listAll(keys: KeyManager, options: ListOptions): Promise<ApiKey[]> {
  const out: ApiKey[] = [];
  let cursor: string | null = null;
  do {
    const page: ListResult = await keys.list({ ...options, cursor });
    out.push(...page.keys);
    cursor = page.nextCursor;
  } while (cursor !== null);
  return out;
}

const idsOf = (keys: readonly { id: string }[]): string[] => keys.map((k) => k.id);

/**
 * Registers the store contract suite with your test runner: the checks every built-in store passes
 * (exact round trips, cursor pagination, compare-and-set under concurrency, no resurrection after
 * delete, rotation grace periods, expiry, batched `lastUsedAt` and `lastUsedIp`, no secret at rest), run through a
 * real manager and against the store directly. Assertions use `node:assert/strict`.
 *
 * @param runner your runner's `{ describe, it, beforeAll, afterAll }` (node:test: `{ describe, it, before, after }`)
 * @param setup creates a fresh, empty store for this suite; called once, before the checks
 *
 * @example
 * import { describe, it, beforeAll, afterAll } from 'vitest'
 * import { storeContractSuite } from 'keygate/testing'
 * storeContractSuite({ describe, it, beforeAll, afterAll }, async () => ({ store: new MyStore() }), { name: 'MyStore' })
 */
export function storeContractSuite(runner: TestRunner, setup: () => Promise<StoreFixture>, options: StoreContractOptions = {}): void {
  const { beforeAll, afterAll } = hooksOf(runner);
  const { describe, it } = runner;
  const name = options.name ?? 'KeyStore';
  const concurrentCreates = checkCount('concurrentCreates', options.concurrentCreates ?? 1000);
  const concurrentEdits = checkCount('concurrentEdits', options.concurrentEdits ?? 50);
  const quotas = options.quotas ?? true;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const hookTimeoutMs = options.hookTimeoutMs ?? 60_000;
  const check = (title: string, body: () => Promise<void>, ms = timeoutMs): unknown => it(title, body, ms);

  describe(`${name}: store contract`, () => {
    let fixture: StoreFixture | undefined;
    let store: KeyStore;
    const clock = manualClock();
    const managers: KeyManager[] = [];
    const manager = (extra: Partial<KeyManagerOptions> = {}): KeyManager => {
      const m = createKeyManager({ store, now: clock.now, storeTimeoutMs: 10_000, ...extra });
      managers.push(m);
      return m;
    };

    beforeAll(async () => {
      fixture = await setup();
      if (!fixture || typeof fixture.store?.findByDigest !== 'function') {
        throw new ValidationError('setup', `(${name}) must resolve to { store, dump?, cleanup? } with a KeyStore as store`);
      }
      store = fixture.store;
    }, hookTimeoutMs);

    afterAll(async () => {
      for (const m of managers) await m.close();
      await fixture?.cleanup?.();
    }, hookTimeoutMs);

    check('creates a key and reads back every field exactly', async () => {
      const keys = manager();
      const expiresAt = new Date(clock.now() + 86_400_000);
      const { key, token } = await keys.create({
        name: '  ERP sync  ',
        scopes: ['products:list', 'orders:edit'],
        allowedIps: '203.0.113.7,2001:DB8::1',
        ownerId: 'shop-42',
        expiresAt,
        metadata: { team: 'ops', nested: { n: 1, list: [true, null, 'x'] } },
      });
      assert.match(token, /^kg_[0-9A-Za-z]{38}$/);
      const read = await keys.get(key.id);
      assert.deepStrictEqual(read, key);
      assertFields(read, {
        name: 'ERP sync',
        active: true,
        scopes: ['orders:edit', 'products:list'],
        allowedIps: ['203.0.113.7', '2001:db8::1'],
        ownerId: 'shop-42',
        lastUsedAt: null,
        lastUsedIp: null,
        version: 1,
        metadata: { team: 'ops', nested: { n: 1, list: [true, null, 'x'] } },
      });
      assert.equal(read?.expiresAt?.getTime(), expiresAt.getTime());
      assert.equal(read?.createdAt.getTime(), clock.now());
      assert.equal((await keys.verify(token, { scope: 'orders:list', ip: '203.0.113.7' })).valid, true);
    });

    check('returns null for an id that does not exist', async () => {
      assert.equal(await manager().get('does-not-exist'), null);
      assert.equal(await store.findById('does-not-exist'), null);
      assert.equal(await store.findByDigest('no-such-digest'), null);
    });

    check('keeps hostile and unicode text exactly as given, through bound parameters', async () => {
      const keys = manager();
      const names = ["'); DROP TABLE keys;--", 'Zürich ☕ 東京 𝄞', '"quoted" \\ back\\slash %_ like'];
      for (const n of names) {
        const { key, token } = await keys.create({ name: n, scopes: ['all'], ownerId: `${n}-owner`, metadata: { n } });
        assert.equal((await keys.get(key.id))?.name, n);
        assert.deepStrictEqual((await keys.get(key.id))?.metadata, { n });
        assert.equal((await keys.verify(token)).valid, true);
        assert.deepStrictEqual(
          (await keys.list({ ownerId: `${n}-owner` })).keys.map((k) => k.id),
          [key.id],
        );
      }
    });

    check('lists with cursor pagination, by owner and by active flag', async () => {
      const keys = manager();
      const owner = `owner-${Math.random().toString(36).slice(2)}`;
      const created: string[] = [];
      for (let i = 0; i < 25; i++) {
        const { key } = await keys.create({ name: `k${i}`, scopes: ['orders:list'], ownerId: owner, active: i % 5 !== 0 });
        created.push(key.id);
        if (i % 3 === 0) clock.advance(1); // some keys share a creation millisecond
      }
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page = await keys.list({ ownerId: owner, limit: 10, cursor });
        assert.ok(page.keys.length <= 10, `a page of limit 10 has ${page.keys.length} keys`);
        seen.push(...page.keys.map((k) => k.id));
        cursor = page.nextCursor;
        pages++;
      } while (cursor !== null);
      assert.equal(pages, 3);
      assert.equal(new Set(seen).size, 25);
      assert.deepStrictEqual(seen.sort(), [...created].sort());
      // Order: creation time, then id.
      const all = (await keys.list({ ownerId: owner, limit: 100 })).keys;
      const sorted = [...all].sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      assert.deepStrictEqual(
        all.map((k) => k.id),
        sorted.map((k) => k.id),
      );
      const inactive = await keys.list({ ownerId: owner, active: false });
      assert.equal(inactive.keys.length, 5);
      assert.ok(inactive.keys.every((k) => !k.active));
      assert.equal((await keys.list({ ownerId: owner, active: true })).keys.length, 20);
      assert.deepStrictEqual((await keys.list({ ownerId: `${owner}-none` })).keys, []);
    });

    check('lists only the keys without an owner for ownerId: null, page by page and with the active filter', async () => {
      const keys = manager();
      const tag = Math.random().toString(36).slice(2);
      const tenants = [`tenant-a-${tag}`, `tenant-b-${tag}`];
      const ownerless: string[] = [];
      for (let i = 0; i < 12; i++) {
        for (const ownerId of tenants)
          await keys.create({ name: `${ownerId} ${i}`, scopes: ['orders:list'], ownerId, active: i % 2 === 0 });
        const { key } = await keys.create({ name: `no owner ${i}`, scopes: ['orders:list'], active: i % 3 !== 0 });
        ownerless.push(key.id);
        if (i % 4 === 0) clock.advance(1); // some keys share a creation millisecond
      }
      // The owner named "null" is an owner like any other.
      const { key: named } = await keys.create({ name: 'owner null', scopes: ['orders:list'], ownerId: 'null' });
      // What the store holds, read without an owner filter: the expected answers.
      const everything = await listAll(keys, { limit: 1000 });
      const expected = everything.filter((k) => k.ownerId === null);
      assert.ok(ownerless.every((id) => idsOf(expected).includes(id)));

      const listed = await listAll(keys, { ownerId: null, limit: 5 });
      assert.deepStrictEqual(idsOf(listed), idsOf(expected), 'list({ ownerId: null }) gives exactly the keys without an owner, in order');
      for (const active of [true, false]) {
        assert.deepStrictEqual(
          idsOf(await listAll(keys, { ownerId: null, active, limit: 3 })),
          idsOf(expected.filter((k) => k.active === active)),
          `list({ ownerId: null, active: ${active} })`,
        );
      }
      for (const ownerId of tenants) {
        const own = await listAll(keys, { ownerId, limit: 5 });
        assert.equal(own.length, 12);
        assert.ok(own.every((k) => k.ownerId === ownerId));
      }
      assert.deepStrictEqual(idsOf(await listAll(keys, { ownerId: 'null' })), [named.id]);
      // The store itself, asked directly, keeps to the filter too.
      const direct = await store.list({ ownerId: null, limit: 1000 });
      assert.deepStrictEqual(idsOf(direct), idsOf(expected).slice(0, 1000));
      const third = expected[2] as ApiKey;
      assert.deepStrictEqual(
        idsOf(await store.list({ ownerId: null, active: true, after: third, limit: 4 })),
        idsOf(expected.slice(3).filter((k) => k.active)).slice(0, 4),
      );
    });

    check('refuses ids and cursors no key can have with a ValidationError, before asking the store', async () => {
      const counted = countingCalls(store);
      const keys = manager({ store: counted.store });
      const badIds = ['abc\u0000def', 'line\nbreak', 'tab\tid', 'bell\u0007', 'del\u007f', 'half\uD800', '\uDC00tail', 'x'.repeat(129), ''];
      for (const id of badIds) {
        const what = `id ${JSON.stringify(id).slice(0, 20)}`;
        await rejectsOnField(keys.get(id), 'id', `get(${what})`);
        await rejectsOnField(keys.update(id, { name: 'x' }), 'id', `update(${what})`);
        await rejectsOnField(keys.activate(id), 'id', `activate(${what})`);
        await rejectsOnField(keys.deactivate(id), 'id', `deactivate(${what})`);
        await rejectsOnField(keys.delete(id), 'id', `delete(${what})`);
        await rejectsOnField(keys.rotate(id), 'id', `rotate(${what})`);
      }
      const at = clock.now();
      const cursorOf = (text: string): string => Buffer.from(text).toString('base64url');
      const badCursors = [
        cursorOf(`${at}:abc\u0000def`),
        cursorOf(`${at}:line\nbreak`),
        cursorOf(`${at}:del\u007f`),
        cursorOf(`${at}:${'x'.repeat(129)}`),
        `${cursorOf(`${at}:abc`)}\u0000`,
        `${cursorOf(`${at}:abc`)}\uD800`,
        `${cursorOf(`${at}:abc`)}!`,
      ];
      for (const cursor of badCursors) {
        await rejectsOnField(keys.list({ cursor }), 'cursor', `list({ cursor: ${JSON.stringify(cursor)} })`);
        await rejectsOnField(keys.list({ cursor, ownerId: 'x' }), 'cursor', `list({ cursor: ${JSON.stringify(cursor)}, ownerId })`);
      }
      assert.equal(counted.calls(), 0, 'the store was asked');
      // Ids of any other text are looked up as usual: no key has them.
      for (const id of ['does-not-exist', 'Zürich ☕ 𝄞', 'c1\u0085control', "'); DROP TABLE keys;--"]) {
        assert.equal(await keys.get(id), null);
        assert.equal(await keys.delete(id), false);
      }
      assert.deepStrictEqual((await keys.list({ cursor: cursorOf(`${at}:Zürich ☕ 𝄞`), ownerId: 'no-such-owner' })).keys, []);
    });

    check('refuses lone surrogates in name, ownerId and metadata, and writes nothing', async () => {
      const counted = countingCalls(store);
      const keys = manager({ store: counted.store });
      const owner = `whole-${Math.random().toString(36).slice(2)}`;
      const refused: Array<[CreateKeyInput, string]> = [
        [{ name: 'half \uD800', scopes: ['all'], ownerId: owner }, 'name'],
        [{ name: '\uDFFF', scopes: ['all'], ownerId: owner }, 'name'],
        [{ name: 'ok', scopes: ['all'], ownerId: `${owner}\uD800` }, 'ownerId'],
        [{ name: 'ok', scopes: ['all'], ownerId: `${owner}\uDBFF` }, 'ownerId'],
        [{ name: 'ok', scopes: ['all'], ownerId: owner, metadata: { note: 'x\uDBFF' } }, 'metadata'],
        [{ name: 'ok', scopes: ['all'], ownerId: owner, metadata: { 'k\uDC00': 1 } }, 'metadata'],
        [{ name: 'ok', scopes: ['all'], ownerId: owner, metadata: { deep: [1, { list: ['fine', '\uD83D'] }] } }, 'metadata'],
      ];
      for (const [input, field] of refused) await rejectsOnField(keys.create(input), field, `create(${JSON.stringify(input)})`);
      await rejectsOnField(keys.list({ ownerId: `${owner}\uD800` }), 'ownerId', 'list with a lone surrogate in ownerId');
      assert.equal(counted.calls(), 0, 'the store was asked');
      // Nothing was written: not under the owner, nor under the text a store would have made of it.
      assert.deepStrictEqual(await store.list({ ownerId: owner, limit: 10 }), []);
      assert.deepStrictEqual(await store.list({ ownerId: `${owner}\uFFFD`, limit: 10 }), []);

      const { key } = await keys.create({ name: 'whole 𝄞', scopes: ['all'], ownerId: owner, metadata: { clef: '𝄞' } });
      const before = counted.calls();
      await rejectsOnField(keys.update(key.id, { name: 'half \uD800' }), 'name', 'update of name');
      await rejectsOnField(keys.update(key.id, { metadata: { '\uDC00': 'x' } }), 'metadata', 'update of metadata');
      assert.equal(counted.calls(), before, 'the store was asked');
      assert.deepStrictEqual(await keys.get(key.id), key);
      assert.deepStrictEqual(idsOf((await keys.list({ ownerId: owner })).keys), [key.id]);
    });

    check('updates with compare-and-set on version', async () => {
      const keys = manager();
      const { key, token } = await keys.create({ name: 'cas', scopes: ['orders:list'] });
      const v2 = await keys.update(key.id, { scopes: ['orders:edit'] }, { expectedVersion: 1 });
      assert.equal(v2.version, 2);
      assert.deepStrictEqual(v2.scopes, ['orders:edit']);
      await rejectsWithCode(keys.update(key.id, { name: 'stale' }, { expectedVersion: 1 }), 'VERSION_CONFLICT');
      assert.equal((await keys.get(key.id))?.name, 'cas');
      assert.equal((await keys.verify(token, { scope: 'orders:edit' })).valid, true);
      await rejectsWithCode(keys.update('missing-id', { name: 'x' }), 'KEY_NOT_FOUND');
    });

    check(`lets exactly one of ${concurrentEdits} parallel edits of one version win`, async () => {
      const keys = manager();
      const { key } = await keys.create({ name: 'race', scopes: ['orders:list'] });
      const scopes = ['orders:edit', 'products:list', 'products:edit', 'customers:list', 'customers:edit'];
      const results = await Promise.allSettled(
        Array.from({ length: concurrentEdits }, (_, i) =>
          keys.update(key.id, { scopes: [scopes[i % scopes.length] as string] }, { expectedVersion: 1 }),
        ),
      );
      const won = results.filter((r): r is PromiseFulfilledResult<ApiKey> => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      assert.equal(won.length, 1, `${won.length} of ${concurrentEdits} edits of version 1 were written`);
      for (const r of lost) assert.equal((r.reason as { code?: unknown }).code, 'VERSION_CONFLICT', String(r.reason));
      const final = await keys.get(key.id);
      assert.equal(final?.version, 2);
      assert.deepStrictEqual(final?.scopes, won[0]?.value.scopes);
    });

    check('applies concurrent edits without expectedVersion one after another, losing none', async () => {
      const keys = manager();
      const { key } = await keys.create({ name: 'merge', scopes: ['orders:list'] });
      await Promise.all([
        keys.update(key.id, { name: 'renamed' }),
        keys.update(key.id, { metadata: { a: 1 } }),
        keys.update(key.id, { allowedIps: '127.0.0.1' }),
      ]);
      assertFields(await keys.get(key.id), { name: 'renamed', metadata: { a: 1 }, allowedIps: ['127.0.0.1'], version: 4 });
    });

    check('never brings back a key when an update races its delete', async () => {
      const keys = manager();
      for (let i = 0; i < 20; i++) {
        const { key, token } = await keys.create({ name: `doomed ${i}`, scopes: ['orders:list'] });
        const ops = [
          keys.update(key.id, { name: `edited ${i}` }).catch((e: unknown) => e),
          keys.delete(key.id),
          keys.deactivate(key.id).catch((e: unknown) => e),
        ];
        if (i % 2) ops.reverse();
        await Promise.all(ops);
        assert.equal(await keys.get(key.id), null);
        assert.equal((await keys.verify(token)).valid, false);
        assert.equal(await store.update(sampleRecord({ id: key.id, version: 99 }), 98), false);
        assert.equal(await keys.get(key.id), null);
      }
    });

    check('deactivates, activates and deletes', async () => {
      const keys = manager();
      const { key, token } = await keys.create({ name: 'toggle', scopes: ['all'] });
      assert.equal((await keys.deactivate(key.id)).active, false);
      assertFields(await keys.verify(token), { valid: false, code: 'INACTIVE' });
      assert.equal((await keys.activate(key.id)).active, true);
      assert.equal((await keys.verify(token)).valid, true);
      assert.equal(await keys.delete(key.id), true);
      assert.equal(await keys.delete(key.id), false);
      assertFields(await keys.verify(token), { valid: false, code: 'NOT_FOUND' });
      await rejectsWithCode(keys.activate(key.id), 'KEY_NOT_FOUND');
    });

    check('rotates: the old token works during the grace period only', async () => {
      const keys = manager();
      const { key, token: oldToken } = await keys.create({ name: 'rotate', scopes: ['all'] });
      const { key: rotated, token: newToken } = await keys.rotate(key.id, { gracePeriodMs: 60_000 });
      assert.notEqual(newToken, oldToken);
      assert.notEqual(rotated.hint, key.hint);
      // A rotation is two writes: the new token with the old one kept, then the old one's end.
      assert.equal(rotated.version, 3);
      assert.equal((await keys.verify(newToken)).valid, true);
      assert.equal((await keys.verify(oldToken)).valid, true);
      clock.advance(60_001);
      assert.equal((await keys.verify(newToken)).valid, true);
      assertFields(await keys.verify(oldToken), { valid: false, code: 'NOT_FOUND' });
      // Without a grace period the old token stops at once.
      const { token: third } = await keys.rotate(key.id);
      assertFields(await keys.verify(newToken), { valid: false, code: 'NOT_FOUND' });
      assert.equal((await keys.verify(third)).valid, true);
    });

    check('ends a rotation grace period no later than the key expires', async () => {
      const keys = manager();
      const { key, token: oldToken } = await keys.create({
        name: 'expiring',
        scopes: ['all'],
        expiresAt: new Date(clock.now() + 10_000),
      });
      const { token: newToken } = await keys.rotate(key.id, { gracePeriodMs: 3_600_000 });
      clock.advance(5_000);
      assert.equal((await keys.verify(oldToken)).valid, true);
      clock.advance(5_001);
      assert.equal((await keys.verify(oldToken)).valid, false);
      assertFields(await keys.verify(newToken), { valid: false, code: 'EXPIRED' });
    });

    check('refuses an expired key with EXPIRED', async () => {
      const keys = manager();
      const { token } = await keys.create({ name: 'short', scopes: ['all'], expiresAt: clock.now() + 1000 });
      assert.equal((await keys.verify(token)).valid, true);
      clock.advance(1000);
      assertFields(await keys.verify(token), { valid: false, code: 'EXPIRED' });
    });

    check('never returns or keeps a token or digest', async () => {
      const events: unknown[] = [];
      const keys = manager({ onEvent: (e) => events.push(e) });
      const { key, token } = await keys.create({ name: 'secret', scopes: ['all'], ownerId: 'leak-check' });
      const { token: rotated } = await keys.rotate(key.id, { gracePeriodMs: 1000 });
      await keys.verify(token);
      await keys.verify(rotated);
      await keys.flush();
      const stored = await store.findById(key.id);
      const reads = JSON.stringify([await keys.get(key.id), await keys.list({ ownerId: 'leak-check' }), events]);
      const dump = fixture?.dump ? await fixture.dump() : null;
      for (const t of [token, rotated]) {
        const secret = t.slice(3);
        if (dump !== null) {
          assertAbsent(dump, secret, 'the store dump');
          assertAbsent(dump, secret.slice(0, 32), 'the store dump');
        }
        assertAbsent(reads, secret, 'get, list or events');
      }
      assert.ok(stored?.digest, 'the stored record has a digest');
      assertAbsent(reads, stored.digest, 'get, list or events');
      assert.ok(stored.previousDigest, 'the rotated record keeps the previous digest during its grace period');
      assertAbsent(reads, stored.previousDigest, 'get, list or events');
      assert.doesNotMatch(reads, /digest/i);
    });

    check(
      `gives ${concurrentCreates} concurrent creates distinct ids and digests`,
      async () => {
        const keys = manager();
        const results = await Promise.all(
          Array.from({ length: concurrentCreates }, (_, i) => keys.create({ name: `bulk ${i}`, scopes: ['orders:list'], ownerId: 'bulk' })),
        );
        assert.equal(new Set(results.map((r) => r.key.id)).size, concurrentCreates);
        assert.equal(new Set(results.map((r) => r.token)).size, concurrentCreates);
        const sample = results.filter((_, i) => i % Math.ceil(concurrentCreates / 20) === 0);
        for (const r of sample) assert.equal((await keys.verify(r.token)).valid, true);
        let count = 0;
        let cursor: string | null = null;
        do {
          const page = await keys.list({ ownerId: 'bulk', limit: 1000, cursor });
          count += page.keys.length;
          cursor = page.nextCursor;
        } while (cursor);
        assert.equal(count, concurrentCreates);
      },
      Math.max(timeoutMs, 120_000),
    );

    check('rejects an insert whose id or digest is taken', async () => {
      const a = sampleRecord();
      await store.insert(a);
      await rejectsWithCode(store.insert(sampleRecord({ id: a.id, digest: 'other-digest' })), 'STORE_CONFLICT');
      await rejectsWithCode(store.insert(sampleRecord({ digest: a.digest })), 'STORE_CONFLICT');
      assert.equal((await store.findById(a.id))?.digest, a.digest);
    });

    check('finds a record by its previous digest too', async () => {
      const a = sampleRecord({ previousDigest: 'prev-digest-x', previousDigestExpiresAt: new Date(Date.UTC(2031, 0, 1)) });
      await store.insert(a);
      assert.equal((await store.findByDigest('prev-digest-x'))?.id, a.id);
      assert.equal((await store.findByDigest(a.digest))?.id, a.id);
      assert.equal((await store.findByDigest(a.digest))?.previousDigestExpiresAt?.getTime(), Date.UTC(2031, 0, 1));
    });

    check('keeps a previous digest with no end (a rotation not yet confirmed)', async () => {
      const a = sampleRecord({ previousDigest: `kept-${Math.random()}`, previousDigestExpiresAt: null });
      await store.insert(a);
      const found = await store.findByDigest(a.previousDigest as string);
      assert.equal(found?.id, a.id);
      assert.equal(found?.previousDigest, a.previousDigest);
      assert.equal(found?.previousDigestExpiresAt, null);
    });

    check('keeps a rate limit, a quota and its refill, and edits them', async () => {
      const keys = manager();
      const { key: plain } = await keys.create({ name: 'plain', scopes: ['all'] });
      assertFields(await keys.get(plain.id), { rateLimit: null, remaining: null, refill: null });
      const { key: limited } = await keys.create({ name: 'limited', scopes: ['all'], rateLimit: { limit: 100, windowMs: 60_000 } });
      assertFields(await keys.get(limited.id), { rateLimit: { limit: 100, windowMs: 60_000 } });
      await keys.update(limited.id, { rateLimit: { limit: 5, windowMs: 1000 } });
      assertFields(await keys.get(limited.id), { rateLimit: { limit: 5, windowMs: 1000 } });
      if (!quotas) {
        await rejectsOnField(
          keys.create({ name: 'metered', scopes: ['all'], remaining: 10 }),
          'remaining',
          'a quota on a store without spend()',
        );
        return;
      }
      const { key } = await keys.create({
        name: 'metered',
        scopes: ['all'],
        rateLimit: { limit: 100, windowMs: 60_000 },
        remaining: 1000,
        refill: { amount: 1000, intervalMs: 86_400_000 },
      });
      assertFields(await keys.get(key.id), {
        rateLimit: { limit: 100, windowMs: 60_000 },
        remaining: 1000,
        refill: { amount: 1000, intervalMs: 86_400_000 },
      });
      await keys.update(key.id, { rateLimit: null, remaining: 5, refill: null });
      assertFields(await keys.get(key.id), { rateLimit: null, remaining: 5, refill: null });
      await keys.update(key.id, { remaining: null });
      assertFields(await keys.get(key.id), { remaining: null });
    });

    if (quotas) registerQuotaChecks();

    function registerQuotaChecks(): void {
      check('spends a quota atomically: concurrent verifies admit exactly the uses left, never below zero', async () => {
        assert.equal(typeof store.spend, 'function', 'the store has spend() (or pass { quotas: false })');
        const keys = manager();
        const uses = 25;
        const { key, token } = await keys.create({ name: 'quota', scopes: ['all'], remaining: uses });
        const results = await Promise.all(Array.from({ length: 100 }, () => keys.verify(token)));
        const admitted = results.filter((r) => r.valid);
        assert.equal(admitted.length, uses);
        assert.ok(results.filter((r) => !r.valid).every((r) => !r.valid && r.code === 'USAGE_EXCEEDED'));
        const seen = admitted.map((r) => (r.valid ? r.key.remaining : -1)).sort((a, b) => (a ?? 0) - (b ?? 0));
        assert.deepStrictEqual(
          seen,
          Array.from({ length: uses }, (_, i) => i),
          'each admitted verify saw its own count',
        );
        assert.equal((await keys.get(key.id))?.remaining, 0);
        assert.equal((await keys.verify(token, { cost: 0 })).valid, true, 'a cost of 0 checks without spending');
      });

      check('spends from the stored counters exactly as spendQuota computes, refills by whole intervals without drift', async () => {
        assert.equal(typeof store.spend, 'function', 'the store has spend() (or pass { quotas: false })');
        const spend = (store.spend as NonNullable<KeyStore['spend']>).bind(store);
        const start = Date.UTC(2030, 0, 1);
        const refill = { amount: 7, intervalMs: 1000 };
        const record = sampleRecord({ remaining: 3, refill, refilledAt: new Date(start) });
        await store.insert(record);
        let expected: QuotaState = { remaining: 3, refilledAt: start };
        let now = start;
        // A fixed pseudo-random walk: costs 0..4, steps 0..2.5 intervals, 1,200 spends (over 1,000 intervals).
        let seed = 42;
        const next = (n: number): number => {
          seed = (seed * 1103515245 + 12345) % 2147483648;
          return seed % n;
        };
        for (let i = 0; i < 1200; i++) {
          now += next(2500);
          const cost = next(5);
          const want = spendQuota(expected, refill, cost, now);
          const got = await spend(record.id, cost, refill, now);
          assert.ok(got, `spend ${i} found the key`);
          assert.deepStrictEqual(
            { spent: got.spent, remaining: got.remaining, refilledAt: got.refilledAt?.getTime() ?? null },
            { spent: want.spent, remaining: want.state.remaining, refilledAt: want.state.refilledAt },
            `spend ${i} (cost ${cost} at +${now - start} ms)`,
          );
          expected = want.state;
        }
        assert.equal((expected.refilledAt as number) - start > 1000 * 1000, true, 'the walk crossed more than 1,000 intervals');
        assert.equal(((expected.refilledAt as number) - start) % 1000, 0, 'refills stay on the interval grid');
        assert.equal(await spend('no-such-key', 1, null, now), null);
        const unmetered = sampleRecord();
        await store.insert(unmetered);
        assert.equal(await spend(unmetered.id, 1, null, now), null, 'a key without a quota has nothing to spend');
      });

      check('update leaves the counters as spend() left them unless told to write them', async () => {
        assert.equal(typeof store.spend, 'function', 'the store has spend() (or pass { quotas: false })');
        const record = sampleRecord({ remaining: 10 });
        await store.insert(record);
        assert.equal((await store.spend?.(record.id, 3, null, Date.UTC(2030, 0, 1)))?.remaining, 7);
        // A stale copy (remaining 10) written without counters: the spend stays.
        assert.equal(await store.update({ ...record, name: 'renamed', version: 2 }, 1), true);
        assertFields(await store.findById(record.id), { name: 'renamed', remaining: 7, version: 2 });
        assert.equal(await store.update({ ...record, remaining: 50, refilledAt: null, version: 3 }, 2, true), true);
        assertFields(await store.findById(record.id), { remaining: 50, version: 3 });
      });
    }

    check('update never creates a record', async () => {
      const ghost = sampleRecord();
      assert.equal(await store.update(ghost, 1), false);
      assert.equal(await store.findById(ghost.id), null);
      assert.equal(await store.findByDigest(ghost.digest), null);
    });

    check('writes lastUsedAt in batches without changing version, and never for deleted keys', async () => {
      const keys = manager({ lastUsedFlushMs: 60_000 });
      const { key, token } = await keys.create({ name: 'used', scopes: ['all'] });
      const { key: gone, token: goneToken } = await keys.create({ name: 'gone', scopes: ['all'] });
      for (let i = 0; i < 10; i++) await keys.verify(token);
      await keys.verify(goneToken);
      assert.equal((await keys.get(key.id))?.lastUsedAt, null);
      await store.delete(gone.id);
      await keys.flush();
      const used = await keys.get(key.id);
      assert.equal(used?.lastUsedAt?.getTime(), clock.now());
      assert.equal(used?.version, 1);
      assert.equal(await keys.get(gone.id), null);
      // An older time never overwrites a newer one.
      await store.touch([{ id: key.id, lastUsedAt: new Date(clock.now() - 10_000), ip: null }]);
      assert.equal((await keys.get(key.id))?.lastUsedAt?.getTime(), clock.now());
      await store.touch([]);
    });

    check('writes lastUsedIp with lastUsedAt: the canonical address of the latest use, or null', async () => {
      const keys = manager({ lastUsedFlushMs: 60_000 });
      const ownerId = 'last-used-ip';
      const { key, token } = await keys.create({ name: 'from where', scopes: ['all'], ownerId });
      const { key: anonymous, token: anonymousToken } = await keys.create({ name: 'from nowhere', scopes: ['all'], ownerId });
      assertFields(await keys.get(key.id), { lastUsedAt: null, lastUsedIp: null });
      // The address as the allow-list check reads it: an IPv4-mapped IPv6 address is its IPv4 address.
      assert.equal((await keys.verify(token, { ip: '::ffff:203.0.113.7' })).valid, true);
      assert.equal((await keys.verify(anonymousToken)).valid, true);
      await keys.flush();
      const first = new Date(clock.now());
      assertFields(await keys.get(key.id), { lastUsedAt: first, lastUsedIp: '203.0.113.7', version: 1 });
      assertFields(await keys.get(anonymous.id), { lastUsedAt: first, lastUsedIp: null });
      const listed = new Map((await keys.list({ ownerId })).keys.map((k) => [k.id, k.lastUsedIp]));
      assert.deepStrictEqual(
        listed,
        new Map([
          [key.id, '203.0.113.7'],
          [anonymous.id, null],
        ]),
      );

      // A later use writes both, the address canonical (IPv6 compressed, lower case).
      clock.advance(1000);
      await keys.verify(token, { ip: '2001:DB8:0:0::1' });
      await keys.flush();
      const second = new Date(clock.now());
      assertFields(await keys.get(key.id), { lastUsedAt: second, lastUsedIp: '2001:db8::1', version: 1 });
      const verified = await keys.verify(token);
      assert.ok(verified.valid);
      assertFields(verified.key, { lastUsedAt: second, lastUsedIp: '2001:db8::1' });

      // An older or equal time changes neither the time nor the address.
      await store.touch([
        { id: key.id, lastUsedAt: new Date(second.getTime() - 10_000), ip: '192.0.2.1' },
        { id: key.id, lastUsedAt: second, ip: '192.0.2.2' },
      ]);
      assertFields(await store.findById(key.id), { lastUsedAt: second, lastUsedIp: '2001:db8::1', version: 1 });
      // A later one without an address (a verify given none) clears the address.
      const third = new Date(second.getTime() + 1);
      await store.touch([{ id: key.id, lastUsedAt: third, ip: null }]);
      assertFields(await store.findById(key.id), { lastUsedAt: third, lastUsedIp: null, version: 1 });
      // In one batch, the latest time of a key wins, with its address.
      await store.touch([
        { id: key.id, lastUsedAt: new Date(third.getTime() + 2), ip: '198.51.100.2' },
        { id: anonymous.id, lastUsedAt: new Date(third.getTime() + 5), ip: '198.51.100.5' },
        { id: key.id, lastUsedAt: new Date(third.getTime() + 1), ip: '198.51.100.1' },
      ]);
      assertFields(await store.findById(key.id), { lastUsedAt: new Date(third.getTime() + 2), lastUsedIp: '198.51.100.2' });
      assertFields(await store.findById(anonymous.id), { lastUsedAt: new Date(third.getTime() + 5), lastUsedIp: '198.51.100.5' });

      // A touch of a deleted key, with an address, re-creates nothing.
      assert.equal(await store.delete(anonymous.id), true);
      await store.touch([{ id: anonymous.id, lastUsedAt: new Date(third.getTime() + 10), ip: '198.51.100.10' }]);
      assert.equal(await store.findById(anonymous.id), null);
      assert.equal(await keys.get(anonymous.id), null);
      assertFields(await keys.verify(anonymousToken), { valid: false, code: 'NOT_FOUND' });
    });

    check(
      'forgets both digests on delete; an in-process synchronous lookup, when the store has one, agrees with findByDigest',
      async () => {
        const a = sampleRecord({ previousDigest: `prev-${Math.random()}`, previousDigestExpiresAt: new Date(Date.UTC(2031, 0, 1)) });
        const digests = [a.digest, a.previousDigest as string, 'no-such-digest'];
        await store.insert(a);
        // Only stores that hold every key in this process (the memory store) have the synchronous lookup.
        const now = syncLookupOf(store);
        for (const d of digests) {
          const found = await store.findByDigest(d);
          assert.equal(found?.id ?? null, d === 'no-such-digest' ? null : a.id);
          if (now) assert.deepStrictEqual(now(d), found, `synchronous lookup of '${d}'`);
        }
        assert.equal(await store.delete(a.id), true);
        for (const d of digests) {
          assert.equal(await store.findByDigest(d), null);
          if (now) assert.equal(now(d), null);
        }
      },
    );
  });
}

function checkCount(field: string, value: number): number {
  if (!Number.isInteger(value) || value < 2) throw new ValidationError(field, `must be a whole number of at least 2, got ${value}`);
  return value;
}
