// The admin's options: checked at startup with the field named; brand colours; the origin writes must come from.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRouter } from '../../adapters/express/index.js';
import { adminHandler } from '../../adapters/fetch/index.js';
import { adminMiddleware } from '../../adapters/koa/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { createAdmin } from '../../src/admin/core.js';
import { adminOriginCheck } from '../../src/admin/origin.js';
import type { AdminRequest } from '../../src/admin/types.js';
import { InvalidationUnconfirmedError, ValidationError } from '../../src/errors.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import { defineScopes } from '../../src/scopes.js';

let keys: KeyManager;
beforeAll(() => {
  keys = createKeyManager({ store: memoryStore() });
});
afterAll(() => keys.close());

function fieldOf(make: () => unknown): string | undefined {
  try {
    make();
  } catch (error) {
    if (error instanceof ValidationError) return error.field;
    throw error;
  }
  return undefined;
}

const GET = (path: string): AdminRequest => ({
  method: 'GET',
  path,
  query: '',
  headers: {},
  body: { kind: 'none' },
  base: '/admin',
  sameOrigin: false,
});

describe('admin options', () => {
  it('refuses bad options at startup, naming the field', () => {
    expect(fieldOf(() => createAdmin({ keys: {} as KeyManager, owner: () => null }))).toBe('keys');
    expect(fieldOf(() => createAdmin({ keys, owner: 'shop' as never }))).toBe('owner');
    expect(fieldOf(() => createAdmin({ keys, owner: () => null, authorize: true as never }))).toBe('authorize');
    expect(fieldOf(() => createAdmin({ keys, owner: () => null, rotateGraceMs: -1 }))).toBe('rotateGraceMs');
    expect(fieldOf(() => createAdmin({ keys, owner: () => null, brand: { primary: 'red' } }))).toBe('brand.primary');
    expect(fieldOf(() => createAdmin({ keys, owner: () => null, brand: { accent: '#12345' } }))).toBe('brand.accent');
    expect(fieldOf(() => createAdmin({ keys, owner: () => null, brand: { name: 'a\nb' } }))).toBe('brand.name');
    expect(fieldOf(() => adminRouter({ keys, owner: () => null, trustedProxies: 'everyone' }))).toBe('trustedProxies');
    expect(fieldOf(() => adminRouter({ keys, owner: () => null, publicOrigin: 'https://shop.example/admin' }))).toBe('publicOrigin[0]');
    expect(fieldOf(() => adminMiddleware({ keys, owner: () => null, prefix: 'admin/' }))).toBe('prefix');
    expect(fieldOf(() => adminHandler({ keys, owner: () => null, basePath: '/admin/' }))).toBe('basePath');
  });

  it('escapes the brand name into the page and gives each brand colour a readable text colour', async () => {
    const admin = createAdmin({ keys, owner: () => null, brand: { name: 'Tom & <Jerry>', primary: '#ffd400', accent: '#102a43' } });
    const page = await admin.handle(GET('/'), undefined);
    expect(page.body).toContain('Tom &#38; &#60;Jerry&#62; API Keys');
    expect(page.body).not.toContain('<Jerry>');
    const theme = await admin.handle(GET('/assets/theme.css'), undefined);
    // A yellow button gets black text, a dark blue bar white text.
    expect(theme.body).toContain('--kg-primary: #ffd400;');
    expect(theme.body).toContain('--kg-on-primary: #000000;');
    expect(theme.body).toContain('--kg-on-accent: #ffffff;');
  });

  it('escapes the mount path into the page', async () => {
    const admin = createAdmin({ keys, owner: () => null });
    const page = await admin.handle({ ...GET('/'), base: '/a"b' }, undefined);
    expect(page.body).toContain('/a&#34;b/assets/admin.js');
  });

  it('gives the page the scope labels of a custom catalog', async () => {
    const scopes = defineScopes({
      resources: { invoices: 'Invoice' },
      actions: { read: 'read', write: { label: 'write', implies: ['read'] } },
    });
    const custom = createKeyManager({ store: memoryStore(), scopes });
    try {
      const config = await createAdmin({ keys: custom, owner: () => null }).handle(GET('/api/config'), undefined);
      const labels = (JSON.parse(config.body as string) as { scopes: Array<{ label: string }> }).scopes.map((s) => s.label);
      expect(labels).toEqual(custom.scopes.list().map((s) => s.label));
      expect(labels.join(' ')).not.toContain('Order');
    } finally {
      await custom.close();
    }
  });

  it('answers an unexpected failure with 500 and no detail, and reports it', async () => {
    const reported: unknown[] = [];
    const failing: KeyManager = {
      ...keys,
      list: async () => {
        throw new Error('driver bug: secret detail');
      },
    };
    const admin = createAdmin({ keys: failing, owner: () => null, onError: (error) => reported.push(error) });
    const answer = await admin.handle(GET('/api/keys'), undefined);
    expect(answer.status).toBe(500);
    expect(answer.body).not.toContain('secret detail');
    expect(reported).toHaveLength(1);
  });
});

