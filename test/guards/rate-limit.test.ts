// Rate limits and quotas through every framework: 429 with Retry-After, and the RateLimit fields on passes and refusals alike.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { createGuardCore } from '../../src/http.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import type { RateLimiter } from '../../src/rate-limit.js';
import type { CreateKeyInput } from '../../src/types.js';
import { FRAMEWORKS, type RunningApp } from './apps.js';
import type { Reply } from './client.js';

const MINUTE = 60_000;
const HOUR = 3_600_000;
/** A multiple of every window used here (60 s and 90.5 s): at such an instant every window starts. */
const ALL_WINDOWS = 10_860_000;

const RATE_LIMITED = { error: { code: 'rate_limited', message: 'The API key has made too many requests; retry later.' } };
const USAGE_EXCEEDED = { error: { code: 'usage_exceeded', message: 'The API key has no uses left.' } };
const UNAVAILABLE = { error: { code: 'key_store_unavailable', message: 'The API key store is unavailable; retry later.' } };

/** The rate-limit headers of a reply, as the client sees them. */
function fields(reply: Reply): { policy: unknown; limit: unknown; retryAfter: unknown } {
  return { policy: reply.headers['ratelimit-policy'], limit: reply.headers.ratelimit, retryAfter: reply.headers['retry-after'] };
}

