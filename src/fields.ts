// The one list of a key's fields: how each is stored, and which ones the public ApiKey carries.

import { StoreUnavailableError } from './errors.js';
import { deepFreeze } from './freeze.js';
import type { KeyRecord } from './store.js';
import type { ApiKey } from './types.js';

/**
 * How a field's value is kept by stores that serialise records:
 * - `text`: a string (or `null` when `nullable`);
 * - `boolean`: `true` / `false`, in SQL the dialect's boolean;
 * - `list`: an array of strings, as JSON text in SQL;
 * - `json`: a JSON object, as JSON text in SQL;
 * - `time`: a Date (or `null` when `nullable`), as whole ms since 1970 UTC;
 * - `integer`: a whole number.
 */
export type FieldKind = 'text' | 'boolean' | 'list' | 'json' | 'time' | 'integer';

/** The SQL column types a dialect defines, by the name the field table uses. */
export type SqlTypeName = 'id' | 'ownerId' | 'digest' | 'name' | 'hint' | 'ip' | 'json' | 'boolean' | 'time' | 'version';

export interface FieldSpec {
  readonly kind: FieldKind;
  /** Whether the value may be `null` (a SQL column without NOT NULL). */
  readonly nullable: boolean;
  /** The SQL column. Renaming one changes the stored format: existing tables would break. */
  readonly column: string;
  /** The column's type, looked up in the dialect's type table. */
  readonly sqlType: SqlTypeName;
  /**
   * Written by `touch()` in batches, not by `update()`: stores keep the later of the stored and the
   * given time, and Redis keeps it beside the record rather than in it. The touched fields are
   * `lastUsedAt` and `lastUsedIp`, which goes with it: written when that time is, kept when it is.
   */
  readonly touched: boolean;
  /**
   * A counter (`remaining`, `refilledAt`): changed by `spend()` without a new version, so
   * `update()` writes it only when told to (an edit of the quota), never from a stale read.
   */
  readonly counter: boolean;
  /** Parsed on first read (`defineLazyJson`), not when the record is read: metadata, which may be large. */
  readonly lazy: boolean;
}

/**
 * A table entry: what differs from the defaults (not null, public, not touched, the kind's SQL
 * type). `public: false` keeps a field (the digests) out of the public `ApiKey`, checked at compile time.
 */
type FieldDeclaration = Pick<FieldSpec, 'kind' | 'column'> & Partial<FieldSpec> & { public?: false };

/** The SQL type of each kind, unless a field names its own (text columns differ in length). */
const SQL_TYPE_OF_KIND: Record<FieldKind, SqlTypeName> = {
  text: 'name',
  boolean: 'boolean',
  list: 'json',
  json: 'json',
  time: 'time',
  integer: 'version',
};

/**
 * Every field of a stored key, in the order stores list them. Adding a field is one entry here,
 * one property in `ApiKey` (or `KeyRecord` for a private one), one line in `toApiKey` when public
 * (the compiler asks for each), and a migration for the SQL table.
 */
const DECLARED = {
  id: { kind: 'text', column: 'id', sqlType: 'id' },
  ownerId: { kind: 'text', column: 'owner_id', sqlType: 'ownerId', nullable: true },
  name: { kind: 'text', column: 'name' },
  active: { kind: 'boolean', column: 'active' },
  scopes: { kind: 'list', column: 'scopes' },
  allowedIps: { kind: 'list', column: 'allowed_ips' },
  hint: { kind: 'text', column: 'hint', sqlType: 'hint' },
  createdAt: { kind: 'time', column: 'created_at' },
  updatedAt: { kind: 'time', column: 'updated_at' },
  lastUsedAt: { kind: 'time', column: 'last_used_at', nullable: true, touched: true },
  lastUsedIp: { kind: 'text', column: 'last_used_ip', sqlType: 'ip', nullable: true, touched: true },
  expiresAt: { kind: 'time', column: 'expires_at', nullable: true },
  metadata: { kind: 'json', column: 'metadata', lazy: true },
  rateLimit: { kind: 'json', column: 'rate_limit', nullable: true },
  remaining: { kind: 'integer', column: 'remaining', nullable: true, counter: true },
  refill: { kind: 'json', column: 'refill', nullable: true },
  refilledAt: { kind: 'time', column: 'refilled_at', nullable: true, counter: true, public: false },
  version: { kind: 'integer', column: 'version' },
  digest: { kind: 'text', column: 'digest', sqlType: 'digest', public: false },
  previousDigest: { kind: 'text', column: 'previous_digest', sqlType: 'digest', nullable: true, public: false },
  previousDigestExpiresAt: { kind: 'time', column: 'previous_digest_expires_at', nullable: true, public: false },
} as const satisfies { readonly [K in keyof KeyRecord]-?: FieldDeclaration };

/** A field's name, i.e. a property of `KeyRecord`. */
export type FieldName = keyof typeof DECLARED;

