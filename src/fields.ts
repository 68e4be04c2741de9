// The one list of a key's fields: how each is stored, and which ones the public ApiKey carries.

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
export type SqlTypeName = 'id' | 'ownerId' | 'digest' | 'name' | 'hint' | 'json' | 'boolean' | 'time' | 'version';

export interface FieldSpec {
  readonly kind: FieldKind;
  /** Whether the value may be `null` (a SQL column without NOT NULL). */
  readonly nullable: boolean;
  /** The SQL column. Renaming one changes the stored format: existing tables would break. */
  readonly column: string;
  /** The column's type, looked up in the dialect's type table. */
  readonly sqlType: SqlTypeName;
  /** Part of the public `ApiKey` (the digests never are). */
  readonly public: boolean;
  /**
   * Written by `touch()` in batches, not by `update()`: stores keep the later of the stored and the
   * given value, and Redis keeps it beside the record rather than in it.
   */
  readonly touched: boolean;
}

/** A table entry: what differs from the defaults (not null, public, not touched, the kind's SQL type). */
type FieldDeclaration = Pick<FieldSpec, 'kind' | 'column'> & Partial<FieldSpec>;

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
  expiresAt: { kind: 'time', column: 'expires_at', nullable: true },
  metadata: { kind: 'json', column: 'metadata' },
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
    public: d.public ?? true,
    touched: d.touched ?? false,
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
    expiresAt: r.expiresAt,
    metadata: r.metadata,
    version: r.version,
  };
}
