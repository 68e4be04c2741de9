// Protects the admin page and its JSON API: HTTP Basic auth checked in constant time, plus CSRF checks.

import { createHash, timingSafeEqual } from 'node:crypto';
import { createOriginCheck } from 'keygate';

/** The user name the admin signs in with. */
export const ADMIN_USER = 'admin';

/**
 * SHA-256 of a string: equal-length buffers, so the comparison time does not depend on the input length.
 * @param {string} text
 */
function sha256(text) {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * Whether `given` equals `expected`, compared in constant time.
 * @param {string} given
 * @param {Buffer} expectedDigest SHA-256 of the expected value
 */
function sameSecret(given, expectedDigest) {
  return timingSafeEqual(sha256(given), expectedDigest);
}

/**
 * Express middleware: asks for HTTP Basic credentials `admin:<password>`.
 * Both the user name and the password are compared in constant time.
 *
 * @param {string} password the admin password
 * @returns {import('express').RequestHandler}
 */
export function basicAuth(password) {
  const userDigest = sha256(ADMIN_USER);
  const passwordDigest = sha256(password);
  return (req, res, next) => {
    const header = req.get('authorization') ?? '';
    const match = /^Basic ([A-Za-z0-9+/=]{1,1024})$/i.exec(header);
    if (match) {
      const decoded = Buffer.from(match[1], 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon >= 0) {
        // Evaluate both comparisons, so the time taken does not tell which part was wrong.
        const userOk = sameSecret(decoded.slice(0, colon), userDigest);
        const passwordOk = sameSecret(decoded.slice(colon + 1), passwordDigest);
        if (userOk && passwordOk) return next();
      }
    }
    res.set('WWW-Authenticate', 'Basic realm="keygate admin", charset="UTF-8"');
    if (req.accepts(['json', 'html']) === 'html') {
      res
        .status(401)
        .type('html')
        .send(
          '<!doctype html><title>Sign in required</title><p>Sign in as <b>admin</b> with the password printed when the server started.</p>',
        );
    } else {
      res
        .status(401)
        .json({ error: { code: 'admin_auth_required', message: 'Sign in as admin with the admin password (HTTP Basic auth).' } });
    }
  };
}

/**
 * Express middleware for the admin JSON API: a browser sends Basic credentials with cross-site
 * requests too, so writes must be JSON (a cross-site form cannot send that without a CORS
 * preflight, which this server never answers) and, when the browser says where it came from, from
 * this same origin. Behind a reverse proxy that terminates TLS, the page's origin is https while
 * the app is reached over http: name the proxy in `trustedProxies` so its `X-Forwarded-Proto` and
 * `X-Forwarded-Host` are believed (from that proxy only).
 *
 * @param {{ trustedProxies?: string | readonly string[] }} [options]
 * @returns {import('express').RequestHandler}
 */
export function sameOriginWrites(options = {}) {
  const isOwnOrigin = createOriginCheck({ trustedProxies: options.trustedProxies });
  return (req, res, next) => {
    if (req.method === 'GET' || req.method === 'HEAD') return next();
    const socket = /** @type {import('node:net').Socket & { encrypted?: boolean }} */ (req.socket);
    if (!isOwnOrigin({ headers: req.headers, remoteAddress: socket.remoteAddress, encrypted: socket.encrypted === true })) {
      return res
        .status(403)
        .json({ error: { code: 'cross_origin_write', message: 'Admin changes must come from the admin page itself.' } });
    }
    if (req.method !== 'DELETE' && !req.is('application/json')) {
      return res.status(415).json({ error: { code: 'json_required', message: 'Send the request body as application/json.' } });
    }
    return next();
  };
}
