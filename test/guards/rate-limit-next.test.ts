// keygate/next and keygate/fetch with rate limits: the RateLimit fields on the handler's own response, 429s, one bad-key budget for every route.

import { beforeAll, describe, expect, it } from 'vitest';
import { createFetchGuard, withGuardHeaders } from '../../adapters/fetch/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { createNextGuard } from '../../adapters/next/index.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import type { ApiKey } from '../../src/types.js';

const MINUTE = 60_000;

const json = async (_request: Request, _context: unknown, apiKey: ApiKey) => Response.json({ keyId: apiKey.id });

function request(token: string | null, forwardedFor = '203.0.113.7'): Request {
  const headers: Record<string, string> = { 'x-forwarded-for': forwardedFor };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return new Request('https://shop.example/api/orders', { headers });
}

describe('next withApiKey with a rate-limited key', () => {
  let clock = Date.UTC(2030, 0, 1);
  let keys: KeyManager;

  const limitedToken = async (limit: number) =>
    (await keys.create({ name: 'limited', scopes: ['orders:list'], rateLimit: { limit, windowMs: MINUTE } })).token;

  beforeAll(() => {
    keys = createKeyManager({ store: memoryStore(), now: () => clock });
  });

  it("adds the fields to the handler's response, then answers 429 as the other guards do", async () => {
    clock = (Math.floor(clock / MINUTE) + 1) * MINUTE;
    const token = await limitedToken(2);
    const GET = createNextGuard(keys, { trustedProxies: true })(json, { scope: 'orders:list' });
    for (const remaining of [1, 0]) {
      const response = await GET(request(token), {});
      expect(response.status).toBe(200);
      expect(response.headers.get('ratelimit-policy')).toBe('"key";q=2;w=60');
      expect(response.headers.get('ratelimit')).toBe(`"key";r=${remaining};t=60`);
    }
    const refused = await GET(request(token), {});
    expect(refused.status).toBe(429);
    expect(await refused.json()).toEqual({
      error: { code: 'rate_limited', message: 'The API key has made too many requests; retry later.' },
    });
    // Two at the start of the window: one slides out 30 s into the next one.
    expect(refused.headers.get('retry-after')).toBe('90');
    expect(refused.headers.get('ratelimit')).toBe('"key";r=0;t=90');
    expect(refused.headers.get('ratelimit-policy')).toBe('"key";q=2;w=60');
  });

  it('copies a response whose headers cannot change, keeping its status, headers and body', async () => {
    clock = (Math.floor(clock / MINUTE) + 1) * MINUTE;
    const token = await limitedToken(5);
    const redirect = createNextGuard(keys, { trustedProxies: true })(async () => Response.redirect('https://shop.example/elsewhere', 307));
    const response = await redirect(request(token), {});
    expect(response.status).toBe(307);
    expect(response.headers.get('location')).toBe('https://shop.example/elsewhere');
    expect(response.headers.get('ratelimit')).toBe('"key";r=4;t=60');
  });

  it('leaves a field the handler set itself', async () => {
    clock = (Math.floor(clock / MINUTE) + 1) * MINUTE;
    const token = await limitedToken(5);
    const own = createNextGuard(keys, { trustedProxies: true })(
      async () => new Response('ok', { headers: { RateLimit: '"app";r=1;t=1' } }),
    );
    const response = await own(request(token), {});
    expect(response.headers.get('ratelimit')).toBe('"app";r=1;t=1');
    expect(response.headers.get('ratelimit-policy')).toBe('"key";q=5;w=60');
  });

  it('gives every route one failedAttempts budget per address', async () => {
    clock = (Math.floor(clock / MINUTE) + 1) * MINUTE;
    const { token } = await keys.create({ name: 'valid', scopes: ['all'] });
    const withApiKey = createNextGuard(keys, { trustedProxies: true, failedAttempts: { limit: 2, windowMs: MINUTE }, now: () => clock });
    const orders = withApiKey(json, { scope: 'orders:list' });
    const products = withApiKey(json, { scope: 'products:list' });
    const open = withApiKey(json);
    expect((await orders(request('kg_forged'), {})).status).toBe(401);
    expect((await products(request('kg_forged'), {})).status).toBe(401);
    for (const route of [orders, products, open]) {
      const refused = await route(request(token), {});
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('90');
    }
    expect((await open(request(token, '203.0.113.8'), {})).status).toBe(200);
  });
});

describe('keygate/fetch withGuardHeaders', () => {
  it('returns the response itself when there is nothing to add', async () => {
    const keys = createKeyManager({ store: memoryStore() });
    const { token } = await keys.create({ name: 'plain', scopes: ['orders:list'] });
    const outcome = await createFetchGuard(keys).authenticate(request(token));
    const response = new Response('ok');
    expect(withGuardHeaders(response, outcome)).toBe(response);
  });
});