describe('the origin of admin writes', () => {
  it('needs the Origin header: a request without one is not same-origin', () => {
    const check = adminOriginCheck({});
    expect(check.node({ headers: { host: 'shop.example' }, remoteAddress: '203.0.113.1' })).toBe(false);
    expect(check.node({ headers: { host: 'shop.example', origin: 'http://shop.example' }, remoteAddress: '203.0.113.1' })).toBe(true);
    expect(check.node({ headers: { host: 'shop.example', origin: 'null' }, remoteAddress: '203.0.113.1' })).toBe(false);
    expect(check.fetch({ origin: 'https://shop.example' }, 'https://shop.example/admin/api/keys')).toBe(true);
    expect(check.fetch({}, 'https://shop.example/admin/api/keys')).toBe(false);
    expect(check.fetch({ origin: 'http://shop.example' }, 'https://shop.example/admin/api/keys')).toBe(false);
  });

  it('behind a trusted TLS proxy, the https origin it forwards; from anyone else, the connection itself', () => {
    const check = adminOriginCheck({ trustedProxies: 'loopback' });
    const forwarded = {
      host: '127.0.0.1:8080',
      origin: 'https://shop.example',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'shop.example',
    };
    expect(check.node({ headers: forwarded, remoteAddress: '127.0.0.1' })).toBe(true);
    expect(check.node({ headers: forwarded, remoteAddress: '198.51.100.7' })).toBe(false);
  });

  it('with publicOrigin, only the origins given', () => {
    const check = adminOriginCheck({ publicOrigin: ['https://shop.example', 'https://admin.shop.example/'] });
    expect(check.node({ headers: { host: 'internal:8080', origin: 'https://admin.shop.example' }, remoteAddress: '10.0.0.5' })).toBe(true);
    expect(check.node({ headers: { host: 'internal:8080', origin: 'http://internal:8080' }, remoteAddress: '10.0.0.5' })).toBe(false);
    expect(check.fetch({ origin: 'https://shop.example' }, 'http://internal:8080/x')).toBe(true);
  });

  it('an Express app behind a trusted proxy accepts the page’s https write and refuses the plain one', async () => {
    const app = express();
    app.use('/admin', adminRouter({ keys, owner: () => 'shop-proxy', trustedProxies: 'loopback' }));
    const server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/admin/api/keys`;
    try {
      const body = JSON.stringify({ name: 'Via proxy', scopes: ['all'] });
      const headers = { 'content-type': 'application/json', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example' };
      const ok = await fetch(url, { method: 'POST', headers: { ...headers, origin: 'https://shop.example' }, body });
      expect(ok.status).toBe(201);
      const plain = await fetch(url, { method: 'POST', headers: { ...headers, origin: 'http://shop.example' }, body });
      expect(plain.status).toBe(403);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('the host’s part and edge cases of the API', () => {
  const write = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): AdminRequest => ({
    method,
    path,
    query: '',
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? { kind: 'none' } : { kind: 'text', text: JSON.stringify(body) },
    base: '',
    sameOrigin: true,
  });

  it('never reads an owner of undefined as "the keys without an owner": the request fails to the host', async () => {
    const { key } = await keys.create({ name: 'Platform internal', scopes: ['all'] });
    const admin = createAdmin({ keys, owner: (req: { user: { shopId?: string } }) => req.user.shopId as string });
    await expect(admin.handle(GET('/api/keys'), { user: {} })).rejects.toThrow(/owner\(request\) returned undefined/);
    await expect(admin.handle(write('POST', `/api/keys/${key.id}/deactivate`), { user: {} })).rejects.toThrow(TypeError);
    expect((await keys.get(key.id))?.active).toBe(true);
  });

  it('hands an error of the host’s owner() to the framework: an Express error handler answers its 401', async () => {
    const app = express();
    app.use(
      '/admin',
      adminRouter({
        keys,
        owner: () => {
          throw Object.assign(new Error('not signed in'), { status: 401 });
        },
      }),
    );
    app.use((error: { status?: number }, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(error.status ?? 500).send('sign in first');
    });
    const server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const reply = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/admin/api/keys`);
      expect(reply.status).toBe(401);
      expect(await reply.text()).toBe('sign in first');
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('answers a rotation that some instance did not confirm with its new token, flagged, not with a 503', async () => {
    const { key } = await keys.create({ name: 'Unconfirmed', scopes: ['all'], ownerId: 'shop-u' });
    const rotated = await keys.rotate(key.id);
    const unconfirming: KeyManager = {
      ...keys,
      rotate: async (id) => {
        throw new InvalidationUnconfirmedError('rotate', id, rotated, { instances: 2, unanswered: 1, reason: 'timeout' });
      },
    };
    const answer = await createAdmin({ keys: unconfirming, owner: () => 'shop-u' }).handle(
      write('POST', `/api/keys/${key.id}/rotate`, {}),
      undefined,
    );
    expect(answer.status).toBe(200);
    expect(answer.headers['keygate-invalidation']).toBe('unconfirmed');
    expect(JSON.parse(answer.body as string).token).toBe(rotated.token);
  });

  it('names unknown fields, bad fields and a version at odds with If-Match in one answer', async () => {
    const admin = createAdmin({ keys, owner: () => 'shop-e' });
    const created = await admin.handle(write('POST', '/api/keys', { name: '', scopes: [], foo: 1 }), undefined);
    expect(
      JSON.parse(created.body as string)
        .error.fields.map((f: { field: string }) => f.field)
        .sort(),
    ).toEqual(['foo', 'name', 'scopes']);
    const { key } = await keys.create({ name: 'Versioned', scopes: ['all'], ownerId: 'shop-e' });
    const both = await admin.handle(
      write('PATCH', `/api/keys/${key.id}`, { name: '', version: key.version + 1 }, { 'if-match': `"${key.version}"` }),
      undefined,
    );
    expect(both.status).toBe(400);
    expect(
      JSON.parse(both.body as string)
        .error.fields.map((f: { field: string }) => f.field)
        .sort(),
    ).toEqual(['name', 'version']);
    expect((await keys.get(key.id))?.name).toBe('Versioned');
  });

  it('saves nothing for an edit without fields, and reads percent-encoded ids', async () => {
    const admin = createAdmin({ keys, owner: () => 'shop-e' });
    const { key } = await keys.create({ name: 'Untouched', scopes: ['all'], ownerId: 'shop-e' });
    const empty = await admin.handle(write('PATCH', `/api/keys/${key.id}`, {}), undefined);
    expect(empty.status).toBe(200);
    expect((await keys.get(key.id))?.version).toBe(key.version);
    const encoded = `%${key.id.charCodeAt(0).toString(16).toUpperCase()}${key.id.slice(1)}`;
    expect((await admin.handle(GET(`/api/keys/${encoded}`), undefined)).status).toBe(200);
  });

  it('holds its own body limit when the host parsed the body with a larger one', async () => {
    const app = express();
    app.use(express.json({ limit: '1mb' }));
    app.use('/admin', adminRouter({ keys, owner: () => 'shop-big' }));
    const server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const reply = await fetch(`${origin}/admin/api/keys`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', origin },
        body: JSON.stringify({ name: 'big', scopes: ['all'], pad: 'x'.repeat(40_000) }),
      });
      expect(reply.status).toBe(413);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
