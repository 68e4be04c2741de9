// The shapes of keygate/admin: its options, the framework-neutral request and answer, the key as the API shows it.

import type { HeaderBag } from '../http.js';
import type { KeyManager } from '../manager.js';
import type { QuotaRefill } from '../quota.js';
import type { RateLimit } from '../rate-limit.js';

/** What an admin request asks to do; `authorize` is asked about each one. */
export type AdminAction = 'list' | 'read' | 'create' | 'update' | 'activate' | 'deactivate' | 'rotate' | 'delete' | 'revoke';

/** Every admin action, in the order the API lists them. */
export const ADMIN_ACTIONS: readonly AdminAction[] = Object.freeze([
  'list',
  'read',
  'create',
  'update',
  'activate',
  'deactivate',
  'rotate',
  'delete',
  'revoke',
]);

/** The host's name and colours on the page. */
export interface AdminBrand {
  /**
   * Shown in the page's title and header, e.g. `'Acme Shop'` gives "Acme Shop API Keys". 1..60
   * characters.
   * @default 'API Keys' alone
   */
  name?: string | undefined;
  /**
   * The colour of buttons, links and focus rings: `#rgb` or `#rrggbb`. Text on it is black or
   * white, whichever contrasts more; pick a colour dark enough to read as text on white.
   * @default '#1f5fbf'
   */
  primary?: string | undefined;
  /** The colour of the header bar: `#rgb` or `#rrggbb`. @default '#102a43' */
  accent?: string | undefined;
}

/**
 * Options of every admin mount. `Req` is what the framework hands the mount: Express's `req`, Koa's
 * `ctx`, Fastify's `request`, a fetch `Request`; the host's sign-in has run before it.
 */
export interface AdminOptions<Req> {
  /** The key manager whose keys the page and API manage. */
  keys: KeyManager;
  /**
   * Whose keys this request may see and change: the tenant's owner id (a shop, an account), or
   * `null` for the keys without an owner (an app with one tenant). Keys are created with this
   * owner; a key of another owner is answered `404`, as if it did not exist. Throw (or let the
   * host's sign-in answer first) when the request is not signed in.
   */
  owner: (request: Req) => string | null | Promise<string | null>;
  /**
   * Whether this request may do `action`; `false` answers `403 FORBIDDEN`. Asked on every API call,
   * after `owner`.
   * @default every action is allowed to whoever reaches the mount
   */
  authorize?: ((request: Req, action: AdminAction) => boolean | Promise<boolean>) | undefined;
  /**
   * Who is acting (a user id or e-mail), recorded as `actor` in the manager's events of every
   * change made through the mount.
   * @default the owner id
   */
  actor?: ((request: Req) => string | null | Promise<string | null>) | undefined;
  /**
   * The reverse proxies in front of the app, written as the guards' `trustedProxies`: their
   * `X-Forwarded-Proto` and `X-Forwarded-Host` give the origin that writes must come from (TLS
   * terminated at the proxy). Not used by the fetch handler, which reads the request's URL.
   * @default none
   */
  trustedProxies?: string | readonly string[] | undefined;
  /**
   * The origin(s) the page is served from, e.g. `'https://shop.example'`. When set, writes must
   * carry one of them as `Origin`, whatever the request's own address says; use it when the
   * request's URL or `Host` is not what the browser sees.
   * @default the request's own origin
   */
  publicOrigin?: string | readonly string[] | undefined;
  /** The host's name and colours on the page. */
  brand?: AdminBrand | undefined;
  /**
   * How long the old token keeps working after "Regenerate token" (and after `POST …/rotate`
   * without `gracePeriodMs`), in ms; 0..30 days.
   * @default 86_400_000 (24 hours)
   */
  rotateGraceMs?: number | undefined;
  /**
   * Receives unexpected failures, answered `500 INTERNAL_ERROR` without details.
   * @default console.error
   */
  onError?: ((error: unknown) => void) | undefined;
}

/** A request body as the mount read it. */
export type AdminBody =
  /** No body (or an empty one). */
  | { readonly kind: 'none' }
  /** The body's text. */
  | { readonly kind: 'text'; readonly text: string }
  /** A body the host's own body parser already read, as it parsed it. */
  | { readonly kind: 'parsed'; readonly value: unknown }
  /** A body over the size limit; not read further. */
  | { readonly kind: 'too-large' };

/** A request as a mount hands it to `createAdmin().handle`. */
export interface AdminRequest {
  /** The HTTP method, upper-case. */
  readonly method: string;
  /** The path inside the mount: `''` for the mount itself, else starting with `/`; no query. */
  readonly path: string;
  /** The query string, without `?`. */
  readonly query: string;
  /** Request headers with lower-case names. */
  readonly headers: HeaderBag;
  readonly body: AdminBody;
  /** The mount's path as the browser sees it, without a trailing `/` (`''` at the root). */
  readonly base: string;
  /** Whether the request carries an `Origin` header that is its own origin (see `originChecker`). */
  readonly sameOrigin: boolean;
}

/** An answer of `createAdmin().handle`, for the mount to send. */
export interface AdminResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** The body, or `null` for none. */
  readonly body: string | null;
}

/** A key as the admin API shows it: no owner, no metadata, never a token or a digest. Times are ISO strings. */
export interface AdminKey {
  readonly id: string;
  readonly name: string;
  readonly active: boolean;
  readonly scopes: readonly string[];
  /** The scopes' labels in the catalog, e.g. "Order list". */
  readonly scopeLabels: readonly string[];
  readonly allowedIps: readonly string[];
  readonly hint: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly lastUsedAt: string | null;
  readonly lastUsedIp: string | null;
  readonly expiresAt: string | null;
  readonly rateLimit: Readonly<RateLimit> | null;
  readonly remaining: number | null;
  readonly refill: Readonly<QuotaRefill> | null;
  readonly version: number;
}

/** The `code` of an admin API error answer. */
export type AdminErrorCode =
  | 'VALIDATION_FAILED'
  | 'INVALID_JSON'
  | 'FORBIDDEN'
  | 'ORIGIN_MISMATCH'
  | 'KEY_NOT_FOUND'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'VERSION_CONFLICT'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'STORE_UNAVAILABLE'
  | 'STORE_OUTCOME_UNKNOWN'
  | 'STORE_CONFLICT'
  | 'INVALIDATION_UNCONFIRMED'
  | 'MANAGER_CLOSED'
  | 'INTERNAL_ERROR';

/** The body of every admin API error answer. */
export interface AdminErrorBody {
  readonly error: {
    readonly code: AdminErrorCode;
    readonly message: string;
    /** With `VALIDATION_FAILED`: every field at fault, by its path in the request body (`rateLimit.limit`). */
    readonly fields?: ReadonlyArray<{ readonly field: string; readonly message: string }>;
  };
}
