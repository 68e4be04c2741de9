// The writes of the key lifecycle: create, update, activate/deactivate, delete and rotate, each a compare-and-set with retries.

import type { CallOptions, Deadlines } from './deadline.js';
import {
  InvalidationUnconfirmedError,
  isKeygateError,
  KeyNotFoundError,
  ManagerClosedError,
  ValidationError,
  VersionConflictError,
} from './errors.js';
import type { Listeners } from './events.js';
import { toApiKey } from './fields.js';
import type { LastUsedBuffer } from './last-used.js';
import type { CachedLookup } from './lookup.js';
import type { Acknowledged } from './presence.js';
import { parseAllowedIps } from './ip.js';
import { checkRefill, checkRemaining } from './quota.js';
import { checkRateLimit } from './rate-limit.js';
import type { ScopeCatalog } from './scopes.js';
import type { KeyRecord, KeyStore } from './store.js';
import { hintOf, type TokenSource } from './token.js';
import type {
  ApiKey,
  CreateKeyInput,
  CreateOptions,
  KeyWithToken,
  RotateOptions,
  UpdateKeyInput,
  UpdateOptions,
  WriteOptions,
} from './types.js';
import {
  checkActor,
  checkBoolean,
  checkDate,
  checkId,
  checkMetadata,
  checkName,
  checkOwner,
  checkVersion,
  checkWholeNumber,
} from './validate.js';

/** What a change returns to wait for another writer to finish: read again after a pause, like a lost race. */
const WAIT: unique symbol = Symbol('wait');

/** The first and the longest pause before a write that lost a compare-and-set race tries again, in ms. */
const RACE_PAUSE_MIN_MS = 2;
const RACE_PAUSE_MAX_MS = 64;
const EMPTY: readonly string[] = Object.freeze([]);
/** The `changed` lists of the events that change one known field. */
const ACTIVE_CHANGED: readonly string[] = Object.freeze(['active']);
const TOKEN_CHANGED: readonly string[] = Object.freeze(['token']);
/** The fields an input can set, in `ApiKey` order: what `changed` lists are made of. */
const CREATE_FIELDS = [
  'ownerId',
  'name',
  'active',
  'scopes',
  'allowedIps',
  'expiresAt',
  'metadata',
  'rateLimit',
  'remaining',
  'refill',
] as const satisfies ReadonlyArray<keyof CreateKeyInput & keyof ApiKey>;
const UPDATE_FIELDS = [
  'name',
  'active',
  'scopes',
  'allowedIps',
  'expiresAt',
  'metadata',
  'rateLimit',
  'remaining',
  'refill',
] as const satisfies ReadonlyArray<keyof UpdateKeyInput & keyof ApiKey>;

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
  /** Rotations whose new token was delivered but whose old token's end is not written yet. */
  readonly confirmations: Confirmations;
  /** Keys whose last write has an unknown outcome, announced again once the store answers. */
  readonly inDoubt: InDoubt;
  /** How long a write keeps retrying lost compare-and-set races (`storeTimeoutMs`). */
  readonly raceBudgetMs: number;
  /** Whether writes wait for every instance's acknowledgement by default, and for how long. */
  readonly revocation: { readonly wait: boolean; readonly timeoutMs: number };
  /** Verifies waiting for the store, which close() waits for. */
  remoteVerifies: number;
  /** Set by close() while it waits for those verifies: called when the last one ends. */
  verifiesDone: (() => void) | null;
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

export async function createKey(parts: ManagerParts, input: CreateKeyInput, options: CreateOptions): Promise<KeyWithToken> {
  assertOpen(parts);
  if (!input || typeof input !== 'object') throw new ValidationError('input', 'must be an object with at least { name, scopes }');
  if (!options || typeof options !== 'object') throw new ValidationError('options', 'must be an object such as { actor }');
  const actor = checkActor(options.actor);
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
  const rateLimit = input.rateLimit === undefined ? null : checkRateLimit('rateLimit', input.rateLimit);
  const remaining = input.remaining === undefined ? null : checkRemaining(input.remaining);
  const refill = input.refill === undefined ? null : checkRefill('refill', input.refill);
  checkQuota(parts, remaining, refill);
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
    lastUsedIp: null,
    expiresAt,
    metadata,
    rateLimit,
    remaining,
    refill,
    // When the quota was set: refills, now or added later, fall due whole intervals after it.
    refilledAt: remaining === null ? null : createdAt,
    version: 1,
    digest: parts.digest(token),
    previousDigest: null,
    previousDigestExpiresAt: null,
  };
  await write(
    parts,
    'insert',
    () => parts.store.insert(record),
    () => parts.lookup.created(record.digest),
  );
  parts.lookup.created(record.digest);
  // The fields the input gave, even where it gave the default: what the creator chose.
  const given = Object.freeze(CREATE_FIELDS.filter((field) => field === 'name' || field === 'scopes' || input[field] !== undefined));
  parts.listeners.emit({ type: 'created', keyId: record.id, at: createdAt, actor, ownerId, changed: given });
  return { key: toApiKey(record), token };
}

