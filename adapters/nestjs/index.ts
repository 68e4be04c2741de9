// keygate/nestjs: ApiKeyGuard, @RequireScope() and KeygateModule for NestJS 11 and 12, on Express or Fastify.
//
// No decorator syntax here: the decorators are applied as calls, with explicit @Inject tokens, so the
// build needs neither `experimentalDecorators` nor the `design:paramtypes` metadata esbuild cannot emit.

import {
  type CanActivate,
  type DynamicModule,
  type ExecutionContext,
  HttpException,
  Inject,
  Injectable,
  type InjectionToken,
  Module,
  type ModuleMetadata,
  type OnModuleInit,
  type OptionalFactoryDependency,
  type Provider,
  SetMetadata,
} from '@nestjs/common';
import { DiscoveryModule, DiscoveryService, Reflector } from '@nestjs/core';
import { ValidationError } from '../../src/errors.js';
import {
  checkOnReject,
  createGuardCore,
  type GuardCore,
  type GuardOptions,
  type GuardRejection,
  type HeaderBag,
  shareFailedAttempts,
} from '../../src/http.js';
import type { KeyManager } from '../../src/manager.js';
import type { ApiKey } from '../../src/types.js';

// Strings, not symbols: the ESM and CJS builds of keygate, if both get loaded, must read each other's metadata.
const SCOPE_METADATA = 'keygate:scope';
const SKIP_METADATA = 'keygate:skip';

/** `onReject` as the guard calls it. */
type RejectHook = (rejection: GuardRejection, request: object, response: object) => void | Promise<void>;

/** Options of `KeygateModule.forRoot()`; the scope is set per controller or handler with `@RequireScope()`. */
export interface KeygateModuleOptions<Req extends object = object, Res extends object = object> extends Omit<GuardOptions, 'scope'> {
  /** The manager from `createKeyManager()`. */
  keys: KeyManager;
  /**
   * Called before a rejection is thrown, e.g. to log it or to change it: change `rejection.status`,
   * `.body` or `.headers` to alter the response. `request` and `response` are the platform's own
   * (Express `req`/`res`, or Fastify `request`/`reply`). A throw goes to Nest's exception handling.
   * To answer in another shape altogether, catch `ApiKeyException` in an exception filter.
   * @default none: the rejection is sent as it is
   */
  onReject?: ((rejection: GuardRejection, request: Req, response: Res) => void | Promise<void>) | undefined;
}

/** Options of `KeygateModule.forRootAsync()`, for a manager built from other providers (a config, a pool). */
export interface KeygateModuleAsyncOptions<Req extends object = object, Res extends object = object> {
  /**
   * Modules whose providers `useFactory` needs.
   * @default none
   */
  imports?: ModuleMetadata['imports'];
  /**
   * The providers passed to `useFactory`, in order.
   * @default none
   */
  inject?: Array<InjectionToken | OptionalFactoryDependency>;
  /** Returns the module's options, `keys` included; it may be async. */
  useFactory: (...args: never[]) => KeygateModuleOptions<Req, Res> | Promise<KeygateModuleOptions<Req, Res>>;
}

/**
 * A request after `ApiKeyGuard` let it through: the platform's request with the verified key as
 * `apiKey`. Pass the platform's type: `RequestWithApiKey<express.Request>` or
 * `RequestWithApiKey<FastifyRequest>`.
 *
 * @example
 * ```ts
 * list(@Req() req: RequestWithApiKey<Request>) { return { calledBy: req.apiKey.name } }
 * ```
 */
export type RequestWithApiKey<Req extends object = object> = Req & {
  /** The verified API key. */
  apiKey: ApiKey;
};

/** The parts of Node's request the guard reads: Express's `req`, or Fastify's `request.raw`. */
interface NodeRequest {
  headers: HeaderBag;
  rawHeaders?: readonly string[] | undefined;
  socket?: { remoteAddress?: string | undefined } | null | undefined;
}

