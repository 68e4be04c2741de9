// Tokens: `{prefix}_{32 random base62}{6 base62 CRC32}`; generation, checksum, digest and hint.

import * as nodeCrypto from 'node:crypto';
import { createHash, createHmac, type KeyObject } from 'node:crypto';
import { customAlphabet } from 'nanoid';
import { ValidationError } from './errors.js';

/** The 62 characters of token bodies and ids. */
export const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** 32 base62 characters carry 32 × log2(62) ≈ 190 bits. */
export const RANDOM_LENGTH = 32;
export const CHECKSUM_LENGTH = 6;
export const BODY_LENGTH = RANDOM_LENGTH + CHECKSUM_LENGTH;
export const PREFIX_PATTERN = /^[a-z][a-z0-9]{0,15}(_[a-z0-9]{1,16})?$/;

const randomBody = customAlphabet(BASE62, RANDOM_LENGTH);
const randomId = customAlphabet(BASE62, 20);

/** The value + 1 of every char code that is a base62 digit; 0 for every other. */
const BASE62_VALUE = new Uint8Array(128);
for (let i = 0; i < BASE62.length; i++) BASE62_VALUE[BASE62.charCodeAt(i)] = i + 1;

const CRC_TABLE = new Int32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  CRC_TABLE[n] = c;
}

/** CRC32 (IEEE) of an ASCII string's first `length` characters. */
function crc32(text: string, length: number): number {
  let crc = -1;
  for (let i = 0; i < length; i++) crc = (CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

function checksumOf(text: string, length: number): string {
  let value = crc32(text, length);
  let out = '';
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = BASE62[value % 62] + out;
    value = Math.floor(value / 62);
  }
  return out;
}

/** Throws a ValidationError unless `prefix` is a valid token prefix. */
export function assertPrefix(prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string' || !PREFIX_PATTERN.test(prefix)) {
    throw new ValidationError(
      'prefix',
      `must be lower-case letters and digits, starting with a letter, at most 16 characters, with at most one '_' part (like 'kg' or 'shop_live'); got ${JSON.stringify(prefix)}`,
    );
  }
}

/** A new token for `prefix`: 190 random bits and a checksum. */
export function generateToken(prefix: string): string {
  return tokenWithBody(prefix, randomBody());
}

/** The token for `prefix` whose random part is `body` (32 base62 characters), with its checksum appended. */
export function tokenWithBody(prefix: string, body: string): string {
  const head = `${prefix}_${body}`;
  return head + checksumOf(head, head.length);
}

/**
 * A new, non-secret key id. nanoid appends one character at a time, and V8 keeps such a string as
 * a chain of pieces; copied once it is one flat string, about 60 bytes less per key in MemoryStore.
 */
export function generateId(): string {
  return Buffer.from(randomId(), 'latin1').toString('latin1');
}

/** Where a manager gets new tokens and key ids. Internal: only `keygate/testing` replaces it. */
export interface TokenSource {
  token(prefix: string): string;
  id(): string;
}

/** The default source: tokens and ids from the CSPRNG. */
export const randomTokenSource: TokenSource = { token: generateToken, id: generateId };

/**
 * The manager option key under which `keygate/testing` passes a seeded {@link TokenSource}. It is
 * not exported from the package face; `Symbol.for` keeps it one key across the ESM and CJS builds.
 */
export const TOKEN_SOURCE: unique symbol = Symbol.for('keygate.internal.tokenSource');

/**
 * Whether `token` has the shape and checksum of a token with this prefix. Costs no store call:
 * typos and garbage end here.
 */
