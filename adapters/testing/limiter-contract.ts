// The limiter contract suite: what every RateLimiter must do, checked against slide(), for any test runner.

import assert from 'node:assert/strict';
import { ValidationError } from '../../src/errors.js';
import { type LimiterAnswer, type RateLimitBucket, type RateLimiter, slide, type WindowState } from '../../src/rate-limit.js';
import { hooksOf, type TestRunner } from './runner.js';

/** What your setup function hands the suite: a limiter with fresh counters, and how to remove them. */
export interface LimiterFixture {
  limiter: RateLimiter;
  /** Drops what the setup created (tables, key prefixes) and closes its clients. @default none */
  cleanup?: () => Promise<void>;
}

/** Options of {@link limiterContractSuite}. */
export interface LimiterContractOptions {
  /** Shown in the report as `<name>: limiter contract`. @default 'RateLimiter' */
  name?: string;
  /** How many takes race for one counter (at least 2). @default 200 */
  concurrentTakes?: number;
  /** The timeout of each check, in ms, for runners that take one. @default 30000 */
  timeoutMs?: number;
  /** The timeout of setup and cleanup, in ms. @default 60000 */
  hookTimeoutMs?: number;
}

/** A fixed pseudo-random sequence, so a failure names a step that repeats. */
function sequence(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % n;
  };
}

/**
 * Registers the limiter contract suite: every decision equals `slide()`'s on the same inputs
 * (a long random walk of costs and clock steps, across window boundaries), takes are
 * all-or-nothing across buckets, concurrent takes of one counter admit exactly the limit, and
 * counters with similar names never share state.
 *
 * @example
 * import { describe, it, beforeAll, afterAll } from 'vitest'
 * import { memoryLimiter } from 'keygate'
 * import { limiterContractSuite } from 'keygate/testing'
 * limiterContractSuite({ describe, it, beforeAll, afterAll }, async () => ({ limiter: memoryLimiter() }), { name: 'memory' })
 */
