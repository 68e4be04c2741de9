// The admin API and page behind every mount: routing, tenancy, authorization, same-origin writes, answers.

import { InvalidationUnconfirmedError, isKeygateError, KeyNotFoundError, ValidationError, VersionConflictError } from '../errors.js';
import { parseAllowedIps } from '../ip.js';
import type { KeyManager } from '../manager.js';
import { checkRefill, checkRemaining } from '../quota.js';
import { checkRateLimit } from '../rate-limit.js';
import type { ApiKey, CreateKeyInput, ListOptions, UpdateKeyInput } from '../types.js';
import { checkBoolean, checkDate, checkName, checkOwner, checkWholeNumber } from '../validate.js';
import { openApiDocument } from './openapi.js';
import { type PageAssets, pageAssets } from './page.js';
import type {
  AdminAction,
  AdminBody,
  AdminErrorBody,
  AdminErrorCode,
  AdminKey,
  AdminOptions,
  AdminRequest,
  AdminResponse,
} from './types.js';

/** The largest request body read, in bytes. */
export const ADMIN_BODY_MAX = 32 * 1024;
/** The longest grace period a rotation through the admin API may give, in ms (30 days). */
const GRACE_MAX_MS = 30 * 24 * 3600 * 1000;
const DEFAULT_GRACE_MS = 24 * 3600 * 1000;
/** Page size of `GET /api/keys`: default and most. */
const PAGE_DEFAULT = 50;
const PAGE_MAX = 100;
/** The longest name a key may have; the page refuses longer ones before sending. */
const NAME_MAX = 100;

/** Shown under the "Allowed IP addresses" field; the rule the library enforces. */
export const IP_RULE =
  'Exact addresses separated by commas, no spaces, e.g. 203.0.113.7,2001:db8::1. ' +
  'Wildcard masks (10.0.0.*) and ranges are not allowed. Leave blank to allow any address.';

/** The fields of a key a create or an edit may send. */
const KEY_FIELDS = ['name', 'active', 'scopes', 'allowedIps', 'expiresAt', 'rateLimit', 'remaining', 'refill'] as const;
type KeyField = (typeof KEY_FIELDS)[number];

const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
});

/**
 * A failure of the host's own `owner`, `authorize` or `actor`: `handle` throws its cause on to the
 * mount, so that the framework's error handling answers it (a 401 of the host's, say).
 */
export class HostCallbackError extends Error {
  constructor(readonly original: unknown) {
    super('owner, authorize or actor failed', { cause: original });
  }
}

/** Runs a callback of the host's; what it throws goes to the host's error handling. */
async function host<T>(call: () => T | Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw new HostCallbackError(error);
  }
}

/**
 * The owner the host resolves: a valid owner id, or `null` for the keys without an owner. Anything
 * else (`undefined` from a missing session field, a number) is the host's mistake, never read as
 * `null`: that would open the keys without an owner to the request.
 */
async function ownerOf<Req>(options: AdminOptions<Req>, hostRequest: Req): Promise<string | null> {
  const owner = await host(() => options.owner(hostRequest));
  if (owner !== null && typeof owner !== 'string') {
    throw new HostCallbackError(
      new TypeError(
        `keygate admin: owner(request) returned ${owner === undefined ? 'undefined' : typeof owner}; it must return the owner id (a string), or null for the keys without an owner`,
      ),
    );
  }
  try {
    return checkOwner(owner);
  } catch (error) {
    throw new HostCallbackError(error);
  }
}

/** The framework-neutral admin: what every mount calls. */
export interface Admin<Req> {
  /**
   * Answers one request that reached the mount. Failures become error answers, but for those of the
   * host's own `owner`, `authorize` and `actor`, which it throws on (the mount hands them to the
   * framework's error handling).
   */
  handle(request: AdminRequest, hostRequest: Req): Promise<AdminResponse>;
  /** The options as checked, for the mounts (origin checks). */
  readonly options: Readonly<AdminOptions<Req>>;
}

