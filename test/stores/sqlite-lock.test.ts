// SQLite locked by another process: the store waits for the lock on timers, never inside SQLite, so the event loop keeps running.
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type BetterSqlite3 from 'better-sqlite3';
import { runsHere, SQLITE_DRIVERS } from '../support/sqlite-drivers.js';
import { sqliteStore } from '../../adapters/sqlite/index.js';
import { createKeyManager, type KeyManager, StoreUnavailableError } from '../../src/index.js';

const holderScript = fileURLToPath(new URL('./fixtures/sqlite-lock-holder.mjs', import.meta.url));

/** The longest the event loop may go without a turn while the store meets a lock: far below every lock held here. */
const MAX_GAP_MS = 200;

/** Watches the event loop: `stop()` gives the longest time, in ms, between two turns since `start`. */
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

/** The SQLite error code a StoreUnavailableError carries as its cause. */
function causeCode(error: unknown): unknown {
  return ((error as Error).cause as { code?: unknown } | undefined)?.code;
}

interface Setup {
  db: BetterSqlite3.Database;
  file: string;
  keys: KeyManager;
  errors: unknown[];
  id: string;
  token: string;
}

for (const driver of SQLITE_DRIVERS) {
  const name = `better-sqlite3 ${driver.major}`;
  const runs = runsHere(driver);
  describe.skipIf(!runs)(runs ? `SQLite locked by another process (${name})` : `${name} needs Node >= ${driver.minNode}`, () => {
    let dir = '';
    let children: ChildProcess[] = [];
    let opened: Setup | null = null;

    afterEach(async () => {
      for (const child of children) if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
      children = [];
      await opened?.keys.close();
      opened?.db.close();
      opened = null;
      rmSync(dir, { recursive: true, force: true });
    });

    /** A file database in `journal` mode with a busy timeout of `timeout` ms, a key in it, and a manager with no cache. */
    async function open(journal: 'wal' | 'delete', timeout: number, storeTimeoutMs = 10_000): Promise<Setup> {
      const Database = await driver.load();
      dir = mkdtempSync(join(tmpdir(), 'keygate-sqlite-lock-'));
      const file = join(dir, 'keys.db');
      const db = new Database(file, { timeout });
      db.pragma(`journal_mode = ${journal}`);
      const store = sqliteStore(db);
      await store.migrate();
      const errors: unknown[] = [];
      const keys = createKeyManager({ store, storeTimeoutMs, lastUsedFlushMs: 60_000, onError: (error) => errors.push(error) });
      const { key, token } = await keys.create({ name: 'ERP sync', scopes: ['orders:edit'] });
      opened = { db, file, keys, errors, id: key.id, token };
      return opened;
    }

    /** Starts another process that takes the lock; resolves once it holds it, with when (performance.now()) it let go. */
    async function holdLock(file: string, mode: 'IMMEDIATE' | 'EXCLUSIVE', holdMs: number): Promise<{ released: Promise<number> }> {
      const child = fork(holderScript, [driver.pkg, file, mode, String(holdMs)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.push(child);
      const said = (type: string) =>
        new Promise<number>((resolve, reject) => {
          const onMessage = (message: { type?: string }) => {
            if (message.type !== type) return;
            child.off('exit', onExit);
            resolve(performance.now());
          };
          const onExit = (code: number | null) => reject(new Error(`the lock holder exited with ${code} before '${type}'`));
          child.on('message', onMessage);
          child.once('exit', onExit);
        });
      const released = said('released');
      released.catch(() => {});
      await said('locked');
      return { released };
    }

    it('verifies while another process holds the write lock, and a last-used flush fails within 50 ms instead of freezing', async () => {
      const { db, file, keys, errors, id, token } = await open('wal', 4000);
      const { released } = await holdLock(file, 'IMMEDIATE', 2000);
      const loop = watchLoop();
      const started = performance.now();
      expect((await keys.verify(token, { scope: 'orders:edit' })).valid).toBe(true);
      await keys.flush();
      const flushed = performance.now();
      const gap = loop.stop();
      expect(gap).toBeLessThan(MAX_GAP_MS);
      expect(flushed - started).toBeLessThan(1000);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(StoreUnavailableError);
      expect(causeCode(errors[0])).toBe('SQLITE_BUSY');
      expect(db.pragma('busy_timeout', { simple: true })).toBe(4000);
      // Once the lock is gone, the next flush writes.
      await released;
      expect((await keys.verify(token)).valid).toBe(true);
      await keys.flush();
      expect(errors).toHaveLength(1);
      expect((await keys.get(id))?.lastUsedAt).toBeInstanceOf(Date);
      expect(db.pragma('busy_timeout', { simple: true })).toBe(4000);
    });

    it('a write started while another process holds the lock waits for it on timers and lands after it is released', async () => {
      const { db, file, keys, id } = await open('wal', 5000);
      const { released } = await holdLock(file, 'IMMEDIATE', 1500);
      const loop = watchLoop();
      const started = performance.now();
      const updated = await keys.update(id, { name: 'renamed' });
      const done = performance.now();
      const gap = loop.stop();
      expect(gap).toBeLessThan(MAX_GAP_MS);
      expect(updated.name).toBe('renamed');
      // It waited for the lock (held 1.5 s from before the update started), not failed early.
      expect(done - started).toBeGreaterThan(1000);
      await released;
      expect((await keys.get(id))?.name).toBe('renamed');
      expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
    });

    it('a write gives up with StoreUnavailableError after the busy timeout when the lock is held longer, without freezing', async () => {
      const { db, file, keys, id } = await open('wal', 500);
      const { released } = await holdLock(file, 'IMMEDIATE', 2500);
      const loop = watchLoop();
      const started = performance.now();
      const error = await keys.update(id, { name: 'renamed' }).catch((e: unknown) => e);
      const failed = performance.now();
      const gap = loop.stop();
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect(causeCode(error)).toBe('SQLITE_BUSY');
      expect(gap).toBeLessThan(MAX_GAP_MS);
      // About the busy timeout: waited for it, and gave up long before the lock went.
      expect(failed - started).toBeGreaterThanOrEqual(450);
      expect(failed - started).toBeLessThan(2000);
      expect(db.pragma('busy_timeout', { simple: true })).toBe(500);
      await released;
      expect((await keys.get(id))?.name).toBe('ERP sync');
    });

    it('in rollback-journal mode, verify waits on timers for an exclusive lock held elsewhere and succeeds once it is released', async () => {
      const { db, file, keys, token } = await open('delete', 5000);
      expect(db.pragma('journal_mode', { simple: true })).toBe('delete');
      const { released } = await holdLock(file, 'EXCLUSIVE', 1500);
      // The exclusive lock keeps readers out: a read on a connection that does not wait fails at once.
      const probe = new (await driver.load())(file, { timeout: 0 });
      expect(() => probe.prepare('SELECT count(*) FROM keygate_keys').get()).toThrow(expect.objectContaining({ code: 'SQLITE_BUSY' }));
      probe.close();
      const loop = watchLoop();
      const started = performance.now();
      const result = await keys.verify(token, { scope: 'orders:edit' });
      const done = performance.now();
      const gap = loop.stop();
      expect(gap).toBeLessThan(MAX_GAP_MS);
      expect(result.valid).toBe(true);
      expect(done - started).toBeGreaterThan(1000);
      await released;
      expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
    });
  });
}