export function limiterContractSuite(runner: TestRunner, setup: () => Promise<LimiterFixture>, options: LimiterContractOptions = {}): void {
  const { beforeAll, afterAll } = hooksOf(runner);
  const { describe, it } = runner;
  const name = options.name ?? 'RateLimiter';
  const concurrentTakes = options.concurrentTakes ?? 200;
  if (!Number.isInteger(concurrentTakes) || concurrentTakes < 2) {
    throw new ValidationError('concurrentTakes', `must be a whole number of at least 2, got ${concurrentTakes}`);
  }
  const timeoutMs = options.timeoutMs ?? 30_000;
  const hookTimeoutMs = options.hookTimeoutMs ?? 60_000;
  // Each check uses counters of its own: a run of the suite never sees another's state.
  const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  let n = 0;
  const fresh = (what: string): string => `k:${run}-${what}-${n++}`;

  describe(`${name}: limiter contract`, () => {
    let fixture: LimiterFixture | undefined;
    let limiter: RateLimiter;
    const take = async (group: string, buckets: readonly RateLimitBucket[], cost: number, now: number): Promise<LimiterAnswer> =>
      limiter.take(group, buckets, cost, now);

    beforeAll(async () => {
      fixture = await setup();
      if (!fixture || typeof fixture.limiter?.take !== 'function') {
        throw new ValidationError('setup', `(${name}) must resolve to { limiter, cleanup? } with a RateLimiter as limiter`);
      }
      limiter = fixture.limiter;
    }, hookTimeoutMs);

    afterAll(async () => {
      await fixture?.cleanup?.();
    }, hookTimeoutMs);

    it(
      'decides exactly as slide() over a long walk of costs and clock steps, across window boundaries',
      async () => {
        const key = fresh('walk');
        const bucket = { key, limit: 10, windowMs: 1000 };
        const next = sequence(7);
        let state: WindowState | null = null;
        let now = Date.UTC(2030, 0, 1) + 123;
        for (let i = 0; i < 1500; i++) {
          now += next(4) === 0 ? next(2500) : next(60);
          const cost = next(4);
          const want = slide(state, bucket.limit, bucket.windowMs, cost, now);
          const got = await take(key, [bucket], cost, now);
          assert.equal(got.allowed, want.allowed, `take ${i} (cost ${cost} at ${now})`);
          assert.deepStrictEqual(got.states[0], want.state, `state after take ${i}`);
          state = want.state;
        }
      },
      timeoutMs,
    );

    it(
      'decides exactly as slide() when clocks of several instances disagree (steps back as well as forward)',
      async () => {
        const key = fresh('skew');
        const bucket = { key, limit: 5, windowMs: 700 };
        const next = sequence(11);
        let state: WindowState | null = null;
        let now = Date.UTC(2030, 0, 1) + 77;
        for (let i = 0; i < 800; i++) {
          // Mostly forward, now and then up to two windows back, as a lagging instance would ask.
          now += next(5) === 0 ? -next(1400) : next(300);
          const cost = next(3);
          const want = slide(state, bucket.limit, bucket.windowMs, cost, now);
          const got = await take(key, [bucket], cost, now);
          assert.equal(got.allowed, want.allowed, `take ${i} (cost ${cost} at ${now})`);
          assert.deepStrictEqual(got.states[0], want.state, `state after take ${i}`);
          state = want.state;
        }
      },
      timeoutMs,
    );

    it(
      'starts a counter afresh when it is asked with another window length',
      async () => {
        const key = fresh('resized');
        const at = Date.UTC(2030, 0, 1) + 5;
        for (let i = 0; i < 2; i++) assert.equal((await take(key, [{ key, limit: 2, windowMs: 1000 }], 1, at)).allowed, true);
        assert.equal((await take(key, [{ key, limit: 2, windowMs: 1000 }], 1, at)).allowed, false);
        // Counted in windows of a second, the count means nothing in windows of ten minutes.
        const longer = { key, limit: 2, windowMs: 600_000 };
        assert.equal((await take(key, [longer], 1, at + 1)).allowed, true);
        assert.equal((await take(key, [longer], 1, at + 86_400_000)).allowed, true, 'a day later');
      },
      timeoutMs,
    );

    it(
      'gives the budget back exactly on schedule',
      async () => {
        const key = fresh('reset');
        const bucket = { key, limit: 4, windowMs: 10_000 };
        const start = Date.UTC(2030, 0, 1);
        for (let i = 0; i < 4; i++) assert.equal((await take(key, [bucket], 1, start)).allowed, true);
        assert.equal((await take(key, [bucket], 1, start + 9_999)).allowed, false, 'the window is spent');
        // In the next window the previous one weighs (10,000 - elapsed) / 10,000: one slot frees at 2,500 ms in.
        assert.equal((await take(key, [bucket], 1, start + 12_499)).allowed, false);
        assert.equal((await take(key, [bucket], 1, start + 12_500)).allowed, true);
        // Two windows later nothing weighs: the whole limit is back.
        const later = start + 30_000;
        for (let i = 0; i < 4; i++) assert.equal((await take(key, [bucket], 1, later)).allowed, true, `take ${i} at +30 s`);
        assert.equal((await take(key, [bucket], 1, later)).allowed, false);
      },
      timeoutMs,
    );

    it(
      'counts a request in every bucket or in none',
      async () => {
        const group = fresh('group');
        const wide = { key: `${group}:key`, limit: 5, windowMs: 60_000 };
        const narrow = { key: `${group}:owner`, limit: 2, windowMs: 60_000 };
        const at = Date.UTC(2030, 0, 1);
        assert.equal((await take(group, [wide, narrow], 1, at)).allowed, true);
        assert.equal((await take(group, [wide, narrow], 1, at)).allowed, true);
        const refused = await take(group, [wide, narrow], 1, at);
        assert.equal(refused.allowed, false);
        assert.equal(refused.states[0]?.count, 2, 'the bucket that had room did not count the refused request');
        assert.equal(refused.states[1]?.count, 2);
        // The wide bucket alone still has exactly 3 left.
        for (let i = 0; i < 3; i++) assert.equal((await take(group, [wide], 1, at)).allowed, true);
        assert.equal((await take(group, [wide], 1, at)).allowed, false);
      },
      timeoutMs,
    );

    it(
      `admits exactly the limit out of ${concurrentTakes} concurrent takes of one counter`,
      async () => {
        const key = fresh('race');
        const limit = Math.floor(concurrentTakes / 4);
        const bucket = { key, limit, windowMs: 60_000 };
        const at = Date.UTC(2030, 0, 1) + 1;
        const answers = await Promise.all(Array.from({ length: concurrentTakes }, () => take(key, [bucket], 1, at)));
        assert.equal(answers.filter((a) => a.allowed).length, limit);
        const counts = answers.map((a) => a.states[0]?.count ?? -1);
        assert.ok(
          counts.every((c) => c >= 1 && c <= limit),
          'every answer saw a count within the limit',
        );
      },
      timeoutMs,
    );

    it(
      'keeps counters apart whose names differ only in characters a store might treat specially',
      async () => {
        const base = fresh('names');
        const names = [`${base}`, `${base}}`, `${base}{x}`, `${base}:`, `${base} `, `${base}é`, `${base}%`, `${base}_`, `o:${base}`];
        const at = Date.UTC(2030, 0, 1);
        for (const key of names) assert.equal((await take(key, [{ key, limit: 1, windowMs: 60_000 }], 1, at)).allowed, true, key);
        for (const key of names) assert.equal((await take(key, [{ key, limit: 1, windowMs: 60_000 }], 1, at)).allowed, false, key);
      },
      timeoutMs,
    );
  });
}
