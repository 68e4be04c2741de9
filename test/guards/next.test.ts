// keygate/next on real Request objects: every key state answered as the other guards answer it, forwarded addresses, the handler's arguments.

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { type ApiKeyRouteHandler, createNextGuard, type NextGuardOptions } from '../../adapters/next/index.js';
import { ValidationError } from '../../src/errors.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import type { ApiKey } from '../../src/types.js';
import { brokenStore } from '../support/counting-store.js';
import { FRAMEWORKS, type RunningApp } from './apps.js';
import type { Reply } from './client.js';
import { CARRIERS, carry, createKeyStates, KEY_STATE_TABLE, type KeyStates } from './fixtures.js';

const express = FRAMEWORKS.find((f) => f.name === 'express 5')!;

/** Next.js's NextRequest, as far as a route handler's type goes: a Request with more on it. */
class NextRequestLike extends Request {
  readonly nextUrl = new URL(this.url);
}

/** Next.js's context argument of a route handler. */
function routeContext<P extends Record<string, string>>(params: P): { params: Promise<P> } {
  return { params: Promise.resolve(params) };
}

function ordersRequest(headers: Record<string, string>): NextRequestLike {
  return new NextRequestLike('https://shop.example/api/orders', { headers });
}

/** What a client sees of an answer: status, the headers guards set, and the body. */
async function seen(response: Response): Promise<Omit<Reply, 'text'>> {
  const text = await response.text();
  const headers: Reply['headers'] = {};
  for (const name of ['content-type', 'www-authenticate', 'retry-after']) headers[name] = response.headers.get(name) ?? undefined;
  return { status: response.status, headers, json: JSON.parse(text) };
}

function seenReply(reply: Reply): Omit<Reply, 'text'> {
  const headers: Reply['headers'] = {};
  for (const name of ['content-type', 'www-authenticate', 'retry-after']) headers[name] = reply.headers[name];
  return { status: reply.status, headers, json: reply.json };
}

describe('next withApiKey answers every key state as the Express guard does', () => {
  let states: KeyStates;
  let app: RunningApp;
  let exposing: RunningApp;
  const handler: ApiKeyRouteHandler<NextRequestLike, { params: Promise<Record<string, string>> }> = async (_request, _context, apiKey) =>
    new Response(JSON.stringify({ keyId: apiKey.id }), { headers: { 'Content-Type': 'application/json; charset=utf-8' } });

  beforeAll(async () => {
    states = await createKeyStates();
    app = await express.start({ keys: states.keys, guard: { carriers: ['bearer', 'x-api-key', 'basic'] } });
    exposing = await express.start({ keys: states.keys, guard: { exposeReasons: true } });
  });
  afterAll(async () => {
    await Promise.all([app.close(), exposing.close()]);
  });

  describe.each(CARRIERS)('key in %s', (carrier) => {
    it.each(KEY_STATE_TABLE)('$state -> $expected.status', async (row) => {
      const GET = createNextGuard(states.keys, { carriers: ['bearer', 'x-api-key', 'basic'], trustedProxies: true })(handler, {
        scope: 'orders:list',
      });
      const token = row.token(states.tokens);
      const headers = token === null ? {} : carry(carrier, token);
      const response = await GET(ordersRequest({ ...headers, 'x-forwarded-for': '127.0.0.1' }), routeContext({}));
      const reply = await app.send({ headers });
      expect(reply.status).toBe(row.expected.status);
      expect(await seen(response)).toEqual(seenReply(reply));
    });
  });

  it.each(KEY_STATE_TABLE)('with exposeReasons: $state -> the same status, body and headers', async (row) => {
    const GET = createNextGuard(states.keys, { exposeReasons: true, trustedProxies: true })(handler, { scope: 'orders:list' });
    const token = row.token(states.tokens);
    const headers = token === null ? {} : carry('bearer', token);
    const response = await GET(ordersRequest({ ...headers, 'x-forwarded-for': '127.0.0.1' }), routeContext({}));
    expect(await seen(response)).toEqual(seenReply(await exposing.send({ headers })));
  });

  it('answers a failing key store with the 503 and Retry-After of the other guards', async () => {
    const broken = createKeyManager({ store: brokenStore('reject') });
    const failing = await express.start({ keys: broken, guard: { retryAfterSeconds: 12 } });
    try {
      const GET = createNextGuard(broken, { retryAfterSeconds: 12 })(handler);
      const headers = carry('bearer', states.tokens.valid);
      const response = await seen(await GET(ordersRequest(headers), routeContext({})));
      expect(response.status).toBe(503);
      expect(response.headers['retry-after']).toBe('12');
      expect(response).toEqual(seenReply(await failing.send({ headers })));
    } finally {
      await failing.close();
    }
  });
});

