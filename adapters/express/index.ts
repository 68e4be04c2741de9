// keygate/express: apiKeyGuard(), Express 4 and 5 middleware that verifies the request's API key, and
// adminRouter(), the admin page and API.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { createAdmin } from '../../src/admin/core.js';
import { readNodeBody, sendNode, splitTarget } from '../../src/admin/node.js';
import { adminOriginCheck } from '../../src/admin/origin.js';
import type { AdminOptions } from '../../src/admin/types.js';
import {
  checkOnReject,
  createGuardCore,
  type GuardOptions,
  type GuardOutcome,
  type GuardRejection,
  type HeaderBag,
} from '../../src/http.js';
import type { KeyManager } from '../../src/manager.js';
import type { ApiKey } from '../../src/types.js';

declare global {
  namespace Express {
    interface Request {
      /** The verified API key, set by keygate's `apiKeyGuard`. */
      apiKey?: ApiKey;
    }
  }
}

/** The parts of an Express request the guard uses (any `express.Request` fits). */
export interface GuardedRequest {
  headers: HeaderBag;
  /** The header lines as received; every `Authorization` header is read from them. */
  rawHeaders?: readonly string[] | undefined;
  socket: { remoteAddress?: string | undefined } | null;
  apiKey?: ApiKey;
}

/** The parts of an Express response the guard uses (any `express.Response` fits). */
export interface GuardedResponse {
  statusCode: number;
  readonly headersSent: boolean;
  setHeader(name: string, value: string): unknown;
  end(chunk: string): unknown;
}

export interface ExpressGuardOptions<Req extends GuardedRequest = GuardedRequest, Res extends GuardedResponse = GuardedResponse>
  extends GuardOptions {
  /**
   * Called before a rejection is sent, e.g. to log it or to change it. Change `rejection.status`,
   * `.body` or `.headers` to alter the response the guard sends, or send your own response with
   * `res` (the guard then sends nothing). A throw goes to Express's error handling.
   * @default none: the guard sends the rejection as it is
   */
  onReject?: ((rejection: GuardRejection, req: Req, res: Res) => void | Promise<void>) | undefined;
}

/**
 * Express middleware (Express 4 and 5) that lets a request through only with a valid API key;
 * the key is then `req.apiKey`, and the response carries the key's `RateLimit` fields. Bad keys
 * get 401, a missing scope or a disallowed client address 403, a rate limit or spent quota 429, a
 * failing key store 503 with `Retry-After`. Other errors go to `next(err)`.
 *
 * @example
 * app.get('/orders', apiKeyGuard(keys, { scope: 'orders:list' }), (req, res) => {
 *   res.json({ owner: req.apiKey?.ownerId })
 * })
 */
export function apiKeyGuard<Req extends GuardedRequest = GuardedRequest, Res extends GuardedResponse = GuardedResponse>(
  keys: KeyManager,
  options: ExpressGuardOptions<Req, Res> = {},
): (req: Req, res: Res, next: (error?: unknown) => void) => void {
  const core = createGuardCore(keys, options);
  const onReject = checkOnReject(options.onReject);

  const handle = async (req: Req, res: Res, next: (error?: unknown) => void): Promise<void> => {
    let outcome: GuardOutcome;
    try {
      outcome = await core.authenticate({ headers: req.headers, rawHeaders: req.rawHeaders, remoteAddress: req.socket?.remoteAddress });
      if (!outcome.ok) {
        if (onReject) await onReject(outcome, req, res);
        if (res.headersSent) return;
      }
    } catch (error) {
      next(error);
      return;
    }
    if (outcome.ok) {
      req.apiKey = outcome.key;
      // The RateLimit fields, when a limit applied; the handler may still change them.
      const headers = outcome.headers;
      for (const name in headers) res.setHeader(name, headers[name] as string);
      next();
      return;
    }
    const body = JSON.stringify(outcome.body);
    res.statusCode = outcome.status;
    for (const [name, value] of Object.entries(outcome.headers)) res.setHeader(name, value);
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Content-Length', String(Buffer.byteLength(body)));
    res.end(body);
  };

  return (req, res, next) => void handle(req, res, next);
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

/** The parts of an Express request the admin mount uses (any `express.Request` fits). */
export interface AdminExpressRequest extends IncomingMessage {
  /** The path the router is mounted at (`app.use('/admin/api-keys', …)`). */
  baseUrl?: string;
  /** The request target before Express stripped the mount path. */
  originalUrl?: string;
  /** The body, when the app's own body parser (`express.json()`) read it first. */
  body?: unknown;
}

/**
 * The "API Keys" admin page and its JSON API as Express middleware (Express 4 and 5), mounted
 * with `app.use(path, …)` after the app's own sign-in. The page is at `<path>/`, the API under
 * `<path>/api/`, the OpenAPI document at `<path>/openapi.json`. Bad options throw
 * `ValidationError` here, at startup.
 *
 * @example
 * app.use('/admin/api-keys', requireSignIn, adminRouter({ keys, owner: (req) => req.user.shopId }))
 */
export function adminRouter<Req extends AdminExpressRequest = AdminExpressRequest>(
  options: AdminOptions<Req>,
): (req: Req, res: ServerResponse, next: (error?: unknown) => void) => void {
  const admin = createAdmin<Req>(options);
  const origin = adminOriginCheck(admin.options);
  const handle = async (req: Req, res: ServerResponse, next: (error?: unknown) => void): Promise<void> => {
    try {
      const base = req.baseUrl ?? '';
      const { path, query } = splitTarget(req.url ?? '/');
      const full = splitTarget(req.originalUrl ?? req.url ?? '/').path;
      const answer = await admin.handle(
        {
          method: (req.method ?? 'GET').toUpperCase(),
          // `/admin/api-keys` reaches the router as `/`: only the original URL tells it from `/admin/api-keys/`.
          path: path === '/' && full === base && base !== '' ? '' : path,
          query,
          headers: req.headers,
          body: await readNodeBody(req, req.body),
          base,
          sameOrigin: origin.node({ headers: req.headers, remoteAddress: req.socket?.remoteAddress, encrypted: isEncrypted(req) }),
        },
        req,
      );
      sendNode(res, answer, req.method === 'HEAD');
    } catch (error) {
      next(error);
    }
  };
  return (req, res, next) => void handle(req, res, next);
}

function isEncrypted(req: IncomingMessage): boolean {
  return (req.socket as { encrypted?: boolean } | null)?.encrypted === true;
}
