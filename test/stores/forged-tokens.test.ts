// Forged well-formed tokens against the verify cache over real stores: each costs a lookup, none pushes a cached key out.

import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { sqliteStore } from '../../adapters/sqlite/index.js';
import { createKeyManager, type KeyManager, type KeyStore } from '../../src/index.js';
import { countingStore } from '../support/counting-store.js';
import { forgedToken } from '../support/forged-tokens.js';
import { redisPrefixStore } from '../support/redis.js';
import { serviceUrl } from '../support/services.js';
import { postgresTableStore } from './sql-servers.js';

const WARM = 100;
const FORGED = 100_000;

interface Fixture {
  store: KeyStore;
  /** Verifies in flight at once: network stores answer faster to several. */
  parallel: number;
  cleanup(): Promise<void>;
}

const postgresUrl = serviceUrl('postgres');
const redisUrl = serviceUrl('redis');

const FIXTURES: Array<{ name: string; enabled: boolean; open(): Promise<Fixture> }> = [
  {
    name: 'SQLite',
    enabled: true,
    async open() {
      const db = new Database(':memory:');
      const store = sqliteStore(db);
      await store.migrate();
      return { store, parallel: 1, cleanup: async () => void db.close() };
    },
  },
  {
    name: 'PostgreSQL',
    enabled: postgresUrl !== undefined,
    async open() {
      const { store, cleanup } = await postgresTableStore(postgresUrl as string, 8);
      return { store, parallel: 32, cleanup };
    },
  },
  {
    name: 'Redis',
    enabled: redisUrl !== undefined,
    async open() {
      const { store, cleanup } = await redisPrefixStore('ioredis@6', redisUrl as string, 'forged');
      return { store, parallel: 32, cleanup };
    },
  },
];

/** Verifies `count` forged tokens, `parallel` at a time; each must be refused as NOT_FOUND. */
async function verifyForged(keys: KeyManager, count: number, parallel: number): Promise<void> {
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < count) {
      started++;
      const result = await keys.verify(forgedToken());
      if (result.valid || result.code !== 'NOT_FOUND') throw new Error(`a forged token gave ${JSON.stringify(result)}`);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

for (const fixture of FIXTURES) {
  describe.skipIf(!fixture.enabled)(`forged tokens on ${fixture.name}`, () => {
    it(`forged well-formed tokens never evict cached keys (${WARM} cached, ${FORGED.toLocaleString('en-US')} forged)`, async () => {
      const { store: inner, parallel, cleanup } = await fixture.open();
      const store = countingStore(inner);
      const keys = createKeyManager({ store, cache: { ttlMs: 600_000, maxEntries: WARM } });
      try {
        const tokens: string[] = [];
        for (let i = 0; i < WARM; i++) tokens.push((await keys.create({ name: `warm ${i}`, scopes: ['orders:list'] })).token);
        for (const token of tokens) expect((await keys.verify(token)).valid).toBe(true);
        expect(store.calls.findByDigest).toBe(WARM);

        await verifyForged(keys, FORGED, parallel);
        // The checksum cannot stop a forgery: each one is a lookup.
        expect(store.calls.findByDigest).toBe(WARM + FORGED);

        for (const token of tokens) expect((await keys.verify(token)).valid).toBe(true);
        expect(store.calls.findByDigest).toBe(WARM + FORGED); // every warm key was still cached
      } finally {
        await keys.close();
        await cleanup();
      }
    }, 180_000);
  });
}
