// One app per framework and major version, each with its own sign-in (HTTP Basic) in front of the admin mount.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import express from 'express';
import express4 from 'express4';
import fastify5 from 'fastify';
import fastify4 from 'fastify4';
import Koa3 from 'koa';
import Koa2 from 'koa2';
import { adminRouter } from '../../adapters/express/index.js';
import { adminPlugin } from '../../adapters/fastify/index.js';
import { adminHandler } from '../../adapters/fetch/index.js';
import { adminMiddleware } from '../../adapters/koa/index.js';
import type { AdminAction, AdminBrand } from '../../src/admin/types.js';
import type { KeyManager } from '../../src/manager.js';

/** Where every app mounts the admin. */
export const MOUNT = '/admin/api-keys';
export const PASSWORD = 'correct horse battery';

/** The host's users: who they are, which tenant's keys they manage, what they may do. */
export const USERS: Readonly<Record<string, { owner: string | null; actions?: readonly AdminAction[] }>> = {
  alice: { owner: 'shop-a' },
  bob: { owner: 'shop-b' },
  /** Of Alice's shop, but may only look. */
  viewer: { owner: 'shop-a', actions: ['list', 'read'] },
};

export function authorization(user: string): string {
  return `Basic ${Buffer.from(`${user}:${PASSWORD}`).toString('base64')}`;
}

/** The signed-in user of a request, from its Basic credentials; `null` without valid ones. */
export function signedIn(headers: IncomingMessage['headers'] | Headers): string | null {
  const header = headers instanceof Headers ? headers.get('authorization') : headers.authorization;
  const match = typeof header === 'string' ? /^Basic ([A-Za-z0-9+/=]+)$/.exec(header) : null;
  if (!match) return null;
  const [user, password] = Buffer.from(match[1] as string, 'base64')
    .toString('utf8')
    .split(':');
  return user !== undefined && USERS[user] && password === PASSWORD ? user : null;
}

export interface AdminAppSpec {
  keys: KeyManager;
  brand?: AdminBrand;
  /** Put the app's own JSON body parser in front of the mount (Express, Koa with a parser). */
  ownBodyParser?: boolean;
  /** Told of every request the app answered (sign-in refusals included), once its answer is sent. */
  observe?: (seen: SeenRequest) => void;
}

/** A request as the server saw it, and its answer's status. */
export interface SeenRequest {
  readonly method: string;
  /** The path and query. */
  readonly url: string;
  readonly origin: string | undefined;
  readonly contentType: string | undefined;
  /** Whether it carried credentials (any `Authorization` header). */
  readonly authorized: boolean;
  readonly status: number;
}

export interface AdminApp {
  readonly name: string;
  readonly origin: string;
  /** `origin` + the mount path. */
  readonly url: string;
  close(): Promise<void>;
}

export interface AdminFramework {
  readonly name: string;
  start(spec: AdminAppSpec): Promise<AdminApp>;
}

const UNAUTHORIZED = { 'www-authenticate': 'Basic realm="shop admin", charset="UTF-8"' };

function options(spec: AdminAppSpec, userOf: (request: never) => string) {
  const user = (request: never): { name: string; owner: string | null; actions?: readonly AdminAction[] } => {
    const name = userOf(request);
    return { name, ...(USERS[name] as { owner: string | null }) };
  };
  return {
    keys: spec.keys,
    brand: spec.brand,
    owner: (request: never) => user(request).owner,
    actor: (request: never) => `user:${user(request).name}`,
    authorize: (request: never, action: AdminAction) => user(request).actions?.includes(action) ?? true,
  };
}

/** Reports each request of `server` to `spec.observe` when its answer is sent. */
function watch(server: Server, spec: AdminAppSpec): void {
  const observe = spec.observe;
  if (!observe) return;
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    res.once('finish', () => {
      observe({
        method: req.method ?? '',
        url: req.url ?? '',
        origin: req.headers.origin,
        contentType: req.headers['content-type'],
        authorized: req.headers.authorization !== undefined,
        status: res.statusCode,
      });
    });
  });
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function closer(server: Server): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
}

