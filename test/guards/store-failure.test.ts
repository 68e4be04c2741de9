// SECURITY 7 and 11: a failing or silent key store gives 503 with Retry-After in time, never 401 and never a pass.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import type { KeyRecord } from '../../src/store.js';
import { DelegatingStore } from '../support/counting-store.js';
import { APP_ERROR, FRAMEWORKS, type RunningApp } from './apps.js';

/**
 * A store whose lookups can be made to hang or to fail, like a dead or unreachable database. It
 * wraps a MemoryStore but, like a remote store, answers lookups only asynchronously.
 */
class FaultyStore extends DelegatingStore {
  mode: 'ok' | 'hang' | 'throw' = 'ok';
  override findByDigest(digest: string): Promise<KeyRecord | null> {
    if (this.mode === 'hang') return new Promise(() => {});
    if (this.mode === 'throw') return Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432'));
    return super.findByDigest(digest);
  }
}

const STORE_TIMEOUT_MS = 200;
/** Room for a loaded machine; the answer must still come long before any client would give up. */
const MARGIN_MS = 800;

describe.each(FRAMEWORKS)('$name with a failing key store', (framework) => {
  let store: FaultyStore;
  let keys: KeyManager;
  let token: string;
  let app: RunningApp;
  let retryLater: RunningApp;

  beforeAll(async () => {
    store = new FaultyStore();
    keys = createKeyManager({ store, storeTimeoutMs: STORE_TIMEOUT_MS });
    token = (await keys.create({ name: 'erp', scopes: ['all'] })).token;
    app = await framework.start({ keys });
    retryLater = await framework.start({ keys, guard: { retryAfterSeconds: 30 } });
  });
  afterAll(async () => {
    await Promise.all([app.close(), retryLater.close()]);
  });

  it('answers 503 with Retry-After within storeTimeoutMs when the store never answers, and keeps serving', async () => {
    store.mode = 'hang';
    try {
      const started = Date.now();
      let settled = false;
      const guarded = app.send({ headers: { authorization: `Bearer ${token}` } }).finally(() => (settled = true));
      const open = await app.send({ path: '/open' });
      expect(open.status).toBe(200);
      expect(settled).toBe(false);
      const reply = await guarded;
      expect(Date.now() - started).toBeLessThan(STORE_TIMEOUT_MS + MARGIN_MS);
      expect(reply.status).toBe(503);
      expect(reply.headers['retry-after']).toBe('5');
      expect(reply.json).toEqual({ error: { code: 'key_store_unavailable', message: 'The API key store is unavailable; retry later.' } });
      expect(reply.text).not.toContain('ECONNREFUSED');
    } finally {
      store.mode = 'ok';
    }
  });

  it('answers 503 at once when the store fails, with the configured Retry-After', async () => {
    store.mode = 'throw';
    try {
      const reply = await retryLater.send({ headers: { 'x-api-key': token } });
      expect(reply.status).toBe(503);
      expect(reply.headers['retry-after']).toBe('30');
      expect(reply.headers['www-authenticate']).toBeUndefined();
      expect(reply.text).not.toContain('5432');
    } finally {
      store.mode = 'ok';
    }
  });

  it('checks the token format before the store: garbage still gets 401 while the store is down', async () => {
    store.mode = 'hang';
    try {
      const reply = await app.send({ headers: { authorization: 'Bearer kg_garbage' } });
      expect(reply.status).toBe(401);
    } finally {
      store.mode = 'ok';
    }
    expect((await app.send({ headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  });

  it("passes other errors to the framework's error handling: never 401, never through", async () => {
    const closed = createKeyManager({ store: memoryStore() });
    const closedToken = (await closed.create({ name: 'gone', scopes: ['all'] })).token;
    const closedApp = await framework.start({ keys: closed });
    try {
      await closed.close();
      const reply = await closedApp.send({ headers: { authorization: `Bearer ${closedToken}` } });
      expect(reply.status).toBe(500);
      expect(reply.json).toEqual({ error: { code: APP_ERROR, detail: 'MANAGER_CLOSED' } });
    } finally {
      await closedApp.close();
    }
  });
});
