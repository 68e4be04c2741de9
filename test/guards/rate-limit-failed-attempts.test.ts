// Bad-key throttling per client address: after `limit` bad keys an address gets 429 without a key lookup, in every framework.

import type { AddressInfo } from 'node:net';
import fastify from 'fastify';
import { afterEach, beforeAll, describe, expect, it, type MockInstance, vi } from 'vitest';
import { apiKeyGuard as expressGuard } from '../../adapters/express/index.js';
import keygatePlugin from '../../adapters/fastify/index.js';
import { createFetchGuard } from '../../adapters/fetch/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { ValidationError } from '../../src/errors.js';
import { createGuardCore, type GuardOptions } from '../../src/http.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import { memoryLimiter, type RateLimiter } from '../../src/rate-limit.js';
import type { KeyRecord } from '../../src/store.js';
import { DelegatingStore } from '../support/counting-store.js';
import { FRAMEWORKS, type RunningApp } from './apps.js';
import { send } from './client.js';
import { withTypo } from './fixtures.js';

const MINUTE = 60_000;
const THROTTLED = { error: { code: 'rate_limited', message: 'Too many requests with invalid API keys from this address; retry later.' } };

/** A store that counts verify lookups, answering asynchronously like a remote one. */
class LookupCountingStore extends DelegatingStore {
  lookups = 0;
  override findByDigest(digest: string): Promise<KeyRecord | null> {
    this.lookups++;
    return super.findByDigest(digest);
  }
}

interface Setup {
  keys: KeyManager;
  store: LookupCountingStore;
  verify: MockInstance<KeyManager['verify']>;
  tokens: { valid: string; inactive: string; expired: string; wrongScope: string; unknown: string };
}

async function setup(clock: () => number): Promise<Setup> {
  const store = new LookupCountingStore();
  const keys = createKeyManager({ store, now: clock });
  const valid = await keys.create({ name: 'valid', scopes: ['orders:list'] });
  const inactive = await keys.create({ name: 'inactive', scopes: ['orders:list'], active: false });
  const expired = await keys.create({ name: 'expired', scopes: ['orders:list'], expiresAt: clock() + 1 });
  const wrongScope = await keys.create({ name: 'products only', scopes: ['products:list'] });
  const stranger = await createKeyManager({ store: memoryStore() }).create({ name: 'elsewhere', scopes: ['all'] });
  const verify = vi.spyOn(keys, 'verify');
  return {
    keys,
    store,
    verify,
    tokens: { valid: valid.token, inactive: inactive.token, expired: expired.token, wrongScope: wrongScope.token, unknown: stranger.token },
  };
}

