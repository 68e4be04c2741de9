// Rate limits and quotas through the manager: order of checks, codes, retry times, owner and default limits, failures.
import { describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import {
  createKeyManager,
  type KeyEvent,
  type KeyManagerOptions,
  type LimiterAnswer,
  memoryLimiter,
  type RateLimiter,
  StoreUnavailableError,
  ValidationError,
  type VerifyResult,
} from '../../src/index.js';
import { countingStore } from '../support/counting-store.js';

const START = Date.UTC(2030, 5, 1);

function setup(extra: Partial<KeyManagerOptions> = {}) {
  let t = START;
  const store = countingStore(memoryStore());
  const takes: number[] = [];
  const inner = memoryLimiter();
  // Counts takes; not in-process-marked, so it also exercises the deadline path.
  const limiter: RateLimiter = {
    take: async (group, buckets, cost, now) => {
      takes.push(cost);
      return inner.take(group, buckets, cost, now);
    },
  };
  const events: KeyEvent[] = [];
  const keys = createKeyManager({
    store,
    now: () => t,
    onEvent: (e) => events.push(e),
    ...extra,
    rateLimits: { limiter, ...extra.rateLimits },
  });
  return { keys, store, takes, events, advance: (ms: number) => void (t += ms), now: () => t };
}

function refusal(result: VerifyResult): { code: string; retryAfterMs: number | null | undefined } {
  expect(result.valid).toBe(false);
  if (result.valid) throw new Error('unreachable');
  return { code: result.code, retryAfterMs: result.retryAfterMs };
}

describe('rate limit of a key', () => {
  it('admits the limit per window with the remaining budget, then RATE_LIMITED with the exact wait', async () => {
    const { keys, advance } = setup();
    const { token } = await keys.create({ name: 'limited', scopes: ['all'], rateLimit: { limit: 3, windowMs: 1000 } });
    const remaining: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await keys.verify(token);
      expect(r.valid).toBe(true);
      if (r.valid) remaining.push(r.limits?.[0]?.remaining ?? -1);
    }
    expect(remaining).toEqual([2, 1, 0]);
    const refused = await keys.verify(token);
    expect(refusal(refused)).toEqual({ code: 'RATE_LIMITED', retryAfterMs: 1000 + 334 });
    expect(refused.valid ? null : refused.limits).toEqual([
      { scope: 'key', limit: 3, windowMs: 1000, remaining: 0, resetMs: 1000, retryAfterMs: 1334 },
    ]);
    advance(1333);
    expect((await keys.verify(token)).valid).toBe(false);
    advance(1);
    expect((await keys.verify(token)).valid).toBe(true);
  });

  it('keeps the count through a new limit, and starts afresh with a new window', async () => {
    const { keys } = setup();
    const { key, token } = await keys.create({ name: 'edited', scopes: ['all'], rateLimit: { limit: 2, windowMs: 1000 } });
    await keys.verify(token);
    await keys.verify(token);
    expect(refusal(await keys.verify(token)).code).toBe('RATE_LIMITED');
    await keys.update(key.id, { rateLimit: { limit: 3, windowMs: 1000 } });
    expect((await keys.verify(token)).valid).toBe(true);
    expect(refusal(await keys.verify(token)).code).toBe('RATE_LIMITED');
    // Counted in windows of another length, the old count means nothing: a window of a minute starts at zero.
    await keys.update(key.id, { rateLimit: { limit: 3, windowMs: 60_000 } });
    for (let i = 0; i < 3; i++) expect((await keys.verify(token)).valid).toBe(true);
    expect(refusal(await keys.verify(token)).code).toBe('RATE_LIMITED');
  });

  it('applies the manager default to keys without a limit of their own, and a key limit over it', async () => {
    const { keys } = setup({ rateLimits: { default: { limit: 1, windowMs: 60_000 } } });
    const { token: plain } = await keys.create({ name: 'plain', scopes: ['all'] });
    const { token: own } = await keys.create({ name: 'own', scopes: ['all'], rateLimit: { limit: 2, windowMs: 60_000 } });
    expect((await keys.verify(plain)).valid).toBe(true);
    expect(refusal(await keys.verify(plain)).code).toBe('RATE_LIMITED');
    expect((await keys.verify(own)).valid).toBe(true);
    expect((await keys.verify(own)).valid).toBe(true);
    expect(refusal(await keys.verify(own)).code).toBe('RATE_LIMITED');
  });

  it("shares an owner's limit among its keys, all-or-nothing with each key's own", async () => {
    const { keys } = setup({ rateLimits: { owner: (owner) => (owner === 'big' ? { limit: 3, windowMs: 60_000 } : null) } });
    const a = await keys.create({ name: 'a', scopes: ['all'], ownerId: 'big', rateLimit: { limit: 2, windowMs: 60_000 } });
    const b = await keys.create({ name: 'b', scopes: ['all'], ownerId: 'big' });
    const other = await keys.create({ name: 'c', scopes: ['all'], ownerId: 'small' });
    expect((await keys.verify(a.token)).valid).toBe(true);
    expect((await keys.verify(a.token)).valid).toBe(true);
    const third = await keys.verify(a.token);
    expect(refusal(third).code).toBe('RATE_LIMITED');
    // Refused by the key's own limit: the owner's budget did not count it.
    expect((await keys.verify(b.token)).valid).toBe(true);
    const overOwner = await keys.verify(b.token);
    expect(refusal(overOwner).code).toBe('RATE_LIMITED');
    expect(overOwner.valid ? null : overOwner.limits?.map((l) => [l.scope, l.remaining])).toEqual([['owner', 0]]);
    for (let i = 0; i < 10; i++) expect((await keys.verify(other.token)).valid).toBe(true);
  });

  it('checks limits only after every other rule: a refused request spends nothing', async () => {
    let t = START;
    const { keys, takes, store } = setup({ now: () => t });
    const { key, token } = await keys.create({
      name: 'narrow',
      scopes: ['orders:list'],
      allowedIps: '203.0.113.7',
      rateLimit: { limit: 1, windowMs: 60_000 },
      remaining: 1,
      expiresAt: new Date(START + 10_000),
    });
    expect(refusal(await keys.verify(token, { scope: 'orders:edit', ip: '203.0.113.7' })).code).toBe('INSUFFICIENT_SCOPE');
    expect(refusal(await keys.verify(token, { scope: 'orders:list', ip: '198.51.100.1' })).code).toBe('IP_NOT_ALLOWED');
    await keys.deactivate(key.id);
    expect(refusal(await keys.verify(token, { ip: '203.0.113.7' })).code).toBe('INACTIVE');
    await keys.activate(key.id);
    expect(takes).toEqual([]);
    expect(store.calls.spend).toBe(0);
    const ok = await keys.verify(token, { scope: 'orders:list', ip: '203.0.113.7' });
    expect(ok.valid && ok.key.remaining).toBe(0);
    t += 20_000;
    expect(refusal(await keys.verify(token, { ip: '203.0.113.7' })).code).toBe('EXPIRED');
    expect(takes).toEqual([1]);
    expect(store.calls.spend).toBe(1);
  });

  it('asks no limiter and writes nothing for a key without limits or quota', async () => {
    const { keys, takes, store } = setup();
    const { token } = await keys.create({ name: 'free', scopes: ['all'] });
    const before = { ...store.calls };
    for (let i = 0; i < 20; i++) expect((await keys.verify(token)).valid).toBe(true);
    expect(takes).toEqual([]);
    expect(store.calls.spend).toBe(0);
    expect(store.calls.update).toBe(before.update);
    expect(store.calls.insert).toBe(before.insert);
  });

  it('spends no quota on a request the rate limit refuses', async () => {
    const { keys } = setup();
    const { key, token } = await keys.create({ name: 'both', scopes: ['all'], rateLimit: { limit: 1, windowMs: 60_000 }, remaining: 5 });
    expect((await keys.verify(token)).valid).toBe(true);
    expect(refusal(await keys.verify(token)).code).toBe('RATE_LIMITED');
    expect((await keys.get(key.id))?.remaining).toBe(4);
  });

  it('reports RATE_LIMITED and USAGE_EXCEEDED as rejected events', async () => {
    const { keys, events } = setup();
    const { key, token } = await keys.create({ name: 'ev', scopes: ['all'], rateLimit: { limit: 1, windowMs: 60_000 } });
    await keys.verify(token);
    await keys.verify(token);
    expect(events.filter((e) => e.type === 'rejected')).toMatchObject([{ type: 'rejected', code: 'RATE_LIMITED', keyId: key.id }]);
  });
});