function expressFramework(name: string, create: typeof express): AdminFramework {
  return {
    name,
    async start(spec) {
      const app = create();
      app.use((req, res, next) => {
        const user = signedIn(req.headers);
        if (user === null) {
          res.status(401).set(UNAUTHORIZED).send('Sign in');
          return;
        }
        (req as { user?: string }).user = user;
        next();
      });
      if (spec.ownBodyParser) app.use(create.json());
      const own = options(spec, (req: { user: string }) => req.user as never as string);
      app.use(MOUNT, adminRouter(own as never));
      app.get('/', (_req, res) => {
        res.send('shop home');
      });
      const server = createServer(app);
      watch(server, spec);
      const origin = await listen(server);
      return { name, origin, url: origin + MOUNT, close: closer(server) };
    },
  };
}

function koaFramework(name: string, Koa: typeof Koa3): AdminFramework {
  return {
    name,
    async start(spec) {
      const app = new Koa();
      app.use(async (ctx, next) => {
        const user = signedIn(ctx.req.headers);
        if (user === null) {
          ctx.status = 401;
          ctx.set(UNAUTHORIZED);
          ctx.body = 'Sign in';
          return;
        }
        ctx.state.user = user;
        await next();
      });
      if (spec.ownBodyParser) {
        // A body parser of the app's own, as koa-bodyparser does it: it reads the stream into ctx.request.body.
        app.use(async (ctx, next) => {
          if (ctx.is('application/json')) {
            const chunks: Buffer[] = [];
            for await (const chunk of ctx.req) chunks.push(chunk as Buffer);
            const text = Buffer.concat(chunks).toString('utf8');
            (ctx.request as { body?: unknown }).body = text === '' ? {} : JSON.parse(text);
          }
          await next();
        });
      }
      const own = options(spec, (ctx: { state: { user: string } }) => ctx.state.user as never as string);
      app.use(adminMiddleware({ prefix: MOUNT, ...(own as object) } as never));
      const server = createServer(app.callback());
      watch(server, spec);
      const origin = await listen(server);
      return { name, origin, url: origin + MOUNT, close: closer(server) };
    },
  };
}

function fastifyFramework(name: string, create: typeof fastify5): AdminFramework {
  return {
    name,
    async start(spec) {
      const app = create();
      app.addHook('onRequest', async (request, reply) => {
        const user = signedIn(request.headers);
        if (user === null) return reply.code(401).headers(UNAUTHORIZED).send('Sign in');
        (request as unknown as { user: string }).user = user;
        return undefined;
      });
      const own = options(spec, (request: { user: string }) => request.user as never as string);
      await app.register(adminPlugin as never, { prefix: MOUNT, ...own });
      watch(app.server, spec);
      await app.listen({ port: 0, host: '127.0.0.1' });
      const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      return {
        name,
        origin,
        url: origin + MOUNT,
        close: async () => {
          app.server.closeAllConnections();
          await app.close();
        },
      };
    },
  };
}

const fetchFramework: AdminFramework = {
  name: 'fetch (@hono/node-server)',
  async start(spec) {
    const own = options(spec, (request: Request) => signedIn(request.headers) as never as string);
    const handler = adminHandler({ basePath: MOUNT, ...(own as object) } as never);
    const server = serve({
      fetch: (request: Request) => {
        if (signedIn(request.headers) === null) return new Response('Sign in', { status: 401, headers: UNAUTHORIZED });
        return handler(request);
      },
      port: 0,
      hostname: '127.0.0.1',
    }) as Server;
    watch(server, spec);
    await new Promise<void>((resolve) => (server.listening ? resolve() : server.once('listening', () => resolve())));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return { name: fetchFramework.name, origin, url: origin + MOUNT, close: closer(server) };
  },
};

/** Every mount, on every framework major the package supports. */
export const ADMIN_FRAMEWORKS: readonly AdminFramework[] = [
  expressFramework('Express 5', express),
  expressFramework('Express 4', express4 as unknown as typeof express),
  koaFramework('Koa 3', Koa3),
  koaFramework('Koa 2', Koa2 as unknown as typeof Koa3),
  fastifyFramework('Fastify 5', fastify5),
  fastifyFramework('Fastify 4', fastify4 as unknown as typeof fastify5),
  fetchFramework,
];
