// The SQL limiters on real databases: the limiter contract, all-or-nothing takes of a key and its owner
// under a race, slide() to the bit at the extremes and with clocks that disagree, prune, and migrations.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mysqlLimiter, mysqlLimiterSchema } from '../../adapters/mysql/index.js';
import { postgresLimiter, postgresLimiterSchema } from '../../adapters/postgres/index.js';
import type { SqlLimiter } from '../../adapters/sql/limiter.js';
import { sqliteLimiter, sqliteLimiterSchema } from '../../adapters/sqlite/index.js';
import { limiterContractSuite } from '../../adapters/testing/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { createKeyManager, ValidationError } from '../../src/index.js';
import {
  RATE_LIMIT_MAX,
  RATE_PRODUCT_MAX,
  RATE_WINDOW_MAX_MS,
  type RateLimitBucket,
  slide,
  type WindowState,
} from '../../src/rate-limit.js';
import { backends, type Connection, randomTable } from './sql-backends.js';

const schemaOf = { postgres: postgresLimiterSchema, mysql: mysqlLimiterSchema, sqlite: sqliteLimiterSchema };

/** A fixed pseudo-random sequence, so a failure names a step that repeats. */
function sequence(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % n;
  };
}

for (const backend of backends()) {
  describe.skipIf(backend.skip !== null)(backend.skip === null ? backend.name : `${backend.name}: ${backend.skip}`, () => {
    limiterContractSuite(
      { describe, it, beforeAll, afterAll },
      async () => {
        const connection = await backend.connect();
        const table = randomTable();
        const limiter = connection.limiter(table);
        await limiter.migrate();
        return {
          limiter,
          cleanup: async () => {
            await connection.drop(table);
            await connection.close();
          },
        };
      },
      { name: backend.name },
    );

    describe(`${backend.name}: SQL limiter`, () => {
      let connection: Connection;
      let table: string;
      let limiter: SqlLimiter;
      const tables: string[] = [];
      const fresh = (): string => {
        const t = randomTable();
        tables.push(t);
        return t;
      };
      let n = 0;
      const name = (what: string): string => `${what}-${Date.now().toString(36)}-${n++}`;

      beforeAll(async () => {
        connection = await backend.connect();
        table = fresh();
        limiter = connection.limiter(table);
        await limiter.migrate();
      });

      afterAll(async () => {
        for (const t of tables) await connection?.drop(t);
        await connection?.close();
      });

      it('counts 100 concurrent requests of two keys in a key bucket and the owner bucket all-or-nothing: exactly the owner limit', async () => {
        const owner = { key: name('o:race'), limit: 10, windowMs: 60_000 };
        const keys = [
          { key: name('k:race-a'), limit: 50, windowMs: 60_000 },
          { key: name('k:race-b'), limit: 50, windowMs: 60_000 },
        ];
        const at = Date.UTC(2030, 0, 1) + 5;
        const asked = Array.from({ length: 100 }, (_, i) => keys[i % 2] as RateLimitBucket);
        const answers = await Promise.all(asked.map((key) => limiter.take(owner.key, [key, owner], 1, at)));
        expect(answers.filter((a) => a.allowed)).toHaveLength(10);
        expect((await connection.row(table, owner.key))?.count).toBe(10);
        for (const key of keys) {
          const admitted = answers.filter((a, i) => a.allowed && asked[i] === key).length;
          expect((await connection.row(table, key.key))?.count, key.key).toBe(admitted);
        }
        // Every refused answer says no bucket counted it: the owner at its limit, the key as it stands.
        for (const a of answers) expect(a.states[1]?.count).toBeLessThanOrEqual(10);
      });

      it('gives a request back to its key when the owner refuses it, while keys also refuse: exactly the owner limit', async () => {
        const owner = { key: name('o:mixed'), limit: 10, windowMs: 60_000 };
        const keys = [0, 1, 2, 3].map((i) => ({ key: name(`k:mixed-${i}`), limit: 5, windowMs: 60_000 }));
        const at = Date.UTC(2030, 0, 1) + 7;
        const asked = Array.from({ length: 100 }, (_, i) => keys[i % 4] as RateLimitBucket);
        const answers = await Promise.all(asked.map((key) => limiter.take(owner.key, [key, owner], 1, at)));
        expect(answers.filter((a) => a.allowed)).toHaveLength(10);
        expect((await connection.row(table, owner.key))?.count).toBe(10);
        for (const key of keys) {
          const admitted = answers.filter((a, i) => a.allowed && asked[i] === key).length;
          expect(admitted).toBeLessThanOrEqual(5);
          expect((await connection.row(table, key.key))?.count, key.key).toBe(admitted);
        }
      });

      it('answers a refusal by the first bucket with the second one as it stands, without counting or creating it', async () => {
        const key = { key: name('k:first'), limit: 1, windowMs: 1000 };
        const owner = { key: name('o:first'), limit: 5, windowMs: 1000 };
        const at = Date.UTC(2030, 0, 1) + 1500;
        expect((await limiter.take(owner.key, [owner], 1, at - 1000)).allowed).toBe(true);
        expect((await limiter.take(key.key, [key, owner], 1, at)).allowed).toBe(true);
        const refused = await limiter.take(key.key, [key, owner], 2, at + 100);
        expect(refused).toEqual({
          allowed: false,
          states: [
            { window: Math.floor(at / 1000), count: 1, previous: 0 },
            { window: Math.floor(at / 1000), count: 1, previous: 1 },
          ],
        });
        const other = { key: name('o:never'), limit: 5, windowMs: 1000 };
        const none = await limiter.take(key.key, [key, other], 1, at + 200);
        expect(none.states[1]).toEqual({ window: Math.floor(at / 1000), count: 0, previous: 0 });
        expect(await connection.row(table, other.key)).toBeNull();
      });

      it('decides as slide() when instances disagree on the clock: steps back, by up to 5 windows', async () => {
        for (const [seed, windowMs] of [
          [11, 1000],
          [12, 7],
        ] as const) {
          const key = name('k:skew');
          const bucket = { key, limit: 6, windowMs };
          const next = sequence(seed);
          let state: WindowState | null = null;
          let now = Date.UTC(2030, 0, 1) + 17;
          for (let i = 0; i < 400; i++) {
            const step = next(10);
            // Mostly small steps either way, now and then a jump of several windows back or forth.
            now +=
              step === 0
                ? -next(5 * windowMs + 1)
                : step === 1
                  ? next(4 * windowMs)
                  : next(Math.floor(windowMs / 2) + 1) - Math.floor(windowMs / 4);
            const cost = next(3);
            const want = slide(state, bucket.limit, windowMs, cost, now);
            const got = await limiter.take(key, [bucket], cost, now);
            expect(got, `take ${i} (cost ${cost} at ${now}, window ${windowMs})`).toEqual({ allowed: want.allowed, states: [want.state] });
            state = want.state;
          }
        }
      });

      it('decides as slide() at the largest limits and windows, and refuses a cost above a limit without counting it', async () => {
        // limit × windowMs at RATE_PRODUCT_MAX (2^51), with the largest limit and with the largest window.
        for (const [limit, windowMs] of [
          [RATE_LIMIT_MAX, Math.floor(RATE_PRODUCT_MAX / RATE_LIMIT_MAX)],
          [Math.floor(RATE_PRODUCT_MAX / RATE_WINDOW_MAX_MS), RATE_WINDOW_MAX_MS],
        ] as const) {
          const bucket = { key: name('k:big'), limit, windowMs };
          const next = sequence(5);
          let state: WindowState | null = null;
          let now = Date.UTC(2030, 0, 1);
          for (let i = 0; i < 80; i++) {
            now += next(3) === 0 ? next(100) * Math.floor(windowMs / 50) : next(1000);
            // Costs up to the limit, and above it up to the largest cost a verify takes.
            const cost = [0, 1, Math.floor(limit / 4), Math.floor(limit / 2), limit, Math.min(limit + 1, RATE_LIMIT_MAX), RATE_LIMIT_MAX][
              next(7)
            ] as number;
            const want = slide(state, limit, windowMs, cost, now);
            const got = await limiter.take(bucket.key, [bucket], cost, now);
            expect(got, `take ${i} (cost ${cost}, limit ${limit}, window ${windowMs})`).toEqual({
              allowed: want.allowed,
              states: [want.state],
            });
            state = want.state;
          }
          expect((await connection.row(table, bucket.key))?.count).toBe(state?.count);
        }
        // Two buckets, a cost above the second one's limit: refused, neither counts it.
        const key = { key: name('k:over'), limit: 5, windowMs: 1000 };
        const owner = { key: name('o:over'), limit: 3, windowMs: 1000 };
        const at = Date.UTC(2030, 0, 1);
        expect((await limiter.take(key.key, [key, owner], 1, at)).allowed).toBe(true);
        expect(await limiter.take(key.key, [key, owner], 4, at)).toEqual({
          allowed: false,
          states: [
            { window: at / 1000, count: 1, previous: 0 },
            { window: at / 1000, count: 1, previous: 0 },
          ],
        });
        expect((await connection.row(table, key.key))?.count).toBe(1);
        // A limit × windowMs above 2^51 is refused before any statement.
        await expect(
          limiter.take('k', [{ key: name('k:huge'), limit: RATE_LIMIT_MAX, windowMs: RATE_WINDOW_MAX_MS }], 1, at),
        ).rejects.toThrow(ValidationError);
      });

      it('writes no count for a refused take: only the window rolls over', async () => {
        const bucket = { key: name('k:refused'), limit: 3, windowMs: 1000 };
        const at = Date.UTC(2030, 0, 1);
        expect((await limiter.take(bucket.key, [bucket], 3, at)).allowed).toBe(true);
        expect((await limiter.take(bucket.key, [bucket], 1, at + 10)).allowed).toBe(false);
        expect(await connection.row(table, bucket.key)).toEqual({ window: at / 1000, count: 3, previous: 0, windowMs: 1000 });
        // In the next window the previous one weighs almost in full.
        expect((await limiter.take(bucket.key, [bucket], 1, at + 1010)).allowed).toBe(false);
        const row = await connection.row(table, bucket.key);
        expect(row?.count).toBe(0);
        expect(row?.previous).toBe(3);
      });

      it('starts a bucket afresh when it is asked with another window length', async () => {
        const key = name('k:resized');
        const at = Date.UTC(2030, 0, 1);
        expect((await limiter.take(key, [{ key, limit: 2, windowMs: 1000 }], 2, at)).allowed).toBe(true);
        expect((await limiter.take(key, [{ key, limit: 2, windowMs: 1000 }], 1, at)).allowed).toBe(false);
        // A window 60 times longer: the old window index lies far in the future of the new one's.
        const minute = { key, limit: 2, windowMs: 60_000 };
        expect(await limiter.take(key, [minute], 1, at + 1)).toEqual({
          allowed: true,
          states: [{ window: Math.floor((at + 1) / 60_000), count: 1, previous: 0 }],
        });
        expect((await connection.row(table, key))?.windowMs).toBe(60_000);
      });

      it('keeps apart names that differ only in case, accents, trailing spaces or lone surrogates', async () => {
        const base = name('k:names');
        const names = [`${base}a`, `${base}A`, `${base}á`, `${base}a `, `${base}a  `, `${base}\uD800`, `${base}\uDBFF`, `${base}\uDC00`];
        const at = Date.UTC(2030, 0, 1);
        for (const key of names) expect((await limiter.take(key, [{ key, limit: 1, windowMs: 60_000 }], 1, at)).allowed, key).toBe(true);
        for (const key of names) expect((await limiter.take(key, [{ key, limit: 1, windowMs: 60_000 }], 1, at)).allowed, key).toBe(false);
      });

      it('prunes the rows whose windows no longer weigh, and only those', async () => {
        const own = fresh();
        const pruned = connection.limiter(own);
        await pruned.migrate();
        const at = Date.UTC(2030, 0, 1);
        const second = (key: string) => ({ key, limit: 5, windowMs: 1000 });
        const minute = (key: string) => ({ key, limit: 5, windowMs: 60_000 });
        await pruned.take('a', [second('dead')], 1, at - 2000); // two windows back: weighs nothing
        await pruned.take('b', [second('previous')], 1, at - 1); // the window before: still weighs
        await pruned.take('c', [second('current')], 1, at);
        await pruned.take('d', [minute('long')], 1, at - 2000); // the same window of a longer limit
        expect(await connection.size(own)).toBe(4);
        expect(await pruned.prune(at + 999)).toBe(1);
        expect(await connection.row(own, 'dead')).toBeNull();
        expect(await connection.size(own)).toBe(3);
        expect((await pruned.take('b', [second('previous')], 5, at + 999)).allowed).toBe(false);
        expect(await pruned.prune(at + 999)).toBe(0);
        await expect(pruned.prune(1.5)).rejects.toThrow(ValidationError);
      });

      it('migrates idempotently and concurrently, and its schema script makes the same table', async () => {
        const concurrent = fresh();
        await Promise.all(Array.from({ length: 5 }, () => connection.limiter(concurrent).migrate()));
        await connection.limiter(concurrent).migrate();
        const bucket = { key: 'k:migrated', limit: 1, windowMs: 1000 };
        expect((await connection.limiter(concurrent).take('k', [bucket], 1, 1000)).allowed).toBe(true);

        const scripted = fresh();
        const schema = schemaOf[backend.dialect]({ table: scripted });
        expect(schema).toBe(connection.limiter(scripted).schema);
        await connection.script(schema);
        await connection.script(schema);
        const limiter = connection.limiter(scripted);
        expect((await limiter.take('k', [bucket], 1, 1000)).allowed).toBe(true);
        expect((await limiter.take('k', [bucket], 1, 1000)).allowed).toBe(false);
      });

      it('limits a key manager: a key by its own limit, its owner across keys, with the limits described', async () => {
        const t = Date.UTC(2030, 0, 1) + 250;
        const keys = createKeyManager({
          store: memoryStore(),
          now: () => t,
          rateLimits: { limiter, default: { limit: 3, windowMs: 1000 }, owner: { limit: 4, windowMs: 1000 } },
        });
        const owner = name('acme');
        const one = await keys.create({ name: 'one', scopes: ['all'], ownerId: owner });
        const two = await keys.create({ name: 'two', scopes: ['all'], ownerId: owner });
        for (let i = 0; i < 3; i++) expect((await keys.verify(one.token)).valid, `verify ${i}`).toBe(true);
        const byKey = await keys.verify(one.token);
        expect(byKey).toMatchObject({
          valid: false,
          code: 'RATE_LIMITED',
          limits: [
            { scope: 'key', remaining: 0 },
            { scope: 'owner', remaining: 1 },
          ],
        });
        expect((await keys.verify(two.token)).valid).toBe(true);
        const byOwner = await keys.verify(two.token);
        expect(byOwner).toMatchObject({
          valid: false,
          code: 'RATE_LIMITED',
          limits: [
            { scope: 'key', limit: 3, remaining: 2 },
            { scope: 'owner', limit: 4, remaining: 0, resetMs: 750 },
          ],
        });
        expect((await connection.row(table, `k:1000:${two.key.id}`))?.count).toBe(1);
        expect((await connection.row(table, `o:1000:${owner}`))?.count).toBe(4);
        await keys.close();
      });

      it('refuses bad tables, clients and takes with a ValidationError', async () => {
        for (const bad of ['', 'a-b', 'x; DROP TABLE y', '1abc', 'a'.repeat(65)]) {
          expect(() => connection.limiter(bad), bad).toThrow(ValidationError);
        }
        expect(() =>
          (backend.dialect === 'postgres' ? postgresLimiter : backend.dialect === 'mysql' ? mysqlLimiter : sqliteLimiter)(
            'file.db' as never,
          ),
        ).toThrow(/keygate never opens connections itself/);
        const bucket = { key: 'k:bad', limit: 1, windowMs: 1000 };
        await expect(limiter.take('k', [bucket], -1, 0)).rejects.toThrow(ValidationError);
        await expect(limiter.take('k', [bucket], 1.5, 0)).rejects.toThrow(ValidationError);
        await expect(limiter.take('k', [{ ...bucket, limit: RATE_LIMIT_MAX + 1 }], 1, 0)).rejects.toThrow(ValidationError);
        await expect(limiter.take('k', [{ ...bucket, windowMs: 0 }], 1, 0)).rejects.toThrow(ValidationError);
        await expect(limiter.take('k', [bucket], 1, Number.NaN)).rejects.toThrow(ValidationError);
      });

      if (backend.dialect === 'postgres') {
        it('runs without prepared statements, and validates the option', async () => {
          const plain = connection.limiter(table, { preparedStatements: false });
          const bucket = { key: name('k:plain'), limit: 1, windowMs: 1000 };
          expect((await plain.take('k', [bucket], 1, 5000)).allowed).toBe(true);
          expect((await plain.take('k', [bucket], 1, 5000)).allowed).toBe(false);
          expect(() => connection.limiter(table, { preparedStatements: 'yes' })).toThrow(ValidationError);
          expect(postgresLimiterSchema({ table: 'auth.rate_limits' })).toContain('"auth"."rate_limits"');
        });
      }
    });
  });
}
