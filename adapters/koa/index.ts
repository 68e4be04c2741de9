// keygate/koa: apiKeyGuard(), Koa 2 and 3 middleware that verifies the request's API key, and adminMiddleware(),
// the admin page and API.

import type { IncomingMessage } from 'node:http';
import { createAdmin } from '../../src/admin/core.js';
import { readNodeBody } from '../../src/admin/node.js';
import { adminOriginCheck } from '../../src/admin/origin.js';
import type { AdminOptions } from '../../src/admin/types.js';
import { ValidationError } from '../../src/errors.js';
import { checkOnReject, createGuardCore, type GuardOptions, type GuardRejection, type HeaderBag } from '../../src/http.js';
import type { KeyManager } from '../../src/manager.js';
import type { ApiKey } from '../../src/types.js';

/** What the guard adds to `ctx.state`; use it as Koa's state type: `new Koa<ApiKeyState>()`. */
export interface ApiKeyState {
  /** The verified API key, set by keygate's `apiKeyGuard`. */
  apiKey?: ApiKey;
}

/** The parts of a Koa context the guard uses (any Koa `Context` fits). */
export interface GuardedContext {
  req: {
    headers: HeaderBag;
    /** The header lines as received; every `Authorization` header is read from them. */
    rawHeaders?: readonly string[] | undefined;
    socket: { remoteAddress?: string | undefined } | null;
  };
  state: object;
  status: number;
  body: unknown;
  respond?: boolean | undefined;
  readonly headerSent: boolean;
  set(field: string, value: string): void;
}

export interface KoaGuardOptions<Ctx extends GuardedContext = GuardedContext> extends GuardOptions {
  /**
   * Called before a rejection is sent, e.g. to log it or to change it. Change `rejection.status`,
   * `.body` or `.headers` to alter the response the guard sends, or answer yourself by setting
   * `ctx.body` (or `ctx.respond = false`); the guard then leaves the response alone. A throw goes
   * to Koa's error handling.
   * @default none: the guard sends the rejection as it is
   */
  onReject?: ((rejection: GuardRejection, ctx: Ctx) => void | Promise<void>) | undefined;
}

/**
 * Koa middleware (Koa 2 and 3) that lets a request through only with a valid API key; the key is
 * then `ctx.state.apiKey`, and the response carries the key's `RateLimit` fields. Bad keys get 401,
 * a missing scope or a disallowed client address 403, a rate limit or spent quota 429, a failing
 * key store 503 with `Retry-After`. Other errors are thrown to Koa's error handling.
 *
 * @example
 * router.get('/orders', apiKeyGuard(keys, { scope: 'orders:list' }), (ctx) => {
 *   ctx.body = { owner: ctx.state.apiKey.ownerId }
 * })
 */
export function apiKeyGuard<Ctx extends GuardedContext = GuardedContext>(
  keys: KeyManager,
  options: KoaGuardOptions<Ctx> = {},
): (ctx: Ctx, next: () => Promise<unknown>) => Promise<void> {
  const core = createGuardCore(keys, options);
  const onReject = checkOnReject(options.onReject);

  return async (ctx, next) => {
    const { req } = ctx;
    const outcome = await core.authenticate({ headers: req.headers, rawHeaders: req.rawHeaders, remoteAddress: req.socket?.remoteAddress });
    if (outcome.ok) {
      (ctx.state as ApiKeyState).apiKey = outcome.key;
      // The RateLimit fields, when a limit applied; the handler may still change them.
      const headers = outcome.headers;
      for (const name in headers) ctx.set(name, headers[name] as string);
      await next();
      return;
    }
    if (onReject) {
      const bodyBefore = ctx.body;
      await onReject(outcome, ctx);
      if (ctx.body !== bodyBefore || ctx.respond === false || ctx.headerSent) return;
    }
    ctx.status = outcome.status;
    for (const [name, value] of Object.entries(outcome.headers)) ctx.set(name, value);
    ctx.body = outcome.body;
  };
}

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
export type { AdminAction, AdminBrand, AdminErrorBody, AdminErrorCode, AdminKey, AdminOptions } from '../../src/admin/types.js';

/** The parts of a Koa context the admin mount uses (any Koa `Context` fits). */
export interface AdminKoaContext {
  req: IncomingMessage;
  /** The request path (without the query). */
  path: string;
  /** The query string without `?`. */
  querystring: string;
  /** Koa's request; its `body`, when the app's body parser read it first. */
  request: object;
  status: number;
  body: unknown;
  set(field: string, value: string): void;
}

/** Options of `adminMiddleware`: those of every admin mount, and its path. */
export interface KoaAdminOptions<Ctx extends AdminKoaContext = AdminKoaContext> extends AdminOptions<Ctx> {
  /**
   * The path the page and API answer under, e.g. `'/admin/api-keys'`; other requests go on to
   * the next middleware.
   * @default '' (the server's root)
   */
  prefix?: string | undefined;
}

/**
 * The "API Keys" admin page and its JSON API as Koa middleware (Koa 2 and 3), after the app's own
 * sign-in. The page is at `<prefix>/`, the API under `<prefix>/api/`, the OpenAPI document at
 * `<prefix>/openapi.json`. Bad options throw `ValidationError` here, at startup.
 *
 * @example
 * app.use(adminMiddleware({ prefix: '/admin/api-keys', keys, owner: (ctx) => ctx.state.user.shopId }))
 */
export function adminMiddleware<Ctx extends AdminKoaContext = AdminKoaContext>(
  options: KoaAdminOptions<Ctx>,
): (ctx: Ctx, next: () => Promise<unknown>) => Promise<void> {
  const given = options?.prefix ?? '';
  const prefix = given === '/' ? '' : given;
  if (typeof prefix !== 'string' || !(prefix === '' || /^(?:\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$/.test(prefix))) {
    throw new ValidationError(
      'prefix',
      `must be a path such as '/admin/api-keys' (starting with /, no trailing /), got ${JSON.stringify(prefix)}`,
    );
  }
  const admin = createAdmin<Ctx>(options);
  const origin = adminOriginCheck(admin.options);
  return async (ctx, next) => {
    const { req } = ctx;
    if (!(ctx.path === prefix || ctx.path.startsWith(`${prefix}/`))) {
      await next();
      return;
    }
    const answer = await admin.handle(
      {
        method: (req.method ?? 'GET').toUpperCase(),
        path: ctx.path.slice(prefix.length),
        query: ctx.querystring,
        headers: req.headers,
        body: await readNodeBody(req, (ctx.request as { body?: unknown }).body),
        base: prefix,
        sameOrigin: origin.node({
          headers: req.headers,
          remoteAddress: req.socket?.remoteAddress,
          encrypted: (req.socket as { encrypted?: boolean } | null)?.encrypted === true,
        }),
      },
      ctx,
    );
    ctx.status = answer.status;
    for (const [name, value] of Object.entries(answer.headers)) ctx.set(name, value);
    // Koa turns a `null` body into 204: an answer without one (a redirect) gets an empty text instead.
    ctx.body = answer.body ?? (answer.status === 204 || answer.status === 304 ? null : '');
  };
}
