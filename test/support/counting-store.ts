// A KeyStore wrapper that counts calls per method, and stores that fail or hang, for core tests.
import type { KeyStore } from '../../src/index.js';

export type StoreMethod = 'insert' | 'findById' | 'findByDigest' | 'list' | 'update' | 'delete' | 'touch';
const METHODS: StoreMethod[] = ['insert', 'findById', 'findByDigest', 'list', 'update', 'delete', 'touch'];

/** Wraps `inner`, counting every call; `calls.total` is the sum. */
export function countingStore(inner: KeyStore): KeyStore & { calls: Record<StoreMethod | 'total', number> } {
  const calls = Object.fromEntries([...METHODS, 'total'].map((m) => [m, 0])) as Record<StoreMethod | 'total', number>;
  const wrapped = { calls } as KeyStore & { calls: typeof calls };
  for (const method of METHODS) {
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