describe('next withApiKey and the handler', () => {
  let keys: KeyManager;
  let token: string;
  let keyId: string;

  beforeAll(async () => {
    keys = createKeyManager({ store: memoryStore() });
    const created = await keys.create({ name: 'erp', scopes: ['orders:edit'] });
    token = created.token;
    keyId = created.key.id;
  });

  it('passes the request, Next.js context untouched and the key to the handler', async () => {
    const withApiKey = createNextGuard(keys);
    const calls: unknown[][] = [];
    const PATCH = withApiKey(
      async (request: NextRequestLike, context: { params: Promise<{ id: string }> }, apiKey) => {
        calls.push([request, context, apiKey]);
        const { id } = await context.params;
        return Response.json({ order: id, by: apiKey.name, path: request.nextUrl.pathname });
      },
      { scope: 'orders:edit' },
    );
    const request = new NextRequestLike('https://shop.example/api/orders/42', { method: 'PATCH', headers: { 'x-api-key': token } });
    const context = routeContext({ id: '42' });
    const response = await PATCH(request, context);
    expect(await response.json()).toEqual({ order: '42', by: 'erp', path: '/api/orders/42' });
    expect(calls).toHaveLength(1);
    expect(calls[0]?.[0]).toBe(request);
    expect(calls[0]?.[1]).toBe(context);
    expect(calls[0]?.[2]).toMatchObject({ id: keyId, name: 'erp' });
  });

  it('never calls the handler for a refused request', async () => {
    let called = false;
    const GET = createNextGuard(keys)(
      async () => {
        called = true;
        return new Response('through');
      },
      { scope: 'products:list' },
    );
    expect((await GET(ordersRequest({ 'x-api-key': token }), routeContext({}))).status).toBe(403);
    expect((await GET(ordersRequest({}), routeContext({}))).status).toBe(401);
    expect(called).toBe(false);
  });

  it('types the wrapped handler as a Next.js route export, with the key typed', () => {
    const withApiKey = createNextGuard(keys);
    const GET = withApiKey(async (request, context, apiKey) => {
      expectTypeOf(request).toEqualTypeOf<Request>();
      expectTypeOf(apiKey).toEqualTypeOf<ApiKey>();
      return Response.json({ id: apiKey.id });
    });
    const PUT = withApiKey(async (request: NextRequestLike, { params }: { params: Promise<{ id: string }> }) =>
      Response.json(await params),
    );
    // What Next.js checks a route.ts export against.
    type RouteExport<Params> = (
      request: NextRequestLike,
      context: { params: Promise<Params> },
    ) => Response | undefined | Promise<Response | undefined>;
    expectTypeOf(GET).toExtend<RouteExport<Record<string, string | string[] | undefined>>>();
    expectTypeOf(PUT).toExtend<RouteExport<{ id: string }>>();
    expectTypeOf(PUT).parameters.toEqualTypeOf<[NextRequestLike, { params: Promise<{ id: string }> }]>();
  });

  it('lets onReject change the response, replace it, or throw to Next.js', async () => {
    const route = (onReject: NextGuardOptions['onReject']) => createNextGuard(keys, { onReject })(async () => new Response('through'));
    const edited = await route((rejection) => {
      rejection.headers['Cache-Control'] = 'no-store';
    })(ordersRequest({}), routeContext({}));
    expect(edited.status).toBe(401);
    expect(edited.headers.get('cache-control')).toBe('no-store');
    expect(edited.headers.get('www-authenticate')).toBe('Bearer');
    const replaced = await route(async (rejection, request) =>
      Response.json({ denied: rejection.reason, url: request.url }, { status: 401 }),
    )(ordersRequest({}), routeContext({}));
    expect(await replaced.json()).toEqual({ denied: 'MISSING', url: 'https://shop.example/api/orders' });
    const failing = route(() => {
      throw new Error('hook failed');
    });
    await expect(failing(ordersRequest({}), routeContext({}))).rejects.toThrow('hook failed');
  });

  it('fails when the guard or a route is created, not per request, when misconfigured', () => {
    expect(() => createNextGuard(keys, { scope: 'orders:list' } as NextGuardOptions)).toThrow(/is set per route/);
    expect(() => createNextGuard(keys, { trustedProxies: '10.0.0.0/33' })).toThrow(/trustedProxies/);
    expect(() => createNextGuard(keys, { trustedProxies: true, clientAddress: () => '10.0.0.1' })).toThrow(ValidationError);
    expect(() => createNextGuard(keys, { clientAddress: '10.0.0.1' as unknown as undefined })).toThrow(/clientAddress/);
    expect(() => createNextGuard(keys, { onReject: 'log' as unknown as undefined })).toThrow(/onReject/);
    const withApiKey = createNextGuard(keys);
    expect(() => withApiKey(async () => new Response(''), { scope: 'orders:delete' })).toThrow(/unknown scope/);
    expect(() => withApiKey('GET' as unknown as ApiKeyRouteHandler)).toThrow(/handler/);
  });

  it("passes other errors to Next.js's error handling: never 401, never through", async () => {
    const closed = createKeyManager({ store: memoryStore() });
    const closedToken = (await closed.create({ name: 'gone', scopes: ['all'] })).token;
    const GET = createNextGuard(closed)(async () => new Response('through'));
    await closed.close();
    await expect(GET(ordersRequest({ authorization: `Bearer ${closedToken}` }), routeContext({}))).rejects.toMatchObject({
      code: 'MANAGER_CLOSED',
    });
  });
});