export async function updateKey(parts: ManagerParts, id: string, changes: UpdateKeyInput, options: UpdateOptions): Promise<ApiKey> {
  assertOpen(parts);
  checkId(id);
  if (!changes || typeof changes !== 'object') throw new ValidationError('changes', 'must be an object of fields to change');
  const expectedVersion = checkVersion(options.expectedVersion);
  const waitMs = waitOf(parts, options);
  const actor = checkActor(options.actor);
  // Validate everything before touching the store: a bad field changes nothing.
  const patch: Partial<KeyRecord> = {};
  if (changes.name !== undefined) patch.name = checkName(changes.name);
  if (changes.active !== undefined) patch.active = checkBoolean('active', changes.active);
  if (changes.scopes !== undefined) patch.scopes = parts.catalog.parse(changes.scopes, 'scopes');
  if (changes.allowedIps !== undefined) patch.allowedIps = allowedIps(changes.allowedIps);
  if (changes.expiresAt !== undefined) patch.expiresAt = checkDate('expiresAt', changes.expiresAt);
  if (changes.metadata !== undefined) patch.metadata = checkMetadata(changes.metadata);
  if (changes.rateLimit !== undefined) patch.rateLimit = checkRateLimit('rateLimit', changes.rateLimit);
  if (changes.remaining !== undefined) patch.remaining = checkRemaining(changes.remaining);
  if (changes.refill !== undefined) patch.refill = checkRefill('refill', changes.refill);
  // Only an edit of `remaining` sets the counters: any other, a new refill included, leaves them to
  // spend(), so that uses spent since this read are never written back.
  const counters = changes.remaining !== undefined;
  if (counters || changes.refill !== undefined) checkQuota(parts, patch.remaining === undefined ? 0 : patch.remaining, null);
  // The key as read by the attempt that was written: what the event's `changed` compares with.
  let before: KeyRecord | null = null;
  const record = await writeWithRetry(parts, id, expectedVersion, counters, (current, at) => {
    before = current;
    const next: KeyRecord = { ...current, ...patch, updatedAt: at, version: current.version + 1 };
    if (next.refill !== null && next.remaining === null) {
      throw new ValidationError('refill', 'needs a quota: set remaining as well (the uses the key starts with)');
    }
    // A new count restarts the refill grid: the next refill is due whole intervals from now.
    if (counters) next.refilledAt = next.remaining === null ? null : at;
    // The grace period of a rotated token never outlives the key.
    if (next.previousDigestExpiresAt && next.expiresAt && next.previousDigestExpiresAt > next.expiresAt) {
      next.previousDigestExpiresAt = next.expiresAt;
    }
    return next;
  });
  const read = before as KeyRecord | null;
  const differ = read === null ? EMPTY : Object.freeze(UPDATE_FIELDS.filter((f) => f in patch && !sameValue(read[f], record[f])));
  return changed(parts, 'updated', record, waitMs, actor, differ);
}

/**
 * Whether two values of a key's field are the same: dates by their time, lists element by element
 * in order, JSON objects (metadata, rateLimit, refill) by their entries whatever their order.
 */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (a instanceof Date || b instanceof Date) return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((item, i) => sameValue(item, b[i]));
  }
  const ak = Object.keys(a);
  const bk = Object.keys(b);
  if (ak.length !== bk.length) return false;
  const bo = b as Record<string, unknown>;
  return ak.every((k) => Object.hasOwn(bo, k) && sameValue((a as Record<string, unknown>)[k], bo[k]));
}

