// Protects the admin page and its JSON API: HTTP Basic auth checked in constant time. (keygate's admin mount
// refuses cross-site writes itself.)

import { createHash, timingSafeEqual } from 'node:crypto';

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
