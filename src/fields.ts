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
  readonly touched?: true;
}

/**
 * Every field of a stored key, in the order stores list them. Adding a field is one entry here,
 * one property in `ApiKey` (or `KeyRecord` for a private one), one line in `toApiKey` when public
 * (the compiler asks for each), and a migration for the SQL table.
 */
export const KEY_FIELDS = {
  id: { kind: 'text', nullable: false, column: 'id', sqlType: 'id', public: true },
  ownerId: { kind: 'text', nullable: true, column: 'owner_id', sqlType: 'ownerId', public: true },
  name: { kind: 'text', nullable: false, column: 'name', sqlType: 'name', public: true },
  active: { kind: 'boolean', nullable: false, column: 'active', sqlType: 'boolean', public: true },
  scopes: { kind: 'list', nullable: false, column: 'scopes', sqlType: 'json', public: true },
  allowedIps: { kind: 'list', nullable: false, column: 'allowed_ips', sqlType: 'json', public: true },
  hint: { kind: 'text', nullable: false, column: 'hint', sqlType: 'hint', public: true },
  createdAt: { kind: 'time', nullable: false, column: 'created_at', sqlType: 'time', public: true },
  updatedAt: { kind: 'time', nullable: false, column: 'updated_at', sqlType: 'time', public: true },
  lastUsedAt: { kind: 'time', nullable: true, column: 'last_used_at', sqlType: 'time', public: true, touched: true },
  expiresAt: { kind: 'time', nullable: true, column: 'expires_at', sqlType: 'time', public: true },
  metadata: { kind: 'json', nullable: false, column: 'metadata', sqlType: 'json', public: true },
  version: { kind: 'integer', nullable: false, column: 'version', sqlType: 'version', public: true },
  digest: { kind: 'text', nullable: false, column: 'digest', sqlType: 'digest', public: false },
  previousDigest: { kind: 'text', nullable: true, column: 'previous_digest', sqlType: 'digest', public: false },
  previousDigestExpiresAt: { kind: 'time', nullable: true, column: 'previous_digest_expires_at', sqlType: 'time', public: false },
} as const satisfies { readonly [K in keyof KeyRecord]-?: FieldSpec };

/** A field's name, i.e. a property of `KeyRecord`. */
export type FieldName = keyof typeof KEY_FIELDS;

/** The fields as `[name, spec]` pairs, in table order. */
export const FIELD_LIST: ReadonlyArray<readonly [FieldName, FieldSpec]> = Object.entries(KEY_FIELDS) as Array<[FieldName, FieldSpec]>;

type PublicFieldName = { [K in FieldName]: (typeof KEY_FIELDS)[K]['public'] extends true ? K : never }[FieldName];
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
