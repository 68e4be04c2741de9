// Exactness across processes: 4 processes x 50 callers verify one token against a shared limiter and
// store. Per limiter window at most the limit is admitted, and at least limit - 1 while demand exceeds
// it; a quota admits exactly its uses out of more than 10,000 concurrent attempts. On memory (one
// process), Redis, PostgreSQL, MariaDB/MySQL and SQLite (one file, four processes).
import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { mysqlLimiter, mysqlStore } from '../../adapters/mysql/index.js';
import { postgresLimiter, postgresStore } from '../../adapters/postgres/index.js';
import { redisLimiter, redisStore } from '../../adapters/redis/index.js';
import { sqliteLimiter, sqliteStore } from '../../adapters/sqlite/index.js';
import { createKeyManager, type KeyManager, type KeyStore, type LimiterAnswer, memoryLimiter, type RateLimiter } from '../../src/index.js';
import { serviceUrl } from '../support/services.js';
import { type Backend, type Connections, connect } from './exactness-backends.js';

const PROCESSES = 4;
const CALLERS = 50;
// A small limit over a longer window: with 200 callers the limiter's queue delays requests, and a
// request decided a little after a later one (its clock reading older) counts in the later window;
// at L / W = 5 per 2 s that shift is worth well under one request per window.
const LIMIT = 5;
const WINDOW_MS = 2_000;
const RATE_MS = 6_500;
const USES = 2_000;
const ATTEMPTS = 55; // 4 x 50 x 55 = 11,000 attempts for 2,000 uses

const run = `${process.pid}_${Date.now().toString(36)}`;
// Inside the repository, so that the child resolves the drivers from its node_modules.
const workDir = fileURLToPath(new URL(`../../.keygate-tmp/exactness-${run}/`, import.meta.url));
const script = join(workDir, 'child.mjs');

interface ChildReport {
  attempts: number;
  admitted: number;
  errors: number;
  /** The message of the first error, for the report when there were any. */
  firstError: string | null;
  codes: Record<string, number>;
  windows: Array<[number, number]>;
}