/**
 * Sets Active. A key already in that state is not written, but the call still succeeds and emits
 * its event, with `changed: []`.
 */
export async function setActive(parts: ManagerParts, id: string, active: boolean, options: WriteOptions): Promise<ApiKey> {
  assertOpen(parts);
  checkId(id);
  const waitMs = waitOf(parts, options);
  const actor = checkActor(options.actor);
  const { record, wrote } = await writeActive(parts, id, active);
  return changed(parts, active ? 'activated' : 'deactivated', record, waitMs, actor, wrote ? ACTIVE_CHANGED : EMPTY);
}

/** Writes Active unless the key already has it; `wrote` tells which. */
async function writeActive(parts: ManagerParts, id: string, active: boolean): Promise<{ record: KeyRecord; wrote: boolean }> {
  let wrote = false;
  const record = await writeWithRetry(parts, id, undefined, false, (current, at) => {
    wrote = current.active !== active;
    return wrote ? { ...current, active, updatedAt: at, version: current.version + 1 } : null;
  });
  return { record, wrote };
}

/**
 * One key of `deactivateAll`: deactivated as `deactivate` does it (caches dropped, the event
 * emitted), with the options already checked. `null` when there was nothing to do: the key is
 * gone or already inactive (no event then). Otherwise the acknowledgements of the other
 * instances, when waited for.
 */
export async function deactivateListed(
  parts: ManagerParts,
  id: string,
  actor: string | null,
  waitMs: number | undefined,
): Promise<{ outcome: Acknowledged | null } | null> {
  assertOpen(parts);
  let written: { record: KeyRecord; wrote: boolean };
  try {
    written = await writeActive(parts, id, false);
  } catch (error) {
    if (isKeygateError(error) && error.code === 'KEY_NOT_FOUND') return null;
    throw error;
  }
  if (!written.wrote) return null;
  const { record } = written;
  const outcome = await parts.lookup.changed(id, waitMs);
  parts.listeners.emit({ type: 'deactivated', keyId: id, at: record.updatedAt, actor, ownerId: record.ownerId, changed: ACTIVE_CHANGED });
  return { outcome };
}

export async function deleteKey(parts: ManagerParts, id: string, options: WriteOptions): Promise<boolean> {
  assertOpen(parts);
  checkId(id);
  const waitMs = waitOf(parts, options);
  const actor = checkActor(options.actor);
  // The event names the key's owner, which the store's delete does not return: read it first, when
  // anyone listens (an owner never changes, so this read cannot go stale).
  const owner = parts.listeners.wantsEvents
    ? ((await parts.deadlines.run('findById', () => parts.store.findById(id)))?.ownerId ?? null)
    : null;
  // With an unknown outcome the key may still exist: a waiting rotation confirmation stays.
  const forgotten = async (): Promise<void> => {
    parts.lastUsed.forget(id);
    await parts.lookup.changed(id);
  };
  const existed = await write(parts, 'delete', () => parts.store.delete(id), forgotten, id);
  parts.lastUsed.forget(id);
  parts.confirmations.forget(id);
  const outcome = await parts.lookup.changed(id, waitMs);
  if (existed) parts.listeners.emit({ type: 'deleted', keyId: id, at: new Date(parts.now()), actor, ownerId: owner, changed: EMPTY });
  return confirmed(outcome, 'delete', id, existed);
}

/**
 * Rotation takes two writes, so that no outcome locks the caller out. The first makes the new
 * token work and keeps the old one working with no end ("until confirmed"); its outcome may be
 * unknown, and then the old token works whatever happened. The second, once the caller can be
 * given the new token, ends the old one (now, or after the grace period). If the second cannot be
 * written, the new token is returned anyway (it works), the failure is reported through `onError`
 * and the end of the old token is written in the background until the store takes it.
 */