/** An error answer on its way out: thrown inside the handler, turned into JSON at its end. */
class Answer extends Error {
  constructor(
    readonly status: number,
    readonly code: AdminErrorCode,
    message: string,
    readonly fields?: ReadonlyArray<{ field: string; message: string }>,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

/**
 * The admin API and page as one framework-neutral handler. The mounts (`adminRouter` in
 * `keygate/express`, `adminMiddleware` in `keygate/koa`, `adminPlugin` in `keygate/fastify`,
 * `adminHandler` in `keygate/fetch`) turn their framework's request into an {@link AdminRequest};
 * use this directly only to mount the admin on another server. Bad options throw `ValidationError`
 * here, at startup.
 *
 * @example
 * const admin = createAdmin({ keys, owner: () => null })
 * const answer = await admin.handle(
 *   { method: 'GET', path: '/api/config', query: '', headers: {}, body: { kind: 'none' }, base: '/admin/api-keys', sameOrigin: false },
 *   undefined,
 * )
 * answer.status // 200
 */
export function createAdmin<Req>(options: AdminOptions<Req>): Admin<Req> {
  const checked = checkOptions(options);
  const assets = pageAssets(checked.brand);
  const graceMs = checked.rotateGraceMs ?? DEFAULT_GRACE_MS;
  const report = checked.onError ?? ((error: unknown) => console.error(error));
  return {
    options: checked,
    handle: async (request, hostRequest) => {
      try {
        return await route(checked, assets, graceMs, request, hostRequest);
      } catch (error) {
        if (error instanceof HostCallbackError) throw error.original;
        return errorAnswer(error, report);
      }
    },
  };
}

function checkOptions<Req>(options: AdminOptions<Req>): AdminOptions<Req> {
  if (!options || typeof options !== 'object') throw new ValidationError('options', 'must be an object with at least { keys, owner }');
  const { keys, owner, authorize, actor, onError, rotateGraceMs } = options;
  if (!keys || typeof keys.verify !== 'function' || typeof keys.list !== 'function') {
    throw new ValidationError('keys', 'must be the key manager from createKeyManager()');
  }
  if (typeof owner !== 'function') {
    throw new ValidationError(
      'owner',
      "must be a function (request) => the signed-in tenant's owner id, or null for keys without an owner",
    );
  }
  for (const [field, value] of [
    ['authorize', authorize],
    ['actor', actor],
    ['onError', onError],
  ] as const) {
    if (value !== undefined && typeof value !== 'function') throw new ValidationError(field, 'must be a function or left out');
  }
  if (rotateGraceMs !== undefined) checkWholeNumber('rotateGraceMs', rotateGraceMs, { min: 0, max: GRACE_MAX_MS, unit: 'ms' });
  return Object.freeze({ ...options });
}

async function route<Req>(
  options: AdminOptions<Req>,
  assets: PageAssets,
  graceMs: number,
  request: AdminRequest,
  hostRequest: Req,
): Promise<AdminResponse> {
  const { method, path } = request;
  const reading = method === 'GET' || method === 'HEAD';
  if (path === '' || path === '/' || path === '/index.html') {
    if (!reading) throw methodNotAllowed('GET');
    // The page's links are relative to the mount's own path: `/admin/api-keys` answers with a redirect to `/admin/api-keys/`.
    if (path === '') return { status: 308, headers: { ...SECURITY_HEADERS, location: `${request.base}/` }, body: null };
    return page(200, 'text/html; charset=utf-8', assets.html(request.base), 'no-store');
  }
  if (path.startsWith('/assets/')) {
    const asset = assets.files.get(path.slice('/assets/'.length));
    if (asset === undefined) throw new Answer(404, 'NOT_FOUND', `No page file at ${path}.`);
    if (!reading) throw methodNotAllowed('GET');
    return page(200, asset.type, asset.text, 'no-cache', asset.etag, request.headers['if-none-match']);
  }
  if (path === '/openapi.json') {
    if (!reading) throw methodNotAllowed('GET');
    return json(200, { ...openApiDocument, servers: [{ url: `${request.base}/api` }] });
  }
  if (path === '/api' || path.startsWith('/api/')) return api(options, graceMs, request, hostRequest, path.slice('/api'.length));
  throw new Answer(404, 'NOT_FOUND', `No admin page or API route at ${path}.`);
}

/** The JSON API under `/api`. */
async function api<Req>(
  options: AdminOptions<Req>,
  graceMs: number,
  request: AdminRequest,
  hostRequest: Req,
  path: string,
): Promise<AdminResponse> {
  const { method } = request;
  const { keys } = options;
  const segments = path.split('/').slice(1).map(decodeSegment);
  const [collection, id, verb, ...rest] = segments;
  let action: AdminAction;
  let allowed: string;
  if (segments.length === 1 && collection === 'config') [action, allowed] = ['list', 'GET'];
  else if (segments.length === 1 && collection === 'keys') [action, allowed] = [method === 'POST' ? 'create' : 'list', 'GET, POST'];
  else if (segments.length === 1 && collection === 'revoke') [action, allowed] = ['revoke', 'POST'];
  else if (segments.length === 2 && collection === 'keys' && id) {
    action = method === 'PATCH' ? 'update' : method === 'DELETE' ? 'delete' : 'read';
    allowed = 'GET, PATCH, DELETE';
  } else if (segments.length === 3 && collection === 'keys' && id && (verb === 'activate' || verb === 'deactivate' || verb === 'rotate')) {
    [action, allowed] = [verb, 'POST'];
  } else {
    void rest;
    throw new Answer(404, 'NOT_FOUND', `No admin API route at /api${path}.`);
  }
  const methods = allowed.split(', ');
  if (!methods.includes(method) && !(method === 'HEAD' && methods.includes('GET'))) throw methodNotAllowed(allowed);
  const writing = method !== 'GET' && method !== 'HEAD';
  if (writing) checkWrite(request);

  const owner = await ownerOf(options, hostRequest);
  if (options.authorize && !(await host(() => (options.authorize as NonNullable<typeof options.authorize>)(hostRequest, action)))) {
    throw new Answer(403, 'FORBIDDEN', `You may not ${ACTION_WORDS[action]}.`);
  }
  const body = writing ? readBody(request.body) : undefined;
  const actorOf = async (): Promise<string | null> =>
    options.actor ? await host(() => (options.actor as NonNullable<typeof options.actor>)(hostRequest)) : owner;

  if (collection === 'config') {
    return json(200, {
      scopes: keys.scopes.list(),
      ipRule: IP_RULE,
      prefix: keys.prefix,
      nameMax: NAME_MAX,
      rotateGraceMs: graceMs,
      brand: { name: options.brand?.name ?? null },
    });
  }
  if (collection === 'revoke') {
    const { token } = objectBody(body, ['token']) as { token?: unknown };
    if (typeof token !== 'string' || token.trim() === '') {
      throw fieldErrors([{ field: 'token', message: 'is required: paste the whole token' }]);
    }
    const key = await keys.findByToken(token.trim());
    if (key === null || key.ownerId !== owner) {
      throw new Answer(404, 'KEY_NOT_FOUND', 'No key of this account has this token (it may have been deleted or rotated out already).');
    }
    if (!key.active) return json(200, { key: view(keys, key) });
    const actor = await actorOf();
    return done(await settled(() => keys.deactivate(key.id, { actor })), (revoked) => json(200, { key: view(keys, revoked) }));
  }
  if (id === undefined) {
    if (method === 'POST') {
      const fields = keyFields(keys, body, KEY_FIELDS, [], true);
      const created = await keys.create({ ...(fields as CreateKeyInput), ownerId: owner }, { actor: await actorOf() });
      return json(201, { key: view(keys, created.key), token: created.token }, { etag: etagOf(created.key) });
    }
    const listed = await keys.list(listQuery(request.query, owner));
    return json(200, { keys: listed.keys.map((key) => view(keys, key)), nextCursor: listed.nextCursor });
  }

  // One key: another owner's is answered as if it did not exist.
  const key = await keys.get(id);
  if (key === null || key.ownerId !== owner) throw new KeyNotFoundError(id);
  if (verb === undefined && (method === 'GET' || method === 'HEAD')) return json(200, { key: view(keys, key) }, { etag: etagOf(key) });
  if (method === 'DELETE') {
    const actor = await actorOf();
    return done(await settled(() => keys.delete(id, { actor })), (existed) => {
      if (!existed) throw new KeyNotFoundError(id);
      return { status: 204, headers: apiHeaders(), body: null };
    });
  }
  if (verb === 'activate' || verb === 'deactivate') {
    objectBody(body, []);
    const actor = await actorOf();
    const write = () => (verb === 'activate' ? keys.activate(id, { actor }) : keys.deactivate(id, { actor }));
    return done(await settled(write), (changed) => json(200, { key: view(keys, changed) }, { etag: etagOf(changed) }));
  }
  if (verb === 'rotate') {
    const { gracePeriodMs } = objectBody(body, ['gracePeriodMs']) as { gracePeriodMs?: unknown };
    const grace =
      gracePeriodMs === undefined
        ? graceMs
        : checkFields(() => checkWholeNumber('gracePeriodMs', gracePeriodMs, { min: 0, max: GRACE_MAX_MS, unit: 'ms' }));
    const actor = await actorOf();
    return done(await settled(() => keys.rotate(id, { gracePeriodMs: grace, actor })), (rotated) =>
      json(200, { key: view(keys, rotated.key), token: rotated.token }, { etag: etagOf(rotated.key) }),
    );
  }
  // PATCH: compare-and-set on the version from If-Match (412 when stale) or the body's `version` (409).
  const errors: FieldError[] = [];
  let ifMatch: number | undefined;
  try {
    ifMatch = parseIfMatch(request.headers['if-match']);
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    errors.push({ field: error.field, message: error.reason });
  }
  const source =
    body === undefined || body === null || typeof body !== 'object' || Array.isArray(body) ? {} : (body as Record<string, unknown>);
  let bodyVersion: number | undefined;
  if (source.version !== undefined) {
    try {
      bodyVersion = checkWholeNumber('version', source.version);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      errors.push({ field: error.field, message: error.reason });
    }
  }
  if (ifMatch !== undefined && bodyVersion !== undefined && ifMatch !== bodyVersion) {
    errors.push({ field: 'version', message: `is ${bodyVersion} but If-Match says ${ifMatch}: send one, or the same in both` });
  }
  const changes = keyFields(keys, body, [...KEY_FIELDS, 'version'], errors, false) as UpdateKeyInput & { version?: unknown };
  delete changes.version;
  const expectedVersion = ifMatch ?? bodyVersion;
  const staleStatus = ifMatch !== undefined ? 412 : 409;
  const stale = () =>
    new Answer(
      staleStatus,
      'VERSION_CONFLICT',
      'Someone else changed this key meanwhile; nothing was saved. Load it again and repeat your change.',
    );
  if (expectedVersion !== undefined && expectedVersion !== key.version) throw stale();
  // An edit that sends no field changes nothing: no new version for others to trip over.
  if (Object.keys(changes).length === 0) return json(200, { key: view(keys, key) }, { etag: etagOf(key) });
  const actor = await actorOf();
  let outcome: Settled<ApiKey>;
  try {
    outcome = await settled(() => keys.update(id, changes, expectedVersion === undefined ? { actor } : { expectedVersion, actor }));
  } catch (error) {
    if (error instanceof VersionConflictError) throw stale();
    throw error;
  }
  return done(outcome, (updated) => json(200, { key: view(keys, updated) }, { etag: etagOf(updated) }));
}

/** A write's result, and whether every instance on the invalidation bus confirmed it (`revocation.wait`). */
interface Settled<T> {
  readonly result: T;
  readonly confirmed: boolean;
}

/**
 * Runs a write. With `revocation.wait`, a write that some instance did not confirm in time is done
 * all the same: its result (a rotation's new token among it) is answered, never lost to an error.
 */
async function settled<T>(write: () => Promise<T>): Promise<Settled<T>> {
  try {
    return { result: await write(), confirmed: true };
  } catch (error) {
    if (error instanceof InvalidationUnconfirmedError) return { result: error.result as T, confirmed: false };
    throw error;
  }
}

/** The answer of a settled write; one not confirmed by every instance says so in `Keygate-Invalidation: unconfirmed`. */
function done<T>(outcome: Settled<T>, answer: (result: T) => AdminResponse): AdminResponse {
  const response = answer(outcome.result);
  if (outcome.confirmed) return response;
  return { ...response, headers: { ...response.headers, 'keygate-invalidation': 'unconfirmed' } };
}

/** A path segment, percent-decoded (the page encodes key ids); one that does not decode matches no route. */
function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return '\u0000';
  }
}

