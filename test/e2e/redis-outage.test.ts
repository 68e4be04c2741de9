// Redis down: refused, silent, hung or dropped connections make verify fail with StoreUnavailableError within storeTimeoutMs, and nothing hangs.

import { createServer, type Server } from 'node:http';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { redisStore } from '../../adapters/redis/index.js';
import { createKeyManager, StoreUnavailableError, type KeyManager } from '../../src/index.js';
import { serviceUrl } from '../support/services.js';
import {
  closeRedis,
  connectRedis,
  deletePrefix,
  familyOf,
  isClientReady,
  isIoRedis,
  newIoRedis,
  newNodeRedis,
  randomPrefix,
  REDIS_CLIENT_KINDS,
  type AnyRedisClient,
  type RedisClientKind,
} from '../support/redis.js';
import { refusedPort, silentServer, TcpProxy } from '../support/tcp.js';

const url = serviceUrl('redis');
const STORE_TIMEOUT_MS = 300;
/** Time allowed past storeTimeoutMs on a busy, shared machine. */
const MARGIN_MS = 700;
const CONCURRENT = 50;

/**
 * A client of `kind` pointed at 127.0.0.1:port, created as an application would (not awaited).
 * Without `handshake`, the client sends nothing before the application's commands: for ioredis 6
 * that also takes RESP2, since its RESP3 HELLO must be answered before it is ready.
 */
function clientFor(kind: RedisClientKind, port: number, handshake = true, protocol?: 2 | 3): AnyRedisClient {
  if (familyOf(kind) === 'ioredis') {
    // ioredis defaults otherwise: offline queue on, 20 retries per request, reconnect forever.
    const client = newIoRedis(kind, {
      host: '127.0.0.1',
      port,
      enableReadyCheck: handshake,
      disableClientInfo: !handshake,
      ...(kind === 'ioredis@6' ? { protocol: protocol ?? (handshake ? 3 : 2) } : {}),
    });
    client.on('error', () => {});
    return client;
  }
  const client = newNodeRedis(kind, {
    socket: { host: '127.0.0.1', port, reconnectStrategy: (retries: number) => Math.min(retries * 50, 300) },
    disableClientInfo: !handshake,
  });
  client.on('error', () => {});
  (client as { connect(): Promise<unknown> }).connect().catch(() => {});
  return client;
}

async function untilReady(client: AnyRedisClient, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!isClientReady(client)) {
    if (Date.now() > end) throw new Error('the Redis client did not become ready');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A well-formed token of the default prefix (its key lives in another store). */
async function someToken(): Promise<string> {
  const keys = createKeyManager({ store: memoryStore() });
  const { token } = await keys.create({ name: 'probe', scopes: ['all'] });
  await keys.close();
  return token;
}

/**
 * Runs CONCURRENT verifies at once: every one must reject with StoreUnavailableError within
 * storeTimeoutMs + margin. A verify that hangs fails the test after 5 s instead of stalling it.
 */
/** How soon after the network heals verify must work again (the breaker's trial comes every 250 ms). */
const RECOVERY_MS = 1000;

/** Verifies until the token is valid, failing if that takes longer than `withinMs`. */
async function expectValidWithin(keys: KeyManager, token: string, withinMs: number): Promise<void> {
  const end = performance.now() + withinMs;
  for (;;) {
    const valid = await keys.verify(token).then(
      (result) => result.valid,
      () => false,
    );
    if (valid) return;
    expect(performance.now()).toBeLessThan(end);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function expectBoundedFailures(keys: KeyManager, token: string): Promise<StoreUnavailableError[]> {
  const started = performance.now();
  const times: number[] = [];
  const all = Promise.allSettled(
    Array.from({ length: CONCURRENT }, () => keys.verify(token).finally(() => times.push(performance.now() - started))),
  );
  const hung = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('a verify did not settle within 5 s')), 5000).unref());
  const results = await Promise.race([all, hung]);
  const reasons = results.map((r) => (r.status === 'rejected' ? r.reason : r.value));
  for (const reason of reasons) expect(reason).toBeInstanceOf(StoreUnavailableError);
  expect(Math.max(...times)).toBeLessThan(STORE_TIMEOUT_MS + MARGIN_MS);
  return reasons as StoreUnavailableError[];
}

/**
 * An HTTP server over `keys` (503 when the store fails) and a health route that needs no store:
 * during an outage the key route answers 503 in time and the health route keeps answering.
 */