export async function rotateKey(parts: ManagerParts, id: string, options: RotateOptions): Promise<KeyWithToken> {
  assertOpen(parts);
  checkId(id);
  const grace = checkWholeNumber('gracePeriodMs', options.gracePeriodMs ?? 0, { min: 0, unit: 'ms' });
  const waitMs = waitOf(parts, options);
  const actor = checkActor(options.actor);
  const token = parts.tokens.token(parts.prefix);
  const tokenDigest = parts.digest(token);
  // A rotation of this process whose new token was delivered but whose old token's end was not
  // written is finished first: its token is in use, so it must not look like one never delivered.
  await parts.confirmations.settle(id);
  const staged = await writeWithRetry(parts, id, undefined, false, (current, at) => {
    // Another rotation between its two writes: wait for it, then rotate its token out.
    if (unconfirmed(current) && at.getTime() - current.updatedAt.getTime() < parts.raceBudgetMs) return WAIT;
    return {
      ...current,
      hint: hintOf(token, parts.prefix),
      digest: tokenDigest,
      // The token a caller holds: the current one, unless the current one comes from a rotation
      // left unconfirmed (its caller got an error, not the token); then the one kept before it.
      previousDigest: keptDigest(current),
      previousDigestExpiresAt: null,
      updatedAt: at,
      version: current.version + 1,
    };
  });
  let graceEnd: Date | null = grace > 0 ? new Date(staged.updatedAt.getTime() + grace) : null;
  if (graceEnd && staged.expiresAt && graceEnd > staged.expiresAt) graceEnd = staged.expiresAt;
  if (graceEnd && graceEnd.getTime() <= staged.updatedAt.getTime()) graceEnd = null;
  const confirmation: Confirmation = { digest: tokenDigest, kept: staged.previousDigest as string, graceEnd };
  let record = staged;
  try {
    const confirmed = await confirmRotation(parts, id, confirmation);
    // Superseded by a newer rotation: the key as this one wrote it, not with another's token.
    if (confirmed.digest === tokenDigest) record = confirmed;
  } catch (error) {
    // The new token works: deliver it. The old one keeps working until its end is written.
    parts.listeners.report(error);
    parts.confirmations.add(id, confirmation);
    await parts.lookup.changed(id);
    parts.listeners.emit({ type: 'rotated', keyId: id, at: staged.updatedAt, actor, ownerId: staged.ownerId, changed: TOKEN_CHANGED });
    return { key: toApiKey(staged), token };
  }
  const outcome = await parts.lookup.changed(id, waitMs);
  parts.listeners.emit({ type: 'rotated', keyId: id, at: record.updatedAt, actor, ownerId: record.ownerId, changed: TOKEN_CHANGED });
  return confirmed(outcome, 'rotate', id, { key: toApiKey(record), token });
}

/** What the second write of a rotation sets: the end of the old token. */
export interface Confirmation {
  /** The rotation's new token, which must still be the key's current one. */
  readonly digest: string;
  /** The digest kept from before the rotation. */
  readonly kept: string;
  /** When the old token stops working; `null`: at once. */
  readonly graceEnd: Date | null;
}

/** Writes a rotation's second step; the record as written (or as found, when there is nothing left to do). */
async function confirmRotation(parts: ManagerParts, id: string, confirmation: Confirmation): Promise<KeyRecord> {
  return writeWithRetry(parts, id, undefined, false, (current, at) => {
    // Superseded by another rotation, or already confirmed: nothing to do.
    if (current.digest !== confirmation.digest || !unconfirmed(current) || current.previousDigest !== confirmation.kept) return null;
    const ended = confirmation.graceEnd === null || confirmation.graceEnd.getTime() <= at.getTime();
    return {
      ...current,
      previousDigest: ended ? null : confirmation.kept,
      previousDigestExpiresAt: ended ? null : confirmation.graceEnd,
      version: current.version + 1,
    };
  });
}

/** Whether the record's previous token is kept by a rotation that was never confirmed. */
function unconfirmed(record: KeyRecord): boolean {
  return record.previousDigest !== null && record.previousDigestExpiresAt === null;
}

/** The digest a new rotation keeps working until it is confirmed. */
function keptDigest(current: KeyRecord): string {
  return unconfirmed(current) ? (current.previousDigest as string) : current.digest;
}

/**
 * Rotations whose old token's end could not be written: retried every `retryMs` until the store
 * takes them, a newer rotation or the key's deletion replaces them, or the manager closes.
 */
export class Confirmations {
  private readonly waiting = new Map<string, Confirmation>();
  private timer: NodeJS.Timeout | null = null;
  private parts: ManagerParts | null = null;
  /** Confirmations that failed after close() began: never retried, counted in its report. */
  private droppedAfterClose = 0;

  constructor(private readonly retryMs: number) {}

