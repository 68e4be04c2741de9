// RedisKeyStore on the shared contract suite with ioredis 5 and 6 and node-redis 4, 5 and 6, over RESP2 and RESP3, plus what is particular to Redis.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandSender, LuaScript } from '../../adapters/redis/client.js';
import { redisStore, type RedisClientLike, type RedisStore } from '../../adapters/redis/index.js';
import {
  createKeyManager,
  StoreUnavailableError,
  ValidationError,
  type KeyManager,
  type KeyManagerOptions,
  type KeyRecord,
  QUOTA_MAX,
  type QuotaState,
  spendQuota,
} from '../../src/index.js';
import { storeContractSuite } from '../../adapters/testing/index.js';
import { sampleRecord } from '../../adapters/testing/records.js';
import { serviceUrl } from '../support/services.js';
import {
  closeRedis,
  connectRedis,
  deletePrefix,
  dumpPrefix,
  familyOf,
  isIoRedis,
  keysUnder,
  newIoRedis,
  newNodeRedis,
  randomPrefix,
  rawCommand,
  REDIS_CLIENT_KINDS,
  redisPrefixStore,
  REDIS_CLIENT_SETUPS,
  setupLabel,
  type AnyRedisClient,
  type RedisClientSetup,
} from '../support/redis.js';

const url = serviceUrl('redis');

/** The same client, counting the commands the store sends through it. */
function counting(client: AnyRedisClient): { client: RedisClientLike; count: () => number } {
  let n = 0;
  if (isIoRedis(client)) {
    return {
      client: {
        get status() {
          return client.status;
        },
        call: (command: string, args: string[]) => {
          n++;
          return client.call(command, args);
        },
      },
      count: () => n,
    };
  }
  const node = client as { readonly isReady: boolean; sendCommand(args: string[]): Promise<unknown> };
  return {
    client: {
      get isReady() {
        return node.isReady;
      },
      sendCommand: (args: string[]) => {
        n++;
        return node.sendCommand(args);
      },
    },
    count: () => n,
  };
}

/** The protocol a setup speaks: its variant's, or its major's default (RESP3 from ioredis 6 and node-redis 6 on). */
function expectedProtocol(setup: RedisClientSetup): 2 | 3 {
  if (typeof setup !== 'string') return setup.protocol;
  return setup === 'ioredis@6' || setup === 'node-redis@6' ? 3 : 2;
}

