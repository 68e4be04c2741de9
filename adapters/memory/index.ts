// memoryStore(): the reference KeyStore, kept in this process; for tests and single-instance apps.

import { StoreConflictError } from '../../src/errors.js';
import { deepFreeze } from '../../src/freeze.js';
import { type QuotaRefill, spendQuota } from '../../src/quota.js';
import type { KeyRecord, KeyStore, SpendResult, StoreListQuery, TouchEntry } from '../../src/store.js';
import { findByDigestSync, spendSync, type SyncLookupStore, type SyncSpendStore } from '../../src/sync-lookup.js';

const EMPTY_METADATA = Object.freeze({});
const EMPTY_LIST: readonly string[] = Object.freeze([]);

function frozenList(list: readonly string[]): readonly string[] {
  if (list.length === 0) return EMPTY_LIST;
  return Object.isFrozen(list) ? list : Object.freeze([...list]);
}

function frozenJson(value: object): object {
  return Object.keys(value).length === 0 ? EMPTY_METADATA : deepFreeze(structuredClone(value));
}

/** Compares two records by (createdAt, id), the order of `list`. */
function compare(aTime: number, aId: string, bTime: number, bId: string): number {
  if (aTime !== bTime) return aTime - bTime;
  return aId < bId ? -1 : aId > bId ? 1 : 0;
}

/**
 * A key store in this process's memory: what {@link memoryStore} returns. Lookups by digest are
 * one Map read, whatever the number of keys. Records are frozen when written and returned as
 * kept, without copying. Nothing survives a restart, and instances do not share keys: use a SQL
 * or Redis store for that.
 */
export class MemoryStore implements KeyStore, SyncLookupStore, SyncSpendStore {
  private readonly byId = new Map<string, KeyRecord>();
  /** digest (current or previous) -> record */
  private readonly byDigest = new Map<string, KeyRecord>();
  /** Records in (createdAt, id) order, for `list`. */
  private readonly ordered: KeyRecord[] = [];

  /** @deprecated Use `memoryStore()`; `new MemoryStore()` is removed in 0.3 (the `MemoryStore` type stays). */
  // biome-ignore lint/complexity/noUselessConstructor: it carries the deprecation of `new MemoryStore()`.
  constructor() {}

  /** How many keys are stored. */
  get size(): number {
    return this.byId.size;
  }

  async insert(record: KeyRecord): Promise<void> {
    if (this.byId.has(record.id)) throw new StoreConflictError(`a key with id '${record.id}' already exists`);
    if (this.byDigest.has(record.digest) || (record.previousDigest !== null && this.byDigest.has(record.previousDigest))) {
      throw new StoreConflictError('a key with this token digest already exists');
    }
    const kept = this.freeze(record);
    this.byId.set(kept.id, kept);
    this.index(kept);
    this.ordered.splice(this.position(kept), 0, kept);
  }

  async findById(id: string): Promise<KeyRecord | null> {
    return this.byId.get(id) ?? null;
  }

  async findByDigest(digest: string): Promise<KeyRecord | null> {
    return this.byDigest.get(digest) ?? null;
  }

  /** The same answer as `findByDigest`, at once: verify on this store needs no promise. @internal */
  [findByDigestSync](digest: string): KeyRecord | null {
    return this.byDigest.get(digest) ?? null;
  }