/** The fields as `[name, spec]` pairs, in table order, with the defaults filled in. */
export const FIELD_LIST: ReadonlyArray<readonly [FieldName, FieldSpec]> = (
  Object.entries(DECLARED) as Array<[FieldName, FieldDeclaration]>
).map(([name, d]) => [
  name,
  Object.freeze({
    kind: d.kind,
    column: d.column,
    sqlType: d.sqlType ?? SQL_TYPE_OF_KIND[d.kind],
    nullable: d.nullable ?? false,
    touched: d.touched ?? false,
    counter: d.counter ?? false,
    lazy: d.lazy ?? false,
  }),
]);

type PublicFieldName = { [K in FieldName]: (typeof DECLARED)[K] extends { public: false } ? never : K }[FieldName];
/** Compiles only while the table's public fields are exactly the properties of `ApiKey`. */
type Exactly<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const publicFieldsMatchApiKey: Exactly<PublicFieldName, keyof ApiKey> = true;
void publicFieldsMatchApiKey;

/**
 * The public view of a stored record: every public field, never a digest. Written as one literal
 * (not a loop over the table) because verify returns one per call, and a literal is ~50 times
 * faster to build; the `ApiKey` type makes the compiler name any field the table adds.
 */
export function toApiKey(r: KeyRecord): ApiKey {
  return {
    id: r.id,
    ownerId: r.ownerId,
    name: r.name,
    active: r.active,
    scopes: r.scopes,
    allowedIps: r.allowedIps,
    hint: r.hint,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    lastUsedAt: r.lastUsedAt,
    lastUsedIp: r.lastUsedIp,
    expiresAt: r.expiresAt,
    metadata: r.metadata,
    rateLimit: r.rateLimit,
    remaining: r.remaining,
    refill: r.refill,
    version: r.version,
  };
}

/** The state of a lazily parsed field, kept on its record under a symbol (not enumerable, so never copied). */
interface LazyJson {
  /** The text still to parse, or `null` once `value` holds the field. */
  pending: string | null;
  value: unknown;
  /** Deep-freeze the value once parsed: the record is shared (the verify cache holds it). */
  freeze: boolean;
}

/** One getter and setter per field, shared by every record: records keep one hidden class. */
interface LazyAccessors {
  readonly state: symbol;
  readonly get: (this: object) => unknown;
  readonly set: (this: object, next: unknown) => void;
}

const LAZY_ACCESSORS = new Map<FieldName, LazyAccessors>();

function lazyAccessors(name: FieldName): LazyAccessors {
  const known = LAZY_ACCESSORS.get(name);
  if (known) return known;
  const state = Symbol(`keygate.lazy.${name}`);
  const stateOf = (record: object): LazyJson | undefined => (record as { [state]?: LazyJson })[state];
  const accessors: LazyAccessors = {
    state,
    get(this: object) {
      const s = stateOf(this);
      if (s === undefined) return undefined;
      if (s.pending !== null) {
        try {
          s.value = JSON.parse(s.pending);
        } catch (error) {
          const id = (this as { id?: unknown }).id;
          throw new StoreUnavailableError('read', `the stored ${name} of key ${JSON.stringify(id)} is not valid JSON`, { cause: error });
        }
        s.pending = null;
        if (s.freeze) deepFreeze(s.value);
      }
      return s.value;
    },
    set(this: object, next: unknown) {
      const s = stateOf(this);
      if (s === undefined) return;
      s.pending = null;
      s.value = s.freeze ? deepFreeze(next) : next;
    },
  };
  LAZY_ACCESSORS.set(name, accessors);
  return accessors;
}

/**
 * Gives `record` the property `name` (a `json` field: metadata) parsed from `text` on its first
 * read, then kept. Verify reads metadata only to return a key it accepts; parsed with the rest of
 * the record, a large one would make refusing an existing key's token (deactivated, rotated out)
 * measurably slower than refusing an unknown one. The property stays own, enumerable and
 * writable, so spreads, `JSON.stringify` and `structuredClone` see the parsed value. Text that is
 * not JSON throws `StoreUnavailableError` from the read that needs it, as a failed store call would.
 */
export function defineLazyJson(record: object, name: FieldName, text: string): void {
  const { state, get, set } = lazyAccessors(name);
  const lazy: LazyJson = { pending: text, value: undefined, freeze: false };
  Object.defineProperty(record, state, { value: lazy, enumerable: false, writable: false, configurable: true });
  Object.defineProperty(record, name, { get, set, enumerable: true, configurable: true });
}

/**
 * Makes a field that `defineLazyJson` defined deep-frozen from now on, without parsing it; `false`
 * when `record[name]` is not such a field. (Wrapping the getter instead would give each record a
 * hidden class of its own, and the verify cache reads its records on every hit.)
 */
export function freezeLazyJson(record: object, name: FieldName): boolean {
  const { state, get } = lazyAccessors(name);
  const lazy = (record as { [state]?: LazyJson })[state];
  if (lazy === undefined || Object.getOwnPropertyDescriptor(record, name)?.get !== get) return false;
  lazy.freeze = true;
  if (lazy.pending === null) deepFreeze(lazy.value);
  return true;
}
