// keygate/next: createNextGuard(), API key guards for Next.js App Router route handlers, over keygate/fetch.

import { ValidationError } from '../../src/errors.js';
import { checkOnReject, forwardedClient, type GuardOptions, type GuardRejection, shareFailedAttempts } from '../../src/http.js';
import { type AddressMatcher, compileTrustedProxies } from '../../src/ip.js';
import type { KeyManager } from '../../src/manager.js';
import type { ApiKey } from '../../src/types.js';
import { createFetchGuard, type FetchGuard, type FetchGuardOptions, rejectionResponse, withGuardHeaders } from '../fetch/index.js';

/** Options shared by every route of `createNextGuard`; each route picks its scope in `withApiKey`. */
export interface NextGuardOptions extends Omit<GuardOptions, 'scope' | 'trustedProxies'> {
  /**
   * Whether `X-Forwarded-For` is believed, and how far. A route handler sees no socket: the client
   * address can only come from that header, which Next.js fills from the socket when the request
   * has none but passes on as sent when it has one, so anyone can write it unless a proxy in front
   * of Next.js sets or appends it.
   * - `true`: one proxy sets or appends it (Vercel; nginx or Caddy in front of `next start`): the
   *   client address is its right-most entry.
   * - addresses, CIDR ranges and the names `loopback`, `linklocal`, `uniquelocal`, as an array or a
   *   comma-separated string: a chain of proxies (a CDN in front of nginx), the inner ones named:
   *   the client address is the right-most entry that is not one of them.
   *
   * With `clientAddress`, a list names the proxies whose `X-Forwarded-For` is believed when the
   * peer is one of them, exactly as in the other guards (and `true` is refused).
   * @default none: `X-Forwarded-For` is ignored, there is no client address, and every key with an IP allow-list is refused (403 `ip_not_allowed`)
   */
  trustedProxies?: true | string | readonly string[] | undefined;
  /**
   * The address of the peer that opened the connection, when the platform tells it in a way a client
   * cannot forge (say Cloudflare's `CF-Connecting-IP`, or a header your own server sets from the
   * socket). Return `undefined` or `null` when it is not known: keys with an IP allow-list are then
   * refused.
   * @default none: the address comes from `X-Forwarded-For` as `trustedProxies` says
   */
  clientAddress?: ((request: Request) => string | null | undefined) | undefined;
  /**
   * Called before a rejection is sent, e.g. to log it or to change it. Change `rejection.status`,
   * `.body` or `.headers` to alter the response the guard sends, or return a `Response` to send that
   * instead. A throw goes to Next.js (a 500, or your `error` handling).
   * @default none: the guard sends the rejection as it is
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: a hook that returns nothing, async or not, must fit too.
  onReject?: ((rejection: GuardRejection, request: Request) => Response | void | Promise<Response | void>) | undefined;
}

/** Options of one route. */
export interface NextRouteOptions {
  /**
   * The scope(s) the route needs; with several, all are required. Checked when the route module
   * is loaded, so a typo fails at build or start-up.
   * @default none (any valid key passes)
   */
  scope?: string | readonly string[] | undefined;
}

/**
 * A route handler that receives the verified key as a third argument; `context` is Next.js's own
 * (`{ params }`), passed on untouched.
 */
export type ApiKeyRouteHandler<Req extends Request = Request, Ctx = unknown> = (
  request: Req,
  context: Ctx,
  apiKey: ApiKey,
) => Response | Promise<Response>;

/** Wraps a route handler: the result is what a `route.ts` exports as `GET`, `POST`, … */
export type WithApiKey = <Req extends Request = Request, Ctx = unknown>(
  handler: ApiKeyRouteHandler<Req, Ctx>,
  options?: NextRouteOptions,
) => (request: Req, context: Ctx) => Promise<Response>;

/** `trustedProxies: true`: the one proxy's hop is the client, no hop is a proxy of its own. */
const NO_PROXY: AddressMatcher = () => false;

/**
 * Compiles the API key guard of a Next.js app (App Router route handlers on the Node.js runtime)
 * and returns `withApiKey(handler, { scope })`, which wraps one route handler. Bad keys get 401, a
 * missing scope or a disallowed client address 403, a rate limit or spent quota 429, a failing key
 * store 503 with `Retry-After`, with the bodies and headers of the other keygate guards; the
 * handler's response gets the key's `RateLimit` fields. Every option is checked here: a bad one
 * throws `ValidationError` naming it.
 *
 * @example
 * // lib/keygate.ts
 * export const withApiKey = createNextGuard(keys, { trustedProxies: true })
 * // app/api/orders/route.ts
 * export const GET = withApiKey(async (request, context, apiKey) => Response.json({ owner: apiKey.ownerId }), { scope: 'orders:list' })
 */
export function createNextGuard(keys: KeyManager, options: NextGuardOptions = {}): WithApiKey {
  if (!options || typeof options !== 'object') throw new ValidationError('options', 'must be an object');
  const { trustedProxies, clientAddress, onReject: onRejectOption, ...own } = options;
  // One failedAttempts budget per address for every route.
  const shared = shareFailedAttempts(own);
  if ((shared as GuardOptions).scope !== undefined) {
    throw new ValidationError('scope', "is set per route: withApiKey(handler, { scope: 'orders:list' })");
  }
  if (clientAddress !== undefined && typeof clientAddress !== 'function') {
    throw new ValidationError('clientAddress', 'must be a function of the request that returns the peer address');
  }
  if (trustedProxies === true && clientAddress !== undefined) {
    throw new ValidationError(
      'trustedProxies',
      'true stands for a proxy in front of Next.js, which clientAddress replaces; name the proxies (addresses, ranges, loopback…) instead',
    );
  }
  // Compiled once, here, so a bad entry throws when the guard is created. An empty list names no
  // proxy, as in the other guards: the header stays unread.
  const proxies = trustedProxies === true ? NO_PROXY : compileTrustedProxies(trustedProxies, 'trustedProxies');
  // With clientAddress, the list works as in the other guards; without, the guard walks the header
  // itself below, and the core is given the client address it found.
  const base: FetchGuardOptions =
    clientAddress !== undefined && trustedProxies !== true && trustedProxies !== undefined ? { ...shared, trustedProxies } : shared;
  const unscoped = createFetchGuard(keys, base);
  const onReject = checkOnReject(onRejectOption);

  const authenticate = (guard: FetchGuard, request: Request) => {
    if (clientAddress !== undefined) return guard.authenticate(request, { clientAddress: clientAddress(request) });
    if (proxies === null) return guard.authenticate(request);
    // The proxy in front of Next.js appended the address it saw: the right-most hop stands for the socket's peer.
    return guard.authenticate(request, { clientAddress: forwardedClient(request.headers.get('x-forwarded-for') ?? '', proxies, null) });
  };

  return function withApiKey(handler, routeOptions = {}) {
    if (typeof handler !== 'function') {
      throw new ValidationError(
        'handler',
        'must be the route handler: withApiKey(async (request, context, apiKey) => Response, { scope })',
      );
    }
    if (!routeOptions || typeof routeOptions !== 'object') throw new ValidationError('options', 'must be an object');
    const guard = routeOptions.scope === undefined ? unscoped : createFetchGuard(keys, { ...base, scope: routeOptions.scope });
    return async (request, context) => {
      const outcome = await authenticate(guard, request);
      if (outcome.ok) return withGuardHeaders(await handler(request, context, outcome.key), outcome);
      if (onReject) {
        const own = await onReject(outcome, request);
        if (own) return own;
      }
      return rejectionResponse(outcome);
    };
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