const ACTION_WORDS: Readonly<Record<AdminAction, string>> = {
  list: 'list API keys',
  read: 'see this API key',
  create: 'create API keys',
  update: 'edit API keys',
  activate: 'activate API keys',
  deactivate: 'deactivate API keys',
  rotate: 'regenerate tokens',
  delete: 'delete API keys',
  revoke: 'revoke tokens',
};

/** Writes must come from the page's own origin and, with a body, be JSON. */
function checkWrite(request: AdminRequest): void {
  if (!request.sameOrigin) {
    throw new Answer(
      403,
      'ORIGIN_MISMATCH',
      "Changes must come from this site's own pages: the request's Origin header is missing or names another site. Scripts send `Origin: <this site's scheme://host>`.",
    );
  }
  if (request.body.kind === 'too-large') throw new Answer(413, 'PAYLOAD_TOO_LARGE', `The request body is over ${ADMIN_BODY_MAX} bytes.`);
  if (request.body.kind === 'none') return;
  const type = request.headers['content-type'];
  const value = typeof type === 'string' ? type.split(';', 1)[0]?.trim().toLowerCase() : undefined;
  if (value !== 'application/json') {
    throw new Answer(415, 'UNSUPPORTED_MEDIA_TYPE', 'Send the body as JSON, with the header Content-Type: application/json.');
  }
}

