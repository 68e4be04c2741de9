// redisStore(): keys in Redis through the application's own ioredis or node-redis client.

import { StoreConflictError, ValidationError } from '../../src/errors.js';
import { defineLazyJson, FIELD_LIST, type FieldName } from '../../src/fields.js';
import type { KeyRecord, KeyStore, StoreListQuery, TouchEntry } from '../../src/store.js';
import { commandSender, type RedisClientLike, refuseKeyPrefix, type SendCommand } from './client.js';
import { DELETE, FIND_BY_DIGEST, INSERT, LIST, TOUCH, UPDATE } from './scripts.js';

export interface RedisStoreOptions {
  /**
   * Starts the name of every key the store writes. It must contain a Redis Cluster hash tag
   * (`{…}`, not empty): every key of the store then hashes to one slot, which lets one Lua script
   * update a record and its indexes atomically on a cluster as on a single server. Use one
   * prefix per application (or per environment) sharing a Redis database.
   * @default '{keygate}:'
   */
  prefix?: string | undefined;
}

/** The most index members one LIST script call reads. */
const LIST_BATCH_MAX = 1000;
/** With the active filter, read at least this many members per call, expecting some not to match. */
const LIST_BATCH_FILTERED = 100;
const MAX_SORTABLE_MS = 999_999_999_999_999;

function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || prefix.length === 0 || prefix.length > 200 || /[\u0000-\u001f\u007f]/.test(prefix)) {
    throw new ValidationError('prefix', 'must be a string of 1..200 characters without control characters, such as "{keygate}:"');
  }
  const open = prefix.indexOf('{');
  const close = open === -1 ? -1 : prefix.indexOf('}', open + 1);
  if (close <= open + 1) {
    throw new ValidationError(
      'prefix',
      `must contain a non-empty Redis Cluster hash tag such as "{keygate}:" or "myapp:{keys}:", so that all keys of the store share one slot; got ${JSON.stringify(prefix)}`,
    );
  }
  return prefix;
}

/** The position of a record in the list indexes: creation time (15 digits), then id. */
function memberOf(createdAt: Date, id: string): string {
  const ms = createdAt.getTime();
  if (!Number.isInteger(ms) || ms < 0 || ms > MAX_SORTABLE_MS) {
    throw new ValidationError('createdAt', 'must be a date between 1970 and 33658 to be kept in Redis');
  }
  return `${String(ms).padStart(15, '0')}:${id}`;
}

/**
 * The record as kept in the hash field `r`: JSON of every field but the touched one (lastUsedAt,
 * kept in `u` beside it, so that a touch never rewrites the record), dates as ms since 1970.
 */
function encode(r: KeyRecord): string {
  const stored: Record<string, unknown> = {};
  for (const [name, spec] of FIELD_LIST) {
    if (spec.touched) continue;
    const value = r[name];
    if (spec.kind === 'time') stored[name] = value === null ? null : (value as Date).getTime();
    else if (spec.kind === 'list') stored[name] = [...(value as readonly string[])];
    else stored[name] = value;
  }
  return JSON.stringify(stored);
}

/** The fields kept in a record's JSON, in the order `encode` writes them (the table's). */
const STORED_FIELDS = FIELD_LIST.filter(([, spec]) => !spec.touched).map(([name, spec]) => ({ name, spec }));
const METADATA_AT = STORED_FIELDS.findIndex(({ spec }) => spec.kind === 'json');
// How `decode` finds the metadata's JSON inside a record's: the key that opens it and the key after
// it. That needs metadata to be the one `json` field, neither first nor last, as the table has it.
if (METADATA_AT <= 0 || METADATA_AT === STORED_FIELDS.length - 1 || STORED_FIELDS.filter(({ spec }) => spec.kind === 'json').length !== 1) {
  throw new Error('keygate/redis: the field table no longer has metadata between two other stored fields');
}
const METADATA_FIELD: FieldName = (STORED_FIELDS[METADATA_AT] as (typeof STORED_FIELDS)[number]).name;
const METADATA_OPEN = `,"${METADATA_FIELD}":`;
const METADATA_CLOSE = `,"${(STORED_FIELDS[METADATA_AT + 1] as (typeof STORED_FIELDS)[number]).name}":`;

