// PostgreSQL (pg) on the shared store contract, the SQL store checks, and LISTEN/NOTIFY invalidation.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresInvalidation, postgresSchema, postgresStore, type PostgresQueryable } from '../../adapters/postgres/index.js';
import { createKeyManager, ValidationError, type InvalidationSubscriber } from '../../src/index.js';
import { storeContractSuite } from '../../adapters/testing/index.js';
import { cacheServing } from '../support/bus.js';
import { serviceUrl } from '../support/services.js';
import { postgresTableStore } from './sql-servers.js';
import { describeSqlStore, randomTable, rowsAsText, type SentStatement } from './sql-extras.js';

const url = serviceUrl('postgres');

/** Resolves once `check` returns true, polling every 10 ms; rejects after `timeoutMs`. */
async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.skipIf(!url)('PostgreSQL', () => {
  storeContractSuite(
    { describe, it, beforeAll, afterAll },
    async () => {
      const { pool, table, store, cleanup } = await postgresTableStore(url as string, 10);
      return { store, dump: async () => rowsAsText((await pool.query(`SELECT * FROM "${table}"`)).rows), cleanup };
    },
    { name: 'PostgreSQL' },
  );

  describeSqlStore('PostgreSQL', async () => {
    const pool = new pg.Pool({ connectionString: url, max: 10 });
    return {
      open(table) {
        let count = 0;
        let last: SentStatement = { text: '', values: [] };
        const counting: PostgresQueryable = {
          query: (config) => (count++, (last = { text: config.text, values: config.values ?? [] }), pool.query(config)),
        };
        return { store: postgresStore(counting, { table }), statements: () => count, last: () => last };
      },
      explain: async (table, { text, values }) => {
        await pool.query(`ANALYZE "${table}"`);
        const { rows } = await pool.query(`EXPLAIN ${text}`, [...values]);
        return rows.map((row: { 'QUERY PLAN': string }) => row['QUERY PLAN']).join('\n');
      },
      runScript: async (script) => void (await pool.query(script)),
      schema: (table) => postgresSchema({ table }),
      drop: async (table) => void (await pool.query(`DROP TABLE IF EXISTS "${table}"`)),
      close: () => pool.end(),
    };
  });

  describe('postgresStore', () => {
    let pool: pg.Pool;
    beforeAll(() => {
      pool = new pg.Pool({ connectionString: url, max: 4 });
    });
    afterAll(() => pool.end());

    it('works in a schema-qualified table, and with a single Client', async () => {
      const schema = randomTable('kg_schema');
      await pool.query(`CREATE SCHEMA "${schema}"`);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const store = postgresStore(client, { table: `${schema}.api_keys` });
        await store.migrate();
        const keys = createKeyManager({ store });
        const { token } = await keys.create({ name: 'qualified', scopes: ['all'] });
        expect((await keys.verify(token)).valid).toBe(true);
        const indexes = await pool.query('SELECT indexname FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname', [schema]);
        expect(indexes.rows.map((r: { indexname: string }) => r.indexname)).toEqual([
          'api_keys__created',
          'api_keys__digest',
          'api_keys__owner_created',
          'api_keys__ownerless',
          'api_keys__prev_digest',
          'api_keys_pkey',
        ]);
        await keys.close();
      } finally {
        await client.end();
        await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      }
    });

    it('lists the keys without an owner in a table made before their index, and migrate() adds it', async () => {
      const table = randomTable();
      // The schema of the previous release: the same, without the index of keys without an owner.
      const earlier = postgresSchema({ table })
        .split(';')
        .filter((statement) => statement.trim() !== '' && !statement.includes('__ownerless'));
      expect(earlier).toHaveLength(
        postgresSchema({ table })
          .split(';')
          .filter((statement) => statement.trim() !== '').length - 1,
      );
      try {
        for (const statement of earlier) await pool.query(statement);
        const store = postgresStore(pool, { table });
        const keys = createKeyManager({ store });
        const ownerless: string[] = [];
        for (let i = 0; i < 6; i++) {
          const { key } = await keys.create({ name: `k${i}`, scopes: ['all'], ownerId: i % 2 ? 'shop' : null });
          if (key.ownerId === null) ownerless.push(key.id);
        }
        const listed = async () => (await keys.list({ ownerId: null })).keys.map((k) => k.id).sort();
        expect(await listed()).toEqual([...ownerless].sort());
        await store.migrate();
        const indexes = await pool.query('SELECT indexdef FROM pg_indexes WHERE tablename = $1', [table]);
        expect(indexes.rows.map((r: { indexdef: string }) => r.indexdef)).toContainEqual(
          expect.stringMatching(/__ownerless.*WHERE \(owner_id IS NULL\)/),
        );
        expect(await listed()).toEqual([...ownerless].sort());
        await keys.close();
      } finally {
        await pool.query(`DROP TABLE IF EXISTS "${table}"`);
      }
    });

    it('gives every index its own name when the table name is long', async () => {
      const table = `kg_long_${'x'.repeat(49)}_${Math.random().toString(36).slice(2, 7)}`;
      const store = postgresStore(pool, { table });
      try {
        await store.migrate();
        const indexes = await pool.query('SELECT indexname FROM pg_indexes WHERE tablename = $1', [table]);
        expect(new Set(indexes.rows.map((r: { indexname: string }) => r.indexname)).size).toBe(6);
      } finally {
        await pool.query(`DROP TABLE IF EXISTS "${table}"`);
      }
    });

    it('prepares its statements once per connection by default, and can send them unnamed', async () => {
      for (const preparedStatements of [true, false]) {
        const table = randomTable();
        const names: (string | undefined)[] = [];
        const recording: PostgresQueryable = { query: (config) => (names.push(config.name), pool.query(config)) };
        const store = postgresStore(recording, { table, preparedStatements });
        try {
          await store.migrate();
          const keys = createKeyManager({ store });
          const { token } = await keys.create({ name: 'prepared', scopes: ['all'] });
          names.length = 0;
          expect((await keys.verify(token)).valid).toBe(true);
          expect((await keys.verify(token)).valid).toBe(true);
          expect(names).toHaveLength(2);
          if (preparedStatements) expect(names[0]).toMatch(/^keygate_[0-9a-f]{24}$/);
          else expect(names).toEqual([undefined, undefined]);
          expect(names[1]).toBe(names[0]);
          await keys.close();
        } finally {
          await pool.query(`DROP TABLE IF EXISTS "${table}"`);
        }
      }
      expect(() => postgresStore(pool, { preparedStatements: 'yes' as unknown as boolean })).toThrow(/preparedStatements/);
    });

    it('sends spend and both updates as named prepared statements, one name per text', async () => {
      const table = randomTable();
      const sent: Array<{ name: string | undefined; text: string }> = [];
      const recording: PostgresQueryable = { query: (config) => (sent.push({ name: config.name, text: config.text }), pool.query(config)) };
      const store = postgresStore(recording, { table });
      try {
        await store.migrate();
        const keys = createKeyManager({ store });
        const { key, token } = await keys.create({ name: 'metered', scopes: ['all'], remaining: 5 });
        sent.length = 0;
        for (let i = 0; i < 3; i++) expect((await keys.verify(token)).valid).toBe(true);
        await keys.update(key.id, { name: 'renamed' });
        await keys.update(key.id, { remaining: 9 });
        const spends = sent.filter((s) => /^UPDATE .* RETURNING remaining, refilled_at$/.test(s.text));
        expect(spends).toHaveLength(3);
        expect(new Set(spends.map((s) => s.name)).size).toBe(1);
        expect(spends[0]?.name).toMatch(/^keygate_[0-9a-f]{24}$/);
        const updates = sent.filter((s) => /^UPDATE .* AND version = \$\d+$/.test(s.text));
        expect(updates).toHaveLength(2);
        expect(updates[0]?.text).not.toMatch(/remaining/);
        expect(updates[1]?.text).toMatch(/remaining = /);
        expect(new Set(updates.map((u) => u.name)).size).toBe(2);
        expect(sent.every((s) => typeof s.name === 'string' && /^keygate_[0-9a-f]{24}$/.test(s.name))).toBe(true);
        expect((await keys.get(key.id))?.remaining).toBe(9);
        await keys.close();
      } finally {
        await pool.query(`DROP TABLE IF EXISTS "${table}"`);
      }
    });

    it('says what to pass when given a connection string', () => {
      const attempt = () => postgresStore(url as unknown as PostgresQueryable);
      expect(attempt).toThrow(ValidationError);
      expect(attempt).toThrow(/pg Pool or Client.*npm install pg.*new Pool\(\{ connectionString \}\)/);
    });
  });

  describe('postgresInvalidation', () => {
    let pool: pg.Pool;
    beforeAll(() => {
      pool = new pg.Pool({ connectionString: url, max: 10 });
    });
    afterAll(() => pool.end());

    const recorder = () => {
      const seen: string[] = [];
      let resets = 0;
      let losses = 0;
      const subscriber: InvalidationSubscriber = {
        invalidate: (id) => void seen.push(id),
        reset: () => void resets++,
        lost: () => void losses++,
      };
      return { subscriber, seen, resets: () => resets, losses: () => losses };
    };

    it('delivers a published key id to every subscriber, its own included', async () => {
      const channel = randomTable('kg_chan');
      const a = postgresInvalidation(pool, { channel });
      const b = postgresInvalidation(pool, { channel });
      const other = postgresInvalidation(pool, { channel: `${channel}_other` });
      const ra = recorder();
      const rb = recorder();
      const ro = recorder();
      const stops = [await a.subscribe(ra.subscriber), await b.subscribe(rb.subscriber), await other.subscribe(ro.subscriber)];
      await a.publish('key-1');
      await b.publish("'); DROP TABLE keys;--");
      await eventually(() => ra.seen.length === 2 && rb.seen.length === 2);
      expect(ra.seen).toEqual(['key-1', "'); DROP TABLE keys;--"]);
      expect(rb.seen).toEqual(ra.seen);
      expect(ro.seen).toEqual([]);
      for (const stop of stops) await stop();
    });

    it('stopping closes the LISTEN connection and ends delivery', async () => {
      const channel = randomTable('kg_chan');
      const bus = postgresInvalidation(pool, { channel });
      const r = recorder();
      const listening = async () =>
        Number((await pool.query('SELECT count(*) AS n FROM pg_stat_activity WHERE query = $1', [`LISTEN "${channel}"`])).rows[0].n);
      const stop = await bus.subscribe(r.subscriber);
      expect(await listening()).toBe(1);
      await stop();
      await eventually(async () => (await listening()) === 0);
      await bus.publish('after-stop');
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(r.seen).toEqual([]);
    });

    it('reports the LISTEN connection lost when it is killed, reconnects, then resets the cache once', async () => {
      const channel = randomTable('kg_chan');
      const pids: number[] = [];
      const errors: unknown[] = [];
      const bus = postgresInvalidation(pool, {
        channel,
        reconnectDelayMs: 20,
        onError: (e) => void errors.push(e),
        connect: async () => {
          const client = await pool.connect();
          pids.push((await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
          return client;
        },
      });
      const r = recorder();
      const stop = await bus.subscribe(r.subscriber);
      expect(r.resets()).toBe(0);
      await pool.query('SELECT pg_terminate_backend($1)', [pids[0]]);
      await eventually(() => r.losses() === 1);
      await eventually(() => r.resets() === 1);
      expect(pids).toHaveLength(2);
      expect(errors.length).toBeGreaterThan(0);
      await bus.publish('after-reconnect');
      await eventually(() => r.seen.includes('after-reconnect'));
      expect(r.resets()).toBe(1);
      expect(r.losses()).toBe(1);
      await stop();
    });

    it("drops a changed key from another manager's cache at once", async () => {
      const table = randomTable();
      const channel = randomTable('kg_chan');
      const store = postgresStore(pool, { table });
      await store.migrate();
      const options = {
        store,
        cache: { ttlMs: 600_000 },
        invalidation: postgresInvalidation(pool, { channel }),
        revocation: { heartbeatMs: 50 },
      };
      const a = createKeyManager(options);
      const b = createKeyManager({ ...options, invalidation: postgresInvalidation(pool, { channel }) });
      try {
        const { key, token } = await a.create({ name: 'cached', scopes: ['all'] });
        // b caches the key once its subscription is up and proven.
        await cacheServing(b);
        await eventually(async () => (await b.verify(token)).valid);
        await b.verify(token);
        await a.deactivate(key.id);
        await eventually(async () => !(await b.verify(token)).valid, 2000);
        expect(await b.verify(token)).toMatchObject({ valid: false, code: 'INACTIVE' });
      } finally {
        await a.close();
        await b.close();
        await pool.query(`DROP TABLE IF EXISTS "${table}"`);
      }
    });

    it('refuses a bad channel name and something that is not a pool', () => {
      expect(() => postgresInvalidation(pool, { channel: 'bad-channel' })).toThrow(/channel: must be a plain identifier/);
      expect(() => postgresInvalidation(url as unknown as pg.Pool)).toThrow(/npm install pg/);
    });
  });
});