export function isWellFormedToken(token: string, prefix: string): boolean {
  const expectedLength = prefix.length + 1 + BODY_LENGTH;
  if (token.length !== expectedLength || !token.startsWith(prefix) || token.charCodeAt(prefix.length) !== 95 /* _ */) {
    return false;
  }
  const split = expectedLength - CHECKSUM_LENGTH;
  for (let i = prefix.length + 1; i < split; i++) {
    const code = token.charCodeAt(i);
    if (code >= 128 || BASE62_VALUE[code] === 0) return false;
  }
  // Read the checksum digits as a number: no string is built on this path.
  let checksum = 0;
  for (let i = split; i < expectedLength; i++) {
    const code = token.charCodeAt(i);
    const digit = code < 128 ? (BASE62_VALUE[code] as number) : 0;
    if (digit === 0) return false;
    checksum = checksum * 62 + digit - 1;
  }
  return checksum === crc32(token, split);
}

/**
 * The prefix of `text` if it has the shape of a token of any valid prefix (`{prefix}_` and 38
 * base62 characters), checksum unchecked; otherwise `null`. For telling a token from other input,
 * e.g. to keep it out of messages.
 */
export function tokenPrefixOf(text: string): string | null {
  const split = text.length - BODY_LENGTH - 1;
  if (split < 1 || text.charCodeAt(split) !== 95 /* _ */) return null;
  for (let i = split + 1; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 128 || BASE62_VALUE[code] === 0) return null;
  }
  const prefix = text.slice(0, split);
  return PREFIX_PATTERN.test(prefix) ? prefix : null;
}

/** Computes the lookup digest of a token: SHA-256, or HMAC-SHA-256 when a pepper is set. */
export type Digester = (token: string) => string;

/** The shortest pepper accepted, in bytes: 128 bits, the strength of the tokens' own secret or more. */
const PEPPER_MIN_BYTES = 16;

const PEPPER_ADVICE = "generate one with `openssl rand -base64 32` and keep it out of the database, or omit 'pepper' to use plain SHA-256";

/**
 * Checks a pepper when the manager is created, not at the first create or verify: a pepper that
 * is empty or short (an unset variable read as `Buffer.from('', 'hex')`) would key the HMAC with
 * a public value while the operator believes the digests are peppered.
 */
function checkPepper(pepper: unknown): string | Uint8Array | KeyObject {
  let bytes: number;
  if (typeof pepper === 'string') bytes = Buffer.byteLength(pepper);
  else if (pepper instanceof Uint8Array) bytes = pepper.byteLength;
  else if (pepper instanceof nodeCrypto.KeyObject) {
    if (pepper.type !== 'secret') {
      throw new ValidationError('pepper', `must be a secret KeyObject (createSecretKey), not a ${pepper.type} key`);
    }
    bytes = pepper.symmetricKeySize ?? 0;
  } else {
    throw new ValidationError(
      'pepper',
      `must be a string, a Buffer/Uint8Array or a secret KeyObject, got ${pepper === null ? 'null' : typeof pepper}`,
    );
  }
  if (bytes < PEPPER_MIN_BYTES) {
    throw new ValidationError('pepper', `must be at least ${PEPPER_MIN_BYTES} bytes, got ${bytes}; ${PEPPER_ADVICE}`);
  }
  return pepper;
}

/**
 * A digest function: base64url SHA-256, or base64url HMAC-SHA-256 keyed with the pepper.
 * @throws ValidationError naming `pepper` when it is not a string, bytes or a secret KeyObject of at least 16 bytes
 */
export function createDigester(pepper?: string | Uint8Array | KeyObject): Digester {
  if (pepper === undefined) {
    // One-shot crypto.hash (Node 20.12+) costs less than half of a Hash object on a token.
    if (typeof nodeCrypto.hash === 'function') return (token) => nodeCrypto.hash('sha256', token, 'base64url');
    return (token) => createHash('sha256').update(token).digest('base64url');
  }
  const key = checkPepper(pepper);
  return (token) => createHmac('sha256', key).update(token).digest('base64url');
}

/** The display form of a token: prefix, the first 3 and the last 4 characters, e.g. `kg_Ab3…x9Qz`. */
export function hintOf(token: string, prefix: string): string {
  const body = token.slice(prefix.length + 1);
  return `${prefix}_${body.slice(0, 3)}…${body.slice(-4)}`;
}