for (const setup of REDIS_CLIENT_SETUPS) {
  const kind = setupLabel(setup);
  describe.skipIf(!url)(`RedisKeyStore with ${kind}`, () => {
    storeContractSuite(
      { describe, it, beforeAll, afterAll },
      async () => {
        const { client, prefix, store, cleanup } = await redisPrefixStore(setup, url as string, 'contract');
        return { store, dump: () => dumpPrefix(client, prefix), cleanup };
      },
      { name: `RedisKeyStore (${kind})` },
    );

    describe(`Redis specifics (${kind})`, () => {
      let client: AnyRedisClient;
      let prefix: string;
      let store: RedisStore;
      const managers: KeyManager[] = [];
      const manager = (extra: Partial<KeyManagerOptions> = {}): KeyManager => {
        const m = createKeyManager({ store, storeTimeoutMs: 10_000, lastUsedFlushMs: 60_000, ...extra });
        managers.push(m);
        return m;
      };

      beforeAll(async () => {
        client = await connectRedis(setup, url as string);
        prefix = randomPrefix('specifics');
        store = redisStore(client, { prefix });
      });

      afterAll(async () => {
        for (const m of managers) await m.close();
        if (client) {
          await deletePrefix(client, prefix);
          await closeRedis(client);
        }
      });

      it(`speaks RESP${expectedProtocol(setup)}`, async () => {
        const info = String(await rawCommand(client, ['CLIENT', 'INFO']));
        expect(info).toMatch(new RegExp(`\\bresp=${expectedProtocol(setup)}\\b`));
      });

      it('keeps one hash per key plus its index entries, moves them on rotation, and leaves nothing behind on delete', async () => {
        const own = randomPrefix('layout');
        const layoutStore = redisStore(client, { prefix: own });
        const keys = createKeyManager({ store: layoutStore });
        managers.push(keys);
        try {
          const { key } = await keys.create({ name: 'layout', scopes: ['all'], ownerId: 'shop-1' });
          const first = (await layoutStore.findById(key.id)) as KeyRecord;
          expect(await keysUnder(client, own)).toEqual(
            [`${own}all`, `${own}d:${first.digest}`, `${own}k:${key.id}`, `${own}o:shop-1`].sort(),
          );
          expect(String(await rawCommand(client, ['TYPE', `${own}k:${key.id}`]))).toBe('hash');

          await keys.rotate(key.id, { gracePeriodMs: 60_000 });
          const second = (await layoutStore.findById(key.id)) as KeyRecord;
          expect(second.previousDigest).toBe(first.digest);
          expect(await keysUnder(client, own)).toEqual(
            [`${own}all`, `${own}d:${first.digest}`, `${own}d:${second.digest}`, `${own}k:${key.id}`, `${own}o:shop-1`].sort(),
          );

          await keys.rotate(key.id);
          const third = (await layoutStore.findById(key.id)) as KeyRecord;
          expect(third.previousDigest).toBeNull();
          expect(await keysUnder(client, own)).toEqual(
            [`${own}all`, `${own}d:${third.digest}`, `${own}k:${key.id}`, `${own}o:shop-1`].sort(),
          );
          expect(await layoutStore.findByDigest(first.digest)).toBeNull();
          expect(await layoutStore.findByDigest(second.digest)).toBeNull();

          expect(await keys.delete(key.id)).toBe(true);
          expect(await keysUnder(client, own)).toEqual([]);
          // A late lastUsedAt write for the deleted key creates nothing either.
          await layoutStore.touch([{ id: key.id, lastUsedAt: new Date(), ip: '192.0.2.1' }]);
          expect(await keysUnder(client, own)).toEqual([]);
        } finally {
          await deletePrefix(client, own);
        }
      });

      it('verifies in one Redis command, and writes a batch of lastUsedAt times in one command', async () => {
        const counted = counting(client);
        const keys = createKeyManager({ store: redisStore(counted.client, { prefix }), lastUsedFlushMs: 60_000 });
        managers.push(keys);
        const created = [];
        for (let i = 0; i < 50; i++) created.push(await keys.create({ name: `rt ${i}`, scopes: ['all'] }));
        await keys.verify(created[0]?.token); // the script may need loading once
        const before = counted.count();
        for (const { token } of created) expect((await keys.verify(token)).valid).toBe(true);
        expect(counted.count() - before).toBe(50);
        const beforeFlush = counted.count();
        await keys.flush();
        expect(counted.count() - beforeFlush).toBe(1);
        expect((await keys.get(created[49]?.key.id as string))?.lastUsedAt).not.toBeNull();
      });

      it('runs a script Redis does not know by EVAL, then by EVALSHA (after a restart or SCRIPT FLUSH)', async () => {
        const counted = counting(client);
        const send = commandSender(counted.client, 'client');
        // A script of its own, so no other test can have loaded it.
        const script = new LuaScript(`return { KEYS[1], ARGV[1], '${randomBytes(8).toString('hex')}' }`);
        const before = counted.count();
        const first = (await script.run(send, 'test', [`${prefix}x`], ['y'])) as string[];
        expect(first.slice(0, 2)).toEqual([`${prefix}x`, 'y']);
        expect(counted.count() - before).toBe(2); // EVALSHA -> NOSCRIPT, then EVAL, which caches it
        const again = counted.count();
        expect(((await script.run(send, 'test', [`${prefix}x`], ['z'])) as string[])[1]).toBe('z');
        expect(counted.count() - again).toBe(1);
      });

      it('pages through an owner with the active filter when few keys match', async () => {
        const keys = manager();
        const owner = `sparse-${Math.random().toString(36).slice(2)}`;
        const active: string[] = [];
        for (let i = 0; i < 250; i++) {
          const { key } = await keys.create({ name: `s${i}`, scopes: ['orders:list'], ownerId: owner, active: i % 60 === 7 });
          if (key.active) active.push(key.id);
        }
        expect(active).toHaveLength(5);
        const seen: string[] = [];
        const sizes: number[] = [];
        let cursor: string | null = null;
        do {
          const page = await keys.list({ ownerId: owner, active: true, limit: 2, cursor });
          sizes.push(page.keys.length);
          seen.push(...page.keys.map((k) => k.id));
          cursor = page.nextCursor;
        } while (cursor !== null);
        expect(seen).toEqual(active);
        expect(sizes).toEqual([2, 2, 1]);
        let inactive = 0;
        cursor = null;
        do {
          const page = await keys.list({ ownerId: owner, active: false, limit: 100, cursor });
          inactive += page.keys.length;
          cursor = page.nextCursor;
        } while (cursor !== null);
        expect(inactive).toBe(245);
      });

      it('pages through the keys without an owner, which have no index of their own, when few keys have none', async () => {
        const own = randomPrefix('ownerless');
        const keys = createKeyManager({ store: redisStore(client, { prefix: own }) });
        managers.push(keys);
        try {
          const ownerless: string[] = [];
          for (let i = 0; i < 250; i++) {
            const { key } = await keys.create({ name: `o${i}`, scopes: ['orders:list'], ownerId: i % 60 === 7 ? null : `shop-${i % 3}` });
            if (key.ownerId === null) ownerless.push(key.id);
          }
          expect(ownerless).toHaveLength(5);
          // No index is kept for them: records written by earlier versions list the same way.
          expect((await keysUnder(client, own)).filter((k) => k.startsWith(`${own}o:`))).toEqual(
            [`${own}o:shop-0`, `${own}o:shop-1`, `${own}o:shop-2`].sort(),
          );
          const seen: string[] = [];
          const sizes: number[] = [];
          let cursor: string | null = null;
          do {
            const page = await keys.list({ ownerId: null, limit: 2, cursor });
            sizes.push(page.keys.length);
            seen.push(...page.keys.map((k) => k.id));
            cursor = page.nextCursor;
          } while (cursor !== null);
          expect(seen).toEqual(ownerless);
          expect(sizes).toEqual([2, 2, 1]);
        } finally {
          await deletePrefix(client, own);
        }
      });

      it('moves a record between owner indexes when a direct update changes its owner', async () => {
        const a = sampleRecord({ ownerId: 'owner-a' });
        await store.insert(a);
        expect((await store.list({ ownerId: 'owner-a', limit: 10 })).map((r) => r.id)).toEqual([a.id]);
        expect(await store.update({ ...a, ownerId: 'owner-b', version: 2 }, 1)).toBe(true);
        expect(await store.list({ ownerId: 'owner-a', limit: 10 })).toEqual([]);
        expect((await store.list({ ownerId: 'owner-b', limit: 10 })).map((r) => r.id)).toEqual([a.id]);
        expect(await store.update({ ...a, ownerId: null, version: 3 }, 2)).toBe(true);
        expect(await store.list({ ownerId: 'owner-b', limit: 10 })).toEqual([]);
        expect((await store.findById(a.id))?.ownerId).toBeNull();
        expect((await store.list({ ownerId: null, limit: 10_000 })).map((r) => r.id)).toContain(a.id);
        expect(await store.update({ ...a, ownerId: 'owner-c', version: 4 }, 3)).toBe(true);
        expect((await store.list({ ownerId: null, limit: 10_000 })).map((r) => r.id)).not.toContain(a.id);
      });

      it('rejects an update whose new digest belongs to another key, and changes nothing', async () => {
        const a = sampleRecord();
        const b = sampleRecord();
        await store.insert(a);
        await store.insert(b);
        await expect(store.update({ ...a, digest: b.digest, version: 2 }, 1)).rejects.toThrow(/digest/);
        expect((await store.findByDigest(b.digest))?.id).toBe(b.id);
        expect((await store.findById(a.id))?.version).toBe(1);
        expect((await store.findByDigest(a.digest))?.id).toBe(a.id);
      });

      it('keeps the later lastUsedAt, with its lastUsedIp, when an update carries an older one, and writes a later one', async () => {
        const a = sampleRecord();
        await store.insert(a);
        const used = new Date(Date.UTC(2030, 0, 2));
        await store.touch([{ id: a.id, lastUsedAt: used, ip: '203.0.113.9' }]);
        expect(await store.update({ ...a, name: 'renamed', version: 2, lastUsedAt: null }, 1)).toBe(true);
        const read = await store.findById(a.id);
        expect(read?.name).toBe('renamed');
        expect(read?.lastUsedAt?.getTime()).toBe(used.getTime());
        expect(read?.lastUsedIp).toBe('203.0.113.9');
        const stale = { ...a, name: 'stale', version: 3, lastUsedAt: new Date(used.getTime() - 1), lastUsedIp: '198.51.100.1' };
        expect(await store.update(stale, 2)).toBe(true);
        expect(await store.findById(a.id)).toMatchObject({ name: 'stale', lastUsedAt: used, lastUsedIp: '203.0.113.9' });
        const later = new Date(used.getTime() + 1);
        expect(await store.update({ ...a, name: 'later', version: 4, lastUsedAt: later, lastUsedIp: '2001:db8::7' }, 3)).toBe(true);
        expect(await store.findById(a.id)).toMatchObject({ name: 'later', lastUsedAt: later, lastUsedIp: '2001:db8::7' });
        expect(String(await rawCommand(client, ['HGET', `${prefix}k:${a.id}`, 'ui']))).toBe('2001:db8::7');
        // A later one without an address removes the stored address.
        const last = new Date(used.getTime() + 2);
        expect(await store.update({ ...a, name: 'last', version: 5, lastUsedAt: last, lastUsedIp: null }, 4)).toBe(true);
        expect(await store.findById(a.id)).toMatchObject({ lastUsedAt: last, lastUsedIp: null });
        expect(await rawCommand(client, ['HEXISTS', `${prefix}k:${a.id}`, 'ui'])).toBe(0);
      });

      it('reads records written before rate limits and quotas as having none, and gives them one on the next write', async () => {
        const keys = manager();
        const metadata = { plan: 'gold', nested: { version: 1, metadata: ',"version":2' } };
        const { key, token } = await keys.create({ name: 'old "format"', scopes: ['orders:list'], ownerId: 'shop-old', metadata });
        const created = (await store.findById(key.id)) as KeyRecord;
        const recordKey = `${prefix}k:${key.id}`;
        // The hash as the store wrote it before: the record's fields in the table's order of then
        // (metadata right before version, then the digests), no rateLimit or refill, no q or qt.
        const ms = (d: Date | null) => (d === null ? 'null' : String(d.getTime()));
        const oldJson =
          `{"id":${JSON.stringify(key.id)},"ownerId":"shop-old","name":"old \\"format\\"","active":true,"scopes":["orders:list"],` +
          `"allowedIps":[],"hint":${JSON.stringify(created.hint)},"createdAt":${ms(created.createdAt)},"updatedAt":${ms(created.updatedAt)},` +
          `"expiresAt":null,"metadata":{"plan":"gold","nested":{"version":1,"metadata":",\\"version\\":2"}},"version":1,` +
          `"digest":${JSON.stringify(created.digest)},"previousDigest":null,"previousDigestExpiresAt":null}`;
        expect(JSON.parse(oldJson)).toMatchObject({ name: 'old "format"', metadata });
        await rawCommand(client, ['HDEL', recordKey, 'q', 'qt']);
        await rawCommand(client, ['HSET', recordKey, 'r', oldJson, 'u', '1893456000123']);
        expect(await rawCommand(client, ['HEXISTS', recordKey, 'q'])).toBe(0);

        const expected = {
          ...created,
          lastUsedAt: new Date(1893456000123),
          rateLimit: null,
          remaining: null,
          refill: null,
          refilledAt: null,
        };
        expect({ ...(await store.findById(key.id)) }).toStrictEqual(expected);
        expect({ ...(await store.findByDigest(created.digest)) }).toStrictEqual(expected);
        const listed = (await store.list({ ownerId: 'shop-old', limit: 10 })).map((r) => ({ ...r }));
        expect(listed).toStrictEqual([expected]);
        expect(await keys.verify(token)).toMatchObject({ valid: true, key: { metadata, rateLimit: null, remaining: null, refill: null } });
        expect(await store.spend(key.id, 1, null, Date.now())).toBeNull();

        // A write without the counters keeps it without a quota, now in the current format.
        await keys.update(key.id, { rateLimit: { limit: 100, windowMs: 60_000 } });
        expect(String(await rawCommand(client, ['HGET', recordKey, 'r']))).toContain('"rateLimit":{"limit":100,"windowMs":60000}');
        expect(await keys.get(key.id)).toMatchObject({ metadata, rateLimit: { limit: 100, windowMs: 60_000 }, remaining: null });
        // An edit of the quota writes the counters.
        await keys.update(key.id, { remaining: 2 });
        expect(await keys.verify(token)).toMatchObject({ valid: true, key: { remaining: 1 } });
        expect(await keys.verify(token)).toMatchObject({ valid: true, key: { remaining: 0 } });
        expect(await keys.verify(token)).toMatchObject({ valid: false, code: 'USAGE_EXCEEDED' });
      });

      it('keeps the quota counters beside the record: a spend is one command and never rewrites the record or its version', async () => {
        const counted = counting(client);
        const own = redisStore(counted.client, { prefix });
        const start = Date.UTC(2030, 0, 1);
        const record = sampleRecord({ remaining: 2, refill: { amount: 5, intervalMs: 1000 }, refilledAt: new Date(start) });
        await own.insert(record);
        const recordKey = `${prefix}k:${record.id}`;
        const json = await rawCommand(client, ['HGET', recordKey, 'r']);
        expect(String(json)).not.toContain('remaining');
        expect(String(json)).not.toContain('refilledAt');
        expect(await rawCommand(client, ['HMGET', recordKey, 'q', 'qt'])).toEqual(['2', String(start)]);
        await own.spend(record.id, 1, record.refill, start); // the script may need loading once
        const before = counted.count();
        expect(await own.spend(record.id, 1, record.refill, start + 10)).toEqual({
          spent: true,
          remaining: 0,
          refilledAt: new Date(start),
        });
        expect(await own.spend(record.id, 1, record.refill, start + 20)).toEqual({
          spent: false,
          remaining: 0,
          refilledAt: new Date(start),
        });
        // 2.5 intervals later: one refill (to 5), due from start + 2000, written although the cost is refused.
        expect(await own.spend(record.id, 6, record.refill, start + 2500)).toEqual({
          spent: false,
          remaining: 5,
          refilledAt: new Date(start + 2000),
        });
        expect(counted.count() - before).toBe(3);
        expect(await rawCommand(client, ['HMGET', recordKey, 'q', 'qt'])).toEqual(['5', String(start + 2000)]);
        expect(await rawCommand(client, ['HGET', recordKey, 'r'])).toBe(json);
        expect(await own.findById(record.id)).toMatchObject({ version: 1, remaining: 5, refilledAt: new Date(start + 2000) });
        // Removing the quota (an update with the counters) removes them.
        expect(await own.update({ ...record, remaining: null, refill: null, refilledAt: null, version: 2 }, 1, true)).toBe(true);
        expect(await rawCommand(client, ['HMGET', recordKey, 'q', 'qt'])).toEqual([null, null]);
        expect(await own.spend(record.id, 1, null, start)).toBeNull();
      });

      it('spends exactly as spendQuota at the largest counts, intervals and times', async () => {
        const interval = 366 * 24 * 3600 * 1000;
        const refill = { amount: QUOTA_MAX, intervalMs: interval };
        // 16-digit times: written with 14 significant digits (Lua's tostring), they would change.
        const start = 8_640_000_000_000_000 - 20 * interval - 123;
        const record = sampleRecord({ remaining: QUOTA_MAX - 1, refill, refilledAt: new Date(start) });
        await store.insert(record);
        let state: QuotaState = { remaining: QUOTA_MAX - 1, refilledAt: start };
        let now = start;
        let seed = 5;
        const next = (n: number): number => {
          seed = (seed * 1103515245 + 12345) % 2147483648;
          return seed % n;
        };
        for (let i = 0; i < 200; i++) {
          now += next(4) === 0 ? next(2 * interval) : next(1_000_000);
          if (now > 8_640_000_000_000_000) break;
          const cost = next(3) === 0 ? QUOTA_MAX : next(400_000_000);
          const want = spendQuota(state, refill, cost, now);
          const got = await store.spend(record.id, cost, refill, now);
          expect(got, `spend ${i}`).toEqual({
            spent: want.spent,
            remaining: want.state.remaining,
            refilledAt: new Date(want.state.refilledAt as number),
          });
          state = want.state;
        }
        expect((state.refilledAt as number) - start).toBeGreaterThan(5 * interval);
        expect(await store.findById(record.id)).toMatchObject({
          remaining: state.remaining,
          refilledAt: new Date(state.refilledAt as number),
        });
      });

      it('keeps stores with different prefixes apart on one Redis', async () => {
        const other = randomPrefix('other');
        const otherStore = redisStore(client, { prefix: other });
        try {
          const a = sampleRecord();
          await store.insert(a);
          expect(await otherStore.findById(a.id)).toBeNull();
          expect(await otherStore.findByDigest(a.digest)).toBeNull();
          expect(await otherStore.list({ limit: 10 })).toEqual([]);
          await otherStore.insert(sampleRecord({ id: a.id, digest: a.digest }));
          expect(await keysUnder(client, other)).toHaveLength(3);
        } finally {
          await deletePrefix(client, other);
        }
      });
    });
  });
}

