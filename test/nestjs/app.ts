// The Nest test app, built from a kit (one NestJS major), on Express or Fastify, listening on a real socket.
//
// Decorators are applied as calls: vitest's transform emits neither legacy decorators nor
// `design:paramtypes`, and the code must type-check under the repository's tsconfig.

import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ArgumentsHost, ExceptionFilter, INestApplication } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Request as ExpressRequest } from 'express';
import type { KeygateModuleOptions, RequestWithApiKey } from '../../adapters/nestjs/index.js';
import type { GuardRejection } from '../../src/http.js';
import type { KeyManager } from '../../src/manager.js';
import type { RunningApp } from '../guards/apps.js';
import { send } from '../guards/client.js';
import type { NestKit } from './kit.js';

export type Platform = 'express' | 'fastify';
export const PLATFORMS: readonly Platform[] = ['express', 'fastify'];

export interface NestAppSpec {
  keys: KeyManager;
  /** `KeygateModule.forRoot()` options besides `keys` and `onReject`. */
  guard?: Omit<KeygateModuleOptions, 'keys' | 'onReject'>;
  /** What `onReject` does: add an `X-Reject-Reason` header, or throw. */
  onReject?: 'edit' | 'throw';
  /** `@UseGuards(ApiKeyGuard)` on the guarded controllers, or the guard as APP_GUARD on every route. @default 'controller' */
  install?: 'controller' | 'global';
  /** Configure through `KeygateModule.forRootAsync()`, the manager coming from another module's provider. */
  async?: boolean;
  /** A global exception filter that answers `ApiKeyException`s in its own shape. */
  reshape?: boolean;
  /** Express's `trust proxy` or Fastify's `trustProxy`; the guard must not care. */
  frameworkTrustsProxies?: boolean;
  /** One more controller whose `@RequireScope()` is this, on the controller or on its handler. */
  extraScope?: { on: 'controller' | 'handler'; scope: string | string[] };
  /** Where to listen. @default '127.0.0.1' */
  host?: string;
}

export interface NestApp extends RunningApp {
  app: INestApplication;
}

type NodeSocketOwner = { socket?: { remoteAddress?: string | undefined } };

/** The key the guard put on the request, as the route answers it. */
const keyOf = (req: RequestWithApiKey) => ({ keyId: req.apiKey.id });

/** Applies method decorators to `Class.prototype[name]`, and `@Req()` to its first parameter. */
function route(kit: NestKit, Class: new () => object, name: string, ...decorators: MethodDecorator[]): void {
  const descriptor = Object.getOwnPropertyDescriptor(Class.prototype, name);
  if (!descriptor) throw new Error(`${Class.name} has no method ${name}`);
  for (const decorator of decorators) decorator(Class.prototype, name, descriptor);
  kit.common.Req()(Class.prototype, name, 0);
}

/** A controller class with these methods (routes once decorated with `route()`). */
function controller(name: string, handlers: Record<string, (req: never) => unknown>): new () => object {
  const Class = { [name]: class {} }[name] as new () => object;
  for (const [method, handler] of Object.entries(handlers)) {
    // A function of its own for each route: Nest keeps a route's metadata on its handler function.
    const own = (req: never) => handler(req);
    Object.defineProperty(Class.prototype, method, { value: own, writable: true, configurable: true });
  }
  return Class;
}

/**
 * Starts a Nest app with these routes, on `platform`:
 * - `GET /orders`: `@RequireScope('orders:list')` on the handler
 * - `GET /catalog`: `@RequireScope('products:list')` on the controller
 * - `GET /catalog/orders`: the same controller, `@RequireScope('orders:list')` on the handler
 * - `GET /any`: guarded, no scope; `GET /any/health`: `@SkipApiKey()` on the handler
 * - `GET /open`: `@SkipApiKey()` on the controller; answers the socket's peer address
 * - `GET /extra`: `spec.extraScope`, when given
 */