/** The platform's request: Express's `req` (a Node request), or Fastify's `request` with the Node one in `raw`. */
interface PlatformRequest {
  headers: HeaderBag;
  rawHeaders?: readonly string[] | undefined;
  raw?: NodeRequest | undefined;
  socket?: NodeRequest['socket'];
  apiKey?: ApiKey;
}

/**
 * The error the guard throws for a refused request; Nest's exception handling sends its response:
 * `rejection.body` as JSON with `rejection.status`. The guard has already put `rejection.headers`
 * (`WWW-Authenticate`, `Retry-After`) on the response. An exception filter of yours may catch it
 * and answer otherwise; `rejection.reason` says why (`EXPIRED`, `STORE_UNAVAILABLE`, …).
 */
export class ApiKeyException extends HttpException {
  /** The guard's decision: status, body, headers, reason and, behind a 503, the store error. */
  readonly rejection: GuardRejection;

  constructor(rejection: GuardRejection) {
    super(rejection.body, rejection.status, rejection.error ? { cause: rejection.error } : undefined);
    this.rejection = rejection;
  }
}

/** The compiled guards of one `KeygateModule`: one per distinct scope set, made once and shared. */
class KeygateGuards {
  readonly onReject: RejectHook | null;
  private readonly keys: KeyManager;
  private readonly shared: Omit<GuardOptions, 'scope'>;
  private readonly unscoped: GuardCore;
  /** By the metadata array `@RequireScope()` stored, so a request costs one lookup. */
  private readonly byMetadata = new WeakMap<object, GuardCore>();
  /** By scope set, so `['a', 'b']` and `['b', 'a']` share a guard. */
  private readonly bySet = new Map<string, GuardCore>();

  constructor(options: KeygateModuleOptions) {
    if (!options || typeof options !== 'object') throw new ValidationError('options', 'must be an object: KeygateModule.forRoot({ keys })');
    const { keys, onReject, ...own } = options;
    // One failedAttempts budget per address for every guard of the module.
    const shared = shareFailedAttempts(own);
    if ((shared as GuardOptions).scope !== undefined) {
      throw new ValidationError(
        'scope',
        "is set per controller or handler with @RequireScope('orders:list'), not in KeygateModule.forRoot()",
      );
    }
    this.onReject = checkOnReject<RejectHook>(onReject);
    // Compiling here checks every shared option (keys, carriers, trustedProxies…) at startup.
    this.unscoped = createGuardCore(keys, shared);
    this.keys = keys;
    this.shared = shared;
  }

  /** The guard for a `@RequireScope()` value; throws `ValidationError` for an unknown scope. */
  core(scope: unknown): GuardCore {
    if (scope === undefined) return this.unscoped;
    const isObject = typeof scope === 'object' && scope !== null;
    const known = isObject ? this.byMetadata.get(scope) : undefined;
    if (known) return known;
    const list: unknown[] = Array.isArray(scope) ? scope : [scope];
    const id = JSON.stringify([...new Set(list)].sort());
    let core = this.bySet.get(id);
    if (!core) {
      core = createGuardCore(this.keys, { ...this.shared, scope: list as string[] });
      this.bySet.set(id, core);
    }
    if (isObject) this.byMetadata.set(scope, core);
    return core;
  }
}

/** Sets a response header on Express's `res` (Node's `setHeader`) or Fastify's `reply` (`header`). */
function setHeader(response: unknown, name: string, value: string): void {
  const target = response as { setHeader?: (name: string, value: string) => unknown; header?: (name: string, value: string) => unknown };
  if (typeof target.setHeader === 'function') target.setHeader(name, value);
  else if (typeof target.header === 'function') target.header(name, value);
  else
    throw new ValidationError(
      'response',
      'is neither an Express response nor a Fastify reply: use @nestjs/platform-express or @nestjs/platform-fastify',
    );
}

