// keygate/fetch: createFetchGuard() and rejectionResponse(), the guard for servers built on the Web Request and
// Response, and adminHandler(), the admin page and API as a Web handler.

import { ADMIN_BODY_MAX, createAdmin } from '../../src/admin/core.js';
import { adminOriginCheck } from '../../src/admin/origin.js';
import type { AdminBody, AdminOptions } from '../../src/admin/types.js';
import { ValidationError } from '../../src/errors.js';
import { createGuardCore, type GuardOptions, type GuardOutcome, type GuardRejection, type HeaderBag } from '../../src/http.js';
import type { KeyManager } from '../../src/manager.js';

/** The part of a `Headers` object the guard reads (any `Headers` fits, whatever the runtime). */
export interface HeadersLike {
  /** The value of a header, repeated ones joined with `, `; `null` when absent. */
  get(name: string): string | null;
}

/** The part of a Web `Request` the guard reads (any `Request` fits: Node, Bun, Deno, Workers, Next.js). */
export interface FetchRequestLike {
  /** The request headers; only `Authorization`, `X-API-Key` and `X-Forwarded-For` are read. */
  readonly headers: HeadersLike;
}

/** What the server knows about a request besides the request itself. */
export interface FetchGuardContext {
  /**
   * The address of the peer that opened the connection, as the runtime reports it; a `Request`
   * does not carry it. Node with @hono/node-server: `incoming.socket.remoteAddress`; Bun:
   * `server.requestIP(request)?.address`; Deno: `info.remoteAddr.hostname`; Cloudflare Workers:
   * the `CF-Connecting-IP` header, which Cloudflare sets. With `trustedProxies`, it is the proxy's
   * address and the client address comes from `X-Forwarded-For`, exactly as in the other guards.
   * @default none: no client address, so every key with an IP allow-list is refused (403 `ip_not_allowed`)
   */
  clientAddress?: string | null | undefined;
}

/** Options of `createFetchGuard`: those of every keygate guard. */
export type FetchGuardOptions = GuardOptions;

/** A compiled guard for Web requests: one per route or handler, created at startup. */
export interface FetchGuard {
  /**
   * Decides on one request: `{ ok: true, key, headers }`, whose headers (the key's `RateLimit`
   * fields) `withGuardHeaders(response, outcome)` adds to your response, or a rejection (401/403
   * for a bad key, 429 for a rate limit or spent quota, 503 when the key store fails) to answer
   * with `rejectionResponse(outcome)`. Rejects only for errors that are bugs or misuse (a closed
   * manager), which belong to the server's error handling.
   */
  authenticate(request: FetchRequestLike, context?: FetchGuardContext): Promise<GuardOutcome>;
}

/** An `auth-param` (`name=value`, `name = "value"`): part of the credentials before it, never a credential of its own. */
const AUTH_PARAM = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+[ \t]*=/;

function trimSpaces(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && (value.charCodeAt(start) === 32 || value.charCodeAt(start) === 9)) start++;
  while (end > start && (value.charCodeAt(end - 1) === 32 || value.charCodeAt(end - 1) === 9)) end--;
  return value.slice(start, end);
}

/**
 * The credentials of an `Authorization` value that `Headers` may have joined from several header
 * lines with `, `. Commas inside quoted strings are kept; an element that is an auth-param
 * (`response="…"` of a `Digest` header) stays with the credentials before it; every other element
 * is one credential. A single header with a comma-separated list reads the same as several headers:
 * `Headers` cannot tell them apart.
 */
function splitCredentials(value: string): string | string[] {
  if (!value.includes(',')) return value;
  const credentials: string[] = [];
  const add = (element: string): void => {
    const item = trimSpaces(element);
    if (item === '') return;
    const last = credentials.length - 1;
    if (last >= 0 && AUTH_PARAM.test(item)) credentials[last] = `${credentials[last]}, ${item}`;
    else credentials.push(item);
  };
  let start = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (quoted) {
      if (code === 92) i++;
      else if (code === 34) quoted = false;
    } else if (code === 34) {
      quoted = true;
    } else if (code === 44) {
      add(value.slice(start, i));
      start = i + 1;
    }
  }
  add(value.slice(start));
  return credentials;
}

/** The headers the guard core reads, from a `Headers` object. */
function headerBag(headers: HeadersLike): HeaderBag {
  const authorization = headers.get('authorization');
  return {
    authorization: authorization === null ? undefined : splitCredentials(authorization),
    'x-api-key': headers.get('x-api-key') ?? undefined,
    'x-forwarded-for': headers.get('x-forwarded-for') ?? undefined,
  };
}

/**
 * Compiles a guard for servers that hand over a Web `Request`: Bun, Deno, Cloudflare Workers,
 * @hono/node-server, Next.js route handlers. Every option is checked here, so a misconfigured guard
 * fails at startup: an unknown scope, carrier or proxy entry throws `ValidationError` naming it.
 *
 * @example
 * const guard = createFetchGuard(keys, { scope: 'orders:list' })
 * const outcome = await guard.authenticate(request, { clientAddress: server.requestIP(request)?.address })
 * if (!outcome.ok) return rejectionResponse(outcome)
 */
export function createFetchGuard(keys: KeyManager, options: FetchGuardOptions = {}): FetchGuard {
  const core = createGuardCore(keys, options);
  return {
    async authenticate(request, context) {
      const clientAddress = context?.clientAddress;
      if (clientAddress !== undefined && clientAddress !== null && typeof clientAddress !== 'string') {
        throw new ValidationError('clientAddress', 'must be the peer address as a string, or null when it is not known');
      }
      return core.authenticate({ headers: headerBag(request.headers), remoteAddress: clientAddress ?? undefined });
    },
  };
}

