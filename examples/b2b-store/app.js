// The B2B store app: the "Settings > API Keys" admin page, its JSON API, and the shop API behind keygate's guard.

import { fileURLToPath } from 'node:url';
import express from 'express';
import { createKeyManager, KeyNotFoundError, memoryLimiter, StoreUnavailableError, ValidationError, VersionConflictError } from 'keygate';
import { basicAuth, sameOriginWrites } from './admin-auth.js';
import { storeApi } from './store-api.js';

const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));

/** Shown under the "Allow IP Addresses" field; the same rule the library enforces. */
export const IP_RULE =
  'Exact addresses separated by commas, no spaces, e.g. 203.0.113.7,2001:db8::1. ' +
  'Wildcard masks (10.0.0.*) and ranges are not allowed. Leave blank to allow any address.';

/**
 * @typedef {object} CreateAppOptions
 * @property {import('keygate').KeyStore} store where the keys live (sqliteStore, postgresStore, redisStore, memoryStore)
 * @property {string} adminPassword password of the `admin` user of the admin page (at least 8 characters)
 * @property {Omit<import('keygate').KeyManagerOptions, 'store'>} [keyManager] further createKeyManager options; without
 *   `rateLimits.limiter`, rate-limit counters live in this process (`memoryLimiter()`)
 * @property {string | readonly string[]} [trustedProxies] the reverse proxies in front of the app (e.g. `'loopback'`):
 *   their `X-Forwarded-For` gives the client address the store API checks allow-lists against, and their
 *   `X-Forwarded-Proto` and `X-Forwarded-Host` the origin admin writes must come from. Default: none.
 */

/**
 * @typedef {object} B2bStoreApp
 * @property {import('express').Express} app the Express app; call `app.listen(port, '127.0.0.1')`
 * @property {import('keygate').KeyManager} keys the key manager the app uses
 * @property {() => Promise<void>} close stops the manager (flushes last-used times); the store stays open
 */

/**
 * Builds the B2B store app on a key store.
 *
 * @param {CreateAppOptions} options
 * @returns {B2bStoreApp}
 * @example
 * const { app } = createApp({ store: memoryStore(), adminPassword: 'correct horse battery' })
 * app.listen(3000, '127.0.0.1')
 */
export function createApp(options) {
  const { store, adminPassword, trustedProxies } = options;
  if (typeof adminPassword !== 'string' || adminPassword.length < 8) {
    throw new TypeError('createApp: adminPassword must be a string of at least 8 characters');
  }
  // First, so a bad trustedProxies entry stops createApp before a manager exists that would need closing.
  const originCheck = sameOriginWrites({ trustedProxies });
  // Rate-limit counters in this process: exact for this one embedded instance. Several instances
  // behind a load balancer would each count on their own; give them a shared limiter instead.
  const keyManager = options.keyManager ?? {};
  const keys = createKeyManager({
    ...keyManager,
    rateLimits: { ...keyManager.rateLimits, limiter: keyManager.rateLimits?.limiter ?? memoryLimiter() },
    store,
  });
  const app = express();
  app.disable('x-powered-by');
  app.use(securityHeaders);

  app.get('/', (req, res) => res.redirect('/admin/api-keys'));
  app.use('/api', storeApi(keys, { trustedProxies }));

  const admin = express.Router();
  admin.use(basicAuth(adminPassword));
  admin.use('/api', originCheck, adminApi(keys));
  admin.get('/api-keys', (req, res) => res.sendFile('index.html', { root: PUBLIC_DIR }));
  admin.use('/assets', express.static(PUBLIC_DIR, { index: false }));
  app.use('/admin', admin);

  app.use(errorHandler);
  return { app, keys, close: () => keys.close() };
}

/**
 * Headers for every answer: a strict content security policy (the page loads only its own files).
 * @param {import('express').Request} req
 * @param {import('express').Response} res
 * @param {import('express').NextFunction} next
 */
function securityHeaders(req, res, next) {
  res.set({
    'Content-Security-Policy':
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
  });
  next();
}

/**
 * A key as the admin page shows it: the library's ApiKey plus the scope labels.
 * @param {import('keygate').KeyManager} keys
 * @param {import('keygate').ApiKey} key
 */