describe('quota', () => {
  it('counts down in the result, then USAGE_EXCEEDED with no retry time when nothing refills it', async () => {
    const { keys } = setup();
    const { key, token } = await keys.create({ name: 'credits', scopes: ['all'], remaining: 2 });
    const seen: Array<number | null> = [];
    for (let i = 0; i < 2; i++) {
      const r = await keys.verify(token);
      if (r.valid) seen.push(r.key.remaining);
    }
    expect(seen).toEqual([1, 0]);
    expect(refusal(await keys.verify(token))).toEqual({ code: 'USAGE_EXCEEDED', retryAfterMs: null });
    expect((await keys.get(key.id))?.remaining).toBe(0);
  });

  it('refills on schedule from the stored time and says when', async () => {
    const { keys, advance } = setup();
    const { token } = await keys.create({ name: 'daily', scopes: ['all'], remaining: 1, refill: { amount: 3, intervalMs: 10_000 } });
    expect((await keys.verify(token)).valid).toBe(true);
    advance(4_000);
    expect(refusal(await keys.verify(token))).toEqual({ code: 'USAGE_EXCEEDED', retryAfterMs: 6_000 });
    advance(5_999);
    expect((await keys.verify(token)).valid).toBe(false);
    advance(1);
    const r = await keys.verify(token, { cost: 3 });
    expect(r.valid && r.key.remaining).toBe(0);
  });

  it('refuses a cost above the limit for good (no retry time), asking the limiter only where the key stands', async () => {
    const { keys, takes } = setup();
    const { token } = await keys.create({ name: 'small', scopes: ['all'], rateLimit: { limit: 5, windowMs: 60_000 } });
    expect((await keys.verify(token, { cost: 2 })).valid).toBe(true);
    const refused = await keys.verify(token, { cost: 6 });
    expect(refusal(refused)).toEqual({ code: 'RATE_LIMITED', retryAfterMs: null });
    expect(refused.valid ? null : refused.limits?.[0]?.remaining).toBe(3);
    expect(takes).toEqual([2, 0]);
  });

  it('spends the given cost, checks without spending at cost 0, and refuses a bad cost by name', async () => {
    const { keys } = setup();
    const { key, token } = await keys.create({ name: 'cost', scopes: ['all'], remaining: 10, rateLimit: { limit: 10, windowMs: 60_000 } });
    const r = await keys.verify(token, { cost: 4 });
    expect(r.valid && [r.key.remaining, r.limits?.[0]?.remaining]).toEqual([6, 6]);
    const peek = await keys.verify(token, { cost: 0 });
    expect(peek.valid && [peek.key.remaining, peek.limits?.[0]?.remaining]).toEqual([6, 6]);
    expect(refusal(await keys.verify(token, { cost: 7 })).code).toBe('RATE_LIMITED');
    for (const bad of [-1, 1.5, '2', Number.NaN, 2e9]) {
      await expect(keys.verify(token, { cost: bad as number })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', field: 'cost' });
    }
    expect((await keys.get(key.id))?.remaining).toBe(6);
  });

  it('keeps what was spent through an edit of other fields, and sets it on an edit of the quota', async () => {
    const { keys } = setup();
    const { key, token } = await keys.create({ name: 'edit', scopes: ['all'], remaining: 5 });
    await keys.verify(token);
    await keys.verify(token);
    expect((await keys.update(key.id, { name: 'renamed' })).name).toBe('renamed');
    expect((await keys.get(key.id))?.remaining).toBe(3);
    await keys.update(key.id, { remaining: 100 });
    expect((await keys.get(key.id))?.remaining).toBe(100);
    await keys.update(key.id, { remaining: null });
    for (let i = 0; i < 3; i++) expect((await keys.verify(token)).valid).toBe(true);
  });

  it('never writes back uses spent while an edit of the refill was in progress', async () => {
    const { keys, store } = setup();
    const { key, token } = await keys.create({ name: 'refill edit', scopes: ['all'], remaining: 10 });
    const findById = store.findById.bind(store);
    let raced = false;
    store.findById = async (id) => {
      const read = await findById(id);
      if (!raced) {
        raced = true;
        // Five uses land between the edit's read and its write.
        for (let i = 0; i < 5; i++) expect((await keys.verify(token)).valid).toBe(true);
      }
      return read;
    };
    await keys.update(key.id, { refill: { amount: 10, intervalMs: 60_000 } });
    store.findById = findById;
    expect(await keys.get(key.id)).toMatchObject({ remaining: 5, refill: { amount: 10, intervalMs: 60_000 } });
  });

  it('refills a quota whose refill was added later on the grid of when the quota was set', async () => {
    const { keys, advance } = setup();
    const { key, token } = await keys.create({ name: 'later', scopes: ['all'], remaining: 1 });
    expect((await keys.verify(token)).valid).toBe(true);
    advance(25_000);
    await keys.update(key.id, { refill: { amount: 2, intervalMs: 10_000 } });
    // Two whole intervals have passed since the quota was set: one refill is due at once.
    const first = await keys.verify(token);
    expect(first.valid && first.key.remaining).toBe(1);
    expect((await keys.verify(token)).valid).toBe(true);
    expect(refusal(await keys.verify(token))).toEqual({ code: 'USAGE_EXCEEDED', retryAfterMs: 5_000 });
  });

  it('works with the verify cache on: every use is spent in the store', async () => {
    const { keys } = setup({ cache: { ttlMs: 60_000 } });
    const { token } = await keys.create({ name: 'cached', scopes: ['all'], remaining: 3 });
    const results = await Promise.all(Array.from({ length: 10 }, () => keys.verify(token)));
    expect(results.filter((r) => r.valid)).toHaveLength(3);
  });
});

describe('inputs', () => {
  it.each([
    [{ rateLimit: { limit: 0, windowMs: 1000 } }, 'rateLimit.limit'],
    [{ rateLimit: { limit: 5, windowMs: 'x' } }, 'rateLimit.windowMs'],
    [{ rateLimit: { limit: 5, windowMs: 1000, burst: 2 } }, 'rateLimit'],
    [{ rateLimit: 5 }, 'rateLimit'],
    // limit × windowMs above 2^51: no store could count it exactly.
    [{ rateLimit: { limit: 1_000_000, windowMs: 30 * 86_400_000 } }, 'rateLimit.limit'],
    [{ remaining: -1 }, 'remaining'],
    [{ remaining: 1.5 }, 'remaining'],
    [{ refill: { amount: 5, intervalMs: 1000 } }, 'refill'],
    [{ remaining: 5, refill: { amount: 0, intervalMs: 1000 } }, 'refill.amount'],
  ])('refuses %j naming %s, and writes nothing', async (extra, field) => {
    const { keys, store } = setup();
    const error = await keys.create({ name: 'bad', scopes: ['all'], ...(extra as object) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe(field);
    expect(store.calls.insert).toBe(0);
  });

  it('refuses a quota on a store that cannot spend it', async () => {
    const inner = memoryStore();
    const methods = ['insert', 'findById', 'findByDigest', 'list', 'update', 'delete', 'touch'] as const;
    // The same store without spend().
    const rest = Object.fromEntries(
      methods.map((m) => [m, (...args: never[]) => (inner[m] as (...a: never[]) => unknown).apply(inner, args)]),
    );
    const keys = createKeyManager({ store: rest as never });
    await expect(keys.create({ name: 'q', scopes: ['all'], remaining: 1 })).rejects.toMatchObject({ field: 'remaining' });
  });

  it('checks the manager options by name', () => {
    const store = memoryStore();
    expect(() => createKeyManager({ store, rateLimits: { default: { limit: 1, windowMs: 0 } } })).toThrow('rateLimits.default.windowMs');
    expect(() => createKeyManager({ store, rateLimits: { owner: { limit: -1, windowMs: 10 } } })).toThrow('rateLimits.owner.limit');
    expect(() => createKeyManager({ store, rateLimits: { failOpen: 'yes' as never } })).toThrow('rateLimits.failOpen');
    expect(() => createKeyManager({ store, rateLimits: { limiter: {} as never } })).toThrow('rateLimits.limiter');
  });
});

describe('limiter failure', () => {
  const failing = (how: 'reject' | 'hang'): RateLimiter => ({
    take: () => (how === 'reject' ? Promise.reject(new Error('ECONNRESET')) : new Promise<LimiterAnswer>(() => {})),
  });

  it.each(['reject', 'hang'] as const)(
    'refuses with StoreUnavailableError when the limiter fails (%s), never lets through',
    async (how) => {
      const keys = createKeyManager({ store: memoryStore(), storeTimeoutMs: 100, rateLimits: { limiter: failing(how) } });
      const { token } = await keys.create({ name: 'x', scopes: ['all'], rateLimit: { limit: 100, windowMs: 1000 } });
      const error = await keys.verify(token).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect((error as StoreUnavailableError).message).toContain('rateLimit');
      // A key without a limit is not affected.
      const { token: free } = await keys.create({ name: 'free', scopes: ['all'] });
      expect((await keys.verify(free)).valid).toBe(true);
    },
  );

  it('lets through unlimited and reports the failure with failOpen', async () => {
    const errors: unknown[] = [];
    const keys = createKeyManager({
      store: memoryStore(),
      storeTimeoutMs: 100,
      onError: (e) => errors.push(e),
      rateLimits: { limiter: failing('reject'), failOpen: true },
    });
    const { token } = await keys.create({ name: 'x', scopes: ['all'], rateLimit: { limit: 1, windowMs: 1000 } });
    const r = await keys.verify(token);
    expect(r.valid && r.limits).toBeUndefined();
    expect(errors[0]).toBeInstanceOf(StoreUnavailableError);
  });
});
