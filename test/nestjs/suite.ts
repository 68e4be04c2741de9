// The keygate/nestjs tests, run for one NestJS major on Express and Fastify, over real sockets.

import type { ExecutionContext } from '@nestjs/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import type { KeyRecord } from '../../src/store.js';
import { FRAMEWORKS, type RunningApp } from '../guards/apps.js';
import { type Reply, sendRawReply } from '../guards/client.js';
import { CARRIERS, carry, createKeyStates, expectOutcome, INVALID_KEY_BODY, KEY_STATE_TABLE, type KeyStates } from '../guards/fixtures.js';
import { DelegatingStore } from '../support/counting-store.js';
import { type NestApp, type NestAppSpec, PLATFORMS, type Platform, startNest } from './app.js';
import type { NestKit } from './kit.js';

/** What Nest answers for an error that is not an HttpException. */
const NEST_500 = { statusCode: 500, message: 'Internal server error' };

/** Headers the frameworks set on every response, whoever answers it. */
const FRAMEWORK_HEADERS = new Set(['date', 'connection', 'keep-alive', 'x-powered-by', 'etag']);

/** The content type Nest sets on every JSON error body. */
const NEST_JSON = 'application/json; charset=utf-8';

/** The headers of a reply that the guard decides, with their values. */
function guardHeaders(reply: Reply): Record<string, unknown> {
  return Object.fromEntries(Object.entries(reply.headers).filter(([name]) => !FRAMEWORK_HEADERS.has(name)));
}

/** A store whose lookups can be made to fail or hang, like an unreachable database; asynchronous like a remote one. */
class FaultyStore extends DelegatingStore {
  mode: 'ok' | 'hang' | 'throw' = 'ok';
  override findByDigest(digest: string): Promise<KeyRecord | null> {
    if (this.mode === 'hang') return new Promise(() => {});
    if (this.mode === 'throw') return Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432'));
    return super.findByDigest(digest);
  }
}

/** The guard apps of one test group, closed together. */
function appsOf(kit: () => NestKit, platform: Platform) {
  const started: NestApp[] = [];
  return {
    async start(spec: NestAppSpec): Promise<NestApp> {
      const app = await startNest(kit(), platform, spec);
      started.push(app);
      return app;
    },
    async closeAll(): Promise<void> {
      await Promise.all(started.splice(0).map((app) => app.close()));
    },
  };
}

/**
 * Every keygate/nestjs test, for the NestJS major that `loadKit` brings. The first test checks that
 * the apps really run that major.
 */