/**
 * A Nest guard that lets a request through only with a valid API key, then `request.apiKey` is
 * the key. The scope comes from `@RequireScope()` on the handler, else on the controller, else any
 * valid key passes; the response then carries the key's `RateLimit` fields. Bad keys get 401, a
 * missing scope or a disallowed client address 403, a rate limit or spent quota 429, a failing key
 * store 503 with `Retry-After`, each thrown as an `ApiKeyException`; other errors (a closed
 * manager) are thrown as they are, for Nest's exception handling. Needs `KeygateModule.forRoot()`.
 *
 * @example
 * ```ts
 * @Controller('orders')
 * @UseGuards(ApiKeyGuard)
 * export class OrdersController {
 *   @Get() @RequireScope('orders:list')
 *   list(@Req() req: RequestWithApiKey<Request>) { return { calledBy: req.apiKey.name } }
 * }
 * ```
 */
export class ApiKeyGuard implements CanActivate {
  private readonly guards: KeygateGuards;
  private readonly reflector: Reflector;

  constructor(guards: KeygateGuards, reflector: Reflector) {
    this.guards = guards;
    this.reflector = reflector;
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<unknown>(SKIP_METADATA, targets) === true) return true;
    const type = context.getType();
    if (type !== 'http') {
      throw new ValidationError('context', `ApiKeyGuard guards HTTP routes, not ${type} handlers; mark those @SkipApiKey()`);
    }
    const core = this.guards.core(this.reflector.getAllAndOverride<unknown>(SCOPE_METADATA, targets));
    const http = context.switchToHttp();
    const request = http.getRequest<PlatformRequest>();
    const response = http.getResponse<object>();
    // Express hands over Node's request itself; Fastify wraps it, in `request.raw`.
    const node: NodeRequest | undefined = Array.isArray(request.rawHeaders) ? request : request.raw;
    const outcome = await core.authenticate({
      headers: request.headers,
      rawHeaders: node?.rawHeaders,
      remoteAddress: node?.socket?.remoteAddress ?? undefined,
    });
    if (outcome.ok) {
      request.apiKey = outcome.key;
      // The RateLimit fields, when a limit applied; the handler may still change them.
      const headers = outcome.headers;
      for (const name in headers) setHeader(response, name, headers[name] as string);
      return true;
    }
    if (this.guards.onReject) await this.guards.onReject(outcome, request, response);
    // Nest's exception handling replies with the status and body; the headers must be on the response already.
    for (const [name, value] of Object.entries(outcome.headers)) setHeader(response, name, value);
    throw new ApiKeyException(outcome);
  }
}

Injectable()(ApiKeyGuard);
Inject(KeygateGuards)(ApiKeyGuard, undefined, 0);
Inject(Reflector)(ApiKeyGuard, undefined, 1);

/** The methods of a controller prototype and its parents, by name, the nearest first. */
function methodsOf(prototype: object | null): Map<string, unknown> {
  const methods = new Map<string, unknown>();
  for (let proto = prototype; proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      const value = Object.getOwnPropertyDescriptor(proto, name)?.value;
      if (name !== 'constructor' && typeof value === 'function' && !methods.has(name)) methods.set(name, value);
    }
  }
  return methods;
}

/** Compiles the guard of every `@RequireScope()` of every controller at startup, so a typo stops the app. */
class KeygateScopeCheck implements OnModuleInit {
  private readonly guards: KeygateGuards;
  private readonly discovery: DiscoveryService;
  private readonly reflector: Reflector;

  constructor(guards: KeygateGuards, discovery: DiscoveryService, reflector: Reflector) {
    this.guards = guards;
    this.discovery = discovery;
    this.reflector = reflector;
  }

  onModuleInit(): void {
    for (const wrapper of this.discovery.getControllers()) {
      const controller = wrapper.metatype;
      if (typeof controller !== 'function') continue;
      this.check(controller, controller.name);
      for (const [name, method] of methodsOf(controller.prototype as object)) {
        if (typeof method === 'function') this.check(method, `${controller.name}.${name}`);
      }
    }
  }

  private check(target: Parameters<Reflector['get']>[1], where: string): void {
    const scope = this.reflector.get<unknown>(SCOPE_METADATA, target);
    if (scope === undefined) return;
    try {
      this.guards.core(scope);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      throw new ValidationError(error.field, `${error.reason} (in @RequireScope() of ${where})`);
    }
  }
}

