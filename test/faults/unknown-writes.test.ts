// A write the store did not confirm has an unknown outcome: a distinct error, every cache dropped at once and again when the write lands, and a rotation never locks its caller out.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createKeyManager,
  type KeyManager,
  type KeyRecord,
  type KeyStore,
  StoreOutcomeUnknownError,
  StoreUnavailableError,
  type VerifyResult,
} from '../../src/index.js';
import { cacheServing, localBus } from '../support/bus.js';
import { DelegatingStore } from '../support/counting-store.js';
import { NETWORK_STORES, openProxiedStore, type ProxiedStore, sleep } from '../support/faults.js';
import { serviceUrl } from '../support/services.js';

const TIMEOUT_MS = 500;
/** How long the write is held in the blackhole after its caller gave up on it. */
const HELD_MS = 300;

/** Freezes the proxy right before the `nth` call of `method` (counting from 1) goes out. */
class BlackholeBefore extends DelegatingStore {
  private calls = 0;
  constructor(
    inner: KeyStore,
    private readonly opened: ProxiedStore,
    private readonly method: 'update' | 'delete' | 'insert',
    private readonly nth = 1,
  ) {
    super(inner);
  }
  private trip(method: string): void {
    if (method === this.method && ++this.calls === this.nth) this.opened.proxy.freeze();
  }
  override update(next: KeyRecord, expectedVersion: number): Promise<boolean> {
    this.trip('update');
    return super.update(next, expectedVersion);
  }
  override delete(id: string): Promise<boolean> {
    this.trip('delete');
    return super.delete(id);
  }
  override insert(record: KeyRecord): Promise<void> {
    this.trip('insert');
    return super.insert(record);
  }
}

const outcome = (result: VerifyResult): string => (result.valid ? 'VALID' : result.code);

/** Verifies on `keys` until it answers `expected`, for at most `withinMs`; returns the last answer. */
async function settlesTo(keys: KeyManager, token: string, expected: string, withinMs = 1500, scope?: string): Promise<string> {
  const end = performance.now() + withinMs;
  let last = '';
  while (performance.now() < end) {
    last = outcome(await keys.verify(token, { scope }));
    if (last === expected) return last;
    await sleep(20);
  }
  return last;
}

