// keygate/nestjs (NestJS 12, from source) with rate limits, on Express and Fastify: the fields on passes, 429s, one bad-key budget per module.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import { type NestApp, PLATFORMS, startNest } from '../nestjs/app.js';
import type { NestKit } from '../nestjs/kit.js';
import { loadKit } from '../nestjs/v12/kit.js';

const MINUTE = 60_000;

describe.each(PLATFORMS)('keygate/nestjs on %s with rate limits', (platform) => {
  let kit: NestKit;
  let clock = Date.UTC(2030, 0, 1);
  let keys: KeyManager;
  const apps: NestApp[] = [];
  const start = async (guard: Parameters<typeof startNest>[2]['guard'] = {}): Promise<NestApp> => {
    const app = await startNest(kit, platform, { keys, guard });
    apps.push(app);
    return app;
  };

  beforeAll(async () => {
    kit = await loadKit();
    keys = createKeyManager({ store: memoryStore(), now: () => clock });
  });
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
  });

  it('sets the fields on passes and answers 429 with Retry-After once the limit is used up', async () => {
    clock = (Math.floor(clock / MINUTE) + 1) * MINUTE;
    const { token } = await keys.create({ name: 'limited', scopes: ['orders:list'], rateLimit: { limit: 2, windowMs: MINUTE } });
    const app = await start();
    for (const remaining of [1, 0]) {
      const reply = await app.send({ headers: { authorization: `Bearer ${token}` } });
      expect(reply.status).toBe(200);
      expect(reply.headers['ratelimit-policy']).toBe('"key";q=2;w=60');
      expect(reply.headers.ratelimit).toBe(`"key";r=${remaining};t=60`);
    }
    const refused = await app.send({ headers: { authorization: `Bearer ${token}` } });
    expect(refused.status).toBe(429);
    expect(refused.json).toEqual({ error: { code: 'rate_limited', message: 'The API key has made too many requests; retry later.' } });
    expect(refused.headers['retry-after']).toBe('90');
    expect(refused.headers.ratelimit).toBe('"key";r=0;t=90');
    expect(refused.headers['ratelimit-policy']).toBe('"key";q=2;w=60');
  });

  it('answers a spent quota with 429 usage_exceeded', async () => {
    const { token } = await keys.create({ name: 'one use', scopes: ['orders:list'], remaining: 1 });
    const app = await start();
    expect((await app.send({ headers: { 'x-api-key': token } })).status).toBe(200);
    const refused = await app.send({ headers: { 'x-api-key': token } });
    expect(refused.status).toBe(429);
    expect(refused.json).toEqual({ error: { code: 'usage_exceeded', message: 'The API key has no uses left.' } });
    expect(refused.headers['retry-after']).toBeUndefined();
  });

  it('gives every route of the module one failedAttempts budget per address', async () => {
    clock = (Math.floor(clock / MINUTE) + 1) * MINUTE;
    const { token } = await keys.create({ name: 'valid', scopes: ['all'] });
    const app = await start({ failedAttempts: { limit: 2, windowMs: MINUTE }, now: () => clock });
    expect((await app.send({ path: '/orders', headers: { authorization: 'Bearer kg_forged' } })).status).toBe(401);
    expect((await app.send({ path: '/catalog', headers: { authorization: 'Bearer kg_forged' } })).status).toBe(401);
    for (const path of ['/orders', '/catalog', '/any']) {
      const refused = await app.send({ path, headers: { authorization: `Bearer ${token}` } });
      expect(refused.status).toBe(429);
      expect(refused.json).toEqual({
        error: { code: 'rate_limited', message: 'Too many requests with invalid API keys from this address; retry later.' },
      });
      expect(refused.headers['retry-after']).toBe('90');
    }
    const other = await app.send({ path: '/any', headers: { authorization: `Bearer ${token}` }, localAddress: '127.0.0.2' });
    expect(other.status).toBe(200);
  });
});