Injectable()(KeygateScopeCheck);
Inject(KeygateGuards)(KeygateScopeCheck, undefined, 0);
Inject(DiscoveryService)(KeygateScopeCheck, undefined, 1);
Inject(Reflector)(KeygateScopeCheck, undefined, 2);

/**
 * The scope(s) a controller's routes or one handler's route need; with several, all are required.
 * A handler's `@RequireScope()` replaces its controller's. Every scope is checked against the
 * manager's catalog when the app starts: an unknown one stops it with a `ValidationError`.
 *
 * @example
 * ```ts
 * @Get() @RequireScope('orders:list') list() { … }
 * ```
 */
export function RequireScope(scope: string | readonly string[]): ClassDecorator & MethodDecorator {
  if (typeof scope !== 'string' && !Array.isArray(scope)) {
    throw new ValidationError('scope', "must be a scope name or an array of them, e.g. @RequireScope('orders:list')");
  }
  return SetMetadata(SCOPE_METADATA, Object.freeze(typeof scope === 'string' ? [scope] : [...scope]));
}

/**
 * Lets the routes of a controller, or one handler's route, through without an API key, where
 * `ApiKeyGuard` guards every route (`APP_GUARD`): a health check, a public page. Also for the
 * non-HTTP handlers (microservice, WebSocket) of a hybrid app, which the guard refuses otherwise.
 *
 * @example
 * ```ts
 * @Get('health') @SkipApiKey() health() { return 'ok' }
 * ```
 */
export function SkipApiKey(): ClassDecorator & MethodDecorator {
  return SetMetadata(SKIP_METADATA, true);
}

function moduleWith(guards: Provider, imports: NonNullable<ModuleMetadata['imports']> = []): DynamicModule {
  return {
    module: KeygateModule,
    global: true,
    imports: [DiscoveryModule, ...imports],
    providers: [guards, KeygateScopeCheck, ApiKeyGuard],
    exports: [KeygateGuards, ApiKeyGuard],
  };
}

/**
 * Makes the key manager available to `ApiKeyGuard` in every module (a global module). Import it
 * once, in the root module.
 */
// biome-ignore lint/complexity/noStaticOnlyClass: Nest modules are classes, configured through static methods.
export class KeygateModule {
  /**
   * The module with these options. Every option is checked here: a bad one throws `ValidationError`.
   *
   * @example
   * ```ts
   * @Module({ imports: [KeygateModule.forRoot({ keys })], controllers: [OrdersController] })
   * export class AppModule {}
   * ```
   */
  static forRoot<Req extends object = object, Res extends object = object>(options: KeygateModuleOptions<Req, Res>): DynamicModule {
    return moduleWith({ provide: KeygateGuards, useValue: new KeygateGuards(options as KeygateModuleOptions) });
  }

  /**
   * The module with options made by a factory from other providers; they are checked when the app
   * is created.
   *
   * @example
   * KeygateModule.forRootAsync({ inject: [ConfigService], useFactory: (config) => ({ keys: makeKeys(config) }) })
   */
  static forRootAsync<Req extends object = object, Res extends object = object>(
    options: KeygateModuleAsyncOptions<Req, Res>,
  ): DynamicModule {
    if (!options || typeof options.useFactory !== 'function') {
      throw new ValidationError('useFactory', 'must be a function that returns the options: { keys }');
    }
    const factory = options.useFactory;
    return moduleWith(
      {
        provide: KeygateGuards,
        useFactory: async (...args: unknown[]) => new KeygateGuards((await factory(...(args as never[]))) as KeygateModuleOptions),
        inject: options.inject ?? [],
      },
      options.imports,
    );
  }
}

Module({})(KeygateModule);

export type {
  FailedAttemptsOptions,
  GuardOptions,
  GuardPass,
  GuardRejection,
  GuardOutcome,
  GuardErrorBody,
  GuardErrorCode,
  TokenCarrier,
} from '../../src/http.js';
