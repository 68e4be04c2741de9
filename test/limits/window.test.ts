// The sliding-window counter and the quota arithmetic: exact answers with an injected clock.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { limiterContractSuite } from '../../adapters/testing/index.js';
import { describe as describeWindow, memoryLimiter, slide, type WindowState } from '../../src/rate-limit.js';
import { quotaRetryAfter, spendQuota } from '../../src/quota.js';

limiterContractSuite({ describe, it, beforeAll, afterAll }, async () => ({ limiter: memoryLimiter() }), { name: 'memoryLimiter' });

const W = 1000;

/** Replays takes of cost 1 from `state` at `now` until one is refused: how many are admitted. */
function admissible(state: WindowState | null, limit: number, now: number): number {
  let s = state;
  let n = 0;
  for (;;) {
    const r = slide(s, limit, W, 1, now);
    if (!r.allowed) return n;
    s = r.state;
    n++;
  }
}

describe('slide()', () => {
  it('never admits more than the limit in an aligned window, and at least limit - 1 under steady demand', () => {
    for (const limit of [1, 2, 7, 50]) {
      let state: WindowState | null = null;
      const perWindow = new Map<number, number>();
      // One request every W / (3 * limit) ms for 40 windows: demand is three times the limit.
      const step = W / (3 * limit);
      for (let t = 0; t < 40 * W; t += step) {
        const now = Math.floor(t);
        const r = slide(state, limit, W, 1, now);
        state = r.state;
        if (r.allowed) perWindow.set(Math.floor(now / W), (perWindow.get(Math.floor(now / W)) ?? 0) + 1);
      }
      for (const [window, admitted] of perWindow) {
        expect(admitted, `limit ${limit}, window ${window}`).toBeLessThanOrEqual(limit);
        if (window > 0) expect(admitted, `limit ${limit}, window ${window}`).toBeGreaterThanOrEqual(limit - 1);
      }
    }
  });

  it('gives a retry time after which the refused request passes, and not a millisecond before (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 700 })), { maxLength: 60 }),
        fc.integer({ min: 1, max: 60 }),
        (limit, steps, cost) => {
          let state: WindowState | null = null;
          let now = 5 * W;
          for (const [c, dt] of steps) {
            now += dt;
            state = slide(state, limit, W, c, now).state;
          }
          const r = slide(state, limit, W, cost, now);
          const d = describeWindow(r.state, limit, W, cost, now, r.allowed);
          if (r.allowed) {
            expect(d.retryAfterMs).toBe(0);
            return;
          }
          if (cost > limit) {
            expect(d.retryAfterMs).toBeNull();
            return;
          }
          const wait = d.retryAfterMs as number;
          expect(wait).toBeGreaterThan(0);
          expect(slide(r.state, limit, W, cost, now + wait).allowed).toBe(true);
          if (wait > 1) expect(slide(r.state, limit, W, cost, now + wait - 1).allowed).toBe(false);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('reports as remaining exactly the requests of cost 1 it would still admit (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 900 })), { maxLength: 50 }),
        (limit, steps) => {
          let state: WindowState | null = null;
          let now = 3 * W;
          for (const [c, dt] of steps) {
            now += dt;
            state = slide(state, limit, W, c, now).state;
          }
          const settled = slide(state, limit, W, 0, now).state;
          expect(describeWindow(settled, limit, W, 1, now, true).remaining).toBe(admissible(settled, limit, now));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('counts in the stored window when the clock is behind it', () => {
    const ahead = slide(null, 3, W, 1, 10 * W + 5).state;
    const behind = slide(ahead, 3, W, 1, 10 * W - 200);
    expect(behind.state).toEqual({ window: 10, count: 2, previous: 0 });
  });
});

describe('spendQuota()', () => {
  it('adds exactly amount per interval when the key spends it all, with no drift after 1,000 intervals', () => {
    const refill = { amount: 5, intervalMs: 3_600_000 };
    const start = Date.UTC(2030, 0, 1);
    let state = { remaining: 5, refilledAt: start as number | null };
    let spentTotal = 0;
    for (let interval = 0; interval < 1000; interval++) {
      // Use the key at a different point of each interval: the refill follows the stored time, not the use.
      const now = start + interval * refill.intervalMs + ((interval * 7919) % refill.intervalMs);
      for (;;) {
        const r = spendQuota(state, refill, 1, now);
        state = r.state;
        if (!r.spent) break;
        spentTotal++;
      }
      expect(state.remaining).toBe(0);
      expect(quotaRetryAfter(state, refill, 1, now)).toBe(start + (interval + 1) * refill.intervalMs - now);
    }
    expect(spentTotal).toBe(5 * 1000);
    expect(state.refilledAt).toBe(start + 999 * refill.intervalMs);
  });

  it('tops up, never lowers, and never goes below zero', () => {
    const refill = { amount: 10, intervalMs: 1000 };
    expect(spendQuota({ remaining: 50, refilledAt: 0 }, refill, 1, 5000).state).toEqual({ remaining: 49, refilledAt: 5000 });
    expect(spendQuota({ remaining: 2, refilledAt: 0 }, refill, 3, 999)).toEqual({ state: { remaining: 2, refilledAt: 0 }, spent: false });
    expect(spendQuota({ remaining: 2, refilledAt: 0 }, refill, 11, 5000)).toEqual({
      state: { remaining: 10, refilledAt: 5000 },
      spent: false,
    });
    expect(quotaRetryAfter({ remaining: 2, refilledAt: 0 }, refill, 11, 5000)).toBeNull();
    expect(quotaRetryAfter({ remaining: 0, refilledAt: 0 }, null, 1, 5000)).toBeNull();
  });
});