describe.each(FRAMEWORKS)('$name: rate limits and quotas', (framework) => {
  let clock = Date.UTC(2030, 0, 1);
  let keys: KeyManager;
  let app: RunningApp;

  /** A new key of this shape, the clock moved on to an instant where every window starts. */
  const freshKey = async (shape: Omit<CreateKeyInput, 'name' | 'scopes'>): Promise<string> => {
    clock = (Math.floor(clock / ALL_WINDOWS) + 1) * ALL_WINDOWS;
    return (await keys.create({ name: 'limited', scopes: ['orders:list'], ...shape })).token;
  };
  const call = (token: string) => app.send({ headers: { authorization: `Bearer ${token}` } });

  beforeAll(async () => {
    keys = createKeyManager({
      store: memoryStore(),
      now: () => clock,
      rateLimits: { owner: (ownerId) => (ownerId === 'shop-9' ? { limit: 5, windowMs: MINUTE } : null) },
    });
    app = await framework.start({ keys });
  });
  afterAll(async () => {
    await app.close();
  });

  it('limit 3 per minute: three 200s counting down r=2,1,0, then 429 with Retry-After and the fields', async () => {
    const token = await freshKey({ rateLimit: { limit: 3, windowMs: MINUTE } });
    for (const remaining of [2, 1, 0]) {
      const reply = await call(token);
      expect(reply.status).toBe(200);
      expect(fields(reply)).toEqual({ policy: '"key";q=3;w=60', limit: `"key";r=${remaining};t=60`, retryAfter: undefined });
    }
    const refused = await call(token);
    expect(refused.status).toBe(429);
    expect(refused.json).toEqual(RATE_LIMITED);
    expect(refused.headers['content-type']).toMatch(/^application\/json/);
    expect(refused.headers['www-authenticate']).toBeUndefined();
    // The three requests slide out of the last minute 20 s into the next window: 80 s from now.
    expect(fields(refused)).toEqual({ policy: '"key";q=3;w=60', limit: '"key";r=0;t=80', retryAfter: '80' });

    clock += 79_999;
    expect((await call(token)).status).toBe(429);
    clock += 1;
    const again = await call(token);
    expect(again.status).toBe(200);
    // Two thirds of the previous window still count: this request took the one unit that slid out.
    expect(fields(again)).toEqual({ policy: '"key";q=3;w=60', limit: '"key";r=0;t=40', retryAfter: undefined });
  });

  it('a key and its owner limited: one list member per limit, each named by its scope', async () => {
    const token = await freshKey({ ownerId: 'shop-9', rateLimit: { limit: 3, windowMs: MINUTE } });
    const first = await call(token);
    expect(first.status).toBe(200);
    expect(fields(first)).toEqual({
      policy: '"key";q=3;w=60, "owner";q=5;w=60',
      limit: '"key";r=2;t=60, "owner";r=4;t=60',
      retryAfter: undefined,
    });
    // A second key of the same owner spends the owner's budget too.
    const sibling = (await keys.create({ name: 'sibling', scopes: ['orders:list'], ownerId: 'shop-9' })).token;
    for (const remaining of [3, 2, 1, 0]) {
      const reply = await call(sibling);
      expect(reply.status).toBe(200);
      expect(fields(reply)).toEqual({ policy: '"owner";q=5;w=60', limit: `"owner";r=${remaining};t=60`, retryAfter: undefined });
    }
    const refused = await call(token);
    expect(refused.status).toBe(429);
    expect(refused.json).toEqual(RATE_LIMITED);
    // The key's own limit would admit it (t is its window's end); the owner's refuses it for 72 s.
    expect(fields(refused)).toEqual({
      policy: '"key";q=3;w=60, "owner";q=5;w=60',
      limit: '"key";r=2;t=60, "owner";r=0;t=72',
      retryAfter: '72',
    });
  });

  it('a window that is not whole seconds is announced rounded up, and so is Retry-After', async () => {
    const token = await freshKey({ rateLimit: { limit: 1, windowMs: 500 } });
    const first = await call(token);
    expect(fields(first)).toEqual({ policy: '"key";q=1;w=1', limit: '"key";r=0;t=1', retryAfter: undefined });
    clock += 250;
    const refused = await call(token);
    expect(refused.status).toBe(429);
    // 750 ms to wait: 1 s, never 0.
    expect(fields(refused)).toEqual({ policy: '"key";q=1;w=1', limit: '"key";r=0;t=1', retryAfter: '1' });
  });

  it('a quota of 2 without refill: two 200s, then 429 usage_exceeded without Retry-After', async () => {
    const token = await freshKey({ remaining: 2 });
    for (let i = 0; i < 2; i++) {
      const reply = await call(token);
      expect(reply.status).toBe(200);
      expect(fields(reply)).toEqual({ policy: undefined, limit: undefined, retryAfter: undefined });
    }
    const refused = await call(token);
    expect(refused.status).toBe(429);
    expect(refused.json).toEqual(USAGE_EXCEEDED);
    expect(fields(refused)).toEqual({ policy: undefined, limit: undefined, retryAfter: undefined });
    clock += 365 * 24 * HOUR;
    expect((await call(token)).status).toBe(429);
  });

  it('a quota of 2 refilled hourly: 429 with Retry-After until the refill, then 200', async () => {
    const token = await freshKey({ remaining: 2, refill: { amount: 2, intervalMs: HOUR } });
    expect((await call(token)).status).toBe(200);
    clock += 600_000;
    expect((await call(token)).status).toBe(200);
    const refused = await call(token);
    expect(refused.status).toBe(429);
    expect(refused.json).toEqual(USAGE_EXCEEDED);
    // The refill is due an hour after the quota was set, 50 minutes from now.
    expect(fields(refused)).toEqual({ policy: undefined, limit: undefined, retryAfter: '3000' });
    clock += 3_000_000;
    expect((await call(token)).status).toBe(200);
  });

  it("a quota refused under a rate limit carries the limit's fields, the refused request counted", async () => {
    const token = await freshKey({ remaining: 1, rateLimit: { limit: 10, windowMs: 90_500 } });
    const first = await call(token);
    expect(first.status).toBe(200);
    expect(fields(first)).toEqual({ policy: '"key";q=10;w=91', limit: '"key";r=9;t=91', retryAfter: undefined });
    const refused = await call(token);
    expect(refused.status).toBe(429);
    expect(refused.json).toEqual(USAGE_EXCEEDED);
    expect(fields(refused)).toEqual({ policy: '"key";q=10;w=91', limit: '"key";r=8;t=91', retryAfter: undefined });
  });

  it('a key without limits gets none of the fields', async () => {
    const token = await freshKey({});
    const reply = await call(token);
    expect(reply.status).toBe(200);
    expect(fields(reply)).toEqual({ policy: undefined, limit: undefined, retryAfter: undefined });
  });
});