export function describeNest(major: '11' | '12', loadKit: () => Promise<NestKit>): void {
  let loaded: NestKit | undefined;
  const kit = (): NestKit => {
    if (!loaded) throw new Error(`NestJS ${major} was not loaded`);
    return loaded;
  };

  describe(`keygate/nestjs on NestJS ${major}`, () => {
    beforeAll(async () => {
      loaded = await loadKit();
    });

    it(`loads @nestjs/core ${major}.x, and a keygate/nestjs that extends that major's HttpException`, () => {
      expect(`${kit().version} from ${kit().from}`).toMatch(new RegExp(`^${major}\\.\\d+\\.\\d+ from `));
    });

    describe.each(PLATFORMS)('on %s', (platform) => {
      describe('every key state', () => {
        const apps = appsOf(kit, platform);
        let states: KeyStates;
        /** All three carriers on, reasons hidden. */
        let app: NestApp;
        /** Default carriers, reasons exposed. */
        let exposing: NestApp;

        beforeAll(async () => {
          states = await createKeyStates();
          app = await apps.start({ keys: states.keys, guard: { carriers: ['bearer', 'x-api-key', 'basic'] } });
          exposing = await apps.start({ keys: states.keys, guard: { exposeReasons: true } });
        });
        afterAll(() => apps.closeAll());

        describe.each(CARRIERS)('key in %s', (carrier) => {
          it.each(KEY_STATE_TABLE)('$state -> $expected.status', async (row) => {
            const token = row.token(states.tokens);
            const reply = await app.send({ headers: token === null ? {} : carry(carrier, token) });
            expectOutcome(reply, row.expected, states, false, NEST_JSON);
            if (token !== null) {
              expect(reply.text).not.toContain(token);
              expect(JSON.stringify(reply.headers)).not.toContain(token);
            }
          });
        });

        it.each(KEY_STATE_TABLE)('with exposeReasons: $state -> $expected.status and its reason', async (row) => {
          const token = row.token(states.tokens);
          const reply = await exposing.send({ headers: token === null ? {} : carry('bearer', token) });
          expectOutcome(reply, row.expected, states, true, NEST_JSON);
        });

        it('refuses two different keys in two carriers as malformed, accepts the same key twice', async () => {
          const { valid, edit } = states.tokens;
          const same = await app.send({ headers: { ...carry('bearer', valid), 'x-api-key': valid } });
          expectOutcome(same, { status: 200, keyId: 'valid' }, states, false, NEST_JSON);
          const different = await exposing.send({ headers: { ...carry('bearer', valid), 'x-api-key': edit } });
          expectOutcome(different, { status: 401, reason: 'MALFORMED' }, states, true, NEST_JSON);
        });

        it('reports every decision through onEvent with the socket address, never the token', async () => {
          const before = states.events.length;
          await app.send({ headers: carry('bearer', states.tokens.expired) });
          await app.send({ headers: carry('x-api-key', states.tokens.valid) });
          const events = states.events.slice(before);
          expect(events.map((e) => (e.type === 'rejected' ? e.code : e.type))).toEqual(['EXPIRED', 'verified']);
          expect(events.map((e) => ('ip' in e ? e.ip : undefined))).toEqual(['127.0.0.1', '127.0.0.1']);
          const logged = JSON.stringify(states.events);
          for (const token of Object.values(states.tokens)) expect(logged).not.toContain(token);
        });
      });

      describe('answers byte for byte as the Express guard', () => {
        const apps = appsOf(kit, platform);
        let states: KeyStates;
        let express: RunningApp[];
        let nest: NestApp[];
        const expressFramework = FRAMEWORKS.find((f) => f.name === 'express 5')!;
        const guards = [{}, { exposeReasons: true }] as const;

        beforeAll(async () => {
          states = await createKeyStates();
          express = await Promise.all(guards.map((guard) => expressFramework.start({ keys: states.keys, guard })));
          nest = await Promise.all(guards.map((guard) => apps.start({ keys: states.keys, guard })));
        });
        afterAll(async () => {
          await Promise.all(express.map((app) => app.close()));
          await apps.closeAll();
        });

        const refusals = KEY_STATE_TABLE.filter((row) => row.expected.status !== 200);
        describe.each([0, 1])('exposeReasons: %s', (i) => {
          it.each(refusals)('$state', async (row) => {
            const token = row.token(states.tokens);
            const request = { headers: token === null ? {} : carry('bearer', token) };
            const [want, got] = await Promise.all([express[i]!.send(request), nest[i]!.send(request)]);
            expect(got.status).toBe(want.status);
            expect(got.text).toBe(want.text);
            expect(guardHeaders(got)).toEqual(guardHeaders(want));
          });
        });
      });

      describe('scope from the handler or the controller', () => {
        describe.each(['controller', 'global'] as const)('guard installed with %s', (install) => {
          const apps = appsOf(kit, platform);
          let states: KeyStates;
          let app: NestApp;

          beforeAll(async () => {
            states = await createKeyStates();
            app = await apps.start({ keys: states.keys, install });
          });
          afterAll(() => apps.closeAll());

          const statusOf = async (path: string, token: string | null) =>
            (await app.send({ path, headers: token === null ? {} : carry('bearer', token) })).status;

          it("a controller's @RequireScope guards its handlers", async () => {
            // `wrongScope` holds products:list, `valid` orders:list.
            expect(await statusOf('/catalog', states.tokens.wrongScope)).toBe(200);
            const refused = await app.send({ path: '/catalog', headers: carry('bearer', states.tokens.valid) });
            expect(refused.status).toBe(403);
            expect(refused.json).toMatchObject({ error: { code: 'insufficient_scope' } });
          });

          it("a handler's @RequireScope replaces its controller's, rather than adding to it", async () => {
            expect(await statusOf('/catalog/orders', states.tokens.valid)).toBe(200);
            expect(await statusOf('/catalog/orders', states.tokens.edit)).toBe(200);
            expect(await statusOf('/catalog/orders', states.tokens.wrongScope)).toBe(403);
          });

          it('without @RequireScope any valid key passes, and only a valid one', async () => {
            for (const token of [states.tokens.valid, states.tokens.edit, states.tokens.wrongScope]) {
              const reply = await app.send({ path: '/any', headers: carry('x-api-key', token) });
              expect(reply.status).toBe(200);
            }
            expect(await statusOf('/any', states.tokens.inactive)).toBe(401);
            expect(await statusOf('/any', null)).toBe(401);
          });

          it('@SkipApiKey on a handler or a controller lets requests through without a key', async () => {
            const health = await app.send({ path: '/any/health' });
            expect(health.status).toBe(200);
            expect(health.json).toEqual({ healthy: true });
            expect(await statusOf('/open', null)).toBe(200);
          });

          it('request.apiKey is the verified key', async () => {
            const reply = await app.send({ path: '/catalog/orders', headers: carry('bearer', states.tokens.edit) });
            expect(reply.json).toEqual({ keyId: states.editId });
          });
        });
      });

      describe('unknown scopes stop the app at startup', () => {
        let keys: KeyManager;
        beforeAll(() => {
          keys = createKeyManager({ store: memoryStore() });
        });
        afterAll(() => keys.close());

        const startupError = async (spec: Omit<NestAppSpec, 'keys'>): Promise<unknown> => {
          try {
            const app = await startNest(kit(), platform, { keys, ...spec });
            await app.close();
          } catch (error) {
            return error;
          }
          throw new Error('the app started');
        };

        it.each([
          ['handler', 'controller'],
          ['controller', 'controller'],
          ['handler', 'global'],
        ] as const)('@RequireScope on a %s, guard installed with %s', async (on, install) => {
          const error = await startupError({ install, extraScope: { on, scope: 'orders:lsit' } });
          expect(error).toBeInstanceOf(kit().ValidationError);
          expect(error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'scope' });
          const where = on === 'handler' ? 'ExtraController.extra' : 'ExtraController)';
          expect((error as Error).message).toContain('unknown scope "orders:lsit"');
          expect((error as Error).message).toContain(where);
        });

        it('one unknown scope among known ones, and an empty list', async () => {
          const unknown = await startupError({ extraScope: { on: 'handler', scope: ['orders:list', 'ordrs:edit'] } });
          expect((unknown as Error).message).toContain('unknown scope "ordrs:edit"');
          const empty = await startupError({ extraScope: { on: 'controller', scope: [] } });
          expect(empty).toBeInstanceOf(kit().ValidationError);
          expect((empty as Error).message).toContain('must name at least one scope');
        });

        it('bad module options throw at forRoot(), or at startup with forRootAsync()', async () => {
          const { KeygateModule } = kit().keygate;
          const carriers = ['query'] as unknown as ['bearer'];
          expect(() => KeygateModule.forRoot({ keys, carriers })).toThrow(kit().ValidationError);
          expect(() => KeygateModule.forRoot({ keys, carriers })).toThrow(/^carriers: unknown carrier "query"/);
          expect(() => KeygateModule.forRoot({ keys, scope: 'orders:list' } as never)).toThrow(/^scope: is set per controller or handler/);
          expect(() => KeygateModule.forRoot({} as never)).toThrow(/^keys: is required/);
          const error = await startupError({ async: true, guard: { trustedProxies: '10.0.0.0/33' } });
          expect(error).toBeInstanceOf(kit().ValidationError);
          expect(error).toMatchObject({ field: 'trustedProxies' });
        });
      });

      describe('client address', () => {
        const apps = appsOf(kit, platform);
        let keys: KeyManager;
        const token: Record<string, string> = {};
        const bearer = (name: string) => ({ authorization: `Bearer ${token[name]}` });

        beforeAll(async () => {
          keys = createKeyManager({ store: memoryStore() });
          for (const [name, allowedIps] of Object.entries({ public: '203.0.113.7', loopback4: '127.0.0.1' })) {
            token[name] = (await keys.create({ name, scopes: ['orders:list'], allowedIps })).token;
          }
        });
        afterAll(async () => {
          await apps.closeAll();
          await keys.close();
        });

        it('ignores X-Forwarded-For from a direct client: an allowed address in the header gets 403', async () => {
          const app = await apps.start({ keys });
          const open = await app.send({ path: '/open' });
          expect(open.json).toEqual({ peer: '127.0.0.1' });
          const forged = await app.send({ headers: { ...bearer('public'), 'x-forwarded-for': '203.0.113.7' } });
          expect(forged.status).toBe(403);
          expect(forged.json).toMatchObject({ error: { code: 'ip_not_allowed' } });
          const peer = await app.send({ headers: { ...bearer('loopback4'), 'x-forwarded-for': '203.0.113.7' } });
          expect(peer.status).toBe(200);
        });

        it("ignores the platform's own proxy trust setting", async () => {
          const app = await apps.start({ keys, frameworkTrustsProxies: true });
          const forged = await app.send({ headers: { ...bearer('public'), 'x-forwarded-for': '203.0.113.7' } });
          expect(forged.status).toBe(403);
        });

        it('reads X-Forwarded-For only from a trusted proxy', async () => {
          const app = await apps.start({ keys, guard: { trustedProxies: ['127.0.0.1'] } });
          const viaProxy = await app.send({ headers: { ...bearer('public'), 'x-forwarded-for': '203.0.113.7' } });
          expect(viaProxy.status).toBe(200);
          // 127.0.0.2 is a loopback address too, but not on the trusted list: it is a direct client.
          const direct = await app.send({ localAddress: '127.0.0.2', headers: { ...bearer('public'), 'x-forwarded-for': '203.0.113.7' } });
          expect(direct.status).toBe(403);
        });

        it('takes the right-most address that is not a trusted proxy', async () => {
          const app = await apps.start({ keys, guard: { trustedProxies: 'loopback' } });
          const chain = await app.send({ headers: { ...bearer('public'), 'x-forwarded-for': '198.51.100.1, 203.0.113.7, 127.0.0.5' } });
          expect(chain.status).toBe(200);
          const spoofedLeft = await app.send({ headers: { ...bearer('public'), 'x-forwarded-for': '203.0.113.7, 198.51.100.1' } });
          expect(spoofedLeft.status).toBe(403);
        });
      });

      describe('repeated Authorization headers, sent as raw bytes', () => {
        const apps = appsOf(kit, platform);
        let states: KeyStates;
        let app: NestApp;

        beforeAll(async () => {
          states = await createKeyStates();
          app = await apps.start({ keys: states.keys, guard: { exposeReasons: true } });
        });
        afterAll(() => apps.closeAll());

        const sendLines = async (lines: Array<[string, string]>) => {
          const reply = await sendRawReply(
            '127.0.0.1',
            app.port,
            lines.map(([name, value]) => Buffer.from(`${name}: ${value}`, 'latin1')),
          );
          return { status: reply.status, body: JSON.parse(reply.body) as unknown };
        };

        it('two Authorization headers with two different valid keys: 401 MALFORMED', async () => {
          const { valid, edit } = states.tokens;
          const reply = await sendLines([
            ['Authorization', `Bearer ${valid}`],
            ['Authorization', `Bearer ${edit}`],
          ]);
          expect(reply).toEqual({
            status: 401,
            body: { error: expect.objectContaining({ code: 'invalid_api_key', reason: 'MALFORMED' }) },
          });
        });

        it('a valid key, then a different one in another case: 401 MALFORMED', async () => {
          const reply = await sendLines([
            ['authorization', `Bearer ${states.tokens.valid}`],
            ['AUTHORIZATION', `Bearer ${states.tokens.unknown}`],
          ]);
          expect(reply.status).toBe(401);
        });

        it('the same key in two Authorization headers passes', async () => {
          const reply = await sendLines([
            ['Authorization', `Bearer ${states.tokens.valid}`],
            ['authorization', `bearer  ${states.tokens.valid}`],
          ]);
          expect(reply).toEqual({ status: 200, body: { keyId: states.validId } });
        });
      });

      describe('a failing key store', () => {
        const apps = appsOf(kit, platform);
        let store: FaultyStore;
        let keys: KeyManager;
        let token: string;
        let app: NestApp;
        let retryLater: NestApp;
        let express: RunningApp;

        beforeAll(async () => {
          store = new FaultyStore();
          keys = createKeyManager({ store, storeTimeoutMs: 200 });
          token = (await keys.create({ name: 'erp', scopes: ['all'] })).token;
          app = await apps.start({ keys });
          retryLater = await apps.start({ keys, guard: { retryAfterSeconds: 30 } });
          express = await FRAMEWORKS.find((f) => f.name === 'express 5')!.start({ keys, guard: { retryAfterSeconds: 30 } });
        });
        afterAll(async () => {
          await apps.closeAll();
          await express.close();
        });

        it('answers 503 with the configured Retry-After when the store fails, as the Express guard does', async () => {
          store.mode = 'throw';
          try {
            const request = { headers: { 'x-api-key': token } };
            const [reply, want] = await Promise.all([retryLater.send(request), express.send(request)]);
            expect(reply.status).toBe(503);
            expect(reply.headers['retry-after']).toBe('30');
            expect(reply.headers['www-authenticate']).toBeUndefined();
            expect(reply.json).toEqual({
              error: { code: 'key_store_unavailable', message: 'The API key store is unavailable; retry later.' },
            });
            expect(reply.text).not.toContain('5432');
            expect(reply.text).toBe(want.text);
            expect(guardHeaders(reply)).toEqual(guardHeaders(want));
          } finally {
            store.mode = 'ok';
          }
        });

        it('answers 503 with Retry-After: 5 in time when the store never answers', async () => {
          store.mode = 'hang';
          try {
            const started = Date.now();
            const reply = await app.send({ headers: { authorization: `Bearer ${token}` } });
            expect(Date.now() - started).toBeLessThan(1_000);
            expect(reply.status).toBe(503);
            expect(reply.headers['retry-after']).toBe('5');
          } finally {
            store.mode = 'ok';
          }
          expect((await app.send({ headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
        });

        it("passes other errors to Nest's exception handling: 500, never 401, never through", async () => {
          const closed = createKeyManager({ store: memoryStore() });
          const closedToken = (await closed.create({ name: 'gone', scopes: ['all'] })).token;
          const closedApp = await apps.start({ keys: closed });
          await closed.close();
          const reply = await closedApp.send({ path: '/any', headers: { authorization: `Bearer ${closedToken}` } });
          expect(reply.status).toBe(500);
          expect(reply.json).toEqual(NEST_500);
        });
      });

      describe('onReject, exception filters, contexts and forRootAsync', () => {
        const apps = appsOf(kit, platform);
        let states: KeyStates;

        beforeAll(async () => {
          states = await createKeyStates();
        });
        afterAll(() => apps.closeAll());

        it('onReject can change the response', async () => {
          const app = await apps.start({ keys: states.keys, onReject: 'edit' });
          const reply = await app.send({ headers: carry('bearer', states.tokens.inactive) });
          expect(reply.status).toBe(401);
          expect(reply.headers['x-reject-reason']).toBe('INACTIVE');
          expect(reply.headers['www-authenticate']).toBe('Bearer');
          expect(reply.json).toEqual(INVALID_KEY_BODY);
          const scope = await app.send({ headers: carry('bearer', states.tokens.wrongScope) });
          expect(scope.status).toBe(403);
          expect(scope.headers['x-reject-reason']).toBe('INSUFFICIENT_SCOPE');
        });

        it("a throwing onReject goes to Nest's exception handling, never through", async () => {
          const app = await apps.start({ keys: states.keys, onReject: 'throw' });
          const reply = await app.send({ headers: carry('bearer', states.tokens.expired) });
          expect(reply.status).toBe(500);
          expect(reply.json).toEqual(NEST_500);
        });

        it('a global exception filter can reshape the answer; the headers the guard set stay', async () => {
          const app = await apps.start({ keys: states.keys, reshape: true });
          const reply = await app.send({ headers: carry('bearer', states.tokens.expired) });
          expect(reply.status).toBe(401);
          expect(reply.json).toEqual({ denied: 'EXPIRED' });
          expect(reply.headers['www-authenticate']).toBe('Bearer');
          expect((await app.send({ headers: carry('bearer', states.tokens.valid) })).status).toBe(200);
        });

        it('refuses a non-HTTP handler (microservice, WebSocket) unless it is marked @SkipApiKey()', async () => {
          const app = await apps.start({ keys: states.keys });
          const guard = app.app.get(kit().keygate.ApiKeyGuard);
          class Handlers {
            plain(): void {}
            skipped(): void {}
          }
          const skipped = Object.getOwnPropertyDescriptor(Handlers.prototype, 'skipped')!;
          kit().keygate.SkipApiKey()(Handlers.prototype, 'skipped', skipped);
          // What Nest passes a guard for a message handler: the same interface, another type, no HTTP request.
          const rpc = (handler: () => void) =>
            ({
              getType: () => 'rpc',
              getHandler: () => handler,
              getClass: () => Handlers,
              switchToHttp: () => {
                throw new Error('not an HTTP request');
              },
            }) as unknown as ExecutionContext;
          await expect(guard.canActivate(rpc(Handlers.prototype.plain))).rejects.toMatchObject({
            code: 'VALIDATION_FAILED',
            field: 'context',
          });
          await expect(guard.canActivate(rpc(Handlers.prototype.skipped))).resolves.toBe(true);
        });

        it('forRootAsync takes the manager from another module', async () => {
          const app = await apps.start({ keys: states.keys, async: true, install: 'global' });
          const ok = await app.send({ path: '/catalog/orders', headers: carry('bearer', states.tokens.valid) });
          expect(ok.json).toEqual({ keyId: states.validId });
          expect((await app.send({ path: '/catalog/orders', headers: carry('bearer', states.tokens.wrongScope) })).status).toBe(403);
        });
      });
    });
  });
}