/**
 * The record's JSON parsed without its metadata, and the metadata's JSON text apart, so that only
 * a read of `metadata` parses it. In what `encode` writes, no field before metadata holds an
 * object and no field after it holds the next key's text (a `"` inside a JSON string is always
 * escaped), so the first `,"metadata":` and the last `,"version":` delimit it. `null` when the
 * text does not split that way (a record in another field order): parse it whole.
 */
function splitMetadata(json: string): { rest: Record<string, unknown>; text: string } | null {
  const start = json.indexOf(METADATA_OPEN);
  const end = json.lastIndexOf(METADATA_CLOSE);
  if (start <= 0 || end <= start) return null;
  const text = json.slice(start + METADATA_OPEN.length, end);
  if (text[0] !== '{' || text[text.length - 1] !== '}') return null;
  let rest: unknown;
  try {
    rest = JSON.parse(json.slice(0, start) + json.slice(end));
  } catch {
    return null;
  }
  if (rest === null || typeof rest !== 'object' || Object.hasOwn(rest, METADATA_FIELD)) return null;
  return { rest: rest as Record<string, unknown>, text };
}

function decode(json: unknown, lastUsed: unknown): KeyRecord {
  if (typeof json !== 'string') throw new Error('Redis returned a key record that is not a string');
  const split = splitMetadata(json);
  const stored = split ? split.rest : (JSON.parse(json) as Record<string, unknown>);
  const record: Record<string, unknown> = {};
  for (const [name, spec] of FIELD_LIST) {
    if (spec.touched) record[name] = typeof lastUsed === 'string' && lastUsed !== '' ? new Date(Number(lastUsed)) : null;
    else if (split && name === METADATA_FIELD) defineLazyJson(record, name, split.text);
    else if (spec.kind === 'time') record[name] = stored[name] === null ? null : new Date(stored[name] as number);
    else record[name] = stored[name];
  }
  return record as unknown as KeyRecord;
}

/**
 * Keeps keys in Redis. Each record is one hash; a digest index gives verify one round trip;
 * sorted-set indexes give `list` its (createdAt, id) order without `KEYS` or `SCAN`. Every write
 * is one Lua script, so it is atomic: updates are compare-and-set on `version`, and nothing can
 * bring back a deleted key.
 *
 * The client is the application's own, connected ioredis or node-redis client; the store never
 * opens, closes or reconfigures it, and holds nothing that needs closing. While the client is
 * not ready (connecting, reconnecting, closed) every call rejects at once instead of waiting in
 * the client's offline queue, so the manager answers `StoreUnavailableError` (HTTP 503).
 *
 * @example
 * import { Redis } from 'ioredis'
 * const client = new Redis(process.env.REDIS_URL)
 * await new Promise((resolve) => client.once('ready', resolve))
 * const keys = createKeyManager({ store: redisStore(client) })
 */
export class RedisStore implements KeyStore {
  /** The prefix of every key this store writes. */
  readonly prefix: string;
  private readonly send: SendCommand;
  private readonly allKey: string;

  constructor(client: RedisClientLike, options: RedisStoreOptions = {}) {
    this.send = commandSender(client, 'client');
    this.prefix = checkPrefix(options.prefix ?? '{keygate}:');
    refuseKeyPrefix(client, this.prefix);
    this.allKey = `${this.prefix}all`;
  }

  private recordKey(id: string): string {
    return `${this.prefix}k:${id}`;
  }

  private digestKey(digest: string): string {
    return `${this.prefix}d:${digest}`;
  }

  private ownerKey(ownerId: string): string {
    return `${this.prefix}o:${ownerId}`;
  }

  /** The arguments shared by INSERT and UPDATE, after the ones particular to each. */
  private fields(r: KeyRecord): string[] {
    return [
      encode(r),
      String(r.version),
      r.active ? '1' : '0',
      r.previousDigest === null ? '' : this.digestKey(r.previousDigest),
      r.ownerId === null ? '' : this.ownerKey(r.ownerId),
      memberOf(r.createdAt, r.id),
      r.lastUsedAt === null ? '' : String(r.lastUsedAt.getTime()),
    ];
  }

