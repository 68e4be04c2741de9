// Seeded tokens and ids for snapshot tests: the same seed gives the same sequence in every run.

import { createHash } from 'node:crypto';
import { BASE62, RANDOM_LENGTH, tokenWithBody, type TokenSource } from '../../src/token.js';

/**
 * A base62 stream from SHA-256 in counter mode over `seed` and `stream`. Bytes of 248 and above
 * are skipped so every character is equally likely. Predictable by design: for tests only.
 */
function base62Stream(seed: string, stream: string): (length: number) => string {
  let counter = 0;
  let block: Buffer = Buffer.alloc(0);
  let position = 0;
  return (length) => {
    let out = '';
    while (out.length < length) {
      if (position >= block.length) {
        block = createHash('sha256').update(`${stream}\u0000${seed}\u0000${counter++}`).digest();
        position = 0;
      }
      const byte = block[position++] as number;
      if (byte < 248) out += BASE62[byte % 62];
    }
    return out;
  };
}

/** Tokens and ids drawn from two independent seeded streams, so rotations never shift key ids. */
export function seededTokenSource(seed: string): TokenSource {
  const tokenChars = base62Stream(seed, 'token');
  const idChars = base62Stream(seed, 'id');
  return {
    token: (prefix) => tokenWithBody(prefix, tokenChars(RANDOM_LENGTH)),
    id: () => idChars(20),
  };
}