/** The body as JSON, `undefined` without one. */
function readBody(body: AdminBody): unknown {
  if (body.kind === 'none') return undefined;
  if (body.kind === 'parsed') return body.value;
  if (body.kind === 'too-large') throw new Answer(413, 'PAYLOAD_TOO_LARGE', `The request body is over ${ADMIN_BODY_MAX} bytes.`);
  if (body.text.trim() === '') return undefined;
  try {
    return JSON.parse(body.text) as unknown;
  } catch {
    throw new Answer(400, 'INVALID_JSON', 'The request body is not valid JSON.');
  }
}

type FieldError = { field: string; message: string };

/** The body as an object with only these fields; no body is `{}`. */
function objectBody(body: unknown, allowed: readonly string[]): Record<string, unknown> {
  const errors: FieldError[] = [];
  const source = bodyObject(body, allowed, errors);
  if (errors.length > 0) throw fieldErrors(errors);
  return source;
}

/** The body as an object; what is wrong with it (not an object, unknown fields) goes to `errors`. */
function bodyObject(body: unknown, allowed: readonly string[], errors: FieldError[]): Record<string, unknown> {
  if (body === undefined) return {};
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    errors.push({ field: 'body', message: 'must be a JSON object' });
    return {};
  }
  for (const field of Object.keys(body)) {
    if (allowed.includes(field)) continue;
    errors.push({
      field,
      message: allowed.length === 0 ? 'is not accepted here: send no body' : `is not a field here; the fields are ${allowed.join(', ')}`,
    });
  }
  return body as Record<string, unknown>;
}