export async function startNest(kit: NestKit, platform: Platform, spec: NestAppSpec): Promise<NestApp> {
  const { common, core, keygate } = kit;
  const { Controller, Get, Module, UseGuards } = common;
  const { ApiKeyGuard, RequireScope, SkipApiKey } = keygate;
  const guarded = spec.install !== 'global' ? [UseGuards(ApiKeyGuard)] : [];

  // Express's own request type here, to type-check RequestWithApiKey with a platform's request.
  const Orders = controller('OrdersController', { list: (req: RequestWithApiKey<ExpressRequest>) => ({ keyId: req.apiKey.id }) });
  for (const d of [Controller('orders'), ...guarded]) d(Orders);
  route(kit, Orders, 'list', Get(), RequireScope('orders:list'));

  const Catalog = controller('CatalogController', { products: keyOf, orders: keyOf });
  for (const d of [Controller('catalog'), RequireScope('products:list'), ...guarded]) d(Catalog);
  route(kit, Catalog, 'products', Get());
  route(kit, Catalog, 'orders', Get('orders'), RequireScope('orders:list'));

  const Any = controller('AnyController', { any: keyOf, health: () => ({ healthy: true }) });
  for (const d of [Controller('any'), ...guarded]) d(Any);
  route(kit, Any, 'any', Get());
  route(kit, Any, 'health', Get('health'), SkipApiKey());

  const Open = controller('OpenController', {
    peer: (req: { raw?: NodeSocketOwner } & NodeSocketOwner) => ({ peer: (req.raw ?? req).socket?.remoteAddress }),
  });
  for (const d of [Controller('open'), SkipApiKey(), ...guarded]) d(Open);
  route(kit, Open, 'peer', Get());

  const controllers = [Orders, Catalog, Any, Open];
  if (spec.extraScope) {
    const Extra = controller('ExtraController', { extra: keyOf });
    const scope = RequireScope(spec.extraScope.scope);
    for (const d of [Controller('extra'), ...guarded, ...(spec.extraScope.on === 'controller' ? [scope] : [])]) d(Extra);
    route(kit, Extra, 'extra', Get(), ...(spec.extraScope.on === 'handler' ? [scope] : []));
    controllers.push(Extra);
  }

  const onReject = spec.onReject
    ? (rejection: GuardRejection) => {
        if (spec.onReject === 'throw') throw new Error('onReject failed');
        rejection.headers['X-Reject-Reason'] = rejection.reason;
      }
    : undefined;
  const options = { ...spec.guard, keys: spec.keys, onReject };

  let keygateModule: ReturnType<typeof keygate.KeygateModule.forRoot>;
  if (spec.async) {
    // The manager comes from another module's provider, as a database pool or a config would.
    const KEYS = 'KEY_MANAGER';
    class KeysModule {}
    Module({ providers: [{ provide: KEYS, useValue: spec.keys }], exports: [KEYS] })(KeysModule);
    keygateModule = keygate.KeygateModule.forRootAsync({
      imports: [KeysModule],
      inject: [KEYS],
      useFactory: async (keys: KeyManager) => ({ ...options, keys }),
    });
  } else {
    keygateModule = keygate.KeygateModule.forRoot(options);
  }

  class AppModule {}
  Module({
    imports: [keygateModule],
    controllers,
    providers: spec.install === 'global' ? [{ provide: core.APP_GUARD, useClass: ApiKeyGuard }] : [],
  })(AppModule);

  const adapter =
    platform === 'express'
      ? new kit.express.ExpressAdapter()
      : new kit.fastify.FastifyAdapter({ trustProxy: spec.frameworkTrustsProxies === true });
  const app = await core.NestFactory.create<NestExpressApplication>(AppModule, adapter, { logger: false, abortOnError: false });
  try {
    if (platform === 'express' && spec.frameworkTrustsProxies) app.set('trust proxy', true);
    if (spec.reshape) app.useGlobalFilters(reshapingFilter(kit, app));
    const host = spec.host ?? '127.0.0.1';
    await app.listen(0, host);
    const server = app.getHttpServer() as Server;
    const { port } = server.address() as AddressInfo;
    const target = host === '::' ? '127.0.0.1' : host;
    return {
      app,
      port,
      send: (sendOptions = {}) => send(sendOptions.host ?? target, port, sendOptions),
      close: async () => {
        server.closeAllConnections();
        await app.close();
      },
    };
  } catch (error) {
    await app.close();
    throw error;
  }
}

/** A filter of the kind a user may install: it answers `ApiKeyException`s as `{ denied: reason }`, others as Nest does. */
function reshapingFilter(kit: NestKit, app: INestApplication): ExceptionFilter {
  const base = new kit.core.BaseExceptionFilter(app.getHttpAdapter());
  return {
    catch(exception: unknown, host: ArgumentsHost) {
      if (!(exception instanceof kit.keygate.ApiKeyException)) return base.catch(exception, host);
      app.getHttpAdapter().reply(host.switchToHttp().getResponse(), { denied: exception.rejection.reason }, exception.getStatus());
    },
  };
}
