// Recipe: testing an app's API-key checks with vitest: Express and Koa through supertest, Fastify through inject.
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { apiKeyGuard as expressGuard } from 'keygate/express';
import { keygatePlugin } from 'keygate/fastify';
import { apiKeyGuard as koaGuard } from 'keygate/koa';
import { createTestKeys, type TestKeys } from 'keygate/testing';

// The app under test. In a real project this comes from your own source, built around a KeyManager.
function expressApp(t: TestKeys) {
  const app = express();
  app.get('/orders', expressGuard(t.keys, { scope: 'orders:list' }), (req, res) => {
    res.json({ key: req.apiKey?.name });
  });
  return app;
}

function koaApp(t: TestKeys) {
  const app = new Koa();
  app.use(koaGuard(t.keys, { scope: 'orders:list' }));
  app.use((ctx) => {
    ctx.body = { key: ctx.state.apiKey.name };
  });
  return app;
}

async function fastifyApp(t: TestKeys) {
  const app = Fastify();
  await app.register(keygatePlugin, { keys: t.keys });
  app.get('/orders', { onRequest: app.keygate.guard({ scope: 'orders:list' }) }, async (req) => ({ key: req.apiKey?.name }));
  return app;
}

let t: TestKeys;
afterEach(() => t.close());

describe('Express, with supertest', () => {
  it('lets a valid key in, and answers 401 for an expired or deactivated one', async () => {
    t = createTestKeys();
    const app = expressApp(t);
    const ok = await t.mint({ name: 'ERP sync', scopes: ['orders:list'] });
    const expired = await t.mint({ scopes: ['orders:list'], expired: true });
    const inactive = await t.mint({ scopes: ['orders:list'], active: false });

    const res = await request(app).get('/orders').set('Authorization', `Bearer ${ok.token}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ key: 'ERP sync' });
    for (const { token } of [expired, inactive]) {
      const refused = await request(app).get('/orders').set('X-API-Key', token);
      expect(refused.status).toBe(401);
      expect(refused.body.error.code).toBe('invalid_api_key');
    }
    expect((await request(app).get('/orders').set('X-API-Key', t.unknownToken())).status).toBe(401);
  });

  it('answers 403 for a missing scope', async () => {
    t = createTestKeys();
    const { token } = await t.mint({ scopes: ['products:list'] });
    const res = await request(expressApp(t)).get('/orders').set('Authorization', `Bearer ${token}`);
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('insufficient_scope');
  });

  it('checks IP allow-lists: supertest connects from the loopback address', async () => {
    t = createTestKeys();
    const app = expressApp(t);
    const local = await t.mint({ scopes: ['orders:list'], allowedIps: '127.0.0.1,::1' });
    const remote = await t.mint({ scopes: ['orders:list'], allowedIps: '203.0.113.7' });
    expect((await request(app).get('/orders').set('X-API-Key', local.token)).status).toBe(200);
    const res = await request(app).get('/orders').set('X-API-Key', remote.token);
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('ip_not_allowed');
  });

  it('moves the clock: a key stops working when it expires, an old token when its grace period ends', async () => {
    t = createTestKeys();
    const app = expressApp(t);
    const soon = await t.mint({ scopes: ['orders:list'], expiresAt: t.clock.now() + 60_000 });
    const rotated = await t.mint({ scopes: ['orders:list'], rotated: { gracePeriodMs: 30_000 } });
    const status = async (token: string) => (await request(app).get('/orders').set('X-API-Key', token)).status;

    expect(await status(soon.token)).toBe(200);
    expect(await status(rotated.previousToken as string)).toBe(200);
    t.clock.advance(30_000);
    expect(await status(rotated.previousToken as string)).toBe(401);
    expect(await status(rotated.token)).toBe(200);
    t.clock.advance(30_000);
    expect(await status(soon.token)).toBe(401);
  });
});

describe('Koa, with supertest', () => {
  it('answers 200, 401 and 403 as the key says', async () => {
    t = createTestKeys();
    const server = koaApp(t).callback();
    const ok = await t.mint({ name: 'Koa key', scopes: ['orders:edit'], allowedIps: '127.0.0.1' });
    const rotated = await t.mint({ scopes: ['orders:list'], rotated: true });
    const elsewhere = await t.mint({ scopes: ['orders:list'], allowedIps: '198.51.100.1' });

    const res = await request(server).get('/orders').set('Authorization', `Bearer ${ok.token}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ key: 'Koa key' });
    expect(
      (
        await request(server)
          .get('/orders')
          .set('X-API-Key', rotated.previousToken as string)
      ).status,
    ).toBe(401);
    expect((await request(server).get('/orders').set('X-API-Key', elsewhere.token)).status).toBe(403);
  });
});

describe('Fastify, with inject', () => {
  it('sets the client address with remoteAddress, to test allow-lists', async () => {
    t = createTestKeys();
    const app = await fastifyApp(t);
    const { token } = await t.mint({ scopes: ['orders:list'], allowedIps: '203.0.113.7' });
    const from = (remoteAddress: string) =>
      app.inject({ method: 'GET', url: '/orders', headers: { authorization: `Bearer ${token}` }, remoteAddress });

    expect((await from('203.0.113.7')).statusCode).toBe(200);
    const refused = await from('198.51.100.1');
    expect(refused.statusCode).toBe(403);
    expect(refused.json().error.code).toBe('ip_not_allowed');
    await app.close();
  });
});

describe('stable tokens for snapshots', () => {
  it('gives the same token, id and dates in every run with a seed', async () => {
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