/**
 * The response of a request the guard let through, with the guard's headers for it: the key's
 * `RateLimit` and `RateLimit-Policy` fields when a rate limit applied. A header the response
 * already has is left as it is. Returns `response` itself, or a copy when its headers cannot be
 * changed (a `Response` from `fetch()` or `Response.redirect()`).
 *
 * @example
 * const outcome = await guard.authenticate(request)
 * if (!outcome.ok) return rejectionResponse(outcome)
 * return withGuardHeaders(Response.json({ owner: outcome.key.ownerId }), outcome)
 */
export function withGuardHeaders(response: Response, outcome: GuardOutcome): Response {
  const headers = outcome.headers;
  let target = response;
  for (const name in headers) {
    if (target.headers.has(name)) continue;
    const value = headers[name] as string;
    try {
      target.headers.set(name, value);
    } catch {
      // Immutable headers: the same body and status, with headers of its own.
      target = new Response(target.body, target);
      target.headers.set(name, value);
    }
  }
  return target;
}

/**
 * The `Response` for a rejection: its status, its headers (`WWW-Authenticate` on a 401,
 * `Retry-After` on a 429 or 503, the `RateLimit` fields on a 429) and its JSON body, the same bytes
 * the Express, Koa and Fastify guards send.
 *
 * @example
 * if (!outcome.ok) return rejectionResponse(outcome)
 */
export function rejectionResponse(rejection: GuardRejection): Response {
  const headers = new Headers(rejection.headers);
  headers.set('Content-Type', 'application/json; charset=utf-8');
  return new Response(JSON.stringify(rejection.body), { status: rejection.status, headers });
}

export type {
  FailedAttemptsOptions,
  GuardOptions,
  GuardPass,
  GuardRejection,
  GuardRejectionReason,
  GuardOutcome,
  GuardErrorBody,
  GuardErrorCode,
  TokenCarrier,
} from '../../src/http.js';
export type { AdminAction, AdminBrand, AdminErrorBody, AdminErrorCode, AdminKey, AdminOptions } from '../../src/admin/types.js';

/** Options of `adminHandler`: those of every admin mount, and where it is mounted. */
export interface FetchAdminOptions extends AdminOptions<Request> {
  /**
   * The path the handler answers under, as in the request's URL, e.g. `'/admin/api-keys'`. The
   * page is at `<basePath>/`, the API under `<basePath>/api/`.
   * @default '' (the server's root)
   */
  basePath?: string | undefined;
}

/**
 * The "API Keys" admin page and its JSON API as a `(Request) => Promise<Response>` handler, for
 * Hono, Next.js route handlers, Bun, Deno and any server built on Web requests. The host signs its
 * users in first; `owner(request)` says whose keys they see. Writes must carry the request URL's
 * own origin as `Origin` (set `publicOrigin` when the URL is not what the browser sees).
 *
 * @example
 * const handler = adminHandler({ keys, basePath: '/admin/api-keys', owner: (request) => shopOf(request) })
 * app.all('/admin/api-keys/*', (c) => handler(c.req.raw)) // Hono
 */
export function adminHandler(options: FetchAdminOptions): (request: Request) => Promise<Response> {
  const basePath = checkBasePath(options?.basePath);
  const admin = createAdmin<Request>(options);
  const origin = adminOriginCheck(admin.options);
  return async (request) => {
    const url = new URL(request.url);
    if (!(url.pathname === basePath || url.pathname.startsWith(`${basePath}/`))) {
      const body = { error: { code: 'NOT_FOUND', message: `This handler answers under ${basePath}/ only.` } };
      return Response.json(body, { status: 404, headers: { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' } });
    }
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => {
      headers[name] = value;
    });
    const answer = await admin.handle(
      {
        method: request.method.toUpperCase(),
        path: url.pathname.slice(basePath.length),
        query: url.search.slice(1),
        headers,
        body: await readFetchBody(request),
        base: basePath,
        sameOrigin: origin.fetch(headers, request.url),
      },
      request,
    );
    return new Response(request.method === 'HEAD' ? null : answer.body, { status: answer.status, headers: answer.headers });
  };
}

/** `basePath` checked: empty, or `/`-led without a trailing `/`. */
function checkBasePath(basePath: unknown): string {
  if (basePath === undefined || basePath === '' || basePath === '/') return '';
  if (typeof basePath !== 'string' || !/^(?:\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$/.test(basePath)) {
    throw new ValidationError(
      'basePath',
      `must be a path such as '/admin/api-keys' (starting with /, no trailing /), got ${JSON.stringify(basePath)}`,
    );
  }
  return basePath;
}

/** The body of a Web request, read up to the admin's size limit. */
async function readFetchBody(request: Request): Promise<AdminBody> {
  if (request.method === 'GET' || request.method === 'HEAD' || request.body === null) return { kind: 'none' };
  if (Number(request.headers.get('content-length')) > ADMIN_BODY_MAX) return { kind: 'too-large' };
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > ADMIN_BODY_MAX) {
      await reader.cancel();
      return { kind: 'too-large' };
    }
    chunks.push(value);
  }
  const text = new TextDecoder().decode(Buffer.concat(chunks));
  return text === '' ? { kind: 'none' } : { kind: 'text', text };
}
