// Stores that keep metadata as JSON text parse it only when it is read: refusing a token never parses it (its size would show in the time).

import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { sqliteStore } from '../../adapters/sqlite/index.js';
import {
  createKeyManager,
  StoreUnavailableError,
  type KeyManager,
  type KeyStore,
  type VerifyCacheOptions,
  type VerifyOptions,
} from '../../src/index.js';
import { rawCommand, redisPrefixStore } from '../support/redis.js';
import { serviceUrl } from '../support/services.js';
import { randomTable } from './sql-extras.js';
import { mysqlTableStore, postgresTableStore } from './sql-servers.js';

interface Fixture {
  store: KeyStore;
  /** Overwrites the stored metadata of the key with this id with text that is not JSON. */
  corruptMetadata(id: string): Promise<void>;
  cleanup(): Promise<void>;
}

const BROKEN = '{"marker": oops}';

const postgresUrl = serviceUrl('postgres');
const mysqlUrl = serviceUrl('mysql');
const redisUrl = serviceUrl('redis');

const FIXTURES: Array<{ name: string; enabled: boolean; open(): Promise<Fixture> }> = [
  {
    name: 'SQLite',
    enabled: true,
    async open() {
      const db = new Database(':memory:');
      const table = randomTable();
      const store = sqliteStore(db, { table });
      await store.migrate();
      return {
        store,
        corruptMetadata: async (id) => void db.prepare(`UPDATE "${table}" SET metadata = ? WHERE id = ?`).run(BROKEN, id),
        cleanup: async () => void db.close(),
      };
    },
  },
  {
    name: 'PostgreSQL',
    enabled: postgresUrl !== undefined,
    async open() {
      const { pool, table, store, cleanup } = await postgresTableStore(postgresUrl as string, 4);
      return {
        store,
        corruptMetadata: async (id) => void (await pool.query(`UPDATE "${table}" SET metadata = $1 WHERE id = $2`, [BROKEN, id])),
        cleanup,
      };
    },
  },
  {
    name: 'MySQL',
    enabled: mysqlUrl !== undefined,
    async open() {
      const { pool, table, store, cleanup } = await mysqlTableStore(mysqlUrl as string, 4);
      return {
        store,
        corruptMetadata: async (id) => void (await pool.execute(`UPDATE \`${table}\` SET metadata = ? WHERE id = ?`, [BROKEN, id])),
        cleanup,
      };
    },
  },
  {
    name: 'Redis',
    enabled: redisUrl !== undefined,
    async open() {
      const { client, prefix, store, cleanup } = await redisPrefixStore('ioredis@6', redisUrl as string, 'metadata');
      return {
        store,
        async corruptMetadata(id) {
          const key = `${prefix}k:${id}`;
          const json = String(await rawCommand(client, ['HGET', key, 'r']));
          const broken = json.replace(/"metadata":\{.*\},"version":/s, `"metadata":${BROKEN},"version":`);
          if (broken === json) throw new Error('the stored record has no metadata where expected');
          await rawCommand(client, ['HSET', key, 'r', broken]);
        },
        cleanup,
      };
    },
  },
];

afterEach(() => {
  vi.restoreAllMocks();
});