  async insert(record: KeyRecord): Promise<void> {
    const keys = [this.recordKey(record.id), this.allKey, this.digestKey(record.digest)];
    const result = await INSERT.run(this.send, 'insert', keys, this.fields(record));
    if (result === -1) throw new StoreConflictError(`a key with id '${record.id}' already exists`);
    if (result === -2) throw new StoreConflictError('a key with this token digest already exists');
  }

  async findById(id: string): Promise<KeyRecord | null> {
    const reply = (await this.send('findById', ['HMGET', this.recordKey(id), 'r', 'u'])) as unknown[];
    return reply[0] == null ? null : decode(reply[0], reply[1]);
  }

  async findByDigest(digest: string): Promise<KeyRecord | null> {
    const reply = (await FIND_BY_DIGEST.run(this.send, 'findByDigest', [this.digestKey(digest)], [])) as unknown[] | null;
    return reply == null || reply[0] == null ? null : decode(reply[0], reply[1]);
  }

  async list(query: StoreListQuery): Promise<KeyRecord[]> {
    // Keys without an owner have no index of their own: they are read from the index of all keys,
    // passing those whose hash has no owner field. That holds for every record ever written, so no
    // index needs building first; the cost is reading past the keys that have an owner.
    const ownerless = query.ownerId === null;
    const index = query.ownerId === undefined || query.ownerId === null ? this.allKey : this.ownerKey(query.ownerId);
    const filter = query.active === undefined ? '' : query.active ? '1' : '0';
    const filtered = filter !== '' || ownerless;
    let start = query.after ? `(${memberOf(query.after.createdAt, query.after.id)}` : '-';
    const out: KeyRecord[] = [];
    while (out.length < query.limit) {
      const wanted = query.limit - out.length;
      const count = Math.min(LIST_BATCH_MAX, filtered ? Math.max(wanted, LIST_BATCH_FILTERED) : wanted);
      const args = [`${this.prefix}k:`, start, String(count), filter, ownerless ? '-' : ''];
      const reply = (await LIST.run(this.send, 'list', [index], args)) as unknown[];
      for (let i = 2; i < reply.length; i += 2) out.push(decode(reply[i], reply[i + 1]));
      if (reply[0] === 1 || typeof reply[1] !== 'string' || reply[1] === '') break;
      start = `(${reply[1]}`;
    }
    return out.length > query.limit ? out.slice(0, query.limit) : out;
  }

  async update(next: KeyRecord, expectedVersion: number): Promise<boolean> {
    const keys = [this.recordKey(next.id), this.allKey, this.digestKey(next.digest)];
    const result = await UPDATE.run(this.send, 'update', keys, [String(expectedVersion), ...this.fields(next)]);
    if (result === -2) throw new StoreConflictError('a key with this token digest already exists');
    return result === 1;
  }

  async delete(id: string): Promise<boolean> {
    return (await DELETE.run(this.send, 'delete', [this.recordKey(id), this.allKey], [])) === 1;
  }

  async touch(entries: readonly TouchEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const keys = entries.map((e) => this.recordKey(e.id));
    const times = entries.map((e) => String(e.lastUsedAt.getTime()));
    await TOUCH.run(this.send, 'touch', keys, times);
  }
}

/**
 * A {@link RedisStore} over your own ioredis (5, 6) or node-redis (4.6+, 5, 6) client.
 *
 * @example
 * import { createClient } from 'redis'
 * const client = createClient({ url: process.env.REDIS_URL })
 * client.on('error', (error) => console.error('redis', error))
 * await client.connect()
 * const keys = createKeyManager({ store: redisStore(client, { prefix: '{shop}:keys:' }) })
 */
export function redisStore(client: RedisClientLike, options: RedisStoreOptions = {}): RedisStore {
  return new RedisStore(client, options);
}

/** @deprecated Use `redisStore(client, options)`, and the `RedisStore` type; removed in 0.3. */
export const RedisKeyStore = RedisStore;
/** @deprecated Use the `RedisStore` type, which `redisStore()` returns; removed in 0.3. */
export type RedisKeyStore = RedisStore;