describe('next withApiKey client address', () => {
  let keys: KeyManager;
  const token: Record<string, string> = {};

  beforeAll(async () => {
    keys = createKeyManager({ store: memoryStore() });
    const allowed = { public: '203.0.113.7', loopback4: '127.0.0.1', anywhere: '' };
    for (const [name, allowedIps] of Object.entries(allowed)) {
      token[name] = (await keys.create({ name, scopes: ['orders:list'], allowedIps })).token;
    }
  });

  /** The status of a request with this key and these extra headers, through a route guarded with `options`. */
  const status = async (options: NextGuardOptions, key: string, headers: Record<string, string> = {}): Promise<number> => {
    const GET = createNextGuard(keys, options)(async () => new Response('through'), { scope: 'orders:list' });
    return (await GET(ordersRequest({ authorization: `Bearer ${token[key]}`, ...headers }), routeContext({}))).status;
  };

  it('without trustedProxies, ignores X-Forwarded-For: a key with an allow-list is refused, one without passes', async () => {
    expect(await status({}, 'public', { 'x-forwarded-for': '203.0.113.7' })).toBe(403);
    expect(await status({}, 'public')).toBe(403);
    expect(await status({ trustedProxies: [] }, 'public', { 'x-forwarded-for': '203.0.113.7' })).toBe(403);
    expect(await status({ trustedProxies: ' ' }, 'public', { 'x-forwarded-for': '203.0.113.7' })).toBe(403);
    expect(await status({}, 'anywhere', { 'x-forwarded-for': '203.0.113.7' })).toBe(200);
  });

  it('with trustedProxies: true, takes the right-most X-Forwarded-For entry, the one the proxy appended', async () => {
    const behindProxy: NextGuardOptions = { trustedProxies: true };
    expect(await status(behindProxy, 'public', { 'x-forwarded-for': '203.0.113.7' })).toBe(200);
    expect(await status(behindProxy, 'public', { 'x-forwarded-for': '198.51.100.1, 203.0.113.7' })).toBe(200);
    expect(await status(behindProxy, 'public', { 'x-forwarded-for': '198.51.100.1, 203.0.113.7, ' })).toBe(200);
    // The client wrote 203.0.113.7; the proxy appended the address it really saw.
    expect(await status(behindProxy, 'public', { 'x-forwarded-for': '203.0.113.7, 198.51.100.1' })).toBe(403);
    expect(await status(behindProxy, 'public', { 'x-forwarded-for': '203.0.113.7, 127.0.0.1' })).toBe(403);
  });

  it('with trustedProxies: true and no X-Forwarded-For, or an empty one, has no address and refuses allow-listed keys', async () => {
    expect(await status({ trustedProxies: true }, 'public')).toBe(403);
    expect(await status({ trustedProxies: true }, 'loopback4', { 'x-forwarded-for': ' , ' })).toBe(403);
    expect(await status({ trustedProxies: true }, 'anywhere')).toBe(200);
  });

  it('with named proxies, takes the right-most entry that is not one of them', async () => {
    const chain: NextGuardOptions = { trustedProxies: ['10.0.0.0/8'] };
    expect(await status(chain, 'public', { 'x-forwarded-for': '203.0.113.7, 10.0.0.5' })).toBe(200);
    expect(await status(chain, 'public', { 'x-forwarded-for': '203.0.113.7, 10.1.0.1, 10.0.0.5' })).toBe(200);
    expect(await status(chain, 'public', { 'x-forwarded-for': '203.0.113.7, 198.51.100.9, 10.0.0.5' })).toBe(403);
    expect(await status(chain, 'public', { 'x-forwarded-for': '203.0.113.7' })).toBe(200);
  });

  it('parses every hop strictly: a forwarded 0177.0.0.1 is not 127.0.0.1, and the walk stops there', async () => {
    const local: NextGuardOptions = { trustedProxies: 'loopback' };
    expect(await status(local, 'loopback4', { 'x-forwarded-for': '0177.0.0.1' })).toBe(403);
    expect(await status(local, 'public', { 'x-forwarded-for': '203.0.113.7, 0177.0.0.1' })).toBe(403);
    expect(await status(local, 'loopback4', { 'x-forwarded-for': '127.0.0.1' })).toBe(200);
    expect(await status({ trustedProxies: true }, 'loopback4', { 'x-forwarded-for': '::ffff:127.0.0.1' })).toBe(200);
    expect(await status({ trustedProxies: true }, 'public', { 'x-forwarded-for': '[203.0.113.7]:443' })).toBe(403);
  });

  it('answers 200 or 403, never throws, for any X-Forwarded-For, and 200 only for an allowed right-most hop (fast-check)', async () => {
    const hop = fc.oneof(
      fc.constantFrom('203.0.113.7', '10.0.0.5', '198.51.100.1', '::1', '', ' ', 'unknown'),
      fc.string({ maxLength: 20 }),
    );
    const header = fc
      .array(hop, { maxLength: 6 })
      .map((hops) => hops.join(','))
      .filter((value) => !/[\0\r\n]/.test(value));
    await fc.assert(
      fc.asyncProperty(
        header,
        fc.constantFrom<NextGuardOptions['trustedProxies']>(true, ['10.0.0.0/8'], undefined),
        async (xff, trustedProxies) => {
          const code = await status({ trustedProxies }, 'public', { 'x-forwarded-for': xff });
          const hops = xff
            .split(',')
            .map((entry) => entry.trim())
            .filter((entry) => entry !== '');
          // The model: none without trustedProxies; the last hop with true; the last one that is not the proxy 10.0.0.5 with the list.
          const untrusted = trustedProxies === true ? hops : hops.filter((entry) => entry !== '10.0.0.5');
          const client = trustedProxies === undefined ? undefined : untrusted.at(-1);
          expect(code).toBe(client === '203.0.113.7' ? 200 : 403);
          expect(await status({ trustedProxies }, 'anywhere', { 'x-forwarded-for': xff })).toBe(200);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('with clientAddress, takes the peer from it and applies trustedProxies as the other guards do', async () => {
    const cloudflare: NextGuardOptions = { clientAddress: (request) => request.headers.get('cf-connecting-ip') };
    expect(await status(cloudflare, 'public', { 'cf-connecting-ip': '203.0.113.7' })).toBe(200);
    expect(await status(cloudflare, 'public', { 'cf-connecting-ip': '198.51.100.1', 'x-forwarded-for': '203.0.113.7' })).toBe(403);
    expect(await status(cloudflare, 'public')).toBe(403);
    const viaProxy: NextGuardOptions = { clientAddress: (request) => request.headers.get('x-test-peer'), trustedProxies: 'loopback' };
    expect(await status(viaProxy, 'public', { 'x-test-peer': '127.0.0.1', 'x-forwarded-for': '203.0.113.7' })).toBe(200);
    expect(await status(viaProxy, 'public', { 'x-test-peer': '198.51.100.1', 'x-forwarded-for': '203.0.113.7' })).toBe(403);
  });
});
