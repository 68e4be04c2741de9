// The writes of the key lifecycle: create, update, activate/deactivate, delete and rotate, each a compare-and-set with retries.

import type { Deadlines } from './deadline.js';
import { KeyNotFoundError, ManagerClosedError, ValidationError, VersionConflictError } from './errors.js';
import type { Listeners } from './events.js';
import { toApiKey } from './fields.js';
import type { LastUsedBuffer } from './last-used.js';
import type { CachedLookup } from './lookup.js';
import { parseAllowedIps } from './ip.js';
import type { ScopeCatalog } from './scopes.js';
import type { KeyRecord, KeyStore } from './store.js';
import { hintOf, type TokenSource } from './token.js';
import type { ApiKey, CreateKeyInput, KeyWithToken, RotateOptions, UpdateKeyInput, UpdateOptions } from './types.js';
import { checkBoolean, checkDate, checkId, checkMetadata, checkName, checkOwner, checkVersion, checkWholeNumber } from './validate.js';

/** Attempts of a write that lost a compare-and-set race before it gives up with VersionConflictError. */
const UPDATE_RETRIES = 8;
const EMPTY: readonly string[] = Object.freeze([]);

/** What the manager's operations share, wired once by createKeyManager. */
export interface ManagerParts {
  readonly store: KeyStore;
  readonly prefix: string;
  readonly catalog: ScopeCatalog;
  readonly digest: (token: string) => string;
  /** Where new tokens and ids come from: the CSPRNG, or a seeded source from keygate/testing. */
  readonly tokens: TokenSource;
  readonly now: () => number;
  readonly deadlines: Deadlines;
  readonly lookup: CachedLookup;
  readonly lastUsed: LastUsedBuffer;
  readonly listeners: Listeners;
  /** Set by close(); every operation but verify of garbage then throws ManagerClosedError. */
  closed: boolean;
}

export function assertOpen(parts: ManagerParts): void {
  if (parts.closed) throw new ManagerClosedError();
}

function allowedIps(input: unknown): readonly string[] {
  const ips = parseAllowedIps(input as CreateKeyInput['allowedIps'], 'allowedIps');
  return ips.length === 0 ? EMPTY : ips;
}

export async function createKey(parts: ManagerParts, input: CreateKeyInput): Promise<KeyWithToken> {
  assertOpen(parts);
  if (!input || typeof input !== 'object') throw new ValidationError('input', 'must be an object with at least { name, scopes }');
  const name = checkName(input.name);
  const active = input.active === undefined ? true : checkBoolean('active', input.active);
  const scopes = parts.catalog.parse(input.scopes, 'scopes');
  const ips = allowedIps(input.allowedIps);
  const ownerId = checkOwner(input.ownerId);
  const expiresAt = checkDate('expiresAt', input.expiresAt);
  const createdAt = new Date(parts.now());
  if (expiresAt && expiresAt.getTime() <= createdAt.getTime()) {
    throw new ValidationError('expiresAt', 'must be in the future for a new key');
  }
  const metadata = checkMetadata(input.metadata);
  const token = parts.tokens.token(parts.prefix);
  const record: KeyRecord = {
    id: parts.tokens.id(),
    ownerId,
    name,
    active,
    scopes,
    allowedIps: ips,
    hint: hintOf(token, parts.prefix),
    createdAt,
    updatedAt: createdAt,
    lastUsedAt: null,
    expiresAt,
    metadata,
    version: 1,
    digest: parts.digest(token),
    previousDigest: null,
    previousDigestExpiresAt: null,
  };
  await parts.deadlines.run('insert', () => parts.store.insert(record));
  parts.lookup.created(record.digest);
  parts.listeners.emit({ type: 'created', keyId: record.id, at: createdAt });
  return { key: toApiKey(record), token };
}

