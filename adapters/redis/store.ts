// redisStore(): keys in Redis through the application's own ioredis or node-redis client.

import { StoreConflictError, ValidationError } from '../../src/errors.js';
import { defineLazyJson, FIELD_LIST, type FieldName } from '../../src/fields.js';
import { deepFreeze } from '../../src/freeze.js';
import type { QuotaRefill } from '../../src/quota.js';
import type { KeyRecord, KeyStore, SpendResult, StoreListQuery, TouchEntry } from '../../src/store.js';
import { commandSender, type RedisClientLike, refuseKeyPrefix, type SendCommand } from './client.js';
import { DELETE, FIND_BY_DIGEST, INSERT, LIST, SPEND, TOUCH, UPDATE } from './scripts.js';

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

/** The field parsed on first read (metadata), written next to last in the record's JSON. */
const LAZY_FIELDS = FIELD_LIST.filter(([, spec]) => spec.lazy);
/** The field written last, right after the lazy one: it followed metadata in every format the store wrote. */
const TRAILER: FieldName = 'version';
if (LAZY_FIELDS.length !== 1 || (LAZY_FIELDS[0] as (typeof LAZY_FIELDS)[number])[1].kind !== 'json') {
  throw new Error('keygate/redis: the store parses exactly one field (metadata) on first read, and the field table has another number');
}
const LAZY_FIELD: FieldName = (LAZY_FIELDS[0] as (typeof LAZY_FIELDS)[number])[0];
/**
 * The fields kept in a record's JSON, in the order `encode` writes them: every field but the
 * touched ones (lastUsedAt in `u`, lastUsedIp in `ui`) and the counters (in `q`, `qt`), which
 * change without a new version and so live beside the record; then the lazy field; then the trailer.
 */
const RECORD_FIELDS = [
  ...FIELD_LIST.filter(([name, spec]) => !spec.touched && !spec.counter && !spec.lazy && name !== TRAILER),
  ...FIELD_LIST.filter(([name]) => name === LAZY_FIELD),
  ...FIELD_LIST.filter(([name]) => name === TRAILER),
];
const LAZY_OPEN = `,"${LAZY_FIELD}":`;
const LAZY_CLOSE = `,"${TRAILER}":`;

/**
 * The record as kept in the hash field `r`: JSON of the fields in RECORD_FIELDS order, dates as
 * ms since 1970. Metadata comes last but for `version`, so that `decode` can cut its text out
 * without parsing it.
 *
 * Records written before rate limits and quotas have the same shape but for the new fields:
 * their JSON has every field in the table's old order (metadata right before version, then the
 * digests) and no rateLimit or refill, and their hash no `q` or `qt`. `decode` cuts metadata out
 * of both by the same rule and reads a missing field as null.
 */
function encode(r: KeyRecord): string {
  const stored: Record<string, unknown> = {};
  for (const [name, spec] of RECORD_FIELDS) {
    const value = r[name];
    if (spec.kind === 'time') stored[name] = value === null ? null : (value as Date).getTime();
    else if (spec.kind === 'list') stored[name] = [...(value as readonly string[])];
    else stored[name] = value;
  }
  return JSON.stringify(stored);
}

/**
 * The record's JSON parsed without its metadata, and the metadata's JSON text apart, so that only
 * a read of `metadata` parses it. The text runs from the first `,"metadata":` to the last
 * `,"version":`. In both formats version follows metadata and no later field holds an object, and
 * a `"` inside a JSON string is always escaped, so the last `,"version":` is the top-level key
 * right after metadata. The first `,"metadata":` is the top-level key too: one inside an earlier
 * object (rateLimit, refill) would leave that object unclosed in what remains, which then fails
 * to parse. `null` when the text does not split that way (a record in another field order): the
 * caller parses it whole.
 */
function splitMetadata(json: string): { rest: Record<string, unknown>; text: string } | null {
  const start = json.indexOf(LAZY_OPEN);
  const end = json.lastIndexOf(LAZY_CLOSE);
  if (start <= 0 || end <= start) return null;
  const text = json.slice(start + LAZY_OPEN.length, end);
  if (text[0] !== '{' || text[text.length - 1] !== '}') return null;
  let rest: unknown;
  try {
    rest = JSON.parse(json.slice(0, start) + json.slice(end));
  } catch {
    return null;
  }
  if (rest === null || typeof rest !== 'object' || Object.hasOwn(rest, LAZY_FIELD)) return null;
  return { rest: rest as Record<string, unknown>, text };
}

/** A stored whole number (a hash field), or null when absent. */
function storedNumber(value: unknown): number | null {
  if (value === null || value === undefined || value === '') return null;
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new Error('Redis returned a key counter that is not a whole number');
  return n;
}

/** A stored text (a hash field), or null when absent. */
function storedText(value: unknown): string | null {
  if (value === null || value === undefined || value === '') return null;
  return typeof value === 'string' ? value : String(value);
}