  async list(query: StoreListQuery): Promise<KeyRecord[]> {
    const out: KeyRecord[] = [];
    let start = 0;
    if (query.after) {
      const t = query.after.createdAt.getTime();
      const id = query.after.id;
      let lo = 0;
      let hi = this.ordered.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        const r = this.ordered[mid] as KeyRecord;
        if (compare(r.createdAt.getTime(), r.id, t, id) <= 0) lo = mid + 1;
        else hi = mid;
      }
      start = lo;
    }
    for (let i = start; i < this.ordered.length && out.length < query.limit; i++) {
      const r = this.ordered[i] as KeyRecord;
      // `ownerId: null` keeps the records without an owner; only an absent one keeps every owner.
      if (query.ownerId !== undefined && r.ownerId !== query.ownerId) continue;
      if (query.active !== undefined && r.active !== query.active) continue;
      out.push(r);
    }
    return out;
  }

  async update(next: KeyRecord, expectedVersion: number, counters = false): Promise<boolean> {
    const current = this.byId.get(next.id);
    if (!current || current.version !== expectedVersion) return false;
    for (const d of [next.digest, next.previousDigest]) {
      const holder = d === null ? undefined : this.byDigest.get(d);
      if (holder && holder.id !== next.id) throw new StoreConflictError('a key with this token digest already exists');
    }
    // The counters as spend() left them, unless this edit sets them; the last use as a touch since
    // the caller's read may have left it (the stored pair, unless the given time is later).
    let written = counters ? next : { ...next, remaining: current.remaining, refilledAt: current.refilledAt };
    if (current.lastUsedAt !== null && (next.lastUsedAt === null || current.lastUsedAt >= next.lastUsedAt)) {
      written = { ...written, lastUsedAt: current.lastUsedAt, lastUsedIp: current.lastUsedIp };
    }
    const kept = this.freeze(written);
    this.unindex(current);
    this.byId.set(kept.id, kept);
    this.index(kept);
    this.ordered[this.find(current)] = kept;
    return true;
  }

  async delete(id: string): Promise<boolean> {
    const current = this.byId.get(id);
    if (!current) return false;
    this.byId.delete(id);
    this.unindex(current);
    this.ordered.splice(this.find(current), 1);
    return true;
  }

  async spend(id: string, cost: number, refill: QuotaRefill | null, now: number): Promise<SpendResult | null> {
    return this[spendSync](id, cost, refill, now);
  }

  /** The same as `spend`, at once: a verify spending a quota on this store needs no promise. @internal */
  [spendSync](id: string, cost: number, refill: QuotaRefill | null, now: number): SpendResult | null {
    const current = this.byId.get(id);
    if (!current || current.remaining === null) return null;
    const refilledAt = current.refilledAt === null ? null : current.refilledAt.getTime();
    const { state, spent } = spendQuota({ remaining: current.remaining, refilledAt }, refill, cost, now);
    if (state.remaining !== current.remaining || state.refilledAt !== refilledAt) {
      const kept = this.freeze({
        ...current,
        remaining: state.remaining,
        refilledAt: state.refilledAt === null ? null : new Date(state.refilledAt),
      });
      this.byId.set(id, kept);
      this.index(kept);
      this.ordered[this.find(current)] = kept;
    }
    return { spent, remaining: state.remaining, refilledAt: state.refilledAt === null ? null : new Date(state.refilledAt) };
  }

  async touch(entries: readonly TouchEntry[]): Promise<void> {
    for (const { id, lastUsedAt, ip } of entries) {
      const current = this.byId.get(id);
      if (!current || (current.lastUsedAt !== null && current.lastUsedAt >= lastUsedAt)) continue;
      const kept = this.freeze({ ...current, lastUsedAt: new Date(lastUsedAt.getTime()), lastUsedIp: ip ?? null });
      this.byId.set(id, kept);
      this.index(kept);
      this.ordered[this.find(current)] = kept;
    }
  }

  /**
   * The kept copy: lists and metadata frozen, the record frozen. Written as one literal, not a loop
   * over the field table: verify reads these records, and V8 reads a literal's fields from the
   * object itself, where a record grown field by field keeps most of them out of line (measured
   * 3–9 % slower verifies). The `KeyRecord` type makes the compiler name any field the table adds.
   */
  private freeze(r: KeyRecord): KeyRecord {
    const kept: KeyRecord = {
      id: r.id,
      ownerId: r.ownerId,
      name: r.name,
      active: r.active,
      scopes: frozenList(r.scopes),
      allowedIps: frozenList(r.allowedIps),
      hint: r.hint,
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
      lastUsedAt: r.lastUsedAt,
      lastUsedIp: r.lastUsedIp,
      expiresAt: r.expiresAt,
      metadata: frozenJson(r.metadata) as KeyRecord['metadata'],
      rateLimit: r.rateLimit === null ? null : (frozenJson(r.rateLimit) as KeyRecord['rateLimit']),
      remaining: r.remaining,
      refill: r.refill === null ? null : (frozenJson(r.refill) as KeyRecord['refill']),
      refilledAt: r.refilledAt,
      version: r.version,
      digest: r.digest,
      previousDigest: r.previousDigest,
      previousDigestExpiresAt: r.previousDigestExpiresAt,
    };
    return Object.freeze(kept);
  }

  private index(record: KeyRecord): void {
    this.byDigest.set(record.digest, record);
    if (record.previousDigest !== null) this.byDigest.set(record.previousDigest, record);
  }

  private unindex(record: KeyRecord): void {
    this.byDigest.delete(record.digest);
    if (record.previousDigest !== null) this.byDigest.delete(record.previousDigest);
  }

  /** Where a record belongs in `ordered`. */
  private position(record: KeyRecord): number {
    const t = record.createdAt.getTime();
    let lo = 0;
    let hi = this.ordered.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const r = this.ordered[mid] as KeyRecord;
      if (compare(r.createdAt.getTime(), r.id, t, record.id) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The index of a stored record in `ordered`. */
  private find(record: KeyRecord): number {
    return this.position(record);
  }
}

/**
 * A key store in this process's memory, for tests and single-instance apps.
 *
 * @example
 * import { createKeyManager } from 'keygate'
 * import { memoryStore } from 'keygate/memory'
 * const keys = createKeyManager({ store: memoryStore() })
 */
export function memoryStore(): MemoryStore {
  return new MemoryStore();
}