describe.each(FRAMEWORKS)('$name with failedAttempts', (framework) => {
  // At the start of a minute, so the numbers are exact.
  let clock = Date.UTC(2030, 0, 1);
  const now = () => clock;
  let s: Setup;
  const apps: RunningApp[] = [];
  const start = async (guard: GuardOptions = {}): Promise<RunningApp> => {
    const app = await framework.start({ keys: s.keys, guard: { failedAttempts: { limit: 3, windowMs: MINUTE }, now, ...guard } });
    apps.push(app);
    return app;
  };
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  beforeAll(async () => {
    s = await setup(now);
    // Past the expiry of `expired`, at the start of a minute.
    clock += MINUTE;
  });
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
    clock = (Math.floor(clock / MINUTE) + 10) * MINUTE;
  });

  it('after 3 bad keys the address gets 429 even with a valid key, without verify or a lookup; another address is not affected', async () => {
    const app = await start();
    const forged = [withTypo(s.tokens.valid), s.tokens.unknown, s.tokens.inactive];
    for (const token of forged) {
      const reply = await app.send({ headers: bearer(token) });
      expect(reply.status).toBe(401);
    }
    const verifies = s.verify.mock.calls.length;
    const lookups = s.store.lookups;

    const refused = await app.send({ headers: bearer(s.tokens.valid) });
    expect(refused.status).toBe(429);
    expect(refused.json).toEqual(THROTTLED);
    expect(refused.headers['content-type']).toMatch(/^application\/json/);
    // Three attempts at the start of the window slide out 20 s into the next one.
    expect(refused.headers['retry-after']).toBe('80');
    expect(refused.headers['www-authenticate']).toBeUndefined();
    const missing = await app.send({});
    expect(missing.status).toBe(429);
    expect(s.verify.mock.calls.length).toBe(verifies);
    expect(s.store.lookups).toBe(lookups);

    const other = await app.send({ headers: bearer(s.tokens.valid), localAddress: '127.0.0.2' });
    expect(other.status).toBe(200);
    expect(s.verify.mock.calls.length).toBe(verifies + 1);
  });

  it('the budget comes back as the attempts slide out of the window', async () => {
    const app = await start();
    for (let i = 0; i < 3; i++) expect((await app.send({ headers: bearer(s.tokens.unknown) })).status).toBe(401);
    clock += 79_999;
    const early = await app.send({ headers: bearer(s.tokens.valid) });
    expect(early.status).toBe(429);
    expect(early.headers['retry-after']).toBe('1');
    clock += 1;
    expect((await app.send({ headers: bearer(s.tokens.valid) })).status).toBe(200);
    // One attempt has slid out: one more bad key, and the address is refused again.
    expect((await app.send({ headers: bearer(s.tokens.expired) })).status).toBe(401);
    expect((await app.send({ headers: bearer(s.tokens.valid) })).status).toBe(429);
  });

  it('a missing key, a 403 and a success do not count', async () => {
    const app = await start();
    for (let i = 0; i < 4; i++) {
      expect((await app.send({})).status).toBe(401);
      expect((await app.send({ headers: bearer(s.tokens.wrongScope) })).status).toBe(403);
      expect((await app.send({ headers: bearer(s.tokens.valid) })).status).toBe(200);
    }
    for (let i = 0; i < 3; i++) expect((await app.send({ headers: bearer(s.tokens.unknown) })).status).toBe(401);
    expect((await app.send({ headers: bearer(s.tokens.valid) })).status).toBe(429);
  });

  it('counts the address a trusted proxy forwarded, not the proxy', async () => {
    const app = await start({ trustedProxies: 'loopback' });
    const from = (address: string, token: string) => app.send({ headers: { ...bearer(token), 'x-forwarded-for': address } });
    for (let i = 0; i < 3; i++) expect((await from('203.0.113.7', s.tokens.unknown)).status).toBe(401);
    expect((await from('203.0.113.7', s.tokens.valid)).status).toBe(429);
    expect((await from('203.0.113.8', s.tokens.valid)).status).toBe(200);
  });

  it('fails closed when its limiter fails: 503 with Retry-After, never 200, and no verify', async () => {
    const limiter: RateLimiter = { take: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6379')) };
    const app = await start({ failedAttempts: { limit: 3, windowMs: MINUTE, limiter }, retryAfterSeconds: 9 });
    const verifies = s.verify.mock.calls.length;
    const reply = await app.send({ headers: bearer(s.tokens.valid) });
    expect(reply.status).toBe(503);
    expect(reply.json).toEqual({ error: { code: 'key_store_unavailable', message: 'The API key store is unavailable; retry later.' } });
    expect(reply.headers['retry-after']).toBe('9');
    expect(reply.text).not.toContain('6379');
    expect(s.verify.mock.calls.length).toBe(verifies);
  });
});

