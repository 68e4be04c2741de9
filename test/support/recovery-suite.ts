// The recovery suite of one network store: a 60 s blackhole at 500 verifies/s leaves the heap bounded, and service resumes within a second of the heal; refused and reset connections too.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyManager } from '../../src/index.js';
import {
  heapAfterGc,
  type NetworkStore,
  openProxiedStore,
  type Outcome,
  type ProxiedStore,
  sleep,
  STORE_TIMEOUT_MS,
  steadyLoad,
} from './faults.js';
import { serviceUrl } from './services.js';

/**
 * The outage the targets are stated for (docs/faults.md): a 60 s blackhole at 500 requests per
 * second. `KEYGATE_FAULT_BLACKHOLE_MS` shortens it (CI runs the full minute on one Node.js).
 */
const BLACKHOLE_MS = Number(process.env.KEYGATE_FAULT_BLACKHOLE_MS ?? 60_000);
const RATE = 500;
const AFTER_HEAL_MS = 5000;
const KEYS = 20;

/** What the load saw around a heal at `healedAt`. */
function recovery(outcomes: readonly Outcome[], healedAt: number) {
  const after = outcomes.filter((o) => o.end >= healedAt);
  const firstOk = after.filter((o) => o.status === 200).reduce((min, o) => Math.min(min, o.end), Number.POSITIVE_INFINITY);
  const lateFailures = outcomes.filter((o) => o.start >= healedAt + 2000 && o.status !== 200);
  return { firstOkMs: firstOk - healedAt, lateFailures: lateFailures.length, afterHeal: after.length };
}

/** The recovery tests of `kind`, skipped when its server is not configured. */
export function recoverySuite(kind: NetworkStore): void {
  describe.skipIf(!serviceUrl(kind))(`${kind}: recovery from a blackhole`, () => {
    let opened: ProxiedStore;
    beforeAll(async () => {
      opened = await openProxiedStore(kind);
    });
    afterAll(() => opened?.cleanup());

    it(
      `a ${BLACKHOLE_MS / 1000} s blackhole at ${RATE} verifies/s: heap grows by at most 10 MB, the first 200 comes within 1 s of the heal, no failure after 2 s`,
      async () => {
        const errors: unknown[] = [];
        const keys = createKeyManager({ store: opened.store, storeTimeoutMs: STORE_TIMEOUT_MS, onError: (e) => errors.push(e) });
        const tokens: string[] = [];
        for (let i = 0; i < KEYS; i++) tokens.push((await keys.create({ name: `load ${i}`, scopes: ['all'] })).token);
        const load = steadyLoad(keys, tokens, RATE);
        await sleep(2000);
        expect(load.outcomes.every((o) => o.status === 200)).toBe(true);

        const heapBefore = heapAfterGc();
        const frozenAt = performance.now();
        opened.proxy.freeze();
        await sleep(BLACKHOLE_MS);
        const heapDuring = heapAfterGc();
        const healedAt = performance.now();
        opened.proxy.thaw();
        await sleep(AFTER_HEAL_MS);
        await load.stop();
        await keys.close();

        // Requests that started and ended within the blackhole (a trial call in flight at the heal may end in a 200).
        const during = load.outcomes.filter((o) => o.start >= frozenAt && o.end < healedAt);
        const { firstOkMs, lateFailures, afterHeal } = recovery(load.outcomes, healedAt);
        const growthMb = (heapDuring - heapBefore) / 1e6;
        console.log(
          `${kind}: ${BLACKHOLE_MS / 1000} s blackhole at ${RATE}/s: heap ${growthMb >= 0 ? '+' : ''}${growthMb.toFixed(1)} MB; ` +
            `${during.filter((o) => o.status === 503).length} of ${during.length} answered 503 during it ` +
            `(${during.filter((o) => o.status === 503 && o.end - o.start < 50).length} at once); ` +
            `first 200 ${firstOkMs.toFixed(0)} ms after the heal; ${lateFailures} failures later than 2 s after it (${afterHeal} requests after the heal)`,
        );
        // Never let through, never a 401 or 500: every request within the blackhole got 503.
        expect(during.every((o) => o.status === 503)).toBe(true);
        expect(load.outcomes.every((o) => o.status === 200 || o.status === 503)).toBe(true);
        expect(growthMb).toBeLessThanOrEqual(10);
        expect(firstOkMs).toBeLessThanOrEqual(1000);
        expect(lateFailures).toBe(0);
      },
      BLACKHOLE_MS + 60_000,
    );

    it('refused, then reset connections: service resumes within 1 s of the fault ending', async () => {
      const keys = createKeyManager({ store: opened.store, storeTimeoutMs: STORE_TIMEOUT_MS });
      const tokens = [(await keys.create({ name: 'refused', scopes: ['all'] })).token];
      for (const fault of ['refuse', 'reset'] as const) {
        const load = steadyLoad(keys, tokens, 200);
        await sleep(500);
        if (fault === 'refuse') await opened.proxy.down();
        else opened.proxy.reset(true);
        await sleep(3000);
        const healedAt = performance.now();
        if (fault === 'refuse') await opened.proxy.up();
        else opened.proxy.pass();
        await sleep(3000);
        await load.stop();
        const { firstOkMs, lateFailures } = recovery(load.outcomes, healedAt);
        console.log(
          `${kind}: ${fault}: first 200 ${firstOkMs.toFixed(0)} ms after the fault ended; ${lateFailures} failures later than 2 s after it`,
        );
        expect(load.outcomes.some((o) => o.status === 500 || o.status === 401)).toBe(false);
        expect(firstOkMs).toBeLessThanOrEqual(1000);
        expect(lateFailures).toBe(0);
      }
      await keys.close();
    }, 30_000);
  });
}
