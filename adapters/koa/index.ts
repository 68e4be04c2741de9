// keygate/koa: apiKeyGuard(), Koa 2 and 3 middleware that verifies the request's API key.

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
