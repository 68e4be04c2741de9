// One small app per framework and major version, all with the same routes, for the shared guard tests.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Http2Bindings, type HttpBindings, serve } from '@hono/node-server';
import express from 'express';
import express4 from 'express4';
import fastify5, { type FastifyInstance } from 'fastify';
import fastify4 from 'fastify4';
import { Hono } from 'hono';
import Koa3 from 'koa';
import Koa2 from 'koa2';
import { apiKeyGuard as expressGuard } from '../../adapters/express/index.js';
import keygatePlugin from '../../adapters/fastify/index.js';
import { createFetchGuard, rejectionResponse, withGuardHeaders } from '../../adapters/fetch/index.js';
import { apiKeyGuard as honoGuard } from '../../adapters/hono/index.js';
import { apiKeyGuard as koaGuard, type ApiKeyState } from '../../adapters/koa/index.js';
import type { GuardOptions, GuardRejection } from '../../src/http.js';
import type { KeyManager } from '../../src/manager.js';
import { send, type Reply, type SendOptions } from './client.js';

/** What the app's `onReject` hook does: add a header, answer by itself, or throw. */
export type RejectHook = 'edit' | 'replace' | 'throw';

export interface AppSpec {
  keys: KeyManager;
  /** Options of the guard on `GET /orders`, which needs `orders:list` unless `scope` is given. */
  guard?: GuardOptions;
  onReject?: RejectHook;
  /** Turns on Express's `trust proxy`, Koa's `app.proxy`, Fastify's `trustProxy`; the guard must not care. */
  frameworkTrustsProxies?: boolean;
  /** Where to listen. @default '127.0.0.1' */
  host?: string;
}

export interface RunningApp {
  port: number;
  /** A request to the app; to `127.0.0.1` when it listens on `::`. */
  send(options?: SendOptions & { host?: string }): Promise<Reply>;
  close(): Promise<void>;
}

export interface Framework {
  name: string;
  start(spec: AppSpec): Promise<RunningApp>;
}

/** The body of a request that reached the framework's error handling. */
export const APP_ERROR = 'app_error';

function errorDetail(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown };
  return typeof e.code === 'string' ? e.code : String(e.message);
}

function editOrThrow(hook: RejectHook, rejection: GuardRejection): boolean {
  if (hook === 'throw') throw new Error('onReject failed');
  if (hook === 'edit') rejection.headers['X-Reject-Reason'] = rejection.reason;
  return hook === 'replace';
}

function scopeOf(spec: AppSpec): GuardOptions['scope'] {
  return spec.guard && 'scope' in spec.guard ? spec.guard.scope : 'orders:list';
}

async function listen(server: Server, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: 0 }, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

