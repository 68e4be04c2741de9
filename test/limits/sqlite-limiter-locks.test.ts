// The SQLite limiter meets a lock another connection holds: it waits on timers, never inside SQLite, so the
// event loop keeps running; it gives up after the connection's busy timeout and leaves no transaction open.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sqliteLimiter, type SqliteDatabase } from '../../adapters/sqlite/index.js';
import { runsHere, SQLITE_DRIVERS } from '../support/sqlite-drivers.js';
import { nodeSqlite } from './sql-backends.js';

/** Watches the event loop: `stop()` gives the longest time, in ms, between two turns since it started. */
function watchLoop(): { stop(): number } {
  let last = performance.now();
  let longest = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 5);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(longest, performance.now() - last);
    },
  };
}

/** A database as both drivers have it, for the connection that holds the lock. */
interface Holder {
  exec(sql: string): unknown;
  close(): unknown;
}

interface Driver {
  name: string;
  skip: string | null;
  open(file: string): Promise<Holder>;
  /** Whether the limiter can read and switch the busy timeout (better-sqlite3's pragma()). */
  pragma: boolean;
}

const drivers: Driver[] = [
  ...SQLITE_DRIVERS.map((driver) => ({
    name: `better-sqlite3 ${driver.major}`,
    skip: runsHere(driver) ? null : `needs Node >= ${driver.minNode}`,
    open: async (file: string) => new (await driver.load())(file) as Holder,
    pragma: true,
  })),
  {
    name: 'node:sqlite',
    skip: nodeSqlite() ? null : `needs Node >= 22.13 (this is Node ${process.versions.node})`,
    open: async (file: string) => new (nodeSqlite() as new (path: string) => Holder)(file),
    pragma: false,
  },
];

const at = Date.UTC(2030, 0, 1);

for (const driver of drivers) {
  describe.skipIf(driver.skip !== null)(
    `SQLite limiter locked by another connection (${driver.name}${driver.skip ? `: ${driver.skip}` : ''})`,
    () => {
      let dir = '';
      const open: Holder[] = [];
      const connect = async (): Promise<Holder> => {
        const db = await driver.open(join(dir, 'limits.db'));
        open.push(db);
        return db;
      };

      afterEach(() => {
        for (const db of open.splice(0)) db.close();
        if (dir) rmSync(dir, { recursive: true, force: true });
      });

      it('waits on timers for the lock, then takes one bucket and a key with its owner', async () => {
        dir = mkdtempSync(join(tmpdir(), 'keygate-limit-lock-'));
        const db = await connect();
        db.exec('PRAGMA journal_mode = WAL');
        const limiter = sqliteLimiter(db as unknown as SqliteDatabase);
        await limiter.migrate();
        const holder = await connect();
        holder.exec('BEGIN IMMEDIATE');
        holder.exec('DELETE FROM keygate_rate_limits');

        const key = { key: 'k:1', limit: 3, windowMs: 60_000 };
        const owner = { key: 'o:1', limit: 1, windowMs: 60_000 };
        const loop = watchLoop();
        let settled = 0;
        const one = limiter.take('k', [key], 1, at).finally(() => settled++);
        const both = limiter.take('k', [key, owner], 1, at).finally(() => settled++);
        const refused = Promise.all([one, both]).then(() => limiter.take('k', [key, owner], 1, at));
        await new Promise((resolve) => setTimeout(resolve, 150));
        expect(settled).toBe(0);
        // While the lock is held the event loop keeps turning (the commit below may wait for the disk).
        expect(loop.stop()).toBeLessThan(100);
        holder.exec('COMMIT');
        expect((await one).allowed).toBe(true);
        expect((await both).allowed).toBe(true);
        // The owner is spent: the key gets its request back, in the same transaction.
        expect(await refused).toEqual({
          allowed: false,
          states: [
            { window: at / 60_000, count: 2, previous: 0 },
            { window: at / 60_000, count: 1, previous: 0 },
          ],
        });
        expect((await limiter.take('k', [key], 1, at)).allowed).toBe(true);
        expect((await limiter.take('k', [key], 1, at)).allowed).toBe(false);
      });

      it.skipIf(!driver.pragma)('gives up after the busy timeout with SQLITE_BUSY, and leaves no transaction open', async () => {
        dir = mkdtempSync(join(tmpdir(), 'keygate-limit-lock-'));
        const db = await connect();
        db.exec('PRAGMA journal_mode = WAL');
        db.exec('PRAGMA busy_timeout = 200');
        const limiter = sqliteLimiter(db as unknown as SqliteDatabase);
        await limiter.migrate();
        const holder = await connect();
        holder.exec('BEGIN IMMEDIATE');
        holder.exec('DELETE FROM keygate_rate_limits');
        const key = { key: 'k:2', limit: 1, windowMs: 60_000 };
        const owner = { key: 'o:2', limit: 1, windowMs: 60_000 };
        const started = performance.now();
        await expect(limiter.take('k', [key, owner], 1, at)).rejects.toMatchObject({ code: expect.stringMatching(/^SQLITE_BUSY/) });
        expect(performance.now() - started).toBeGreaterThanOrEqual(190);
        expect((db as { inTransaction?: boolean }).inTransaction).toBe(false);
        // The connection's own busy timeout is back.
        expect((db as unknown as { pragma(s: string, o: object): unknown }).pragma('busy_timeout', { simple: true })).toBe(200);
        holder.exec('COMMIT');
        expect((await limiter.take('k', [key, owner], 1, at)).allowed).toBe(true);
        expect((await limiter.take('k', [key, owner], 1, at)).allowed).toBe(false);
      });
    },
  );
}
