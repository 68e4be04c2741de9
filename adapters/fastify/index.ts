// keygate/fastify: a Fastify 4 and 5 plugin that adds request.apiKey and per-route API key guards, and adminPlugin,
// the admin page and API.

import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ADMIN_BODY_MAX, createAdmin } from '../../src/admin/core.js';
import { splitTarget } from '../../src/admin/node.js';
import { adminOriginCheck } from '../../src/admin/origin.js';
import type { AdminOptions } from '../../src/admin/types.js';
import { ValidationError } from '../../src/errors.js';
import {
  checkOnReject,
  createGuardCore,
  type GuardCore,
  type GuardOptions,
  type GuardRejection,
  shareFailedAttempts,
} from '../../src/http.js';
import type { KeyManager } from '../../src/manager.js';
import type { ApiKey } from '../../src/types.js';

/** Options of `app.register(keygatePlugin, options)`; scopes are set per route with `app.keygate.guard()`. */
export interface KeygatePluginOptions extends Omit<GuardOptions, 'scope'> {
  /** The manager from `createKeyManager()`. */
  keys: KeyManager;
  /**
   * Called before a rejection is sent, e.g. to log it or to change it. Change `rejection.status`,
   * `.body` or `.headers` to alter the response the guard sends, or send your own with `reply`
   * (the guard then sends nothing). A throw goes to Fastify's error handling.
   * @default none: the guard sends the rejection as it is
   */
  onReject?: ((rejection: GuardRejection, request: FastifyRequest, reply: FastifyReply) => void | Promise<void>) | undefined;
}

/** Options of one route's guard. */
export interface FastifyGuardOptions {
  /**
   * The scope(s) the route needs; with several, all are required. Checked when the guard is made.
   * @default none (any valid key passes)
   */
  scope?: string | readonly string[] | undefined;
}

/** An `onRequest` (or `preHandler`) hook that verifies the request's API key. */
export type ApiKeyHook = (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>;

/** What the plugin adds to the Fastify instance as `app.keygate`. */
export interface KeygateDecorator {
  /**
   * A hook that lets a request through only with a valid API key (then `request.apiKey` is set).
   * Use it as a route's `onRequest`, or `app.addHook('onRequest', app.keygate.guard())` for every
   * route of a plugin. The reply carries the key's `RateLimit` fields. Bad keys get 401, a missing
   * scope or a disallowed client address 403, a rate limit or spent quota 429, a failing key store
   * 503 with `Retry-After`; other errors go to Fastify's error handling.
   */
  guard(options?: FastifyGuardOptions): ApiKeyHook;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** keygate's guards, added by `keygatePlugin`. */
    keygate: KeygateDecorator;
  }
  interface FastifyRequest {
    /** The verified API key on guarded routes; `null` elsewhere. */
    apiKey: ApiKey | null;
  }
}

const plugin: FastifyPluginAsync<KeygatePluginOptions> = async (fastify, options) => {
  const { keys, onReject: onRejectOption, ...own } = options;
  // One failedAttempts budget per address for every route of the plugin.
  const shared = shareFailedAttempts(own);
  if ((shared as GuardOptions).scope !== undefined) {
    throw new ValidationError('scope', "is set per route: onRequest: app.keygate.guard({ scope: 'orders:list' })");
  }
  const onReject = checkOnReject(onRejectOption);
  // Compiling once here checks every shared option when the plugin is registered.
  const unscoped = createGuardCore(keys, shared);

  const hook = (core: GuardCore): ApiKeyHook =>
    async function keygateGuard(request, reply) {
      const { raw } = request;
      // raw is an IncomingMessage, or an Http2ServerRequest with `http2: true`: both have rawHeaders.
      const outcome = await core.authenticate({
        headers: request.headers,
        rawHeaders: raw.rawHeaders,
        remoteAddress: raw.socket?.remoteAddress,
      });
      if (outcome.ok) {
        request.apiKey = outcome.key;
        // The RateLimit fields, when a limit applied; the handler may still change them.
        const headers = outcome.headers;
        for (const name in headers) reply.header(name, headers[name] as string);
        return undefined;
      }
      if (onReject) {
        await onReject(outcome, request, reply);
        if (reply.sent) return reply;
      }
      return reply.code(outcome.status).headers(outcome.headers).send(outcome.body);
    };

  const decorator: KeygateDecorator = {
    guard(routeOptions = {}) {
      if (routeOptions.scope === undefined) return hook(unscoped);
      return hook(createGuardCore(keys, { ...shared, scope: routeOptions.scope }));
    },
  };
  fastify.decorateRequest('apiKey', null);
  fastify.decorate('keygate', decorator);
};

