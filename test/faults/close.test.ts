// close() during an outage finishes within storeTimeoutMs and reports the last-used times it gave up; verifies in flight at close() keep their last-used time, on every store.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { sqliteStore } from '../../adapters/sqlite/index.js';
import { createKeyManager, type KeyStore, StoreUnavailableError, type TouchEntry } from '../../src/index.js';
import { DelegatingStore, HeldStore } from '../support/counting-store.js';
import { NETWORK_STORES, openProxiedStore, sleep } from '../support/faults.js';
import { serviceUrl } from '../support/services.js';

/** Slack on top of `storeTimeoutMs` for a bounded close(): the bus unsubscribe allowance and timers. */
const MARGIN_MS = 300;

/** The close reports among what `onError` received. */
function closeReports(errors: readonly unknown[]): StoreUnavailableError[] {
  return errors.filter((e): e is StoreUnavailableError => e instanceof StoreUnavailableError && e.operation === 'close');
}

/** The count of last-used times a close report says were not written (0 if it does not say). */
function notWritten(report: StoreUnavailableError | undefined): number {
  const match = /(\d+) last-used times were not written/.exec(report?.message ?? '');
  return match ? Number(match[1]) : 0;
}

/** How long `work` took, in ms. */
async function timed(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

describe('close() during a blackhole is bounded by storeTimeoutMs', () => {
  const STORE_TIMEOUT_MS = 1000;
  const KEYS = 20;
  const OUTAGE_MS = 6000;

  // With the breaker on, most flushes in the outage fail at once; with it off, every one waits
  // storeTimeoutMs, so flushes queued behind each other would hold close() up for each one.
  const BREAKERS = [
    { label: 'breaker on', breaker: undefined },
    { label: 'breaker off', breaker: false as const },
  ];
  for (const kind of NETWORK_STORES) {
    for (const { label, breaker } of BREAKERS) {
      it.skipIf(!serviceUrl(kind))(
        `${kind}, ${label}: after ${OUTAGE_MS / 1000} s of cached verifies and failing flushes, close() takes at most ${STORE_TIMEOUT_MS} + ${MARGIN_MS} ms and reports the times not written`,
        async () => {
          const opened = await openProxiedStore(kind, STORE_TIMEOUT_MS);
          try {
            const errors: unknown[] = [];
            const keys = createKeyManager({
              store: opened.store,
              storeTimeoutMs: STORE_TIMEOUT_MS,
              lastUsedFlushMs: 100,
              cache: { ttlMs: 60_000 },
              breaker,
              onError: (e) => errors.push(e),
            });
            const tokens: string[] = [];
            for (let i = 0; i < KEYS; i++) tokens.push((await keys.create({ name: `close ${i}`, scopes: ['all'] })).token);
            for (const token of tokens) expect((await keys.verify(token)).valid).toBe(true);
            await keys.flush();

            opened.proxy.freeze();
            let rounds = 0;
            const until = performance.now() + OUTAGE_MS;
            while (performance.now() < until) {
              // Served from the cache: the store is never asked, but every verify leaves a last-used time.
              for (const token of tokens) expect((await keys.verify(token)).valid).toBe(true);
              rounds++;
              await sleep(50);
            }
            const flushFailures = errors.length;
            // Waited for at most five times the bound, so that a close() far past it fails with its duration.
            const closeMs = await timed(() => Promise.race([keys.close(), sleep(5 * STORE_TIMEOUT_MS)]));
            const reports = closeReports(errors);
            console.log(
              `${kind}, ${label}: ${rounds} rounds of ${KEYS} cached verifies in a ${OUTAGE_MS / 1000} s blackhole (${flushFailures} flush failures reported); ` +
                `close() took ${closeMs.toFixed(0)} ms (storeTimeoutMs ${STORE_TIMEOUT_MS}); close report: ${reports[0]?.message ?? 'none'}`,
            );
            expect(closeMs).toBeLessThanOrEqual(STORE_TIMEOUT_MS + MARGIN_MS);
            expect(reports).toHaveLength(1);
            expect(notWritten(reports[0])).toBeGreaterThan(0);
            expect(notWritten(reports[0])).toBeLessThanOrEqual(KEYS);
          } finally {
            opened.proxy.thaw();
            await opened.cleanup();
          }
        },
        OUTAGE_MS + 30_000,
      );
    }
  }
});

/** A store for the in-flight test: lookups are held from `hold()` until `release()`; `read` sees the data without the hold. */
interface Holdable {
  readonly store: KeyStore;
  readonly read: KeyStore;
  hold(): void;
  release(): void;
  cleanup(): Promise<void>;
}

const IN_FLIGHT = 40;
/** Long enough that a lookup held for 100 ms and the final flush both finish well within it. */
const IN_FLIGHT_TIMEOUT_MS = 3000;

/** Starts IN_FLIGHT verifies of distinct keys, held at the store, calls close() at once, releases them 100 ms later. */
async function verifiesInFlightAtClose(name: string, open: () => Promise<Holdable>): Promise<void> {
  const held = await open();
  try {
    const errors: unknown[] = [];
    const keys = createKeyManager({ store: held.store, storeTimeoutMs: IN_FLIGHT_TIMEOUT_MS, onError: (e) => errors.push(e) });
    const ids: string[] = [];
    const tokens: string[] = [];
    for (let i = 0; i < IN_FLIGHT; i++) {
      const created = await keys.create({ name: `in flight ${i}`, scopes: ['all'] });
      ids.push(created.key.id);
      tokens.push(created.token);
    }

    held.hold();
    let settled = 0;
    const verifies = tokens.map((token) =>
      keys.verify(token).finally(() => {
        settled++;
      }),
    );
    const closing = keys.close();
    await sleep(100);
    const settledBeforeRelease = settled;
    held.release();
    const results = await Promise.all(verifies);
    const closeMs = await timed(() => closing);

    const stored = await Promise.all(ids.map((id) => held.read.findById(id)));
    const written = stored.filter((record) => record?.lastUsedAt instanceof Date).length;
    console.log(
      `${name}: ${IN_FLIGHT} verifies in flight at close(): ${written} of ${IN_FLIGHT} last-used times written; ` +
        `close() ended ${closeMs.toFixed(0)} ms after the verifies; onError got ${errors.length} (${closeReports(errors).length} close reports)`,
    );
    // They were still waiting on the store when close() was called, and all of them succeeded.
    expect(settledBeforeRelease).toBe(0);
    expect(results.every((r) => r.valid)).toBe(true);
    expect(written).toBe(IN_FLIGHT);
    expect(closeReports(errors)).toEqual([]);
    expect(errors).toEqual([]);
  } finally {
    held.release();
    await held.cleanup();
  }
}

describe('verifies in flight at close() keep their last-used time', () => {
  for (const kind of NETWORK_STORES) {
    it.skipIf(!serviceUrl(kind))(`${kind}: ${IN_FLIGHT} of ${IN_FLIGHT} written, no close report`, () =>
      verifiesInFlightAtClose(kind, async () => {
        const opened = await openProxiedStore(kind, IN_FLIGHT_TIMEOUT_MS);
        return {
          store: opened.store,
          read: opened.direct,
          hold: () => opened.proxy.freeze(),
          release: () => opened.proxy.thaw(),
          cleanup: () => opened.cleanup(),
        };
      }),
    );
  }

  it(`SQLite (better-sqlite3 12, file): ${IN_FLIGHT} of ${IN_FLIGHT} written, no close report`, () =>
    verifiesInFlightAtClose('sqlite', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'keygate-close-'));
      const db = new Database(join(dir, 'keys.db'));
      db.pragma('journal_mode = WAL');
      const inner = sqliteStore(db);
      await inner.migrate();
      const store = new HeldStore(inner);
      return {
        store,
        read: inner,
        hold: () => store.hold(),
        release: () => store.release(),
        async cleanup() {
          db.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }));

  it(`memory (asynchronous): ${IN_FLIGHT} of ${IN_FLIGHT} written, no close report`, () =>
    verifiesInFlightAtClose('memory', async () => {
      const inner = memoryStore();
      const store = new HeldStore(inner);
      return { store, read: inner, hold: () => store.hold(), release: () => store.release(), cleanup: async () => {} };
    }));
});

