// Concurrent writes without expectedVersion on one key, from several managers sharing a real store: every write is applied, one after another, and none is lost.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { mysqlStore } from '../../adapters/mysql/index.js';
import { postgresStore } from '../../adapters/postgres/index.js';
import { redisStore } from '../../adapters/redis/index.js';
import { sqliteStore } from '../../adapters/sqlite/index.js';
import { type ApiKey, createKeyManager, type KeyManager, type KeyRecord, type KeyStore } from '../../src/index.js';
import { createDigester, hintOf } from '../../src/token.js';
import { DelegatingStore } from '../support/counting-store.js';
import { serviceUrl } from '../support/services.js';

/** Writers on the key at once, spread over MANAGERS managers (as over that many instances). */
const WRITERS = 48;
const MANAGERS = 4;
const ROUNDS = 3;
const STORE_TIMEOUT_MS = 5000;
const digest = createDigester();

/** What the stores of one test saw: compare-and-set attempts, and every write that won its race. */
interface WriteLog {
  attempts: number;
  written: KeyRecord[];
}

/** Forwards to `inner` and logs every update; `macrotask` answers each call a macrotask later, as a remote store would. */
class Recorder extends DelegatingStore {
  constructor(
    inner: KeyStore,
    private readonly log: WriteLog,
    private readonly macrotask = false,
  ) {
    super(inner);
  }
  private async later(): Promise<void> {
    if (this.macrotask) await new Promise((resolve) => setImmediate(resolve));
  }
  override async findById(id: string): Promise<KeyRecord | null> {
    await this.later();
    return super.findById(id);
  }
  override async update(next: KeyRecord, expectedVersion: number): Promise<boolean> {
    this.log.attempts++;
    await this.later();
    const won = await super.update(next, expectedVersion);
    if (won) this.log.written.push(next);
    return won;
  }
}

/** One store per manager, all on the same table (or key prefix), as separate instances would have. */
interface Opened {
  stores: KeyStore[];
  macrotask?: boolean;
  cleanup(): Promise<void>;
}

interface Kind {
  name: string;
  skip: boolean;
  open(): Promise<Opened>;
}

const table = (): string => `kg_race_${randomBytes(6).toString('hex')}`;