function runChild(env: Record<string, string>): { child: ChildProcess; report: Promise<ChildReport> } {
  const child = fork(script, { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const report = new Promise<ChildReport>((resolve, reject) => {
    child.once('message', (m) => resolve(m as ChildReport));
    child.once('exit', (code) => reject(new Error(`child exited with ${code} before reporting`)));
  });
  return { child, report };
}

/** The admissions per window, summed over reports; checks the bounds on every window the demand covered whole. */
function checkWindows(reports: ChildReport[], startAt: number, endAt: number): Map<number, number> {
  const total = new Map<number, number>();
  for (const r of reports) for (const [w, n] of r.windows) total.set(w, (total.get(w) ?? 0) + n);
  let whole = 0;
  if (process.env.KEYGATE_EXACTNESS_DEBUG)
    console.log(
      startAt,
      endAt,
      [...total].sort((a, b) => a[0] - b[0]),
      reports.map((r) => r.attempts),
    );
  for (const [w, n] of total) {
    expect(n, `window ${w}`).toBeLessThanOrEqual(LIMIT);
    if (w * WINDOW_MS >= startAt && (w + 1) * WINDOW_MS <= endAt) {
      whole++;
      expect(n, `window ${w}, under demand`).toBeGreaterThanOrEqual(LIMIT - 1);
    }
  }
  expect(whole, 'windows fully under demand').toBeGreaterThanOrEqual(2);
  return total;
}

beforeAll(async () => {
  mkdirSync(workDir, { recursive: true });
  await build({
    entryPoints: [fileURLToPath(new URL('./exactness.child.ts', import.meta.url))],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['pg', 'mysql2', 'ioredis', 'redis', 'better-sqlite3'],
    outfile: script,
    logLevel: 'warning',
  });
}, 60_000);

afterAll(() => rmSync(workDir, { recursive: true, force: true }));

describe('memory limiter and store, one process, 200 callers', () => {
  it('admits at most the limit per window and at least limit - 1 under demand', async () => {
    const perWindow = new Map<number, number>();
    const inner = memoryLimiter();
    const limiter: RateLimiter = {
      take: (group, buckets, cost, now) => {
        const answer = inner.take(group, buckets, cost, now) as LimiterAnswer;
        const w = answer.states[0]?.window;
        if (answer.allowed && w !== undefined) perWindow.set(w, (perWindow.get(w) ?? 0) + 1);
        return answer;
      },
    };
    const keys = createKeyManager({ store: memoryStore(), rateLimits: { limiter } });
    const { token } = await keys.create({ name: 'rate', scopes: ['all'], rateLimit: { limit: LIMIT, windowMs: WINDOW_MS } });
    const startAt = Date.now();
    const endAt = startAt + RATE_MS;
    await Promise.all(
      Array.from({ length: PROCESSES * CALLERS }, async () => {
        while (Date.now() < endAt) {
          await keys.verify(token);
          // Callers of one process take turns on the event loop, as requests would.
          await new Promise((resolve) => setImmediate(resolve));
        }
      }),
    );
    checkWindows([{ attempts: 0, admitted: 0, errors: 0, firstError: null, codes: {}, windows: [...perWindow] }], startAt, endAt);
    await keys.close();
  }, 30_000);

  it('admits exactly the uses of a quota out of 11,000 concurrent attempts', async () => {
    const store = memoryStore();
    const keys = createKeyManager({ store });
    const { key, token } = await keys.create({ name: 'quota', scopes: ['all'], remaining: USES });
    let admitted = 0;
    await Promise.all(
      Array.from({ length: PROCESSES * CALLERS }, async () => {
        for (let i = 0; i < ATTEMPTS; i++) if ((await keys.verify(token)).valid) admitted++;
      }),
    );
    expect(admitted).toBe(USES);
    expect((await keys.get(key.id))?.remaining).toBe(0);
    await keys.close();
  }, 30_000);
});

interface Target {
  backend: Backend;
  target: string | undefined;
}

const sqliteFile = join(workDir, 'shared.db');
const targets: Target[] = [
  { backend: 'redis', target: serviceUrl('redis') },
  { backend: 'postgres', target: serviceUrl('postgres') },
  { backend: 'mysql', target: serviceUrl('mysql') },
  { backend: 'sqlite', target: sqliteFile },
];

for (const { backend, target } of targets) {
  describe.skipIf(target === undefined)(`${backend}: ${PROCESSES} processes x ${CALLERS} callers`, () => {
    const names = {
      table: `kg_exact_${run}`,
      limiterTable: `kg_exact_rl_${run}`,
      prefix: `{kgexact${run}}:`,
      limiterPrefix: `kgexact${run}:rl:`,
    };
    let conn: Connections;
    let keys: KeyManager;
    let store: KeyStore;

    beforeAll(async () => {
      conn = await connect(backend, target as string);
      let limiter: RateLimiter & { migrate?: () => Promise<void> };
      switch (backend) {
        case 'postgres':
          store = postgresStore(conn.pg, { table: names.table });
          limiter = postgresLimiter(conn.pg, { table: names.limiterTable });
          break;
        case 'mysql':
          store = mysqlStore(conn.mysql, { table: names.table });
          limiter = mysqlLimiter(conn.mysql, { table: names.limiterTable });
          break;
        case 'redis':
          store = redisStore(conn.redis, { prefix: names.prefix });
          limiter = redisLimiter(conn.redis, { prefix: names.limiterPrefix });
          break;
        case 'sqlite':
          store = sqliteStore(conn.sqlite, { table: names.table });
          limiter = sqliteLimiter(conn.sqlite, { table: names.limiterTable });
          break;
      }
      await (store as { migrate?: () => Promise<void> }).migrate?.();
      await limiter.migrate?.();
      keys = createKeyManager({ store });
    }, 60_000);

    afterAll(async () => {
      await keys?.close();
      if (!conn) return;
      if (backend === 'postgres') await conn.pg.query(`DROP TABLE IF EXISTS "${names.table}", "${names.limiterTable}"`);
      if (backend === 'mysql') await conn.mysql.query(`DROP TABLE IF EXISTS \`${names.table}\`, \`${names.limiterTable}\``);
      if (backend === 'redis') {
        for (const prefix of [names.prefix, names.limiterPrefix]) {
          let cursor = '0';
          do {
            const [next, found] = await conn.redis.scan(cursor, 'MATCH', `${prefix.replace(/[{}]/g, '\\$&')}*`, 'COUNT', 1000);
            if (found.length > 0) await conn.redis.del(...found);
            cursor = next;
          } while (cursor !== '0');
        }
      }
      await conn.close();
    }, 60_000);

    const spawnAll = async (env: Record<string, string>): Promise<ChildReport[]> => {
      const base = {
        BACKEND: backend,
        TARGET: target as string,
        TABLE: names.table,
        LIMITER_TABLE: names.limiterTable,
        PREFIX: names.prefix,
        LIMITER_PREFIX: names.limiterPrefix,
      };
      const children = Array.from({ length: PROCESSES }, () => runChild({ ...base, CALLERS: String(CALLERS), ...env }));
      return Promise.all(children.map((c) => c.report));
    };

    it('admits at most the limit per window and at least limit - 1 under demand', async () => {
      const { token } = await keys.create({ name: 'rate', scopes: ['all'], rateLimit: { limit: LIMIT, windowMs: WINDOW_MS } });
      // Start on a window boundary, after the children have had time to connect.
      const startAt = (Math.floor(Date.now() / WINDOW_MS) + 3) * WINDOW_MS;
      const reports = await spawnAll({ MODE: 'rate', TOKEN: token, START_AT: String(startAt), DURATION_MS: String(RATE_MS) });
      expect(reports.map((r) => [r.errors, r.firstError])).toEqual(reports.map(() => [0, null]));
      const attempts = reports.reduce((n, r) => n + r.attempts, 0);
      const windows = checkWindows(reports, startAt, startAt + RATE_MS);
      // Demand far above the limit: the test would prove nothing otherwise.
      expect(attempts).toBeGreaterThan(LIMIT * windows.size * 3);
    }, 60_000);

    it(`admits exactly the uses of a quota out of ${PROCESSES * CALLERS * ATTEMPTS} concurrent attempts, never below zero`, async () => {
      const { key, token } = await keys.create({ name: 'quota', scopes: ['all'], remaining: USES });
      const startAt = Date.now() + 2_000;
      const reports = await spawnAll({ MODE: 'quota', TOKEN: token, START_AT: String(startAt), ATTEMPTS: String(ATTEMPTS) });
      expect(reports.map((r) => [r.errors, r.firstError])).toEqual(reports.map(() => [0, null]));
      expect(reports.reduce((n, r) => n + r.attempts, 0)).toBe(PROCESSES * CALLERS * ATTEMPTS);
      expect(reports.reduce((n, r) => n + r.admitted, 0)).toBe(USES);
      expect(reports.reduce((n, r) => n + (r.codes.USAGE_EXCEEDED ?? 0), 0)).toBe(PROCESSES * CALLERS * ATTEMPTS - USES);
      expect((await keys.get(key.id))?.remaining).toBe(0);
    }, 120_000);
  });
}