describe('createGuardCore with failedAttempts', () => {
  let s: Setup;
  let clock = Date.UTC(2030, 0, 1);

  beforeAll(async () => {
    s = await setup(() => clock);
    clock += 2;
  });

  /** A memory limiter that records every call. */
  function recordingLimiter(): RateLimiter & { calls: Array<{ group: string; key: string; cost: number; now: number }> } {
    const inner = memoryLimiter();
    const calls: Array<{ group: string; key: string; cost: number; now: number }> = [];
    return {
      calls,
      take(group, buckets, cost, at) {
        for (const b of buckets) calls.push({ group, key: b.key, cost, now: at });
        return inner.take(group, buckets, cost, at);
      },
    };
  }

  it('peeks at ip:<window>:<address> with cost 0 before verify and counts 1 after a bad key, on the guard clock', async () => {
    const limiter = recordingLimiter();
    const guard = createGuardCore(s.keys, { failedAttempts: { limit: 2, windowMs: MINUTE, limiter }, now: () => clock });
    await guard.authenticate({ headers: { authorization: `Bearer ${s.tokens.unknown}` }, remoteAddress: '192.0.2.1' });
    await guard.authenticate({ headers: { authorization: `Bearer ${s.tokens.valid}` }, remoteAddress: '2001:db8::1' });
    await guard.authenticate({ headers: { authorization: `Bearer ${s.tokens.unknown}` }, remoteAddress: undefined });
    expect(limiter.calls).toEqual([
      { group: 'ip:60000:192.0.2.1', key: 'ip:60000:192.0.2.1', cost: 0, now: clock },
      { group: 'ip:60000:192.0.2.1', key: 'ip:60000:192.0.2.1', cost: 1, now: clock },
      { group: 'ip:60000:2001:db8::1', key: 'ip:60000:2001:db8::1', cost: 0, now: clock },
      // A request without an address counts under one shared key.
      { group: 'ip:60000:none', key: 'ip:60000:none', cost: 0, now: clock },
      { group: 'ip:60000:none', key: 'ip:60000:none', cost: 1, now: clock },
    ]);
  });

  it('counts attempts in flight against the budget: bad keys sent at once cannot all pass the check', async () => {
    const verifies = s.verify.mock.calls.length;
    const guard = createGuardCore(s.keys, { failedAttempts: { limit: 3, windowMs: MINUTE }, now: () => clock });
    const request = { headers: { authorization: `Bearer ${s.tokens.unknown}` }, remoteAddress: '192.0.2.77' };
    const outcomes = await Promise.all(Array.from({ length: 200 }, () => guard.authenticate(request)));
    const statuses = outcomes.map((o) => (o.ok ? 200 : o.status));
    expect(statuses.filter((x) => x === 401)).toHaveLength(3);
    expect(statuses.filter((x) => x === 429)).toHaveLength(197);
    expect(s.verify.mock.calls.length - verifies).toBe(3);
    // The budget is spent now: even a valid key from that address gets 429.
    const later = await guard.authenticate({ headers: { authorization: `Bearer ${s.tokens.valid}` }, remoteAddress: '192.0.2.77' });
    expect(later).toMatchObject({ ok: false, status: 429 });
  });

  it('a refusal says why: reason TOO_MANY_FAILED_ATTEMPTS, no store error', async () => {
    const guard = createGuardCore(s.keys, { failedAttempts: { limit: 1, windowMs: MINUTE }, now: () => clock });
    const request = { headers: { authorization: `Bearer ${s.tokens.unknown}` }, remoteAddress: '192.0.2.9' };
    expect(await guard.authenticate(request)).toMatchObject({ ok: false, status: 401, reason: 'NOT_FOUND' });
    expect(await guard.authenticate(request)).toMatchObject({ ok: false, status: 429, reason: 'TOO_MANY_FAILED_ATTEMPTS', error: null });
  });

  it('a limiter that throws or never answers gives a 503 with the failure as a StoreUnavailableError', async () => {
    const throwing = createGuardCore(s.keys, {
      failedAttempts: {
        limit: 3,
        windowMs: MINUTE,
        limiter: {
          take: () => {
            throw new Error('limiter broke');
          },
        },
      },
    });
    const outcome = await throwing.authenticate({ headers: { authorization: `Bearer ${s.tokens.valid}` }, remoteAddress: '192.0.2.1' });
    expect(outcome).toMatchObject({ ok: false, status: 503, reason: 'STORE_UNAVAILABLE' });
    expect(!outcome.ok && outcome.error?.code).toBe('STORE_UNAVAILABLE');
    expect(!outcome.ok && outcome.error?.operation).toBe('failedAttempts');
  });

  it('each guard has its own default counters; one limiter passed to two guards is shared', async () => {
    const options = { failedAttempts: { limit: 1, windowMs: MINUTE }, now: () => clock };
    const a = createGuardCore(s.keys, options);
    const b = createGuardCore(s.keys, options);
    const bad = { headers: { authorization: `Bearer ${s.tokens.unknown}` }, remoteAddress: '192.0.2.20' };
    const good = { headers: { authorization: `Bearer ${s.tokens.valid}` }, remoteAddress: '192.0.2.20' };
    await a.authenticate(bad);
    expect((await a.authenticate(good)).ok).toBe(false);
    expect((await b.authenticate(good)).ok).toBe(true);

    const shared = { failedAttempts: { limit: 1, windowMs: MINUTE, limiter: memoryLimiter() }, now: () => clock };
    const c = createGuardCore(s.keys, shared);
    const d = createGuardCore(s.keys, shared);
    await c.authenticate(bad);
    expect((await d.authenticate(good)).ok).toBe(false);
  });

  it('is checked when the guard is created, naming the option', () => {
    const cases: Array<[unknown, string]> = [
      ['10', 'failedAttempts'],
      [{ limit: 0, windowMs: MINUTE }, 'failedAttempts.limit'],
      [{ limit: 3 }, 'failedAttempts.windowMs'],
      [{ limit: 3, windowMs: 1.5 }, 'failedAttempts.windowMs'],
      [{ limit: 3, windowMs: MINUTE, window: MINUTE }, 'failedAttempts'],
      [{ limit: 3, windowMs: MINUTE, limiter: {} }, 'failedAttempts.limiter'],
    ];
    for (const [failedAttempts, field] of cases) {
      const make = () => createGuardCore(s.keys, { failedAttempts } as GuardOptions);
      expect(make).toThrow(ValidationError);
      try {
        make();
      } catch (error) {
        expect((error as ValidationError).field).toBe(field);
      }
      // The adapters check it too, at startup.
      expect(() => expressGuard(s.keys, { failedAttempts } as GuardOptions)).toThrow(ValidationError);
      expect(() => createFetchGuard(s.keys, { failedAttempts } as GuardOptions)).toThrow(ValidationError);
    }
    expect(() => createGuardCore(s.keys, { now: 5 } as unknown as GuardOptions)).toThrow(/now/);
  });
});

describe('the Fastify plugin with failedAttempts', () => {
  it('gives all its route guards one budget per address', async () => {
    const s = await setup(Date.now);
    const app = fastify();
    await app.register(keygatePlugin, { keys: s.keys, failedAttempts: { limit: 2, windowMs: MINUTE } });
    app.get('/orders', { onRequest: app.keygate.guard({ scope: 'orders:list' }) }, async () => ({ route: 'orders' }));
    app.get('/open', { onRequest: app.keygate.guard() }, async () => ({ route: 'open' }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const { port } = app.server.address() as AddressInfo;
      const call = (path: string, token: string) => send('127.0.0.1', port, { path, headers: { authorization: `Bearer ${token}` } });
      expect((await call('/orders', s.tokens.unknown)).status).toBe(401);
      expect((await call('/open', s.tokens.unknown)).status).toBe(401);
      expect((await call('/orders', s.tokens.valid)).status).toBe(429);
      expect((await call('/open', s.tokens.valid)).status).toBe(429);
    } finally {
      app.server.closeAllConnections();
      await app.close();
    }
  });
});