/**
 * The key fields of a create or an edit, each checked on its own so that every field at fault is
 * named at once, with the unknown fields and the errors found before (`errors`). The manager checks
 * them again, and the rules between them.
 */
function keyFields(
  keys: KeyManager,
  body: unknown,
  allowed: readonly string[],
  errors: FieldError[],
  creating: boolean,
): Partial<Record<KeyField, unknown>> {
  const source = bodyObject(body, allowed, errors);
  const fields: Partial<Record<KeyField, unknown>> = {};
  const checks: Record<KeyField, (value: unknown) => unknown> = {
    name: (value) => checkName(value),
    active: (value) => checkBoolean('active', value),
    scopes: (value) => keys.scopes.parse(value, 'scopes'),
    allowedIps: (value) => parseAllowedIps(value, 'allowedIps'),
    expiresAt: (value) => checkDate('expiresAt', value),
    rateLimit: (value) => checkRateLimit('rateLimit', value),
    remaining: (value) => checkRemaining(value),
    refill: (value) => checkRefill('refill', value),
  };
  if (creating) {
    if (source.name === undefined) errors.push({ field: 'name', message: 'is required; give the key a name such as "ERP sync"' });
    if (source.scopes === undefined) errors.push({ field: 'scopes', message: 'is required: choose at least one permission' });
  }
  for (const field of KEY_FIELDS) {
    const value = source[field];
    if (value === undefined) continue;
    try {
      checks[field](value);
      fields[field] = value;
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      errors.push({ field: error.field, message: error.reason });
    }
  }
  if (errors.length > 0) throw fieldErrors(errors);
  return fields;
}

/** Runs one check; its ValidationError becomes a 400 answer naming the field. */
function checkFields<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof ValidationError) throw fieldErrors([{ field: error.field, message: error.reason }]);
    throw error;
  }
}

function fieldErrors(fields: ReadonlyArray<{ field: string; message: string }>): Answer {
  const message = fields.map((f) => `${f.field}: ${f.message}`).join('; ');
  return new Answer(400, 'VALIDATION_FAILED', message, fields);
}