for (const fixture of FIXTURES) {
  describe.skipIf(!fixture.enabled)(`metadata parsing on ${fixture.name}`, () => {
    const opened: Array<{ keys: KeyManager; cleanup: () => Promise<void> }> = [];
    afterEach(async () => {
      for (const { keys, cleanup } of opened.splice(0)) {
        await keys.close();
        await cleanup();
      }
    });

    async function open(cache: VerifyCacheOptions | false, now: () => number) {
      const fixtureStore = await fixture.open();
      const keys = createKeyManager({ store: fixtureStore.store, cache, now });
      opened.push({ keys, cleanup: fixtureStore.cleanup });
      return { keys, corruptMetadata: fixtureStore.corruptMetadata };
    }

    for (const cache of [false, { ttlMs: 600_000 }] as const) {
      it(`refusing a token parses none of its key's metadata (${cache ? 'with' : 'without'} the cache)`, async () => {
        let now = Date.UTC(2030, 0, 1);
        const { keys } = await open(cache, () => now);
        const marker = `marker-${randomBytes(8).toString('hex')}`;
        const metadata = { marker, erp: { system: 'sap', plant: 1000 } };
        const inactive = await keys.create({ name: 'inactive', scopes: ['all'], active: false, metadata });
        const expiring = await keys.create({ name: 'expiring', scopes: ['all'], expiresAt: now + 1000, metadata });
        const rotated = await keys.create({ name: 'rotated', scopes: ['all'], metadata });
        await keys.rotate(rotated.key.id, { gracePeriodMs: 1000 });
        const fenced = await keys.create({ name: 'fenced', scopes: ['all'], allowedIps: '203.0.113.7', metadata });
        const narrow = await keys.create({ name: 'narrow', scopes: ['orders:list'], metadata });
        now += 2000;

        const parse = vi.spyOn(JSON, 'parse');
        const metadataParses = () => parse.mock.calls.filter(([text]) => typeof text === 'string' && text.includes(marker)).length;
        const refusals: Array<[string, VerifyOptions, string]> = [
          [inactive.token, {}, 'INACTIVE'],
          [expiring.token, {}, 'EXPIRED'],
          [rotated.token, {}, 'NOT_FOUND'],
          [fenced.token, { ip: '198.51.100.1' }, 'IP_NOT_ALLOWED'],
          [narrow.token, { scope: 'orders:edit' }, 'INSUFFICIENT_SCOPE'],
        ];
        for (let round = 0; round < 2; round++) {
          for (const [token, options, code] of refusals) expect(await keys.verify(token, options)).toMatchObject({ code });
        }
        expect(metadataParses()).toBe(0);

        // An accepted token does parse it, once per store read: the spy sees this store's parses.
        expect(await keys.verify(narrow.token, { scope: 'orders:list' })).toMatchObject({ valid: true, key: { metadata } });
        expect(metadataParses()).toBe(1);
        expect(await keys.get(narrow.key.id)).toMatchObject({ metadata });
        expect(metadataParses()).toBe(2);
      });
    }

    it('keeps metadata and names that spell out field names as given', async () => {
      const { keys } = await open(false, Date.now);
      const tricky = ',"metadata":{"version":1},"version":2,"digest":"x"}';
      const metadata = {
        version: { metadata: tricky, version: [tricky] },
        metadata: { '},"version":': ',"metadata":', nested: [{ version: 3 }, '\\",'] },
        last: '}',
      };
      const { key, token } = await keys.create({ name: tricky, scopes: ['all'], metadata });
      expect(await keys.verify(token)).toMatchObject({ valid: true, key: { name: tricky, metadata } });
      expect(await keys.get(key.id)).toMatchObject({ name: tricky, metadata });
      // A write that leaves metadata alone copies it from the record it read (parsed on demand).
      await keys.deactivate(key.id);
      expect(await keys.get(key.id)).toMatchObject({ active: false, metadata });
      const updated = await keys.update(key.id, { metadata: { version: tricky } });
      expect(await keys.get(key.id)).toMatchObject({ metadata: { version: tricky }, version: updated.version });
    });

    it('metadata that is not JSON fails only the reads that return it, as a store failure', async () => {
      const { keys, corruptMetadata } = await open(false, Date.now);
      const inactive = await keys.create({ name: 'inactive', scopes: ['all'], active: false, metadata: { a: 1 } });
      const active = await keys.create({ name: 'active', scopes: ['all'], metadata: { a: 1 } });
      await corruptMetadata(inactive.key.id);
      await corruptMetadata(active.key.id);
      expect(await keys.verify(inactive.token)).toMatchObject({ code: 'INACTIVE' });
      await expect(keys.verify(active.token)).rejects.toThrow(StoreUnavailableError);
      await expect(keys.get(active.key.id)).rejects.toThrow(StoreUnavailableError);
    });
  });
}

describe.skipIf(redisUrl === undefined)('Redis records in another field order', () => {
  it('are read whole, metadata included', async () => {
    const { client, prefix, store, cleanup } = await redisPrefixStore('ioredis@6', redisUrl as string, 'order');
    const keys = createKeyManager({ store });
    try {
      const metadata = { version: 7, metadata: { version: 8 } };
      const { key, token } = await keys.create({ name: 'reordered', scopes: ['all'], metadata });
      const recordKey = `${prefix}k:${key.id}`;
      const stored = JSON.parse(String(await rawCommand(client, ['HGET', recordKey, 'r']))) as Record<string, unknown>;
      // The same fields, metadata first, then version, then the rest in reverse.
      const { metadata: m, version, ...rest } = stored;
      const reordered = { metadata: m, version, ...Object.fromEntries(Object.entries(rest).reverse()) };
      await rawCommand(client, ['HSET', recordKey, 'r', JSON.stringify(reordered)]);
      expect(await keys.verify(token)).toMatchObject({ valid: true, key: { metadata, version: key.version } });
      expect(await keys.get(key.id)).toEqual({ ...key, metadata });
    } finally {
      await keys.close();
      await cleanup();
    }
  });
});