/** A memory store whose `touch` never settles; it records what each call was given. */
class TouchNeverAnswers extends DelegatingStore {
  readonly touches: TouchEntry[][] = [];
  override touch(entries: readonly TouchEntry[]): Promise<void> {
    this.touches.push([...entries]);
    return new Promise<void>(() => {});
  }
}

describe('close() when the store never answers a last-used write', () => {
  const STORE_TIMEOUT_MS = 500;

  async function managerWithKeys(store: TouchNeverAnswers, lastUsedFlushMs: number, count: number) {
    const errors: unknown[] = [];
    const keys = createKeyManager({ store, storeTimeoutMs: STORE_TIMEOUT_MS, lastUsedFlushMs, onError: (e) => errors.push(e) });
    const tokens: string[] = [];
    for (let i = 0; i < count; i++) tokens.push((await keys.create({ name: `hang ${i}`, scopes: ['all'] })).token);
    return { keys, tokens, errors };
  }

  it(`pending times only: close() ends within ${STORE_TIMEOUT_MS} + ${MARGIN_MS} ms and reports every one`, async () => {
    const store = new TouchNeverAnswers();
    const { keys, tokens, errors } = await managerWithKeys(store, 60_000, 5);
    for (const token of tokens) expect((await keys.verify(token)).valid).toBe(true);
    expect(store.touches).toEqual([]);

    const closeMs = await timed(() => keys.close());
    const reports = closeReports(errors);
    console.log(
      `memory, touch never settles, 5 pending: close() took ${closeMs.toFixed(0)} ms; ${reports[0]?.message ?? 'no close report'}`,
    );
    expect(store.touches).toHaveLength(1);
    expect(closeMs).toBeLessThanOrEqual(STORE_TIMEOUT_MS + MARGIN_MS);
    expect(reports).toHaveLength(1);
    expect(notWritten(reports[0])).toBe(5);
  });

  it(`a flush in flight and more pending: close() ends within ${STORE_TIMEOUT_MS} + ${MARGIN_MS} ms and reports both`, async () => {
    const store = new TouchNeverAnswers();
    const { keys, tokens, errors } = await managerWithKeys(store, 20, 5);
    for (const token of tokens.slice(0, 3)) expect((await keys.verify(token)).valid).toBe(true);
    const flushStarted = performance.now() + 1000;
    while (store.touches.length === 0 && performance.now() < flushStarted) await sleep(5);
    expect(store.touches).toHaveLength(1);
    for (const token of tokens.slice(3)) expect((await keys.verify(token)).valid).toBe(true);

    const closeMs = await timed(() => keys.close());
    const reports = closeReports(errors);
    console.log(
      `memory, touch never settles, 3 in flight + 2 pending: close() took ${closeMs.toFixed(0)} ms; ${reports[0]?.message ?? 'no close report'}`,
    );
    expect(closeMs).toBeLessThanOrEqual(STORE_TIMEOUT_MS + MARGIN_MS);
    expect(reports).toHaveLength(1);
    expect(notWritten(reports[0])).toBe(5);
  });
});
