// Forged tokens: well-formed, with a valid checksum (anyone can compute a CRC32), and of no key.
import { randomBytes } from 'node:crypto';
import { BASE62, RANDOM_LENGTH, tokenWithBody } from '../../src/token.js';

/** A well-formed token with a valid checksum that no key has. */
export function forgedToken(prefix = 'kg'): string {
  const bytes = randomBytes(RANDOM_LENGTH);
  let body = '';
  for (const byte of bytes) body += BASE62[byte % 62];
  return tokenWithBody(prefix, body);
}