  /** How many rotations still wait for their confirmation. */
  get size(): number {
    return this.waiting.size;
  }

  bind(parts: ManagerParts): void {
    this.parts = parts;
  }

  add(id: string, confirmation: Confirmation): void {
    if (this.parts?.closed) {
      this.droppedAfterClose++;
      return;
    }
    this.waiting.set(id, confirmation);
    this.arm();
  }

  /** Writes the waiting confirmation of key `id`, if any, now; throws when the store does not take it. */
  async settle(id: string): Promise<void> {
    const confirmation = this.waiting.get(id);
    const parts = this.parts;
    if (confirmation === undefined || parts === null) return;
    try {
      await confirmRotation(parts, id, confirmation);
    } catch (error) {
      if (!(isKeygateError(error) && error.code === 'KEY_NOT_FOUND')) throw error;
    }
    if (this.waiting.get(id) === confirmation) this.waiting.delete(id);
    await parts.lookup.changed(id);
  }

  forget(id: string): void {
    this.waiting.delete(id);
  }

  /** Tries every waiting confirmation once; resolves when all tries are done. */
  async retry(): Promise<void> {
    const parts = this.parts;
    if (!parts) return;
    await Promise.all(
      [...this.waiting].map(async ([id, confirmation]) => {
        try {
          await confirmRotation(parts, id, confirmation);
        } catch (error) {
          // Gone: nothing left to end. Anything else: the next round tries again.
          if (!(isKeygateError(error) && error.code === 'KEY_NOT_FOUND')) {
            parts.listeners.report(error);
            return;
          }
        }
        if (this.waiting.get(id) !== confirmation) return;
        this.waiting.delete(id);
        await parts.lookup.changed(id);
      }),
    );
  }

  /** Stops retrying; the rotations still waiting are returned (their old tokens stay valid). */
  stop(): number {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const dropped = this.waiting.size + this.droppedAfterClose;
    this.waiting.clear();
    return dropped;
  }

  private arm(): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.retry().then(() => {
        if (this.waiting.size > 0 && !this.parts?.closed) this.arm();
      });
    }, this.retryMs);
    this.timer.unref();
  }
}

/**
 * A quota needs a store that can spend it atomically; a refill needs a quota to refill. `remaining`
 * is `undefined`-free here: `null` for none.
 */
function checkQuota(parts: ManagerParts, remaining: number | null, refill: unknown): void {
  if (remaining !== null && typeof parts.store.spend !== 'function') {
    throw new ValidationError('remaining', 'needs a store that can spend uses atomically (spend()); every built-in store can');
  }
  if (refill !== null && remaining === null) {
    throw new ValidationError('refill', 'needs a quota: set remaining as well (the uses the key starts with)');
  }
}

/**
 * After a write: drops the key from every cache (waiting `waitMs` for the other instances to say
 * so, when given), emits the event, returns the public view.
 */
async function changed(
  parts: ManagerParts,
  type: 'updated' | 'activated' | 'deactivated',
  record: KeyRecord,
  waitMs: number | undefined,
  actor: string | null,
  fields: readonly string[],
): Promise<ApiKey> {
  const outcome = await parts.lookup.changed(record.id, waitMs);
  parts.listeners.emit({ type, keyId: record.id, at: record.updatedAt, actor, ownerId: record.ownerId, changed: fields });
  return confirmed(outcome, type === 'updated' ? 'update' : type === 'activated' ? 'activate' : 'deactivate', record.id, toApiKey(record));
}

/** How long a write waits for the other instances' acknowledgements; `undefined`: it does not wait. */
export function waitOf(parts: ManagerParts, options: WriteOptions): number | undefined {
  const wait = options.wait ?? parts.revocation.wait;
  if (typeof wait !== 'boolean') throw new ValidationError('wait', 'must be true or false');
  return wait ? parts.revocation.timeoutMs : undefined;
}

/** The result of a write, or InvalidationUnconfirmedError holding it when not every instance confirmed. */
function confirmed<T>(outcome: Acknowledged | null, operation: string, keyId: string, result: T): T {
  if (outcome === null || outcome.reason === null) return result;
  throw new InvalidationUnconfirmedError(operation, keyId, result, { ...outcome, reason: outcome.reason });
}

