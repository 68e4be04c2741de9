// Recipe: testing an app's API-key checks with node:test: Express and Koa through supertest, Fastify through inject.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import request from 'supertest';
import { apiKeyGuard as expressGuard } from 'keygate/express';
import { keygatePlugin } from 'keygate/fastify';
import { apiKeyGuard as koaGuard } from 'keygate/koa';
import { createTestKeys } from 'keygate/testing';

let t;
afterEach(() => t.close());

describe('Express, with supertest', () => {
  it('answers 200, 401 (expired, deactivated, unknown) and 403 (scope, address)', async () => {
    t = createTestKeys();
    const app = express();
    app.get('/orders', expressGuard(t.keys, { scope: 'orders:list' }), (req, res) => res.json({ key: req.apiKey.name }));
    const status = async (token) => (await request(app).get('/orders').set('Authorization', `Bearer ${token}`)).status;

    assert.equal(await status((await t.mint({ scopes: ['orders:list'], allowedIps: '127.0.0.1,::1' })).token), 200);
    assert.equal(await status((await t.mint({ scopes: ['orders:list'], expired: true })).token), 401);
    assert.equal(await status((await t.mint({ scopes: ['orders:list'], active: false })).token), 401);
    assert.equal(await status(t.unknownToken()), 401);
    assert.equal(await status((await t.mint({ scopes: ['products:list'] })).token), 403);
    assert.equal(await status((await t.mint({ scopes: ['orders:list'], allowedIps: '203.0.113.7' })).token), 403);
  });
});

describe('Koa, with supertest', () => {
  it('keeps an old token working through its grace period only', async () => {
    t = createTestKeys();
    const app = new Koa();
    app.use(koaGuard(t.keys, { scope: 'orders:list' }));
    app.use((ctx) => {
      ctx.body = { key: ctx.state.apiKey.name };
    });
    const { token, previousToken } = await t.mint({ scopes: ['orders:list'], rotated: { gracePeriodMs: 10_000 } });
    const status = async (tk) => (await request(app.callback()).get('/').set('X-API-Key', tk)).status;

    assert.equal(await status(previousToken), 200);
    t.clock.advance(10_000);
    assert.equal(await status(previousToken), 401);
    assert.equal(await status(token), 200);
  });
});

describe('Fastify, with inject', () => {
  it('sets the client address with remoteAddress, to test allow-lists', async () => {
    t = createTestKeys();
    const app = Fastify();
    await app.register(keygatePlugin, { keys: t.keys });
    app.get('/orders', { onRequest: app.keygate.guard({ scope: 'orders:list' }) }, async (req) => ({ key: req.apiKey.name }));
    const { token } = await t.mint({ name: 'partner', scopes: ['orders:list'], allowedIps: '2001:db8::7' });
    const from = (remoteAddress) => app.inject({ method: 'GET', url: '/orders', headers: { 'x-api-key': token }, remoteAddress });

    assert.deepEqual((await from('2001:db8::7')).json(), { key: 'partner' });
    assert.equal((await from('2001:db8::8')).statusCode, 403);
    await app.close();
  });
});

describe('stable tokens for snapshots', () => {
  it('gives the same token and id in every run with a seed', async () => {
    t = createTestKeys({ seed: 'recipes' });
    const { key, token } = await t.mint({ name: 'snapshot', scopes: ['orders:list'] });
    assert.equal(token, 'kg_lYwbYi7vvHWKG3dCgKXZxfa5fuwUbHD930kyBh');
    assert.equal(key.id, 'fVjsWTTNiEeOf4N7QUIy');
    assert.equal(key.createdAt.toISOString(), '2025-01-01T00:00:00.000Z');
  });
});