async function expectServing(keys: KeyManager, token: string): Promise<void> {
  const server: Server = createServer((req, res) => {
    if (req.url === '/health') {
      res.end('ok');
      return;
    }
    keys.verify(token).then(
      (result) => {
        res.statusCode = result.valid ? 200 : 401;
        res.end();
      },
      (error: unknown) => {
        res.statusCode = error instanceof StoreUnavailableError ? 503 : 500;
        res.setHeader('Retry-After', '1');
        res.end();
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  try {
    const started = performance.now();
    const statuses = await Promise.all([
      ...Array.from({ length: 10 }, () => fetch(`${base}/key`).then((r) => r.status)),
      fetch(`${base}/health`).then((r) => r.status),
    ]);
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(503));
    expect(statuses[10]).toBe(200);
    expect(performance.now() - started).toBeLessThan(STORE_TIMEOUT_MS + MARGIN_MS);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

for (const kind of REDIS_CLIENT_KINDS) {
  describe(`Redis down (${kind})`, () => {
    let token: string;
    const cleanups: Array<() => Promise<void>> = [];

    beforeAll(async () => {
      token = await someToken();
    });

    afterAll(async () => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    });

    const managerOver = (client: AnyRedisClient, prefix = randomPrefix('outage')): KeyManager => {
      const keys = createKeyManager({ store: redisStore(client, { prefix }), storeTimeoutMs: STORE_TIMEOUT_MS });
      cleanups.push(async () => {
        await keys.close();
        await closeRedis(client);
      });
      return keys;
    };

    it('a port that refuses: every verify fails with StoreUnavailableError at once, none is queued', async () => {
      const keys = managerOver(clientFor(kind, await refusedPort()));
      const reasons = await expectBoundedFailures(keys, token);
      for (const reason of reasons) expect(reason.message).toMatch(/not connected/);
      await expectServing(keys, token);
      // Garbage still ends before the store.
      expect(await keys.verify('kg_not-a-token')).toMatchObject({ valid: false, code: 'MALFORMED' });
    });

    it('a server that accepts but never answers: StoreUnavailableError within storeTimeoutMs', async () => {
      const silent = await silentServer();
      cleanups.push(silent.close);
      const keys = managerOver(clientFor(kind, silent.port));
      await expectBoundedFailures(keys, token);
      await expectServing(keys, token);
    });

    it('a server that accepts but never answers, with a client that skips its handshake: the commands are sent and time out', async () => {
      const silent = await silentServer();
      cleanups.push(silent.close);
      const client = clientFor(kind, silent.port, false);
      const keys = managerOver(client);
      if (isIoRedis(client)) await untilReady(client); // no ready check: 'ready' on connect
      const reasons = await expectBoundedFailures(keys, token);
      if (isIoRedis(client)) for (const reason of reasons) expect(reason.message).toMatch(/no answer within 300 ms/);
      await expectServing(keys, token);
    });

    // Only ioredis 6 keeps a connected client out of 'ready' until its RESP3 HELLO is answered.
    if (kind === 'ioredis@6') {
      it('a server that accepts but never answers, ready check off but RESP3: the HELLO is never answered, so every verify fails at once', async () => {
        const silent = await silentServer();
        cleanups.push(silent.close);
        const client = clientFor(kind, silent.port, false, 3);
        const keys = managerOver(client);
        // Connected, HELLO sent, no answer: ioredis 6 stays in 'connect' and never reaches 'ready'.
        const end = Date.now() + 5000;
        while (isIoRedis(client) && client.status !== 'connect' && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
        const reasons = await expectBoundedFailures(keys, token);
        for (const reason of reasons) expect(reason.message).toMatch(/not connected \(connect\)/);
        expect(isClientReady(client)).toBe(false);
        await expectServing(keys, token);
      });
    }

    describe.skipIf(!url)('with a real Redis behind a proxy', () => {
      let proxy: TcpProxy;
      /** A direct connection that deletes the test keys, whatever happened to the proxied one. */
      let admin: AnyRedisClient;
      const prefixed = (): string => {
        const prefix = randomPrefix('outage');
        cleanups.push(() => deletePrefix(admin, prefix));
        return prefix;
      };
      // biome-ignore lint/suspicious/noDuplicateTestHooks: this hook belongs to the nested describe.skipIf
      beforeAll(async () => {
        admin = await connectRedis('ioredis@6', url as string);
        cleanups.push(() => closeRedis(admin));
        const target = new URL(url as string);
        proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port || 6379) });
        cleanups.push(() => proxy.close());
      });

      it('Redis stops answering mid-way: StoreUnavailableError within storeTimeoutMs, then it serves again', async () => {
        const client = clientFor(kind, proxy.port);
        const keys = managerOver(client, prefixed());
        cleanups.push(async () => proxy.thaw());
        await untilReady(client);
        const { token: real } = await keys.create({ name: 'outage', scopes: ['all'] });
        expect((await keys.verify(real)).valid).toBe(true);
        proxy.freeze();
        const reasons = await expectBoundedFailures(keys, real);
        for (const reason of reasons) expect(reason.message).toMatch(/no answer within 300 ms/);
        await expectServing(keys, real);
        proxy.thaw();
        await expectValidWithin(keys, real, RECOVERY_MS);
      });

      it('the connection drops and Redis refuses: verify fails at once, and works again once Redis is back', async () => {
        const client = clientFor(kind, proxy.port);
        const keys = managerOver(client, prefixed());
        await untilReady(client);
        const { token: real } = await keys.create({ name: 'dropped', scopes: ['all'] });
        expect((await keys.verify(real)).valid).toBe(true);
        await proxy.down();
        try {
          // The client notices the drop and starts reconnecting.
          const end = Date.now() + 5000;
          while (isClientReady(client) && Date.now() < end) {
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
          const reasons = await expectBoundedFailures(keys, real);
          // The first failures say why; once the breaker is open, calls fail without being sent.
          for (const reason of reasons) expect(reason.message).toMatch(/not connected|not sent: the store failed/);
          await expectServing(keys, real);
        } finally {
          await proxy.up();
        }
        await untilReady(client);
        await expectValidWithin(keys, real, RECOVERY_MS);
      });
    });
  });
}
