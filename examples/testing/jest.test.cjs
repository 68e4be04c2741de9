// Recipe: testing an app's API-key checks with jest (CommonJS): Express, Koa and Fastify through supertest.
const express = require('express');
const Fastify = require('fastify');
const Koa = require('koa');
const request = require('supertest');
const { apiKeyGuard: expressGuard } = require('keygate/express');
const { keygatePlugin } = require('keygate/fastify');
const { apiKeyGuard: koaGuard } = require('keygate/koa');
const { createTestKeys } = require('keygate/testing');

// The app under test. In a real project this comes from your own source, built around a KeyManager.
function expressApp(t) {
  const app = express();
  app.get('/orders', expressGuard(t.keys, { scope: 'orders:list' }), (req, res) => res.json({ key: req.apiKey.name }));
  return app;
}

let t;
afterEach(() => t.close());

describe('Express, with supertest', () => {
  test('lets a valid key in, and answers 401 for an expired, deactivated or rotated-out token', async () => {
    t = createTestKeys();
    const app = expressApp(t);
    const ok = await t.mint({ name: 'ERP sync', scopes: ['orders:list'] });
    const expired = await t.mint({ scopes: ['orders:list'], expired: true });
    const inactive = await t.mint({ scopes: ['orders:list'], active: false });
    const rotated = await t.mint({ scopes: ['orders:list'], rotated: true });

    const res = await request(app).get('/orders').set('Authorization', `Bearer ${ok.token}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ key: 'ERP sync' });
    for (const token of [expired.token, inactive.token, rotated.previousToken]) {
      const refused = await request(app).get('/orders').set('X-API-Key', token);
      expect(refused.status).toBe(401);
      expect(refused.body.error.code).toBe('invalid_api_key');
    }
  });

  test('checks IP allow-lists: supertest connects from the loopback address', async () => {
    t = createTestKeys();
    const app = expressApp(t);
    const local = await t.mint({ scopes: ['orders:list'], allowedIps: ['127.0.0.1', '::1'] });
    const remote = await t.mint({ scopes: ['orders:list'], allowedIps: ['203.0.113.7'] });
    expect((await request(app).get('/orders').set('X-API-Key', local.token)).status).toBe(200);
    expect((await request(app).get('/orders').set('X-API-Key', remote.token)).body.error.code).toBe('ip_not_allowed');
  });

  test('moves the clock past a grace period', async () => {
    t = createTestKeys();
    const app = expressApp(t);
    const { previousToken } = await t.mint({ scopes: ['orders:list'], rotated: { gracePeriodMs: 60_000 } });
    expect((await request(app).get('/orders').set('X-API-Key', previousToken)).status).toBe(200);
    t.clock.advance(60_000);
    expect((await request(app).get('/orders').set('X-API-Key', previousToken)).status).toBe(401);
  });
});

describe('Koa, with supertest', () => {
  test('answers 403 for a missing scope', async () => {
    t = createTestKeys();
    const app = new Koa();
    app.use(koaGuard(t.keys, { scope: 'orders:edit' }));
    app.use((ctx) => {
      ctx.body = { key: ctx.state.apiKey.name };
    });
    const reader = await t.mint({ scopes: ['orders:list'] });
    const editor = await t.mint({ name: 'editor', scopes: ['orders:edit'] });
    expect((await request(app.callback()).get('/').set('X-API-Key', reader.token)).status).toBe(403);
    expect((await request(app.callback()).get('/').set('X-API-Key', editor.token)).body).toEqual({ key: 'editor' });
  });
});

// Fastify's inject() loads light-my-request, whose cookie 2 dependency is ESM only; jest cannot require
// ESM before Node 24.9. Under jest on older Node, test Fastify through its real server with supertest:
// the client address is then the loopback address, as with Express and Koa.
describe('Fastify, with supertest against app.server', () => {
  test('lets a loopback-listed key in and refuses a key listed for another address', async () => {
    t = createTestKeys();
    const app = Fastify();
    await app.register(keygatePlugin, { keys: t.keys });
    app.get('/orders', { onRequest: app.keygate.guard({ scope: 'orders:list' }) }, async (req) => ({ key: req.apiKey.name }));
    await app.ready();
    const local = await t.mint({ name: 'partner', scopes: ['orders:list'], allowedIps: '127.0.0.1,::1' });
    const remote = await t.mint({ scopes: ['orders:list'], allowedIps: '203.0.113.7' });

    expect((await request(app.server).get('/orders').set('X-API-Key', local.token)).body).toEqual({ key: 'partner' });
    expect((await request(app.server).get('/orders').set('X-API-Key', remote.token)).status).toBe(403);
    await app.close();
  });
});

describe('stable tokens for snapshots', () => {
  test('gives the same token, id and dates in every run with a seed', async () => {
    t = createTestKeys({ seed: 'recipes' });
    const { key, token } = await t.mint({ name: 'snapshot', scopes: ['orders:list'] });
    expect({ token, id: key.id, hint: key.hint, createdAt: key.createdAt.toISOString() }).toMatchInlineSnapshot(`
{
  "createdAt": "2025-01-01T00:00:00.000Z",
  "hint": "kg_lYw…kyBh",
  "id": "fVjsWTTNiEeOf4N7QUIy",
  "token": "kg_lYwbYi7vvHWKG3dCgKXZxfa5fuwUbHD930kyBh",
}
`);
  });
});