function view(keys, key) {
  return {
    id: key.id,
    name: key.name,
    active: key.active,
    scopes: key.scopes,
    scopeLabels: keys.scopes.describe(key.scopes),
    allowedIps: key.allowedIps,
    hint: key.hint,
    createdAt: key.createdAt,
    updatedAt: key.updatedAt,
    lastUsedAt: key.lastUsedAt,
    rateLimit: key.rateLimit,
    remaining: key.remaining,
    refill: key.refill,
    version: key.version,
  };
}

/** The fields the admin form edits. `rateLimit` and `refill` are objects or `null`, `remaining` a number or `null`. */
const FORM_FIELDS = ['name', 'active', 'scopes', 'allowedIps', 'rateLimit', 'remaining', 'refill'];

/**
 * Only the fields the admin form edits. Their values are passed on as sent: the library validates
 * them and names the field at fault (`rateLimit.limit`, `refill.intervalMs`, …). An edit that
 * sends `remaining` sets the uses left anew; one that leaves it out keeps the count the key is at.
 * @param {unknown} body
 * @returns {import('keygate').CreateKeyInput}
 */
function formFields(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ValidationError('body', 'must be a JSON object');
  }
  /** @type {Record<string, unknown>} */
  const source = /** @type {Record<string, unknown>} */ (body);
  /** @type {Record<string, unknown>} */
  const fields = {};
  for (const name of FORM_FIELDS) {
    if (source[name] !== undefined) fields[name] = source[name];
  }
  return /** @type {import('keygate').CreateKeyInput} */ (/** @type {unknown} */ (fields));
}

/**
 * The admin page's JSON API.
 * @param {import('keygate').KeyManager} keys
 * @returns {import('express').Router}
 */
function adminApi(keys) {
  const router = express.Router();
  router.use(express.json({ limit: '32kb' }));
  router.use((req, res, next) => {
    res.set('Cache-Control', 'no-store');
    next();
  });

  router.get('/config', (req, res) => {
    res.json({ scopes: keys.scopes.list(), ipRule: IP_RULE, prefix: keys.prefix });
  });

  router.get('/keys', async (req, res) => {
    const all = [];
    let cursor = null;
    do {
      const page = await keys.list({ limit: 1000, cursor });
      all.push(...page.keys);
      cursor = page.nextCursor;
    } while (cursor !== null);
    // Newest first, as on the admin page.
    all.reverse();
    res.json({ keys: all.map((key) => view(keys, key)) });
  });

  router.post('/keys', async (req, res) => {
    const fields = formFields(req.body);
    const { key, token } = await keys.create(fields);
    res.status(201).json({ key: view(keys, key), token });
  });

  router.patch('/keys/:id', async (req, res) => {
    const fields = formFields(req.body);
    const expectedVersion = req.body.expectedVersion;
    const key = await keys.update(req.params.id, fields, expectedVersion === undefined ? {} : { expectedVersion });
    res.json({ key: view(keys, key) });
  });

  router.delete('/keys/:id', async (req, res) => {
    if (!(await keys.delete(req.params.id))) throw new KeyNotFoundError(req.params.id);
    res.status(204).end();
  });

  router.use((req, res) => {
    res.status(404).json({ error: { code: 'not_found', message: 'No such admin API route.' } });
  });
  return router;
}

/**
 * Turns library errors into JSON answers; a ValidationError names the field so the page can show it there.
 * @type {import('express').ErrorRequestHandler}
 */
function errorHandler(error, req, res, next) {
  if (res.headersSent) return next(error);
  if (error instanceof ValidationError) {
    return res.status(400).json({ error: { code: error.code, field: error.field, reason: error.reason, message: error.message } });
  }
  if (error instanceof KeyNotFoundError) {
    return res.status(404).json({ error: { code: error.code, message: 'This API key no longer exists; it may have been deleted.' } });
  }
  if (error instanceof VersionConflictError) {
    return res
      .status(409)
      .json({ error: { code: error.code, message: 'Someone else changed this key meanwhile. Close the form and open it again.' } });
  }
  if (error instanceof StoreUnavailableError) {
    res.set('Retry-After', '5');
    return res.status(503).json({ error: { code: error.code, message: 'The key store is not answering; try again in a moment.' } });
  }
  const status = typeof error?.status === 'number' && error.status >= 400 && error.status < 500 ? error.status : 500;
  if (status === 500) console.error(error);
  const message = status === 500 ? 'Internal error; see the server log.' : 'The request could not be read (is it valid JSON?).';
  return res.status(status).json({ error: { code: status === 500 ? 'internal_error' : 'bad_request', message } });
}