/**
 * The keygate plugin. Register it once; then guard routes with `app.keygate.guard({ scope })`.
 *
 * @example
 * await app.register(keygatePlugin, { keys })
 * app.get('/orders', { onRequest: app.keygate.guard({ scope: 'orders:list' }) }, async (request) => {
 *   return { owner: request.apiKey?.ownerId }
 * })
 */
export const keygatePlugin = fp(plugin, { fastify: '4.x || 5.x', name: 'keygate' });
export default keygatePlugin;

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

/** Options of `app.register(adminPlugin, options)`: those of every admin mount; mount it with Fastify's `prefix`. */
export type FastifyAdminOptions = AdminOptions<FastifyRequest>;

/**
 * The path inside the mount as the router matched it, whatever its case and slash options: the
 * wildcard's part, or for the prefix itself `''` (redirected to `<prefix>/`) or `/`.
 */
function pathInside(request: FastifyRequest): string {
  const rest = (request.params as { '*'?: string } | undefined)?.['*'];
  if (rest !== undefined) return `/${rest}`;
  return splitTarget(request.url).path.endsWith('/') ? '/' : '';
}

const admin: FastifyPluginAsync<FastifyAdminOptions> = async (fastify, options) => {
  const { prefix: _prefix, ...own } = options as FastifyAdminOptions & { prefix?: unknown };
  const handler = createAdmin<FastifyRequest>(own);
  const origin = adminOriginCheck(handler.options);
  // Inside this plugin only: every body arrives as text, and the admin checks its type itself.
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('*', { parseAs: 'string', bodyLimit: ADMIN_BODY_MAX }, (_request, body, done) => done(null, body));
  // A body over the limit gets the admin's own 413; every other error goes on to the app's handler.
  fastify.setErrorHandler((error: { code?: string }, request, reply) => {
    if (error.code !== 'FST_ERR_CTP_BODY_TOO_LARGE') throw error;
    return send(request, reply, true);
  });
  const base = fastify.prefix;
  const send = async (request: FastifyRequest, reply: FastifyReply, tooLarge = false): Promise<FastifyReply> => {
    const { query } = splitTarget(request.url);
    const text = typeof request.body === 'string' ? request.body : '';
    const raw = request.raw;
    const result = await handler.handle(
      {
        method: request.method.toUpperCase(),
        // The path inside the mount as the router matched it (whatever its case or slash options).
        path: pathInside(request),
        query,
        headers: request.headers,
        body: tooLarge ? { kind: 'too-large' } : text === '' ? { kind: 'none' } : { kind: 'text', text },
        base,
        sameOrigin: origin.node({
          headers: request.headers,
          remoteAddress: raw.socket?.remoteAddress,
          encrypted: (raw.socket as { encrypted?: boolean } | null)?.encrypted === true,
        }),
      },
      request,
    );
    reply.code(result.status).headers(result.headers);
    return reply.send(result.body ?? undefined);
  };
  const methods = ['GET', 'POST', 'PATCH', 'PUT', 'DELETE', 'OPTIONS'] as const;
  fastify.route({ method: [...methods], url: '/', handler: (request, reply) => send(request, reply) });
  fastify.route({ method: [...methods], url: '/*', handler: (request, reply) => send(request, reply) });
};

/**
 * The "API Keys" admin page and its JSON API as a Fastify plugin (Fastify 4 and 5), registered with
 * a `prefix` where the app's own sign-in applies. The page is at `<prefix>/`, the API under
 * `<prefix>/api/`, the OpenAPI document at `<prefix>/openapi.json`. Encapsulated: its body
 * parsing stays inside it. Bad options throw `ValidationError` at registration.
 *
 * @example
 * await app.register(adminPlugin, { prefix: '/admin/api-keys', keys, owner: (request) => request.user.shopId })
 */
export const adminPlugin: FastifyPluginAsync<FastifyAdminOptions> = admin;
