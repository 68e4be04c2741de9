// What keygate/hono adds on top of keygate/fetch: typed c.get('apiKey'), mounting, the client address on each runtime, startup checks.
// The type assertions are checked by `tsc` (this file is in tsconfig.json); the shared suites cover every key state over real sockets.

import type { AddressInfo } from 'node:net';
import { type HttpBindings, serve } from '@hono/node-server';
import { Hono } from 'hono';
import { beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { type ApiKeyEnv, type ApiKeyVariables, apiKeyGuard } from '../../adapters/hono/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { ValidationError } from '../../src/errors.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import type { ApiKey } from '../../src/types.js';
import { send } from './client.js';

let keys: KeyManager;
let token: string;
let keyId: string;
/** A key usable only from 203.0.113.7. */
let locked: string;

beforeAll(async () => {
  keys = createKeyManager({ store: memoryStore() });
  const created = await keys.create({ name: 'erp', scopes: ['orders:list'] });
  token = created.token;
  keyId = created.key.id;
  locked = (await keys.create({ name: 'till', scopes: ['orders:list'], allowedIps: '203.0.113.7' })).token;
});

describe('hono apiKeyGuard types', () => {
  it('types c.get("apiKey") as ApiKey on a guarded route, without casts', async () => {
    const app = new Hono();
    app.get('/orders', apiKeyGuard(keys, { scope: 'orders:list' }), (c) => {
      const key = c.get('apiKey');
      expectTypeOf(key).toEqualTypeOf<ApiKey>();
      // @ts-expect-error ApiKey has no such field
      void key.token;
      return c.json({ id: key.id });
    });
    app.get('/open', (c) => {
      // @ts-expect-error an unguarded route has no apiKey variable
      void c.get('apiKey');
      return c.text('open');
    });
    const reply = await app.request('/orders', { headers: { authorization: `Bearer ${token}` } });
    expect(await reply.json()).toEqual({ id: keyId });
    expect((await app.request('/orders')).status).toBe(401);
  });

  it('types a whole app or sub-app guarded with use(), with other bindings kept', async () => {
    const api = new Hono<{ Bindings: HttpBindings } & ApiKeyEnv>();
    api.use(apiKeyGuard(keys));
    api.get('/me', (c) => {
      expectTypeOf(c.get('apiKey')).toEqualTypeOf<ApiKey>();
      expectTypeOf(c.env.incoming.socket.remoteAddress).toEqualTypeOf<string | undefined>();
      return c.json({ name: c.get('apiKey').name });
    });
    // Chained, the variable's type comes from the guard itself.
    const chained = new Hono().use(apiKeyGuard(keys)).get('/me', (c) => c.json({ id: c.get('apiKey').id }));
    expectTypeOf<ApiKeyVariables['apiKey']>().toEqualTypeOf<ApiKey>();

    const app = new Hono<{ Bindings: HttpBindings }>().route('/api', api).route('/chained', chained);
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise((resolve) => server.once('listening', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      expect((await send('127.0.0.1', port, { path: '/api/me', headers: { 'x-api-key': token } })).json).toEqual({ name: 'erp' });
      expect((await send('127.0.0.1', port, { path: '/chained/me', headers: { 'x-api-key': token } })).json).toEqual({ id: keyId });
      expect((await send('127.0.0.1', port, { path: '/api/me' })).status).toBe(401);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('hono apiKeyGuard client address', () => {
  it('has no address outside @hono/node-server: keys with an allow-list are refused, others pass', async () => {
    const app = new Hono();
    app.get('/orders', apiKeyGuard(keys), (c) => c.json({ id: c.get('apiKey').id }));
    const refused = await app.request('/orders', { headers: { authorization: `Bearer ${locked}`, 'x-forwarded-for': '203.0.113.7' } });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ error: { code: 'ip_not_allowed' } });
    expect((await app.request('/orders', { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  });

  it('takes the peer address from clientAddress(c), as on Cloudflare Workers or Bun', async () => {
    const app = new Hono();
    app.get('/orders', apiKeyGuard(keys, { clientAddress: (c) => c.req.header('cf-connecting-ip') }), (c) =>
      c.json({ id: c.get('apiKey').id }),
    );
    const allowed = await app.request('/orders', { headers: { authorization: `Bearer ${locked}`, 'cf-connecting-ip': '203.0.113.7' } });
    expect(allowed.status).toBe(200);
    const other = await app.request('/orders', { headers: { authorization: `Bearer ${locked}`, 'cf-connecting-ip': '198.51.100.1' } });
    expect(other.status).toBe(403);
  });

  it('believes X-Forwarded-For only when clientAddress(c) is a trusted proxy', async () => {
    const app = new Hono();
    const peer = (c: { req: { header(name: string): string | undefined } }) => c.req.header('x-test-peer');
    app.get('/orders', apiKeyGuard(keys, { clientAddress: peer, trustedProxies: 'uniquelocal' }), (c) => c.text('ok'));
    const headers = { authorization: `Bearer ${locked}`, 'x-forwarded-for': '203.0.113.7' };
    expect((await app.request('/orders', { headers: { ...headers, 'x-test-peer': '10.0.0.2' } })).status).toBe(200);
    expect((await app.request('/orders', { headers: { ...headers, 'x-test-peer': '198.51.100.1' } })).status).toBe(403);
    expect((await app.request('/orders', { headers })).status).toBe(403);
  });
});

describe('hono apiKeyGuard mounting and checks', () => {
  it('guards every route under a path with app.use, leaving the others open', async () => {
    const app = new Hono<ApiKeyEnv>();
    app.use('/api/*', apiKeyGuard(keys, { scope: 'orders:list', exposeReasons: true }));
    app.get('/api/orders', (c) => c.json({ id: c.get('apiKey').id }));
    app.get('/health', (c) => c.json({ ok: true }));
    const refused = await app.request('/api/orders');
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toBe('Bearer');
    expect(await refused.json()).toMatchObject({ error: { code: 'invalid_api_key', reason: 'MISSING' } });
    expect(await (await app.request('/api/orders', { headers: { 'x-api-key': token } })).json()).toEqual({ id: keyId });
    expect((await app.request('/health')).status).toBe(200);
  });

  it('sends the Response onReject returns, and sends its edits otherwise', async () => {
    const app = new Hono();
    app.get('/own', apiKeyGuard(keys, { onReject: (rejection, c) => c.json({ denied: rejection.reason }, 401) }), (c) => c.text('through'));
    app.get(
      '/edit',
      apiKeyGuard(keys, {
        onReject: (rejection) => {
          rejection.headers['Cache-Control'] = 'no-store';
        },
      }),
      (c) => c.text('through'),
    );
    expect(await (await app.request('/own')).json()).toEqual({ denied: 'MISSING' });
    const edited = await app.request('/edit');
    expect(edited.status).toBe(401);
    expect(edited.headers.get('cache-control')).toBe('no-store');
    expect(edited.headers.get('www-authenticate')).toBe('Bearer');
  });

  it('fails at startup, not per request, when misconfigured', () => {
    expect(() => apiKeyGuard(keys, { scope: 'orders:delete' })).toThrow(ValidationError);
    expect(() => apiKeyGuard(keys, { trustedProxies: '0x7f.0.0.1' })).toThrow(/trustedProxies/);
    expect(() => apiKeyGuard(keys, { clientAddress: '127.0.0.1' as unknown as undefined })).toThrow(/clientAddress/);
    expect(() => apiKeyGuard(keys, { onReject: 'log' as unknown as undefined })).toThrow(/onReject/);
  });
});