function running(host: string, port: number, close: () => Promise<void>): RunningApp {
  const target = host === '::' ? '127.0.0.1' : host;
  return { port, send: (options = {}) => send(options.host ?? target, port, options), close };
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

function expressFramework(name: string, create: typeof express): Framework {
  return {
    name,
    async start(spec) {
      const app = create();
      if (spec.frameworkTrustsProxies) app.set('trust proxy', true);
      const hook = spec.onReject;
      const guard = expressGuard(spec.keys, {
        ...spec.guard,
        scope: scopeOf(spec),
        onReject: hook
          ? (rejection, _req: express.Request, res: express.Response) => {
              if (editOrThrow(hook, rejection)) res.status(418).type('text/plain').send(`custom:${rejection.reason}`);
            }
          : undefined,
      });
      app.get('/orders', guard, (req, res) => {
        res.json({ keyId: req.apiKey?.id });
      });
      app.get('/open', (req, res) => {
        res.json({ peer: req.socket.remoteAddress });
      });
      app.use((error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
        res.status(500).json({ error: { code: APP_ERROR, detail: errorDetail(error) } });
      });
      const host = spec.host ?? '127.0.0.1';
      const server = createServer(app);
      const port = await listen(server, host);
      return running(host, port, () => closeServer(server));
    },
  };
}

function koaFramework(name: string, Koa: typeof Koa3): Framework {
  return {
    name,
    async start(spec) {
      const app = new Koa<ApiKeyState>();
      app.proxy = spec.frameworkTrustsProxies === true;
      const hook = spec.onReject;
      const guard = koaGuard(spec.keys, {
        ...spec.guard,
        scope: scopeOf(spec),
        onReject: hook
          ? (rejection, ctx: Koa3.Context) => {
              if (editOrThrow(hook, rejection)) {
                ctx.status = 418;
                ctx.body = `custom:${rejection.reason}`;
              }
            }
          : undefined,
      });
      app.use(async (ctx, next) => {
        try {
          await next();
        } catch (error) {
          ctx.status = 500;
          ctx.body = { error: { code: APP_ERROR, detail: errorDetail(error) } };
        }
      });
      app.use(async (ctx, next) => {
        if (ctx.path === '/open') {
          ctx.body = { peer: ctx.req.socket.remoteAddress };
          return;
        }
        if (ctx.path !== '/orders') return next();
        await guard(ctx, async () => {
          ctx.body = { keyId: ctx.state.apiKey?.id };
        });
      });
      const host = spec.host ?? '127.0.0.1';
      const server = createServer(app.callback());
      const port = await listen(server, host);
      return running(host, port, () => closeServer(server));
    },
  };
}

function fastifyFramework(name: string, create: typeof fastify5): Framework {
  return {
    name,
    async start(spec) {
      const app: FastifyInstance = create({ trustProxy: spec.frameworkTrustsProxies === true });
      const { scope: _scope, ...shared } = spec.guard ?? {};
      const hook = spec.onReject;
      await app.register(keygatePlugin, {
        keys: spec.keys,
        ...shared,
        onReject: hook
          ? async (rejection, _request, reply) => {
              if (editOrThrow(hook, rejection)) await reply.code(418).type('text/plain').send(`custom:${rejection.reason}`);
            }
          : undefined,
      });
      app.setErrorHandler(async (error, _request, reply) => {
        return reply.code(500).send({ error: { code: APP_ERROR, detail: errorDetail(error) } });
      });
      const scope = scopeOf(spec);
      app.get('/orders', { onRequest: app.keygate.guard(scope === undefined ? {} : { scope }) }, async (request) => {
        return { keyId: request.apiKey?.id };
      });
      app.get('/open', async (request) => ({ peer: request.raw.socket.remoteAddress }));
      const host = spec.host ?? '127.0.0.1';
      await app.listen({ host, port: 0 });
      const port = (app.server.address() as AddressInfo).port;
      return running(host, port, async () => {
        app.server.closeAllConnections();
        await app.close();
      });
    },
  };
}

/** Serves a fetch handler with @hono/node-server on `host`, as a Node HTTP/1 server. */
async function serveFetch(
  host: string,
  fetch: (request: Request, env: HttpBindings | Http2Bindings) => Promise<Response> | Response,
): Promise<RunningApp> {
  const server = serve({ fetch, port: 0, hostname: host }) as Server;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return running(host, port, () => closeServer(server));
}

function honoFramework(name: string): Framework {
  return {
    name,
    async start(spec) {
      const app = new Hono<{ Bindings: HttpBindings }>();
      const hook = spec.onReject;
      const guard = honoGuard(spec.keys, {
        ...spec.guard,
        scope: scopeOf(spec),
        onReject: hook
          ? (rejection, c) => (editOrThrow(hook, rejection) ? c.text(`custom:${rejection.reason}`, 418) : undefined)
          : undefined,
      });
      app.get('/orders', guard, (c) => c.json({ keyId: c.get('apiKey').id }));
      app.get('/open', (c) => c.json({ peer: c.env.incoming.socket.remoteAddress }));
      app.onError((error, c) => c.json({ error: { code: APP_ERROR, detail: errorDetail(error) } }, 500));
      return serveFetch(spec.host ?? '127.0.0.1', app.fetch);
    },
  };
}

/** A bare fetch handler, no framework: createFetchGuard with the socket's address, withGuardHeaders for passes, rejectionResponse for refusals. */
function fetchFramework(name: string): Framework {
  return {
    name,
    async start(spec) {
      const guard = createFetchGuard(spec.keys, { ...spec.guard, scope: scopeOf(spec) });
      const hook = spec.onReject;
      const json = (body: unknown, status = 200) =>
        new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
      const handle = async (request: Request, env: HttpBindings | Http2Bindings): Promise<Response> => {
        const peer = env.incoming.socket.remoteAddress;
        const path = new URL(request.url).pathname;
        if (path === '/open') return json({ peer });
        if (path !== '/orders') return json({ error: 'not found' }, 404);
        const outcome = await guard.authenticate(request, { clientAddress: peer });
        if (outcome.ok) return withGuardHeaders(json({ keyId: outcome.key.id }), outcome);
        if (hook && editOrThrow(hook, outcome)) return new Response(`custom:${outcome.reason}`, { status: 418 });
        return rejectionResponse(outcome);
      };
      return serveFetch(spec.host ?? '127.0.0.1', async (request, env) => {
        try {
          return await handle(request, env);
        } catch (error) {
          return json({ error: { code: APP_ERROR, detail: errorDetail(error) } }, 500);
        }
      });
    },
  };
}

/** Every supported framework major, each tested with the same tables. */
export const FRAMEWORKS: readonly Framework[] = [
  expressFramework('express 4', express4),
  expressFramework('express 5', express),
  koaFramework('koa 2', Koa2),
  koaFramework('koa 3', Koa3),
  // fastify 4 has its own type package; at runtime it takes the same plugin and calls.
  fastifyFramework('fastify 4', fastify4 as unknown as typeof fastify5),
  fastifyFramework('fastify 5', fastify5),
  honoFramework('hono 4'),
  // keygate/fetch in a bare fetch handler, served by @hono/node-server.
  fetchFramework('fetch'),
];