const KINDS: Kind[] = [
  {
    name: 'memory',
    skip: false,
    async open() {
      const store = memoryStore();
      return { stores: [store], cleanup: async () => {} };
    },
  },
  {
    name: 'memory, answering a macrotask later',
    skip: false,
    async open() {
      const store = memoryStore();
      return { stores: [store], macrotask: true, cleanup: async () => {} };
    },
  },
  {
    name: 'sqlite (file, WAL, a connection per manager)',
    skip: false,
    async open() {
      const Database = (await import('better-sqlite3')).default;
      const dir = mkdtempSync(join(tmpdir(), 'keygate-race-'));
      const name = table();
      const dbs = Array.from({ length: MANAGERS }, () => {
        const db = new Database(join(dir, 'keys.db'));
        db.pragma('journal_mode = WAL');
        return db;
      });
      const stores = dbs.map((db) => sqliteStore(db, { table: name }));
      await (stores[0] as ReturnType<typeof sqliteStore>).migrate();
      return {
        stores,
        async cleanup() {
          for (const db of dbs) db.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'postgres',
    skip: !serviceUrl('postgres'),
    async open() {
      const name = table();
      const pools = Array.from({ length: MANAGERS }, () => new pg.Pool({ connectionString: serviceUrl('postgres'), max: 10 }));
      const stores = pools.map((pool) => postgresStore(pool, { table: name }));
      await (stores[0] as ReturnType<typeof postgresStore>).migrate();
      return {
        stores,
        async cleanup() {
          await (pools[0] as pg.Pool).query(`DROP TABLE IF EXISTS "${name}"`);
          await Promise.all(pools.map((pool) => pool.end()));
        },
      };
    },
  },
  {
    name: 'mysql',
    skip: !serviceUrl('mysql'),
    async open() {
      const name = table();
      const pools = Array.from({ length: MANAGERS }, () => mysql.createPool({ uri: serviceUrl('mysql') as string, connectionLimit: 10 }));
      const stores = pools.map((pool) => mysqlStore(pool, { table: name }));
      await (stores[0] as ReturnType<typeof mysqlStore>).migrate();
      return {
        stores,
        async cleanup() {
          await (pools[0] as mysql.Pool).query(`DROP TABLE IF EXISTS \`${name}\``);
          await Promise.all(pools.map((pool) => pool.end()));
        },
      };
    },
  },
  {
    name: 'redis',
    skip: !serviceUrl('redis'),
    async open() {
      const prefix = `{${table()}}:`;
      const clients = Array.from({ length: MANAGERS }, () => new Redis(serviceUrl('redis') as string));
      await Promise.all(clients.map((client) => new Promise((resolve) => client.once('ready', resolve))));
      return {
        stores: clients.map((client) => redisStore(client, { prefix })),
        async cleanup() {
          const client = clients[0] as Redis;
          const keys = await client.keys(`${prefix}*`);
          if (keys.length > 0) await client.del(...keys);
          for (const c of clients) c.disconnect();
        },
      };
    },
  },
];

/** MANAGERS managers over the opened stores, a fresh log, and a key to fight over. */
async function setup(opened: Opened) {
  const log: WriteLog = { attempts: 0, written: [] };
  const managers = Array.from({ length: MANAGERS }, (_, i) =>
    createKeyManager({
      store: new Recorder(opened.stores[i % opened.stores.length] as KeyStore, log, opened.macrotask),
      storeTimeoutMs: STORE_TIMEOUT_MS,
    }),
  );
  const first = managers[0] as KeyManager;
  const { key, token } = await first.create({ name: 'original', scopes: ['all'] });
  const initial = (await (opened.stores[0] as KeyStore).findById(key.id)) as KeyRecord;
  return {
    log,
    managers,
    first,
    id: key.id,
    token,
    initial,
    /** The record as stored now. */
    stored: async () => (await (opened.stores[0] as KeyStore).findById(key.id)) as KeyRecord,
    close: () => Promise.all(managers.map((m) => m.close())),
  };
}

/** Runs every call at once; fails listing every rejection (a lost race is a VersionConflictError). */
async function allResolve<T>(calls: (() => Promise<T>)[]): Promise<T[]> {
  const settled = await Promise.allSettled(calls.map((call) => call()));
  const failed = settled.flatMap((s, i) =>
    s.status === 'rejected' ? [`#${i}: ${(s.reason as Error)?.name}: ${(s.reason as Error)?.message}`] : [],
  );
  expect(failed, `${failed.length} of ${calls.length} calls failed`).toEqual([]);
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

/** The winning writes in version order; they must be exactly versions 2, 3, … with none written twice. */
function chain(log: WriteLog): KeyRecord[] {
  const written = [...log.written].sort((a, b) => a.version - b.version);
  expect(
    written.map((r) => r.version),
    'every winning write has its own version, next to the previous one',
  ).toEqual(written.map((_, i) => i + 2));
  return written;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const outcome = async (keys: KeyManager, token: string): Promise<string> => {
  const result = await keys.verify(token);
  return result.valid ? 'VALID' : result.code;
};

for (const kind of KINDS) {
  describe.skipIf(kind.skip)(`${kind.name}: ${WRITERS} concurrent writes on one key`, () => {
    const report = (test: string, round: number, log: WriteLog, calls: number) =>
      console.log(
        `[contention] ${kind.name} | ${test} | round ${round}: ${log.attempts} compare-and-set attempts for ${log.written.length} writes from ${calls} calls`,
      );

    it(`${WRITERS} updates (${MANAGERS} managers): all applied in sequence`, { timeout: 90_000 }, async () => {
      const opened = await kind.open();
      try {
        for (const round of range(ROUNDS)) {
          const s = await setup(opened);
          const results = await allResolve(
            range(WRITERS).map((i) => () => (s.managers[i % MANAGERS] as KeyManager).update(s.id, { name: `writer ${i}` })),
          );
          report('updates', round, s.log, WRITERS);
          // Each update wrote its own version, on top of all the others it saw.
          expect(results.map((k) => k.version).sort((a, b) => a - b)).toEqual(range(WRITERS).map((i) => i + 2));
          expect(results.map((k) => k.name)).toEqual(range(WRITERS).map((i) => `writer ${i}`));
          const written = chain(s.log);
          expect(written).toHaveLength(WRITERS);
          for (const k of results) expect(written[k.version - 2]?.name).toBe(k.name);
          const last = results.find((k) => k.version === 1 + WRITERS) as ApiKey;
          const final = (await s.first.get(s.id)) as ApiKey;
          expect(final.version).toBe(1 + WRITERS);
          expect(final.name).toBe(last.name);
          await s.close();
        }
      } finally {
        await opened.cleanup();
      }
    });

    it(`${WRITERS / 4} each of update, activate, deactivate and rotate (${MANAGERS} managers): all applied in sequence`, {
      timeout: 90_000,
    }, async () => {
      const opened = await kind.open();
      try {
        for (const round of range(ROUNDS)) {
          const s = await setup(opened);
          type Op = 'update' | 'activate' | 'deactivate' | 'rotate';
          const ops: Op[] = range(WRITERS).map((i) => (['update', 'activate', 'deactivate', 'rotate'] as const)[i % 4] as Op);
          const results = await allResolve(
            ops.map((op, i) => async () => {
              const keys = s.managers[Math.floor(i / 4) % MANAGERS] as KeyManager;
              if (op === 'update') return { key: await keys.update(s.id, { name: `writer ${i}` }) };
              if (op === 'activate') return { key: await keys.activate(s.id) };
              if (op === 'deactivate') return { key: await keys.deactivate(s.id) };
              return keys.rotate(s.id);
            }),
          );
          report('mix', round, s.log, WRITERS);
          const written = chain(s.log);
          const stored = await s.stored();
          expect(stored.version).toBe(1 + written.length);
          const pick = ({ version, name, active, digest, previousDigest }: KeyRecord) => ({
            version,
            name,
            active,
            digest,
            previousDigest,
          });
          expect(pick(stored)).toEqual(pick(written[written.length - 1] as KeyRecord));

          // Each winning write made exactly one of the calls' changes to the write before it.
          const names = new Set(ops.flatMap((op, i) => (op === 'update' ? [`writer ${i}`] : [])));
          const tokens = new Map(
            ops.flatMap((op, i) => (op === 'rotate' ? [[digest((results[i] as { token: string }).token), i] as const] : [])),
          );
          const kinds = { update: 0, flip: 0, stage: 0, confirm: 0 };
          let before = s.initial;
          for (const record of written) {
            const changes = {
              name: record.name !== before.name,
              active: record.active !== before.active,
              digest: record.digest !== before.digest,
              previous:
                record.previousDigest !== before.previousDigest ||
                record.previousDigestExpiresAt?.getTime() !== before.previousDigestExpiresAt?.getTime(),
            };
            const what = Object.entries(changes).flatMap(([field, changed]) => (changed ? [field] : []));
            if (changes.name) {
              expect(what, `v${record.version}`).toEqual(['name']);
              expect(names.delete(record.name), `v${record.version}: ${record.name} written once`).toBe(true);
              kinds.update++;
            } else if (changes.active) {
              expect(what, `v${record.version}`).toEqual(['active']);
              kinds.flip++;
            } else if (changes.digest) {
              expect(
                what.filter((field) => field !== 'previous'),
                `v${record.version}`,
              ).toEqual(['digest']);
              expect(tokens.delete(record.digest), `v${record.version}: a rotation's token, written once`).toBe(true);
              // The token before stays valid until confirmed: the current one, or the one an unconfirmed rotation kept.
              const unconfirmed = before.previousDigest !== null && before.previousDigestExpiresAt === null;
              expect(record.previousDigest).toBe(unconfirmed ? before.previousDigest : before.digest);
              expect(record.previousDigestExpiresAt).toBeNull();
              kinds.stage++;
            } else {
              // Confirmation of a rotation without grace: the old token ends.
              expect(what, `v${record.version}`).toEqual(['previous']);
              expect(before.previousDigest).not.toBeNull();
              expect(record.previousDigest).toBeNull();
              kinds.confirm++;
            }
            before = record;
          }
          expect(names.size, 'updates not written').toBe(0);
          expect(tokens.size, 'rotations not written').toBe(0);
          expect(kinds.update).toBe(WRITERS / 4);
          expect(kinds.stage).toBe(WRITERS / 4);
          expect(kinds.confirm).toBeGreaterThanOrEqual(1);
          expect(written.length).toBe(kinds.update + kinds.stage + kinds.confirm + kinds.flip);

          // Every call returned the key as it wrote it, or (activate/deactivate with nothing to do) as it found it.
          const at = (version: number): KeyRecord => (version === 1 ? s.initial : (written[version - 2] as KeyRecord));
          ops.forEach((op, i) => {
            const { key } = results[i] as { key: ApiKey };
            if (op === 'update') expect(at(key.version).name, `#${i}`).toBe(`writer ${i}`);
            if (op === 'activate' || op === 'deactivate') {
              expect(key.active, `#${i}`).toBe(op === 'activate');
              expect(at(key.version).active, `#${i}`).toBe(op === 'activate');
            }
            if (op === 'rotate') {
              const { token } = results[i] as { token: string };
              expect(key.hint, `#${i}: the hint of its token`).toBe(hintOf(token, s.first.prefix));
              expect(at(key.version).digest, `#${i}: a version with its token`).toBe(digest(token));
            }
          });
          for (const record of written) {
            if (record.active !== at(record.version - 1).active) {
              const claimed = ops.some(
                (op, i) =>
                  op === (record.active ? 'activate' : 'deactivate') && (results[i] as { key: ApiKey }).key.version === record.version,
              );
              expect(claimed, `v${record.version}: a flip returned by its call`).toBe(true);
            }
          }

          // The final state is that of the last write of each kind.
          const latest = (kind: Op[]) =>
            ops.reduce<number>((best, op, i) => {
              if (!kind.includes(op)) return best;
              return best < 0 || (results[i] as { key: ApiKey }).key.version > (results[best] as { key: ApiKey }).key.version ? i : best;
            }, -1);
          const final = (await s.first.get(s.id)) as ApiKey;
          expect(final.name).toBe(`writer ${latest(['update'])}`);
          expect(final.active).toBe((results[latest(['activate', 'deactivate'])] as { key: ApiKey }).key.active);
          expect(stored.previousDigest).toBeNull();
          const lastRotation = latest(['rotate']);
          const expected = final.active ? 'VALID' : 'INACTIVE';
          for (const [i, op] of ops.entries()) {
            if (op !== 'rotate') continue;
            const { token } = results[i] as { token: string };
            expect(await outcome(s.first, token), `rotation #${i}`).toBe(i === lastRotation ? expected : 'NOT_FOUND');
          }
          expect(await outcome(s.first, s.token)).toBe('NOT_FOUND');
          await s.close();
        }
      } finally {
        await opened.cleanup();
      }
    });

    it(`${WRITERS} rotations (${MANAGERS} managers): one token left, the last one written`, { timeout: 90_000 }, async () => {
      const opened = await kind.open();
      try {
        for (const round of range(ROUNDS)) {
          const s = await setup(opened);
          const results = await allResolve(range(WRITERS).map((i) => () => (s.managers[i % MANAGERS] as KeyManager).rotate(s.id)));
          report('rotations', round, s.log, WRITERS);
          const written = chain(s.log);
          const stored = await s.stored();
          expect(stored.version).toBe(1 + written.length);
          // Each rotation wrote its token once, then (unless a newer rotation came first) ended the old one.
          const staged = written.filter((r, i) => r.digest !== (i === 0 ? s.initial : (written[i - 1] as KeyRecord)).digest);
          expect(staged).toHaveLength(WRITERS);
          expect(new Set(staged.map((r) => r.digest))).toEqual(new Set(results.map((r) => digest(r.token))));
          expect(stored.previousDigest).toBeNull();
          expect(stored.previousDigestExpiresAt).toBeNull();

          // Each rotation returned the key as it wrote it: distinct versions, each with its own token.
          const versions = results.map((r) => r.key.version);
          expect(new Set(versions).size, 'distinct versions').toBe(WRITERS);
          results.forEach(({ key, token }, i) => {
            expect(key.hint, `#${i}: the hint of its token`).toBe(hintOf(token, s.first.prefix));
            expect((written[key.version - 2] as KeyRecord).digest, `#${i}: a version with its token`).toBe(digest(token));
          });

          // The rotation with the highest version is the last one written, and its token the only one left.
          const last = versions.indexOf(Math.max(...versions));
          expect(stored.digest).toBe(digest((results[last] as { token: string }).token));
          const outcomes = await Promise.all(results.map(({ token }) => outcome(s.first, token)));
          expect(outcomes).toEqual(results.map((_, i) => (i === last ? 'VALID' : 'NOT_FOUND')));
          expect(await outcome(s.first, s.token)).toBe('NOT_FOUND');
          await s.close();
        }
      } finally {
        await opened.cleanup();
      }
    });
  });
}