/** A record from its hash fields: `r`, `u` (lastUsedAt), `q` (remaining), `qt` (refilledAt) and `ui` (lastUsedIp). */
function decode(json: unknown, lastUsed: unknown, remaining: unknown, refilledAt: unknown, lastUsedIp: unknown): KeyRecord {
  if (typeof json !== 'string') throw new Error('Redis returned a key record that is not a string');
  const split = splitMetadata(json);
  const stored = split ? split.rest : (JSON.parse(json) as Record<string, unknown>);
  const record: Record<string, unknown> = {};
  for (const [name, spec] of FIELD_LIST) {
    if (spec.touched) record[name] = spec.kind === 'time' ? storedDate(lastUsed) : storedText(lastUsedIp);
    else if (spec.counter) record[name] = spec.kind === 'time' ? storedDate(refilledAt) : storedNumber(remaining);
    else if (split && name === LAZY_FIELD) defineLazyJson(record, name, split.text);
    else {
      // A field the record was written without (one added since) reads as null.
      const value = stored[name] === undefined && spec.nullable ? null : stored[name];
      if (spec.kind === 'time') record[name] = value === null ? null : new Date(value as number);
      else if (spec.kind === 'json' && !spec.lazy && value !== null) record[name] = deepFreeze(value);
      else record[name] = value;
    }
  }
  return record as unknown as KeyRecord;
}

function storedDate(value: unknown): Date | null {
  const ms = storedNumber(value);
  return ms === null ? null : new Date(ms);
}

/**
 * Keeps keys in Redis. Each record is one hash; a digest index gives verify one round trip;
 * sorted-set indexes give `list` its (createdAt, id) order without `KEYS` or `SCAN`. Every write
 * is one Lua script, so it is atomic: updates are compare-and-set on `version`, nothing can
 * bring back a deleted key, and `spend` takes a key's quota uses (after any refill due) in one
 * step, on counters kept beside the record so that it never rewrites the record.
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
    refuseKeyPrefix(client, 'redisStore', this.prefix);
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
      r.remaining === null ? '' : String(r.remaining),
      r.refilledAt === null ? '' : String(r.refilledAt.getTime()),
      r.lastUsedIp ?? '',
    ];
  }

  async insert(record: KeyRecord): Promise<void> {
    const keys = [this.recordKey(record.id), this.allKey, this.digestKey(record.digest)];
    const result = await INSERT.run(this.send, 'insert', keys, this.fields(record));
    if (result === -1) throw new StoreConflictError(`a key with id '${record.id}' already exists`);
    if (result === -2) throw new StoreConflictError('a key with this token digest already exists');
  }

  async findById(id: string): Promise<KeyRecord | null> {
    const reply = (await this.send('findById', ['HMGET', this.recordKey(id), 'r', 'u', 'q', 'qt', 'ui'])) as unknown[];
    return reply[0] == null ? null : decode(reply[0], reply[1], reply[2], reply[3], reply[4]);
  }

  async findByDigest(digest: string): Promise<KeyRecord | null> {
    const reply = (await FIND_BY_DIGEST.run(this.send, 'findByDigest', [this.digestKey(digest)], [])) as unknown[] | null;
    return reply == null || reply[0] == null ? null : decode(reply[0], reply[1], reply[2], reply[3], reply[4]);
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
      for (let i = 2; i < reply.length; i += 5) out.push(decode(reply[i], reply[i + 1], reply[i + 2], reply[i + 3], reply[i + 4]));
      if (reply[0] === 1 || typeof reply[1] !== 'string' || reply[1] === '') break;
      start = `(${reply[1]}`;
    }
    return out.length > query.limit ? out.slice(0, query.limit) : out;
  }

  async update(next: KeyRecord, expectedVersion: number, counters = false): Promise<boolean> {
    const keys = [this.recordKey(next.id), this.allKey, this.digestKey(next.digest)];
    const args = [String(expectedVersion), ...this.fields(next), counters ? '1' : '0'];
    const result = await UPDATE.run(this.send, 'update', keys, args);
    if (result === -2) throw new StoreConflictError('a key with this token digest already exists');
    return result === 1;
  }

  async delete(id: string): Promise<boolean> {
    return (await DELETE.run(this.send, 'delete', [this.recordKey(id), this.allKey], [])) === 1;
  }

  async spend(id: string, cost: number, refill: QuotaRefill | null, now: number): Promise<SpendResult | null> {
    const args = [
      String(cost),
      String(now),
      refill === null ? '' : String(refill.amount),
      refill === null ? '' : String(refill.intervalMs),
    ];
    const reply = (await SPEND.run(this.send, 'spend', [this.recordKey(id)], args)) as unknown[] | null;
    if (reply == null) return null;
    const refilledAt = storedNumber(reply[2]);
    return { spent: Number(reply[0]) === 1, remaining: Number(reply[1]), refilledAt: refilledAt === null ? null : new Date(refilledAt) };
  }

  async touch(entries: readonly TouchEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const keys: string[] = [];
    const args: string[] = [];
    for (const e of entries) {
      keys.push(this.recordKey(e.id));
      args.push(String(e.lastUsedAt.getTime()), e.ip ?? '');
    }
    await TOUCH.run(this.send, 'touch', keys, args);
  }
}

/**
 * A {@link RedisStore} over your own ioredis (5, 6) or node-redis (4.6+, 5, 6) client, or a cluster
 * client of either (ioredis `Cluster`, node-redis `createCluster()`).
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
