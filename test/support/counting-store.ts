// KeyStore wrappers for tests: one that only forwards, one that counts calls per method, one that holds lookups, and stores that fail or hang.
import { memoryStore } from '../../adapters/memory/index.js';
import type { KeyRecord, KeyStore, StoreListQuery, TouchEntry } from '../../src/index.js';

export type StoreMethod = 'insert' | 'findById' | 'findByDigest' | 'list' | 'update' | 'delete' | 'touch' | 'spend';
const METHODS: StoreMethod[] = ['insert', 'findById', 'findByDigest', 'list', 'update', 'delete', 'touch', 'spend'];

/** Wraps `inner`, counting every call; `calls.total` is the sum. */
export function countingStore(inner: KeyStore): KeyStore & { calls: Record<StoreMethod | 'total', number> } {
  const calls = Object.fromEntries([...METHODS, 'total'].map((m) => [m, 0])) as Record<StoreMethod | 'total', number>;
  const wrapped = { calls } as KeyStore & { calls: typeof calls };
  for (const method of METHODS) {
    // An optional method the inner store lacks stays absent, as the manager would see it.
    if (typeof inner[method] !== 'function') continue;
    (wrapped as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      calls[method]++;
      calls.total++;
      return (inner[method] as (...a: unknown[]) => Promise<unknown>).apply(inner, args);
    };
  }
  return wrapped;
}

/** A store whose every call behaves as `behave` says: reject with an error, or never settle. */
export function brokenStore(behave: 'throw' | 'hang' | 'reject'): KeyStore {
  const act = (): Promise<never> => {
    if (behave === 'throw') throw new Error('connection refused');
    if (behave === 'reject') return Promise.reject(new Error('connection reset'));
    return new Promise<never>(() => {});
  };
  return {
    insert: act,
    findById: act,
    findByDigest: act,
    list: act,
    update: act,
    delete: act,
    touch: act,
  };
}

/**
 * Forwards every call to `inner`; subclasses override the methods they change. It deliberately has
 * no synchronous lookup (src/sync-lookup.ts), so it answers only asynchronously, like a remote store, and the manager
 * takes its async lookup path (timeout, cache, errors) even when `inner` is a MemoryStore.
 */
export class DelegatingStore implements KeyStore {
  constructor(readonly inner: KeyStore = memoryStore()) {}

  insert(record: KeyRecord): Promise<void> {
    return this.inner.insert(record);
  }
  findById(id: string): Promise<KeyRecord | null> {
    return this.inner.findById(id);
  }
  findByDigest(digest: string): Promise<KeyRecord | null> {
    return this.inner.findByDigest(digest);
  }
  list(query: StoreListQuery): Promise<KeyRecord[]> {
    return this.inner.list(query);
  }
  update(next: KeyRecord, expectedVersion: number): Promise<boolean> {
    return this.inner.update(next, expectedVersion);
  }
  delete(id: string): Promise<boolean> {
    return this.inner.delete(id);
  }
  touch(entries: readonly TouchEntry[]): Promise<void> {
    return this.inner.touch(entries);
  }
}

/** An asynchronous MemoryStore that counts verify lookups and can hold them until released. */
export class HeldStore extends DelegatingStore {
  lookups = 0;
  private gate: Promise<void> | null = null;
  private open: (() => void) | null = null;

  /** Lookups started from now on wait until `release()`. */
  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }

  release(): void {
    this.open?.();
    this.gate = null;
  }

  override async findByDigest(digest: string): Promise<KeyRecord | null> {
    this.lookups++;
    const record = await this.inner.findByDigest(digest);
    if (this.gate) await this.gate;
    return record;
  }
}