export async function updateKey(parts: ManagerParts, id: string, changes: UpdateKeyInput, options: UpdateOptions): Promise<ApiKey> {
  assertOpen(parts);
  checkId(id);
  if (!changes || typeof changes !== 'object') throw new ValidationError('changes', 'must be an object of fields to change');
  const expectedVersion = checkVersion(options.expectedVersion);
  // Validate everything before touching the store: a bad field changes nothing.
  const patch: Partial<KeyRecord> = {};
  if (changes.name !== undefined) patch.name = checkName(changes.name);
  if (changes.active !== undefined) patch.active = checkBoolean('active', changes.active);
  if (changes.scopes !== undefined) patch.scopes = parts.catalog.parse(changes.scopes, 'scopes');
  if (changes.allowedIps !== undefined) patch.allowedIps = allowedIps(changes.allowedIps);
  if (changes.expiresAt !== undefined) patch.expiresAt = checkDate('expiresAt', changes.expiresAt);
  if (changes.metadata !== undefined) patch.metadata = checkMetadata(changes.metadata);
  const record = await writeWithRetry(parts, id, expectedVersion, (current, at) => {
    const next: KeyRecord = { ...current, ...patch, updatedAt: at, version: current.version + 1 };
    // The grace period of a rotated token never outlives the key.
    if (next.previousDigestExpiresAt && next.expiresAt && next.previousDigestExpiresAt > next.expiresAt) {
      next.previousDigestExpiresAt = next.expiresAt;
    }
    return next;
  });
  return changed(parts, 'updated', record);
}

export async function setActive(parts: ManagerParts, id: string, active: boolean): Promise<ApiKey> {
  assertOpen(parts);
  checkId(id);
  const record = await writeWithRetry(parts, id, undefined, (current, at) =>
    current.active === active ? null : { ...current, active, updatedAt: at, version: current.version + 1 },
  );
  return changed(parts, active ? 'activated' : 'deactivated', record);
}

export async function deleteKey(parts: ManagerParts, id: string): Promise<boolean> {
  assertOpen(parts);
  checkId(id);
  const existed = await parts.deadlines.run('delete', () => parts.store.delete(id));
  parts.lastUsed.forget(id);
  await parts.lookup.changed(id);
  if (existed) parts.listeners.emit({ type: 'deleted', keyId: id, at: new Date(parts.now()) });
  return existed;
}

export async function rotateKey(parts: ManagerParts, id: string, options: RotateOptions): Promise<KeyWithToken> {
  assertOpen(parts);
  checkId(id);
  const grace = checkWholeNumber('gracePeriodMs', options.gracePeriodMs ?? 0, { min: 0, unit: 'ms' });
  const token = parts.tokens.token(parts.prefix);
  const tokenDigest = parts.digest(token);
  const record = await writeWithRetry(parts, id, undefined, (current, at) => {
    let graceEnd: Date | null = grace > 0 ? new Date(at.getTime() + grace) : null;
    if (graceEnd && current.expiresAt && graceEnd > current.expiresAt) graceEnd = current.expiresAt;
    if (graceEnd && graceEnd.getTime() <= at.getTime()) graceEnd = null;
    return {
      ...current,
      hint: hintOf(token, parts.prefix),
      digest: tokenDigest,
      previousDigest: graceEnd ? current.digest : null,
      previousDigestExpiresAt: graceEnd,
      updatedAt: at,
      version: current.version + 1,
    };
  });
  return { key: await changed(parts, 'rotated', record), token };
}

/** After a write: drops the key from every cache, emits the event, returns the public view. */
async function changed(parts: ManagerParts, type: 'updated' | 'activated' | 'deactivated' | 'rotated', record: KeyRecord): Promise<ApiKey> {
  await parts.lookup.changed(record.id);
  parts.listeners.emit({ type, keyId: record.id, at: record.updatedAt });
  return toApiKey(record);
}

/**
 * Reads the key, applies `change` and writes it back if nobody wrote it meanwhile (compare-and-set
 * on `version`); on a lost race, reads again and re-applies, up to UPDATE_RETRIES times. With
 * `expectedVersion`, the first race is final. `change` returns `null` when there is nothing to do.
 */
async function writeWithRetry(
  parts: ManagerParts,
  id: string,
  expectedVersion: number | undefined,
  change: (current: KeyRecord, at: Date) => KeyRecord | null,
): Promise<KeyRecord> {
  const { store, deadlines } = parts;
  for (let attempt = 0; ; attempt++) {
    const current = await deadlines.run('findById', () => store.findById(id));
    if (!current) throw new KeyNotFoundError(id);
    if (expectedVersion !== undefined && current.version !== expectedVersion) {
      throw new VersionConflictError(id, expectedVersion, current.version);
    }
    const next = change(current, new Date(parts.now()));
    if (next === null) return current;
    if (await deadlines.run('update', () => store.update(next, current.version))) return next;
    if (expectedVersion !== undefined || attempt >= UPDATE_RETRIES) {
      const latest = await deadlines.run('findById', () => store.findById(id));
      if (!latest) throw new KeyNotFoundError(id);
      throw new VersionConflictError(id, expectedVersion ?? current.version, latest.version);
    }
  }
}
