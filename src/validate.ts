// Input checks shared by the manager and the stores: each returns the clean value or throws a ValidationError naming the field.

import { ValidationError } from './errors.js';
import type { ListPosition } from './store.js';
import type { KeyMetadata } from './types.js';

const NAME_MAX = 100;
const OWNER_MAX = 200;
const ID_MAX = 128;
const METADATA_MAX_BYTES = 16 * 1024;
const LATEST_MS = 253402300799999; // 9999-12-31T23:59:59.999Z
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** Limits of {@link checkWholeNumber}. */
export interface WholeNumberRange {
  /** The smallest value allowed. @default 1 */
  min?: number | undefined;
  /** The largest value allowed. @default Number.MAX_SAFE_INTEGER */
  max?: number | undefined;
  /** The unit, for the message: `'ms'` gives "a positive whole number of ms". */
  unit?: string | undefined;
  /** How the message names `min` when it comes from another option, e.g. `'reconnectDelayMs'`. */
  minName?: string | undefined;
}

/** `value` if it is a whole number within the range; otherwise a ValidationError naming `field`. */
export function checkWholeNumber(field: string, value: unknown, range: WholeNumberRange = {}): number {
  const { min = 1, max = Number.MAX_SAFE_INTEGER, unit, minName } = range;
  if (Number.isInteger(value) && (value as number) >= min && (value as number) <= max) return value as number;
  const what = `whole number${unit ? ` of ${unit}` : ''}`;
  let reason: string;
  if (max !== Number.MAX_SAFE_INTEGER) reason = `must be a ${what} from ${min} to ${max}`;
  else if (minName !== undefined) reason = `must be a ${what}, at least ${minName}`;
  else if (min === 1) reason = `must be a positive ${what}`;
  else reason = `must be a ${what}, ${min} or more`;
  throw new ValidationError(field, `${reason}, got ${JSON.stringify(value) ?? typeof value}`);
}

export function checkName(value: unknown): string {
  if (typeof value !== 'string') throw new ValidationError('name', 'is required and must be a string');
  const name = value.trim();
  if (name.length === 0) throw new ValidationError('name', 'is required; give the key a name such as "ERP sync"');
  if (name.length > NAME_MAX) throw new ValidationError('name', `must be at most ${NAME_MAX} characters (got ${name.length})`);
  if (CONTROL_CHARS.test(name)) throw new ValidationError('name', 'must not contain control characters (line breaks, tabs, NUL)');
  return name;
}

export function checkOwner(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || value.length === 0 || value.length > OWNER_MAX || CONTROL_CHARS.test(value)) {
    throw new ValidationError('ownerId', `must be null or a string of 1..${OWNER_MAX} characters without control characters`);
  }
  return value;
}

export function checkBoolean(field: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new ValidationError(field, `must be true or false, got ${JSON.stringify(value) ?? typeof value}`);
  return value;
}

export function checkDate(field: string, value: unknown): Date | null {
  if (value === undefined || value === null) return null;
  let date: Date;
  if (value instanceof Date) date = new Date(value.getTime());
  else if (typeof value === 'string' || typeof value === 'number') date = new Date(value);
  else throw new ValidationError(field, 'must be a Date, an ISO 8601 string, a number of ms since 1970, or null');
  if (Number.isNaN(date.getTime())) throw new ValidationError(field, `is not a valid date: ${String(value).slice(0, 40)}`);
  if (date.getTime() < 0 || date.getTime() > LATEST_MS) throw new ValidationError(field, 'must be between 1970 and 9999');
  return date;
}

export function checkMetadata(value: unknown): KeyMetadata {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value) || Object.getPrototypeOf(value) !== Object.prototype) {
    throw new ValidationError('metadata', 'must be a plain object of JSON values');
  }
  let json: string;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new ValidationError('metadata', `must be JSON-serialisable: ${(error as Error).message}`);
  }
  if (Buffer.byteLength(json) > METADATA_MAX_BYTES) {
    throw new ValidationError('metadata', `must be at most ${METADATA_MAX_BYTES} bytes as JSON`);
  }
  if (json.includes('\\u0000')) throw new ValidationError('metadata', 'must not contain NUL characters');
  // A JSON round trip keeps exactly what every store can keep (no undefined, no Dates, no NaN).
  return JSON.parse(json) as KeyMetadata;
}

export function checkId(id: unknown): string {
  if (typeof id !== 'string' || id.length === 0 || id.length > ID_MAX) {
    throw new ValidationError('id', 'must be the id of an API key (a non-empty string)');
  }
  return id;
}

/** An `expectedVersion` option: absent, or the version of the key as read (from 1). */
export function checkVersion(value: unknown): number | undefined {
  return value === undefined ? undefined : checkWholeNumber('expectedVersion', value);
}

/** The `nextCursor` of a page that ends at this record. */
export function encodeCursor(position: ListPosition): string {
  return Buffer.from(`${position.createdAt.getTime()}:${position.id}`).toString('base64url');
}

/** Where the page asked for by `cursor` starts, or `null` for the first page. */
export function decodeCursor(cursor: unknown): ListPosition | null {
  if (cursor === undefined || cursor === null || cursor === '') return null;
  if (typeof cursor === 'string' && cursor.length < 300) {
    const text = Buffer.from(cursor, 'base64url').toString();
    const match = /^(\d{1,15}):(.{1,128})$/.exec(text);
    if (match) return { createdAt: new Date(Number(match[1])), id: match[2] as string };
  }
  throw new ValidationError('cursor', 'is not a cursor returned by list(); start again without one');
}
