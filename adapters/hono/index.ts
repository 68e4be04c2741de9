// keygate/hono: apiKeyGuard(), Hono 4 middleware that verifies the request's API key; the key is then c.get('apiKey').

import type { Context, MiddlewareHandler } from 'hono';
import { ValidationError } from '../../src/errors.js';
import { checkOnReject, type GuardOptions, type GuardRejection } from '../../src/http.js';
import type { KeyManager } from '../../src/manager.js';
import type { ApiKey } from '../../src/types.js';
import { createFetchGuard, rejectionResponse } from '../fetch/index.js';

/** The variables the guard sets: `c.get('apiKey')` is the verified key. */
export type ApiKeyVariables = {
  /** The verified API key, set by keygate's `apiKeyGuard`. */
  apiKey: ApiKey;
};

/** The Hono environment of a guarded route; the guard's own type is `MiddlewareHandler<ApiKeyEnv>`. */
export type ApiKeyEnv = { Variables: ApiKeyVariables };

export interface HonoGuardOptions extends GuardOptions {
  /**
   * The address of the peer that opened the connection, for runtimes other than Node: Bun
   * (`getConnInfo(c).remote.address` from `hono/bun`), Deno (from `hono/deno`), Cloudflare Workers
   * (`c.req.header('cf-connecting-ip')`). Return `undefined` or `null` when it is not known: keys
   * with an IP allow-list are then refused. With `trustedProxies`, it is the proxy's address and
   * the client address comes from `X-Forwarded-For`, as in the other guards.
   * @default the socket's peer address when the app is served by @hono/node-server (`c.env.incoming.socket.remoteAddress`), otherwise none
   */
  clientAddress?: ((c: Context) => string | null | undefined) | undefined;
  /**
   * Called before a rejection is sent, e.g. to log it or to change it. Change `rejection.status`,
   * `.body` or `.headers` to alter the response the guard sends, or return a `Response` to send that
   * instead. A throw goes to Hono's error handling (`app.onError`).
   * @default none: the guard sends the rejection as it is
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: a hook that returns nothing, async or not, must fit too.
  onReject?: ((rejection: GuardRejection, c: Context) => Response | void | Promise<Response | void>) | undefined;
}

/** A property of an object of unknown shape, without trusting its type. */
function field(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null ? (value as { readonly [key: string]: unknown })[name] : undefined;
}

/**
 * The socket's peer address of a request served by @hono/node-server, read from the bindings it
 * passes as `c.env` (`{ incoming, outgoing }`, or under `server` as its `getConnInfo` also reads
 * them); `undefined` on other runtimes.
 */
function nodeServerAddress(c: Context): string | undefined {
  const env: unknown = c.env;
  const incoming = field(field(env, 'server'), 'incoming') ?? field(env, 'incoming');
  const address = field(field(incoming, 'socket'), 'remoteAddress');
  return typeof address === 'string' ? address : undefined;
}

/**
 * Hono middleware (Hono 4) that lets a request through only with a valid API key; the key is then
 * `c.get('apiKey')`, typed, and the response carries the key's `RateLimit` fields. Bad keys get 401,
 * a missing scope or a disallowed client address 403, a rate limit or spent quota 429, a failing
 * key store 503 with `Retry-After`, with the bodies and headers of the other keygate guards.
 * Other errors are thrown to Hono's error handling.
 *
 * @example
 * app.get('/orders', apiKeyGuard(keys, { scope: 'orders:list' }), (c) => {
 *   return c.json({ owner: c.get('apiKey').ownerId })
 * })
 */
export function apiKeyGuard(keys: KeyManager, options: HonoGuardOptions = {}): MiddlewareHandler<ApiKeyEnv> {
  if (!options || typeof options !== 'object') throw new ValidationError('options', 'must be an object');
  const { clientAddress, onReject: onRejectOption, ...shared } = options;
  if (clientAddress !== undefined && typeof clientAddress !== 'function') {
    throw new ValidationError('clientAddress', 'must be a function of the context that returns the peer address');
  }
  const guard = createFetchGuard(keys, shared);
  const onReject = checkOnReject(onRejectOption);
  const peerAddress = clientAddress ?? nodeServerAddress;

  return async function keygateGuard(c, next) {
    const outcome = await guard.authenticate(c.req.raw, { clientAddress: peerAddress(c) });
    if (outcome.ok) {
      c.set('apiKey', outcome.key);
      await next();
      // The RateLimit fields, when a limit applied, unless the handler set its own.
      const headers = outcome.headers;
      for (const name in headers) if (!c.res.headers.has(name)) c.header(name, headers[name] as string);
      return;
    }
    if (onReject) {
      const own = await onReject(outcome, c);
      if (own) return own;
    }
    return rejectionResponse(outcome);
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