/**
 * Runs a store write. When its outcome is unknown (StoreOutcomeUnknownError: sent, but not
 * confirmed), `unknown` runs at once, so that no cache keeps the old state on the strength of a
 * write reported as failed, and again if the store answers the abandoned call later on.
 */
async function write<T>(
  parts: ManagerParts,
  operation: string,
  call: () => Promise<T>,
  unknown: () => unknown,
  keyId: string | null = null,
): Promise<T> {
  const options: CallOptions = { write: true, late: () => void unknown() };
  try {
    return await parts.deadlines.run(operation, call, options);
  } catch (error) {
    if (isKeygateError(error) && error.code === 'STORE_OUTCOME_UNKNOWN') {
      await unknown();
      if (keyId !== null) parts.inDoubt.add(keyId);
    }
    throw error;
  }
}

/**
 * Keys whose last write has an unknown outcome. Such a write may land whenever the network
 * heals, possibly on a connection the driver has already given up (so no late answer tells of
 * it), and other instances may have cached the old state meanwhile. So the key is read every
 * `retryMs` until the store answers, then dropped from every cache, and once more
 * `settleMs` later, for a write still on its way over another connection.
 */
export class InDoubt {
  private readonly keys = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private readonly followUps = new Set<NodeJS.Timeout>();
  private parts: ManagerParts | null = null;

  constructor(
    private readonly retryMs: number,
    private readonly settleMs: number,
  ) {}

  bind(parts: ManagerParts): void {
    this.parts = parts;
  }

  add(keyId: string): void {
    if (this.parts?.closed) return;
    this.keys.add(keyId);
    this.arm();
  }

  /** Stops reading and re-announcing; caches elsewhere then drop the key by their `ttlMs`. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const timer of this.followUps) clearTimeout(timer);
    this.followUps.clear();
    this.keys.clear();
  }

  private arm(): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.check().then(() => {
        if (this.keys.size > 0 && !this.parts?.closed) this.arm();
      });
    }, this.retryMs);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    const parts = this.parts;
    if (!parts) return;
    await Promise.all(
      [...this.keys].map(async (id) => {
        // Any answer, the key or its absence, says the store is reachable again.
        const answered = await parts.deadlines
          .run('findById', () => parts.store.findById(id))
          .then(
            () => true,
            () => false,
          );
        if (!answered || !this.keys.delete(id)) return;
        await parts.lookup.changed(id);
        const followUp = setTimeout(() => {
          this.followUps.delete(followUp);
          void parts.lookup.changed(id);
        }, this.settleMs);
        followUp.unref();
        this.followUps.add(followUp);
      }),
    );
  }
}

/**
 * Reads the key, applies `change` and writes it back if nobody wrote it meanwhile (compare-and-set
 * on `version`). A lost race reads again and re-applies after a short random pause, growing with
 * every loss, until `raceBudgetMs` has passed: concurrent edits are applied one after another.
 * With `expectedVersion`, the first race is final. `change` returns `null` when there is nothing
 * to do.
 */
async function writeWithRetry(
  parts: ManagerParts,
  id: string,
  expectedVersion: number | undefined,
  counters: boolean,
  change: (current: KeyRecord, at: Date) => KeyRecord | null | typeof WAIT,
): Promise<KeyRecord> {
  const { store, deadlines } = parts;
  const started = performance.now();
  const unknown = () => parts.lookup.changed(id);
  for (let attempt = 0; ; attempt++) {
    const current = await deadlines.run('findById', () => store.findById(id));
    if (!current) throw new KeyNotFoundError(id);
    if (expectedVersion !== undefined && current.version !== expectedVersion) {
      throw new VersionConflictError(id, expectedVersion, current.version);
    }
    const next = change(current, new Date(parts.now()));
    if (next === null) return current;
    if (next !== WAIT && (await write(parts, 'update', () => store.update(next, current.version, counters), unknown, id))) return next;
    if (expectedVersion !== undefined || performance.now() - started >= parts.raceBudgetMs) {
      const latest = await deadlines.run('findById', () => store.findById(id));
      if (!latest) throw new KeyNotFoundError(id);
      throw new VersionConflictError(id, expectedVersion ?? current.version, latest.version);
    }
    // Full jitter: contenders spread out instead of colliding again in step.
    const ceiling = Math.min(RACE_PAUSE_MAX_MS, RACE_PAUSE_MIN_MS * 2 ** attempt);
    await new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
  }
}