describe('redisStore() arguments', () => {
  it('requires a prefix with a Redis Cluster hash tag', () => {
    const client = newIoRedis('ioredis@6', { lazyConnect: true });
    try {
      for (const prefix of ['keygate:', '{}:', 'a{}b{c}:', '', 'x}{', 'bad\nprefix{x}']) {
        expect(() => redisStore(client, { prefix }), prefix).toThrow(ValidationError);
      }
      expect(redisStore(client).prefix).toBe('{keygate}:');
      expect(redisStore(client, { prefix: 'shop:{keys}:' }).prefix).toBe('shop:{keys}:');
    } finally {
      client.disconnect();
    }
  });

  it('refuses an object that is neither an ioredis nor a node-redis client', () => {
    for (const client of [null, {}, { get: () => null }, { sendCommand: () => Promise.resolve(null) }]) {
      expect(() => redisStore(client as unknown as RedisClientLike)).toThrow(ValidationError);
    }
  });

  for (const kind of REDIS_CLIENT_KINDS) {
    it(`rejects at once, without sending, while the client is not connected (${kind})`, async () => {
      let client: AnyRedisClient;
      if (familyOf(kind) === 'ioredis') {
        const io = newIoRedis(kind, { lazyConnect: true });
        io.disconnect(); // status 'end'
        client = io;
      } else {
        client = newNodeRedis(kind, { url: 'redis://127.0.0.1:1' }); // never connected
      }
      const store = redisStore(client);
      await expect(store.findById('x')).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.findByDigest('x')).rejects.toThrow(/not connected/);
    });
  }
});
