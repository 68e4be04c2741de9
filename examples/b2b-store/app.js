// The B2B store app: keygate's "API Keys" admin page and API behind the admin's sign-in, and the shop API behind keygate's guard.

import express from 'express';
import { createKeyManager, createOriginCheck, memoryLimiter } from 'keygate';
import { adminRouter } from 'keygate/express';
import { basicAuth } from './admin-auth.js';
import { storeApi } from './store-api.js';

/** Where the admin page is; its JSON API is under `${ADMIN_PATH}/api`. */
export const ADMIN_PATH = '/admin/api-keys';

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
  // The parser the admin mount and the guard use: a bad trustedProxies entry stops createApp here,
  // with its name, before a manager exists that would need closing.
  createOriginCheck({ trustedProxies });
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

  app.get('/', (req, res) => res.redirect(`${ADMIN_PATH}/`));
  app.use('/api', storeApi(keys, { trustedProxies }), storeApiErrors);

  // The shop has one tenant: its keys have no owner. Every change is recorded as made by the admin.
  app.use(
    ADMIN_PATH,
    basicAuth(adminPassword),
    adminRouter({ keys, owner: () => null, actor: () => 'admin', trustedProxies, brand: { name: 'B2B Store' } }),
  );

  return { app, keys, close: () => keys.close() };
}

/**
 * Headers for the answers the admin mount does not make itself (the store API, the sign-in page,
 * redirects): nothing on them loads or frames anything.
 * @param {import('express').Request} req
 * @param {import('express').Response} res
 * @param {import('express').NextFunction} next
 */
function securityHeaders(req, res, next) {
  res.set({
    'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
  });
  next();
}

/**
 * The store API's failures as JSON: a body that is not JSON or too large (400, 413) says so; anything
 * else is logged and answered 500 without details. (The guard answers key and store problems itself.)
 * @type {import('express').ErrorRequestHandler}
 */
function storeApiErrors(error, req, res, next) {
  if (res.headersSent) return next(error);
  const status = typeof error?.status === 'number' && error.status >= 400 && error.status < 500 ? error.status : 500;
  if (status === 500) {
    console.error(error);
    return res.status(500).json({ error: { code: 'internal_error', message: 'Internal error; see the server log.' } });
  }
  return res.status(status).json({ error: { code: 'invalid_body', message: 'The request body could not be read: send a JSON object.' } });
}
