// What each adapter adds on top of the shared core: mounting, typing, registration and startup checks.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import express4 from 'express4';
import fastify5, { type FastifyInstance } from 'fastify';
import fastify4 from 'fastify4';
import Koa3 from 'koa';
import Koa2 from 'koa2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiKeyGuard as expressGuard } from '../../adapters/express/index.js';
import keygateDefault, { keygatePlugin } from '../../adapters/fastify/index.js';
import { apiKeyGuard as koaGuard, type ApiKeyState } from '../../adapters/koa/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { ValidationError } from '../../src/errors.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import { send } from './client.js';

let keys: KeyManager;
let token: string;
let keyId: string;

beforeAll(async () => {
  keys = createKeyManager({ store: memoryStore() });
  const created = await keys.create({ name: 'erp', scopes: ['orders:list'] });
  token = created.token;
  keyId = created.key.id;
});

async function serve(listener: Parameters<typeof createServer>[1]): Promise<{ port: number; close: () => Promise<void> }> {
  const server = createServer(listener);
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

describe.each([
  ['express 4', express4],
  ['express 5', express],
] as const)('%s apiKeyGuard', (_name, create) => {
  it('guards every route when mounted with app.use, and sets req.apiKey', async () => {
    const app = create();
    app.use(expressGuard(keys));
    app.get('/me', (req, res) => {
      res.json({ id: req.apiKey?.id, name: req.apiKey?.name });
    });
    const server = await serve(app);
    try {
      expect((await send('127.0.0.1', server.port, { path: '/me' })).status).toBe(401);
      const reply = await send('127.0.0.1', server.port, { path: '/me', headers: { 'x-api-key': token } });
      expect(reply.json).toEqual({ id: keyId, name: 'erp' });
    } finally {
      await server.close();
    }
  });

  it('passes an onReject that throws or rejects to next(err), once', async () => {
    const app = create();
    let handled = 0;
    app.get(
      '/sync',
      expressGuard(keys, {
        onReject: () => {
          throw new Error('sync');
        },
      }),
      (_req, res) => res.end('through'),
    );
    app.get('/async', expressGuard(keys, { onReject: () => Promise.reject(new Error('async')) }), (_req, res) => res.end('through'));
    app.use((error: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      handled++;
      res.status(500).json({ caught: error.message });
    });
    const server = await serve(app);
    try {
      for (const path of ['/sync', '/async']) {
        const reply = await send('127.0.0.1', server.port, { path });
        expect(reply.status).toBe(500);
        expect(reply.json).toEqual({ caught: path.slice(1) });
      }
      expect(handled).toBe(2);
    } finally {
      await server.close();
    }
  });

  it('fails at startup, not per request, when misconfigured', () => {
    expect(() => expressGuard(keys, { scope: 'orders:delete' })).toThrow(ValidationError);
    expect(() => expressGuard(keys, { onReject: 'log' as unknown as undefined })).toThrow(ValidationError);
    expect(() => expressGuard(keys, { trustedProxies: '0x7f.0.0.1' })).toThrow(/trustedProxies/);
  });
});

describe.each([
  ['koa 2', Koa2],
  ['koa 3', Koa3],
] as const)('%s apiKeyGuard', (_name, Koa) => {
  it('guards every route when mounted with app.use, and sets ctx.state.apiKey', async () => {
    const app = new Koa<ApiKeyState>();
    app.use(koaGuard(keys, { scope: 'orders:list' }));
    app.use((ctx) => {
      ctx.body = { id: ctx.state.apiKey?.id };
    });
    const server = await serve(app.callback());
    try {
      const refused = await send('127.0.0.1', server.port, { path: '/me' });
      expect(refused.status).toBe(401);
      expect(refused.headers['www-authenticate']).toBe('Bearer');
      const reply = await send('127.0.0.1', server.port, { path: '/me', headers: { authorization: `Bearer ${token}` } });
      expect(reply.json).toEqual({ id: keyId });
    } finally {
      await server.close();
    }
  });

  it('fails at startup, not per request, when misconfigured', () => {
    expect(() => koaGuard(keys, { scope: ['orders:list', 'orders:remove'] })).toThrow(ValidationError);
    expect(() => koaGuard(keys, { carriers: ['cookie' as 'bearer'] })).toThrow(/carriers/);
  });
});

describe.each([
  ['fastify 4', fastify4 as unknown as typeof fastify5],
  ['fastify 5', fastify5],
] as const)('%s keygatePlugin', (_name, create) => {
  const apps: FastifyInstance[] = [];
  const app = (): FastifyInstance => {
    const instance = create();
    apps.push(instance);
    return instance;
  };
  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
  });

  it('exports the same plugin as default and as keygatePlugin', () => {
    expect(keygateDefault).toBe(keygatePlugin);
  });

  it('sets request.apiKey on guarded routes only, as onRequest or preHandler', async () => {
    const fastify = app();
    await fastify.register(keygatePlugin, { keys });
    fastify.get('/open', async (request) => ({ apiKey: request.apiKey }));
    fastify.get('/on-request', { onRequest: fastify.keygate.guard({ scope: 'orders:list' }) }, async (request) => ({
      id: request.apiKey?.id,
    }));
    fastify.get('/pre-handler', { preHandler: [fastify.keygate.guard()] }, async (request) => ({ id: request.apiKey?.id }));
    // Route generics still type-check with the guard.
    fastify.get<{ Querystring: { page?: string } }>(
      '/typed',
      { onRequest: fastify.keygate.guard({ scope: ['orders:list'] }) },
      async (request) => ({ page: request.query.page ?? null }),
    );
    const headers = { authorization: `Bearer ${token}` };
    expect((await fastify.inject({ url: '/open', headers })).json()).toEqual({ apiKey: null });
    expect((await fastify.inject({ url: '/on-request', headers })).json()).toEqual({ id: keyId });
    expect((await fastify.inject({ url: '/pre-handler', headers })).json()).toEqual({ id: keyId });
    expect((await fastify.inject({ url: '/typed?page=2', headers })).json()).toEqual({ page: '2' });
    expect((await fastify.inject({ url: '/on-request' })).statusCode).toBe(401);
    expect((await fastify.inject({ url: '/typed' })).statusCode).toBe(401);
  });

  it("passes a synchronously throwing onReject to Fastify's error handling", async () => {
    const fastify = app();
    await fastify.register(keygatePlugin, {
      keys,
      onReject: () => {
        throw new Error('sync');
      },
    });
    fastify.get('/orders', { onRequest: fastify.keygate.guard() }, async () => 'through');
    const reply = await fastify.inject({ url: '/orders' });
    expect(reply.statusCode).toBe(500);
    expect(reply.json()).toMatchObject({ message: 'sync' });
  });

  it('guards every route of one plugin with addHook, leaving the others open', async () => {
    const fastify = app();
    await fastify.register(keygatePlugin, { keys, exposeReasons: true });
    await fastify.register(
      async (api) => {
        api.addHook('onRequest', api.keygate.guard({ scope: 'orders:list' }));
        api.get('/orders', async (request) => ({ id: request.apiKey?.id }));
      },
      { prefix: '/api' },
    );
    fastify.get('/health', async () => ({ ok: true }));
    const refused = await fastify.inject({ url: '/api/orders' });
    expect(refused.statusCode).toBe(401);
    expect(refused.headers['www-authenticate']).toBe('Bearer');
    expect(refused.json()).toMatchObject({ error: { code: 'invalid_api_key', reason: 'MISSING' } });
    expect((await fastify.inject({ url: '/api/orders', headers: { 'x-api-key': token } })).json()).toEqual({ id: keyId });
    expect((await fastify.inject({ url: '/health' })).statusCode).toBe(200);
  });

  it('fails at startup when misconfigured', async () => {
    const noKeys = app();
    await expect(noKeys.register(keygatePlugin, {} as { keys: KeyManager })).rejects.toThrow(ValidationError);

    const pluginScope = app();
    await expect(pluginScope.register(keygatePlugin, { keys, scope: 'orders:list' } as { keys: KeyManager })).rejects.toMatchObject({
      field: 'scope',
    });

    const badProxy = app();
    await expect(badProxy.register(keygatePlugin, { keys, trustedProxies: ['10.0.0.0/40'] })).rejects.toMatchObject({
      field: 'trustedProxies',
    });

    const badRoute = app();
    await badRoute.register(keygatePlugin, { keys });
    expect(() => badRoute.keygate.guard({ scope: 'orders:export' })).toThrow(ValidationError);
  });

  it('refuses to be registered twice in one context', async () => {
    const fastify = app();
    await fastify.register(keygatePlugin, { keys });
    await expect(fastify.register(keygatePlugin, { keys })).rejects.toThrow();
  });
});