/** `GET /api/keys` query: `active`, `expiringBefore`, `unusedSince`, `limit`, `cursor`. */
function listQuery(query: string, owner: string | null): ListOptions {
  const params = new URLSearchParams(query);
  const errors: Array<{ field: string; message: string }> = [];
  const result: ListOptions = { ownerId: owner, limit: PAGE_DEFAULT };
  for (const name of params.keys()) {
    if (!['active', 'expiringBefore', 'unusedSince', 'limit', 'cursor'].includes(name)) {
      errors.push({ field: name, message: 'is not a filter; the filters are active, expiringBefore, unusedSince, limit, cursor' });
    }
  }
  const take = (name: string, read: (value: string) => void): void => {
    const value = params.get(name);
    if (value === null) return;
    try {
      read(value);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      errors.push({ field: name, message: error.reason });
    }
  };
  take('active', (value) => {
    if (value !== 'true' && value !== 'false') throw new ValidationError('active', 'must be true or false');
    result.active = value === 'true';
  });
  take('expiringBefore', (value) => {
    result.expiringBefore = checkDate('expiringBefore', value) ?? undefined;
  });
  take('unusedSince', (value) => {
    result.unusedSince = checkDate('unusedSince', value) ?? undefined;
  });
  take('limit', (value) => {
    result.limit = checkWholeNumber('limit', /^[0-9]{1,4}$/.test(value) ? Number(value) : value, { max: PAGE_MAX });
  });
  take('cursor', (value) => {
    result.cursor = value;
  });
  if (errors.length > 0) throw fieldErrors(errors);
  return result;
}

/** The version in `If-Match: "7"` (or `W/"7"`); `undefined` without the header. */
function parseIfMatch(header: string | readonly string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const value = typeof header === 'string' ? header.trim() : header.join(',').trim();
  const match = /^(?:W\/)?"([1-9][0-9]{0,15})"$/.exec(value);
  if (!match) throw new ValidationError('If-Match', 'must be the ETag of the key as read, e.g. "7"');
  return Number(match[1]);
}

function etagOf(key: ApiKey): string {
  return `"${key.version}"`;
}

/** A key as the API shows it. */
export function view(keys: KeyManager, key: ApiKey): AdminKey {
  return {
    id: key.id,
    name: key.name,
    active: key.active,
    scopes: key.scopes,
    scopeLabels: keys.scopes.describe(key.scopes),
    allowedIps: key.allowedIps,
    hint: key.hint,
    createdAt: key.createdAt.toISOString(),
    updatedAt: key.updatedAt.toISOString(),
    lastUsedAt: key.lastUsedAt?.toISOString() ?? null,
    lastUsedIp: key.lastUsedIp,
    expiresAt: key.expiresAt?.toISOString() ?? null,
    rateLimit: key.rateLimit,
    remaining: key.remaining,
    refill: key.refill,
    version: key.version,
  };
}

function apiHeaders(extra: Readonly<Record<string, string>> = {}): Record<string, string> {
  return { ...SECURITY_HEADERS, 'cache-control': 'no-store', ...extra };
}

function json(status: number, body: unknown, extra: Readonly<Record<string, string>> = {}): AdminResponse {
  return { status, headers: apiHeaders({ 'content-type': 'application/json; charset=utf-8', ...extra }), body: JSON.stringify(body) };
}

function page(
  status: number,
  type: string,
  text: string,
  cache: string,
  etag?: string,
  ifNoneMatch?: string | readonly string[],
): AdminResponse {
  const headers: Record<string, string> = { ...SECURITY_HEADERS, 'content-type': type, 'cache-control': cache };
  if (etag !== undefined) {
    headers.etag = etag;
    if (ifNoneMatch === etag) return { status: 304, headers, body: null };
  }
  return { status, headers, body: text };
}

function methodNotAllowed(allowed: string): Answer {
  return new Answer(405, 'METHOD_NOT_ALLOWED', `Use ${allowed} here.`, undefined, { allow: allowed });
}

/** The JSON answer for a failure; unexpected ones are reported and answered without details. */
function errorAnswer(error: unknown, report: (error: unknown) => void): AdminResponse {
  let status: number;
  let body: AdminErrorBody;
  let extra: Readonly<Record<string, string>> = {};
  if (error instanceof Answer) {
    status = error.status;
    body = { error: { code: error.code, message: error.message, ...(error.fields ? { fields: error.fields } : {}) } };
    extra = error.headers;
  } else if (error instanceof ValidationError) {
    status = 400;
    body = { error: { code: 'VALIDATION_FAILED', message: error.message, fields: [{ field: error.field, message: error.reason }] } };
  } else if (isKeygateError(error)) {
    status = error.status;
    body = { error: { code: error.code, message: error.message } };
    if (status === 503) extra = { 'retry-after': '1' };
  } else {
    report(error);
    status = 500;
    body = { error: { code: 'INTERNAL_ERROR', message: 'Internal error; see the server log.' } };
  }
  return json(status, body, extra);
}