describe.each(FRAMEWORKS)('$name with a failing rate limiter', (framework) => {
  let keys: KeyManager;
  let app: RunningApp;
  let limitedToken: string;
  let plainToken: string;
  let takes = 0;

  beforeAll(async () => {
    const limiter: RateLimiter = {
      take: () => {
        takes++;
        return Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6379'));
      },
    };
    keys = createKeyManager({ store: memoryStore(), rateLimits: { limiter } });
    limitedToken = (await keys.create({ name: 'limited', scopes: ['orders:list'], rateLimit: { limit: 100, windowMs: MINUTE } })).token;
    plainToken = (await keys.create({ name: 'plain', scopes: ['orders:list'] })).token;
    app = await framework.start({ keys, guard: { retryAfterSeconds: 7 } });
  });
  afterAll(async () => {
    await app.close();
  });

  it('answers 503 with Retry-After, never 200, for a key whose limit cannot be checked', async () => {
    const before = takes;
    for (let i = 0; i < 3; i++) {
      const reply = await app.send({ headers: { 'x-api-key': limitedToken } });
      expect(reply.status).toBe(503);
      expect(reply.json).toEqual(UNAVAILABLE);
      expect(reply.headers['retry-after']).toBe('7');
      expect(reply.text).not.toContain('6379');
    }
    expect(takes).toBeGreaterThan(before);
  });

  it('lets a key without a limit through: the limiter is not asked', async () => {
    const before = takes;
    const reply = await app.send({ headers: { 'x-api-key': plainToken } });
    expect(reply.status).toBe(200);
    expect(takes).toBe(before);
  });
});

describe('createGuardCore: the headers of a pass', () => {
  it('are one shared, frozen, empty object when no limit applied', async () => {
    const keys = createKeyManager({ store: memoryStore() });
    const { token } = await keys.create({ name: 'plain', scopes: ['orders:list'] });
    const guard = createGuardCore(keys);
    const request = { headers: { authorization: `Bearer ${token}` }, remoteAddress: '127.0.0.1' };
    const first = await guard.authenticate(request);
    const second = await guard.authenticate(request);
    expect(first.ok && second.ok).toBe(true);
    expect(first.headers).toEqual({});
    expect(Object.isFrozen(first.headers)).toBe(true);
    expect(second.headers).toBe(first.headers);
  });

  it('are an object of their own for every pass under a limit', async () => {
    const keys = createKeyManager({ store: memoryStore(), now: () => 60 * MINUTE });
    const { token } = await keys.create({ name: 'limited', scopes: ['orders:list'], rateLimit: { limit: 5, windowMs: MINUTE } });
    const guard = createGuardCore(keys);
    const request = { headers: { authorization: `Bearer ${token}` }, remoteAddress: '127.0.0.1' };
    const first = await guard.authenticate(request);
    const second = await guard.authenticate(request);
    expect(first.headers).toEqual({ 'RateLimit-Policy': '"key";q=5;w=60', RateLimit: '"key";r=4;t=60' });
    expect(second.headers).toEqual({ 'RateLimit-Policy': '"key";q=5;w=60', RateLimit: '"key";r=3;t=60' });
  });

  it('a 429 is a fresh rejection each time: an onReject edit never leaks into the next one', async () => {
    const keys = createKeyManager({ store: memoryStore(), now: () => 60 * MINUTE });
    const { token } = await keys.create({ name: 'limited', scopes: ['orders:list'], rateLimit: { limit: 1, windowMs: MINUTE } });
    const guard = createGuardCore(keys);
    const request = { headers: { authorization: `Bearer ${token}` }, remoteAddress: '127.0.0.1' };
    await guard.authenticate(request);
    const first = await guard.authenticate(request);
    if (first.ok) throw new Error('expected a refusal');
    expect(first.reason).toBe('RATE_LIMITED');
    expect(first.status).toBe(429);
    first.headers['X-Edited'] = 'yes';
    const second = await guard.authenticate(request);
    expect(second.headers).not.toHaveProperty('X-Edited');
  });
});
