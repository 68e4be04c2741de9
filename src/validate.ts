// Input checks shared by the manager and the stores: each returns the clean value or throws a ValidationError naming the field.

import { ValidationError } from './errors.js';
import type { ListPosition } from './store.js';
import type { JsonValue, KeyMetadata } from './types.js';

const NAME_MAX = 100;
const OWNER_MAX = 200;
const ACTOR_MAX = 200;
const ID_MAX = 128;
const METADATA_MAX_BYTES = 16 * 1024;
const LATEST_MS = 253402300799999; // 9999-12-31T23:59:59.999Z
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;
/** The characters of a `nextCursor`: base64url without padding. */
const CURSOR_CHARS = /^[A-Za-z0-9_-]+$/;
const CURSOR_MAX = 300;

/**
 * Whether `text` has no lone surrogate (half of a UTF-16 pair). Drivers encode one as U+FFFD, so
 * two different strings would become one stored value: owners would share keys, names change.
 * `String.prototype.isWellFormed` is in every Node.js keygate supports (20+), not yet in its lib types.
 */
function isWellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}

/** The reason given for a string with a lone surrogate, after the field name. */
const LONE_SURROGATE = 'must be well-formed Unicode, but has a lone surrogate (half of a UTF-16 pair): pass whole characters';

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
  if (!isWellFormed(name)) throw new ValidationError('name', LONE_SURROGATE);
  return name;
}

export function checkOwner(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || value.length === 0 || value.length > OWNER_MAX || CONTROL_CHARS.test(value)) {
    throw new ValidationError('ownerId', `must be null or a string of 1..${OWNER_MAX} characters without control characters`);
  }
  if (!isWellFormed(value)) throw new ValidationError('ownerId', LONE_SURROGATE);
  return value;
}

/** Who made a change, for events: `null` when not given, else a string of 1..200 characters without control characters. */
export function checkActor(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || value.length === 0 || value.length > ACTOR_MAX || CONTROL_CHARS.test(value)) {
    throw new ValidationError('actor', `must be null or a string of 1..${ACTOR_MAX} characters without control characters`);
  }
  if (!isWellFormed(value)) throw new ValidationError('actor', LONE_SURROGATE);
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
  const metadata = JSON.parse(json) as KeyMetadata;
  const broken = loneSurrogatePath(metadata);
  if (broken !== null) throw new ValidationError('metadata', `${broken}: ${LONE_SURROGATE}`);
  return metadata;
}

/**
 * Where a string with a lone surrogate is in a JSON value, key or string value at any depth
 * (`the key "a\ud800"`, `the value at .a[2]`), or `null` when there is none. A loop, not recursion:
 * 16 KiB of JSON can nest thousands deep.
 */
function loneSurrogatePath(root: KeyMetadata): string | null {
  const pending: Array<[JsonValue, string]> = [[root, '']];
  for (let item = pending.pop(); item !== undefined; item = pending.pop()) {
    const [value, path] = item;
    if (typeof value === 'string') {
      if (!isWellFormed(value)) return `the value at ${path}`;
    } else if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) pending.push([value[i] as JsonValue, `${path}[${i}]`]);
    } else if (value !== null && typeof value === 'object') {
      for (const [key, element] of Object.entries(value)) {
        if (!isWellFormed(key)) return `the key ${JSON.stringify(key)}${path === '' ? '' : ` in ${path}`}`;
        pending.push([element, `${path}${/^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`}`]);
      }
    }
  }
  return null;
}

/**
 * Why `id` can be no key's id, or `null` when it could be one. keygate makes base62 ids, but a
 * store may hold ids written through it directly, so only what no store can keep apart is refused:
 * control characters (PostgreSQL refuses NUL outright), lone surrogates, more than 128 characters.
 */
function idFault(id: unknown): string | null {
  if (typeof id !== 'string' || id.length === 0 || id.length > ID_MAX) {
    return `must be the id of an API key (a string of 1..${ID_MAX} characters)`;
  }
  if (CONTROL_CHARS.test(id)) return 'must not contain control characters (U+0000..U+001F, U+007F): no API key has such an id';
  if (!isWellFormed(id)) return `${LONE_SURROGATE}; no API key has such an id`;
  return null;
}

/** `id` if some key could have it; otherwise a ValidationError naming `id`, before any store call. */
export function checkId(id: unknown): string {
  const fault = idFault(id);
  if (fault !== null) throw new ValidationError('id', fault);
  return id as string;
}

/** An `expectedVersion` option: absent, or the version of the key as read (from 1). */
export function checkVersion(value: unknown): number | undefined {
  return value === undefined ? undefined : checkWholeNumber('expectedVersion', value);
}

/** The `nextCursor` of a page that ends at this record. */
export function encodeCursor(position: ListPosition): string {
  return Buffer.from(`${position.createdAt.getTime()}:${position.id}`).toString('base64url');
}

/**
 * Where the page asked for by `cursor` starts, or `null` for the first page. A cursor is base64url
 * of `<ms>:<id>`, and its id follows the rules of {@link checkId}: anything else is refused here,
 * never sent to the store.
 */
export function decodeCursor(cursor: unknown): ListPosition | null {
  if (cursor === undefined || cursor === null || cursor === '') return null;
  if (typeof cursor === 'string' && cursor.length < CURSOR_MAX && CURSOR_CHARS.test(cursor)) {
    const text = Buffer.from(cursor, 'base64url').toString();
    const match = /^(\d{1,15}):([\s\S]+)$/.exec(text);
    if (match && idFault(match[2]) === null) return { createdAt: new Date(Number(match[1])), id: match[2] as string };
  }
  throw new ValidationError('cursor', 'is not a cursor returned by list(); start again without one');
}
