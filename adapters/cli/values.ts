// Turns option text into the values the manager takes: durations, expiry dates, metadata JSON, page sizes, the pepper.

import { ValidationError } from '../../src/index.js';
import type { KeyMetadata } from '../../src/index.js';

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const DURATION_FORMS = 'a duration such as 30s, 15m, 2h, 7d or 1w, or a whole number of ms';

/** `30s`, `15m`, `2h`, `7d`, `1w`, `250ms`, or a bare whole number of ms. */
export function parseDuration(field: string, raw: string, min = 0): number {
  const match = /^(\d{1,15})(ms|s|m|h|d|w)?$/.exec(raw.trim());
  const ms = match ? Number(match[1]) * (UNITS[match[2] ?? 'ms'] as number) : Number.NaN;
  if (!Number.isSafeInteger(ms)) throw new ValidationError(field, `must be ${DURATION_FORMS}; got ${JSON.stringify(raw.slice(0, 40))}`);
  if (ms < min) throw new ValidationError(field, `must be at least ${min} ms; got ${JSON.stringify(raw.slice(0, 40))}`);
  return ms;
}

/**
 * `--expires`: `never` (or empty) for no expiry, a duration from now with its unit (`90d`), or a
 * date the library reads (`2026-12-31`, `2026-12-31T23:59:59Z`); the library checks the date. A
 * bare number is refused: it could be ms since 1970 or a duration.
 */
export function parseExpires(raw: string, now: number): Date | string | null {
  const text = raw.trim();
  if (text === '' || text === 'never') return null;
  if (/^\d+(ms|s|m|h|d|w)$/.test(text)) return new Date(now + parseDuration('--expires', text, 1));
  if (/^\d+$/.test(text)) {
    throw new ValidationError(
      '--expires',
      `a bare number is ambiguous: give a date (2026-12-31 or 2026-12-31T23:59:59Z), a duration from now (90d, 12h) or never; got ${text.slice(0, 40)}`,
    );
  }
  return text;
}

/** `--metadata`: a JSON object, checked further by the library. */
export function parseMetadata(raw: string): KeyMetadata {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    throw new ValidationError('--metadata', `is not valid JSON (${(error as Error).message}); write an object such as '{"team":"erp"}'`);
  }
  // The library refuses what is not a plain object, with its own message.
  return value as KeyMetadata;
}

/** `--limit`: a whole number; the library checks its range. */
export function parseLimit(raw: string): number {
  if (!/^\d{1,9}$/.test(raw.trim()))
    throw new ValidationError('--limit', `must be a whole number from 1 to 1000, got ${JSON.stringify(raw.slice(0, 40))}`);
  return Number(raw.trim());
}

/**
 * The pepper as the server passes it to `createKeyManager`: the variable's text as is (`utf8`),
 * or the bytes it encodes (`hex`, `base64`, as `Buffer.from(value, encoding)` on the server).
 * Strict about the encodings: Node's decoders drop what they cannot read, and a pepper decoded
 * differently from the server's would make every token fail.
 */
export function decodePepper(value: string, encoding: string, variable: string): string | Buffer {
  if (encoding === 'utf8') return value;
  if (encoding === 'hex') {
    if (!/^(?:[0-9A-Fa-f]{2})+$/.test(value))
      throw new ValidationError('pepper', `${variable} is not hex (pairs of 0-9, a-f), as --pepper-encoding hex says`);
    return Buffer.from(value, 'hex');
  }
  if (encoding === 'base64') {
    if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2,3})?$/.test(value) || value === '') {
      throw new ValidationError('pepper', `${variable} is not base64, as --pepper-encoding base64 says`);
    }
    return Buffer.from(value, 'base64');
  }
  throw new ValidationError('--pepper-encoding', `must be utf8, hex or base64; got ${JSON.stringify(encoding.slice(0, 20))}`);
}
