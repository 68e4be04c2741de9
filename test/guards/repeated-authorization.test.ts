// Repeated Authorization headers, sent as raw bytes: Node keeps only the first in req.headers, the guard reads them all.

import { createServer as createHttp2Server, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import fastify5, { type FastifyInstance } from 'fastify';
import fastify4 from 'fastify4';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import keygatePlugin from '../../adapters/fastify/index.js';
import { apiKeyGuard as honoGuard } from '../../adapters/hono/index.js';
import { FRAMEWORKS, type RunningApp } from './apps.js';
import { type RawReply, sendHttp2Raw, sendRawReply } from './client.js';
import { createKeyStates, type KeyStates } from './fixtures.js';

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

interface Case {
  what: string;
  /** Header lines as [name, value], in the order they are sent. */
  lines: (t: KeyStates['tokens']) => Array<[string, string]>;
  expected: 'valid' | 'MALFORMED';
}

const CASES: readonly Case[] = [
  {
    what: 'two Authorization: Bearer headers with two different valid keys',
    lines: (t) => [
      ['Authorization', `Bearer ${t.valid}`],
      ['Authorization', `Bearer ${t.edit}`],
    ],
    expected: 'MALFORMED',
  },
  {
    what: 'the same key in two Authorization: Bearer headers',
    lines: (t) => [
      ['Authorization', `Bearer ${t.valid}`],
      ['authorization', `bearer  ${t.valid}`],
    ],
    expected: 'valid',
  },
  {
    what: 'Authorization and X-API-Key with different keys',
    lines: (t) => [
      ['Authorization', `Bearer ${t.valid}`],
      ['X-API-Key', t.edit],
    ],
    expected: 'MALFORMED',
  },
  {
    what: 'two Authorization: Basic headers with different keys',
    lines: (t) => [
      ['Authorization', basic(t.valid, '')],
      ['Authorization', basic('shop-42', t.edit)],
    ],
    expected: 'MALFORMED',
  },
  {
    what: 'the same key in two Authorization: Basic headers, as user name and as password',
    lines: (t) => [
      ['Authorization', basic(t.valid, '')],
      ['Authorization', basic('shop-42', t.valid)],
    ],
    expected: 'valid',
  },
  {
    what: 'a Bearer and a Basic header with different keys',
    lines: (t) => [
      ['Authorization', basic(t.edit, '')],
      ['Authorization', `Bearer ${t.valid}`],
    ],
    expected: 'MALFORMED',
  },
  {
    what: 'the same key twice, then a different one, names in any case',
    lines: (t) => [
      ['authorization', `Bearer ${t.valid}`],
      ['AUTHORIZATION', `Bearer ${t.valid}`],
      ['Authorization', `Bearer ${t.unknown}`],
    ],
    expected: 'MALFORMED',
  },
  {
    what: 'a valid key, then a second Authorization with a malformed one',
    lines: (t) => [
      ['Authorization', `Bearer ${t.valid}`],
      ['Authorization', 'Bearer kg_typo'],
    ],
    expected: 'MALFORMED',
  },
  {
    what: 'a scheme the guard does not read, then a Bearer key',
    lines: (t) => [
      ['Authorization', 'Digest username="shop", response="6629fae4"'],
      ['Authorization', `Bearer ${t.valid}`],
    ],
    expected: 'valid',
  },
];

function check(reply: RawReply, expected: Case['expected'], states: KeyStates): void {
  const body = JSON.parse(reply.body) as { keyId?: string; error?: { code: string; reason?: string } };
  if (expected === 'valid') {
    expect(reply.status).toBe(200);
    expect(body.keyId).toBe(states.validId);
  } else {
    expect(reply.status).toBe(401);
    expect(body.error).toMatchObject({ code: 'invalid_api_key', reason: expected });
  }
}

describe.each(FRAMEWORKS)('$name with repeated Authorization headers', (framework) => {
  let states: KeyStates;
  let app: RunningApp;

  beforeAll(async () => {
    states = await createKeyStates();
    app = await framework.start({ keys: states.keys, guard: { carriers: ['bearer', 'x-api-key', 'basic'], exposeReasons: true } });
  });
  afterAll(async () => {
    await app.close();
  });

  it.each(CASES)('$what: $expected', async ({ lines, expected }) => {
    const raw = lines(states.tokens).map(([name, value]) => Buffer.from(`${name}: ${value}`, 'latin1'));
    check(await sendRawReply('127.0.0.1', app.port, raw), expected, states);
  });
});

describe.each([
  ['fastify 4', fastify4 as unknown as typeof fastify5],
  ['fastify 5', fastify5],
] as const)('%s over HTTP/2 with repeated Authorization headers', (_name, create) => {
  let states: KeyStates;
  let app: FastifyInstance;
  let port: number;

  beforeAll(async () => {
    states = await createKeyStates();
    app = create({ http2: true }) as unknown as FastifyInstance;
    await app.register(keygatePlugin, { keys: states.keys, carriers: ['bearer', 'x-api-key', 'basic'], exposeReasons: true });
    app.get('/orders', { onRequest: app.keygate.guard({ scope: 'orders:list' }) }, async (request) => ({ keyId: request.apiKey?.id }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await app?.close();
  });

  it.each(CASES)('$what: $expected', async ({ lines, expected }) => {
    // HTTP/2 field names are lower case on the wire.
    const fields = lines(states.tokens).map(([name, value]) => [name.toLowerCase(), value] as const);
    check(await sendHttp2Raw('127.0.0.1', port, fields), expected, states);
  });
});

describe('hono 4 over HTTP/2 (@hono/node-server) with repeated Authorization headers', () => {
  let states: KeyStates;
  let server: Http2Server;
  let port: number;

  beforeAll(async () => {
    states = await createKeyStates();
    const app = new Hono();
    const guard = honoGuard(states.keys, { scope: 'orders:list', carriers: ['bearer', 'x-api-key', 'basic'], exposeReasons: true });
    app.get('/orders', guard, (c) => c.json({ keyId: c.get('apiKey').id }));
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1', createServer: createHttp2Server }) as Http2Server;
    await new Promise((resolve) => server.once('listening', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
  });

  it.each(CASES)('$what: $expected', async ({ lines, expected }) => {
    const fields = lines(states.tokens).map(([name, value]) => [name.toLowerCase(), value] as const);
    check(await sendHttp2Raw('127.0.0.1', port, fields), expected, states);
  });
});