for (const kind of NETWORK_STORES) {
  describe.skipIf(!serviceUrl(kind))(`${kind}: a write with an unknown outcome`, () => {
    let opened: ProxiedStore;
    beforeAll(async () => {
      opened = await openProxiedStore(kind, TIMEOUT_MS);
    });
    afterAll(() => opened?.cleanup());

    /**
     * Manager A writes through the proxy (blackholed right before `method`); manager B reads the
     * same data directly and caches verifies for a minute. Both share an invalidation bus.
     */
    async function managers(method: 'update' | 'delete' | 'insert', nth = 1) {
      const { bus } = localBus();
      const errors: unknown[] = [];
      const a = createKeyManager({
        store: new BlackholeBefore(opened.store, opened, method, nth),
        storeTimeoutMs: TIMEOUT_MS,
        invalidation: bus,
        onError: (e) => errors.push(e),
      });
      const b = createKeyManager({ store: opened.direct, cache: { ttlMs: 60_000 }, invalidation: bus, revocation: { heartbeatMs: 20 } });
      await cacheServing(b);
      const { key, token } = await a.create({ name: `${method} ${nth}`, scopes: ['all'] });
      expect(outcome(await b.verify(token))).toBe('VALID'); // B caches it
      return { a, b, id: key.id, token, errors };
    }

    /** Lets the held write through, then waits for its answer to reach A. */
    async function heal(): Promise<void> {
      await sleep(HELD_MS);
      opened.proxy.thaw();
    }

    for (const change of ['deactivate', 'delete', 'update'] as const) {
      it(`${change}: StoreOutcomeUnknownError, and B, which cached the old state again meanwhile, drops it when the write lands`, async () => {
        const { a, b, id, token } = await managers(change === 'delete' ? 'delete' : 'update');
        const call =
          change === 'deactivate' ? a.deactivate(id) : change === 'delete' ? a.delete(id) : a.update(id, { scopes: ['orders:list'] });
        const error = await call.then(
          () => null,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(StoreOutcomeUnknownError);
        expect(error).toBeInstanceOf(StoreUnavailableError);
        expect(error).toMatchObject({ code: 'STORE_OUTCOME_UNKNOWN', status: 503, operation: change === 'delete' ? 'delete' : 'update' });
        expect((error as Error).message).toMatch(/may or may not have been applied/);
        // B dropped the key when A gave up, read the old state (the write is still held) and cached it again.
        expect(outcome(await b.verify(token, { scope: 'orders:edit' }))).toBe('VALID');
        await heal();
        const expected = change === 'deactivate' ? 'INACTIVE' : change === 'delete' ? 'NOT_FOUND' : 'INSUFFICIENT_SCOPE';
        // The write landed after its caller was told it might not: B learns of it at once, not after ttlMs.
        expect(await settlesTo(b, token, expected, 1500, 'orders:edit')).toBe(expected);
        await a.close();
        await b.close();
      });
    }

    it('rotate whose first write is lost in the blackhole: the old token keeps working after the write lands, and a retry delivers a token that works', async () => {
      const { a, b, id, token: old } = await managers('update', 1);
      const error = await a.rotate(id).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(StoreOutcomeUnknownError);
      await heal();
      await sleep(200);
      // The rotation landed, its token never reached anyone: the old token must still work.
      expect((await opened.direct.findById(id))?.version).toBe(2);
      expect(outcome(await b.verify(old))).toBe('VALID');
      expect(outcome(await a.verify(old))).toBe('VALID');
      // The caller retries: the new token works, the old one ends (no grace), nothing is left over.
      const retried = await a.rotate(id);
      expect(outcome(await a.verify(retried.token))).toBe('VALID');
      expect(outcome(await a.verify(old))).toBe('NOT_FOUND');
      expect(await settlesTo(b, old, 'NOT_FOUND')).toBe('NOT_FOUND');
      const record = await opened.direct.findById(id);
      expect(record?.previousDigest).toBe(null);
      await a.close();
      await b.close();
    });

    it('rotate whose second write is lost: the new token is delivered and works; the old one ends once the store takes the write', async () => {
      const { a, b, id, token: old, errors } = await managers('update', 2);
      const rotated = await a.rotate(id);
      expect(errors.some((e) => e instanceof StoreOutcomeUnknownError)).toBe(true);
      await heal();
      expect(await settlesTo(a, rotated.token, 'VALID')).toBe('VALID');
      expect(await settlesTo(b, rotated.token, 'VALID')).toBe('VALID');
      // The end of the old token lands (held, or written again by the background retry).
      expect(await settlesTo(b, old, 'NOT_FOUND', 3000)).toBe('NOT_FOUND');
      expect(await settlesTo(a, old, 'NOT_FOUND', 3000)).toBe('NOT_FOUND');
      await a.close();
      await b.close();
    });

    it('create: StoreOutcomeUnknownError without a token; the key may exist afterwards, and a retry creates a working one', async () => {
      const { a, b } = await managers('insert', 2);
      const error = await a.create({ name: 'lost create', scopes: ['all'] }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(StoreOutcomeUnknownError);
      await heal();
      const again = await a.create({ name: 'lost create', scopes: ['all'] });
      expect(outcome(await b.verify(again.token))).toBe('VALID');
      await a.close();
      await b.close();
    });

    it('a write the breaker refused before sending it is a plain StoreUnavailableError: nothing was sent', async () => {
      const keys = createKeyManager({ store: opened.store, storeTimeoutMs: TIMEOUT_MS, breaker: { failures: 1, retryMs: 60_000 } });
      const { key } = await keys.create({ name: 'shed', scopes: ['all'] });
      opened.proxy.freeze();
      await keys.get(key.id).catch(() => {}); // times out: the breaker opens
      const error = await keys.deactivate(key.id).then(
        () => null,
        (e: unknown) => e,
      );
      opened.proxy.thaw();
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect(error).not.toBeInstanceOf(StoreOutcomeUnknownError);
      expect((error as Error).message).toMatch(/not sent/);
      await sleep(200);
      expect((await opened.direct.findById(key.id))?.active).toBe(true);
      await keys.close();
    });
  });
}
