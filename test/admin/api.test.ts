// The admin API on every mount: the whole flow, tenants against each other on every route, same-origin writes,
// compare-and-set, every field error at once, audit events; every answer checked against the OpenAPI document.

import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { openApiDocument } from '../../src/admin/openapi.js';
import type { KeyEvent } from '../../src/events.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import { ADMIN_FRAMEWORKS, type AdminApp, authorization, MOUNT } from './mounts.js';
import { checkAnswer, checkRequest } from './openapi-check.js';

interface Reply {
  status: number;
  headers: Headers;
  body: unknown;
  text: string;
}

interface CallOptions {
  user?: string;
  body?: unknown;
  /** The Origin header: the app's own unless given (`null` leaves it out). */
  origin?: string | null;
  contentType?: string | null;
  headers?: Record<string, string>;
  /** Check the answer (and a JSON request body) against the OpenAPI document. @default true */
  documented?: boolean;
}

type Key = {
  id: string;
  name: string;
  active: boolean;
  version: number;
  scopes: string[];
  lastUsedAt: string | null;
  lastUsedIp: string | null;
};

describe('the OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const result = await new Validator().validate(structuredClone(openApiDocument) as Parameters<Validator['validate']>[0]);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(openApiDocument.openapi).toBe('3.1.0');
  });
});

describe.each(ADMIN_FRAMEWORKS)('admin API on $name', (framework) => {
  let keys: KeyManager;
  let app: AdminApp;
  const events: KeyEvent[] = [];

  beforeAll(async () => {
    keys = createKeyManager({ store: memoryStore(), onEvent: (event) => events.push(event) });
    app = await framework.start({ keys });
  });
  afterAll(async () => {
    await app?.close();
    await keys?.close();
  });

  /** A request to the mount's API; JSON in and out, checked against the OpenAPI document. */
  async function call(method: string, apiPath: string, options: CallOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { authorization: authorization(options.user ?? 'alice'), ...options.headers };
    const origin = options.origin === undefined ? app.origin : options.origin;
    if (origin !== null) headers.origin = origin;
    let body: string | undefined;
    if (options.body !== undefined) {
      body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
      const type = options.contentType === undefined ? 'application/json' : options.contentType;
      if (type !== null) headers['content-type'] = type;
    }
    const response = await fetch(`${app.url}/api${apiPath}`, { method, headers, body, redirect: 'manual' });
    const text = await response.text();
    const type = response.headers.get('content-type');
    const parsed = text !== '' && type?.startsWith('application/json') ? (JSON.parse(text) as unknown) : text === '' ? null : text;
    if (options.documented !== false) {
      checkAnswer(
        method === 'HEAD' ? 'GET' : method,
        apiPath.split('?')[0] as string,
        response.status,
        method === 'HEAD' ? null : parsed,
        type,
      );
    }
    return { status: response.status, headers: response.headers, body: parsed, text };
  }

  async function create(user: string, name: string, extra: Record<string, unknown> = {}): Promise<{ key: Key; token: string }> {
    const body = { name, scopes: ['orders:list'], ...extra };
    checkRequest('POST', '/keys', body);
    const reply = await call('POST', '/keys', { user, body });
    expect(reply.status, reply.text).toBe(201);
    return reply.body as { key: Key; token: string };
  }

  const errorOf = (reply: Reply) => (reply.body as { error: { code: string; message: string; fields?: Array<{ field: string }> } }).error;

  it('runs the whole flow: create, read, list, edit, deactivate, activate, regenerate, revoke, delete', async () => {
    const config = await call('GET', '/config');
    expect(config.status).toBe(200);
    expect((config.body as { scopes: Array<{ name: string }> }).scopes.map((s) => s.name)).toContain('orders:edit');

    const { key, token } = await create('alice', 'ERP sync', { allowedIps: '203.0.113.7', rateLimit: { limit: 10, windowMs: 60000 } });
    expect(token.startsWith(`${keys.prefix}_`)).toBe(true);
    expect(key).not.toHaveProperty('ownerId');
    expect(JSON.stringify(key)).not.toContain(token);
    expect((await keys.get(key.id))?.ownerId).toBe('shop-a');

    const read = await call('GET', `/keys/${key.id}`);
    expect(read.status).toBe(200);
    expect(read.headers.get('etag')).toBe(`"${key.version}"`);
    expect(read.headers.get('cache-control')).toBe('no-store');
    expect(read.text).not.toContain(token);

    const listed = await call('GET', '/keys');
    expect((listed.body as { keys: Key[] }).keys.map((k) => k.id)).toContain(key.id);

    const patch = { name: 'ERP sync (nightly)', scopes: ['orders:edit', 'products:list'] };
    checkRequest('PATCH', `/keys/${key.id}`, patch);
    const edited = await call('PATCH', `/keys/${key.id}`, { body: patch, headers: { 'if-match': `"${key.version}"` } });
    expect(edited.status, edited.text).toBe(200);
    const after = (edited.body as { key: Key }).key;
    expect(after.name).toBe('ERP sync (nightly)');
    expect(after.version).toBe(key.version + 1);
    expect(edited.headers.get('etag')).toBe(`"${after.version}"`);

    expect((await keys.verify(token, { ip: '203.0.113.7' })).valid).toBe(true);
    const off = await call('POST', `/keys/${key.id}/deactivate`);
    expect((off.body as { key: Key }).key.active).toBe(false);
    expect(await keys.verify(token, { ip: '203.0.113.7' })).toMatchObject({ valid: false, code: 'INACTIVE' });
    const on = await call('POST', `/keys/${key.id}/activate`, { body: {} });
    expect((on.body as { key: Key }).key.active).toBe(true);

    const rotated = await call('POST', `/keys/${key.id}/rotate`, { body: { gracePeriodMs: 60_000 } });
    expect(rotated.status, rotated.text).toBe(200);
    const fresh = (rotated.body as { token: string }).token;
    expect(fresh).not.toBe(token);
    // The old token works for the grace period, the new one at once.
    expect((await keys.verify(token, { ip: '203.0.113.7' })).valid).toBe(true);
    expect((await keys.verify(fresh, { ip: '203.0.113.7' })).valid).toBe(true);

    const revoked = await call('POST', '/revoke', { body: { token: fresh } });
    expect(revoked.status, revoked.text).toBe(200);
    expect((revoked.body as { key: Key }).key).toMatchObject({ id: key.id, active: false });
    expect(await keys.verify(fresh, { ip: '203.0.113.7' })).toMatchObject({ valid: false, code: 'INACTIVE' });

    const deleted = await call('DELETE', `/keys/${key.id}`);
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe('');
    expect(await keys.get(key.id)).toBeNull();
    expect((await call('GET', `/keys/${key.id}`)).status).toBe(404);
  });

  it("keeps tenants apart on every route: another shop's key is answered as an unknown one", async () => {
    const { key: alices, token: alicesToken } = await create('alice', 'Alice only');
    const { key: bobs } = await create('bob', 'Bob only');
    const unknown = 'k_does_not_exist';
    const routes: Array<[string, (id: string) => string, unknown?]> = [
      ['GET', (id) => `/keys/${id}`],
      ['PATCH', (id) => `/keys/${id}`, { name: 'taken over' }],
      ['POST', (id) => `/keys/${id}/activate`],
      ['POST', (id) => `/keys/${id}/deactivate`],
      ['POST', (id) => `/keys/${id}/rotate`, {}],
      ['DELETE', (id) => `/keys/${id}`],
    ];
    for (const [method, path, body] of routes) {
      const theirs = await call(method, path(alices.id), { user: 'bob', body });
      const none = await call(method, path(unknown), { user: 'bob', body });
      expect(theirs.status, `${method} ${path('…')}`).toBe(404);
      expect(errorOf(theirs).code).toBe('KEY_NOT_FOUND');
      // The same answer as for an id that does not exist, but for the id itself.
      expect(errorOf(theirs).message.replace(alices.id, 'ID')).toBe(errorOf(none).message.replace(unknown, 'ID'));
    }
    const bobsList = (await call('GET', '/keys?limit=100', { user: 'bob' })).body as { keys: Key[] };
    expect(bobsList.keys.map((k) => k.id)).toContain(bobs.id);
    expect(bobsList.keys.map((k) => k.id)).not.toContain(alices.id);
    const revoke = await call('POST', '/revoke', { user: 'bob', body: { token: alicesToken } });
    expect(revoke.status).toBe(404);
    // Nothing of Alice's key changed.
    const still = await keys.get(alices.id);
    expect(still).toMatchObject({ name: 'Alice only', active: true, version: alices.version });
    expect((await keys.verify(alicesToken)).valid).toBe(true);
  });

  it('refuses writes without a same-origin Origin, and bodies that are not JSON', async () => {
    const { key } = await create('alice', 'Origin target');
    const foreign = await call('POST', `/keys/${key.id}/deactivate`, { origin: 'http://evil.example' });
    expect(foreign.status).toBe(403);
    expect(errorOf(foreign).code).toBe('ORIGIN_MISMATCH');
    const none = await call('POST', '/keys', { origin: null, body: { name: 'x', scopes: ['all'] } });
    expect(none.status).toBe(403);
    const sameHostOtherPort = await call('DELETE', `/keys/${key.id}`, { origin: app.origin.replace(/:\d+$/, ':1') });
    expect(sameHostOtherPort.status).toBe(403);
    // A form post (text/plain) from the own origin: refused by type.
    const form = await call('POST', '/keys', { body: JSON.stringify({ name: 'x', scopes: ['all'] }), contentType: 'text/plain' });
    expect(form.status).toBe(415);
    expect(errorOf(form).code).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect((await keys.get(key.id))?.active).toBe(true);
    const bad = await call('POST', '/keys', { body: '{"name":' });
    expect(bad.status).toBe(400);
    expect(errorOf(bad).code).toBe('INVALID_JSON');
    const large = await call('POST', '/keys', { body: { name: 'big', scopes: ['all'], pad: 'x'.repeat(40_000) } });
    expect(large.status).toBe(413);
    // Reads need no Origin.
    expect((await call('GET', `/keys/${key.id}`, { origin: null })).status).toBe(200);
  });

  it('names every field at fault at once, and refuses a too-long name rather than cutting it', async () => {
    const reply = await call('POST', '/keys', {
      body: { name: 'n'.repeat(101), scopes: ['orders:lst'], allowedIps: '10.0.0.*', rateLimit: { limit: 0, windowMs: 1000 } },
    });
    expect(reply.status).toBe(400);
    const error = errorOf(reply);
    expect(error.code).toBe('VALIDATION_FAILED');
    expect(error.fields?.map((f) => f.field).sort()).toEqual(['allowedIps', 'name', 'rateLimit.limit', 'scopes']);
    const missing = await call('POST', '/keys', { body: {} });
    expect(
      errorOf(missing)
        .fields?.map((f) => f.field)
        .sort(),
    ).toEqual(['name', 'scopes']);
    const unknownField = await call('POST', '/keys', { body: { name: 'x', scopes: ['all'], ownerId: 'shop-b' } });
    expect(unknownField.status).toBe(400);
    expect(errorOf(unknownField).fields?.map((f) => f.field)).toEqual(['ownerId']);
    const filter = await call('GET', '/keys?active=maybe&limit=0');
    expect(
      errorOf(filter)
        .fields?.map((f) => f.field)
        .sort(),
    ).toEqual(['active', 'limit']);
  });

  it('saves an edit only at the version it was read at: 412 for If-Match, 409 for the body, nothing lost', async () => {
    const { key } = await create('alice', 'Contended');
    const first = await call('PATCH', `/keys/${key.id}`, { body: { name: 'First' }, headers: { 'if-match': `"${key.version}"` } });
    expect(first.status).toBe(200);
    const stale = await call('PATCH', `/keys/${key.id}`, { body: { name: 'Second' }, headers: { 'if-match': `"${key.version}"` } });
    expect(stale.status).toBe(412);
    expect(errorOf(stale).code).toBe('VERSION_CONFLICT');
    const staleBody = await call('PATCH', `/keys/${key.id}`, { body: { name: 'Third', version: key.version } });
    expect(staleBody.status).toBe(409);
    expect((await keys.get(key.id))?.name).toBe('First');
    const current = (first.body as { key: Key }).key.version;
    const ok = await call('PATCH', `/keys/${key.id}`, { body: { name: 'Fourth', version: current } });
    expect(ok.status).toBe(200);
  });

  it('asks the host on every API call: a viewer may list and read, not change', async () => {
    const { key } = await create('alice', 'Viewed');
    expect((await call('GET', `/keys/${key.id}`, { user: 'viewer' })).status).toBe(200);
    const denied = await call('POST', `/keys/${key.id}/deactivate`, { user: 'viewer' });
    expect(denied.status).toBe(403);
    expect(errorOf(denied).code).toBe('FORBIDDEN');
    expect((await keys.get(key.id))?.active).toBe(true);
  });

  it('records who made each change and which fields, never a value', async () => {
    const { key, token } = await create('alice', 'Audited');
    await call('PATCH', `/keys/${key.id}`, { body: { name: 'Audited twice', allowedIps: '198.51.100.1' } });
    await call('POST', `/keys/${key.id}/deactivate`);
    const mine = events.filter((e) => 'keyId' in e && e.keyId === key.id);
    expect(mine.map((e) => e.type)).toEqual(['created', 'updated', 'deactivated']);
    for (const event of mine) expect(event).toMatchObject({ actor: 'user:alice', ownerId: 'shop-a' });
    expect(mine[1]).toMatchObject({ changed: ['name', 'allowedIps'] });
    expect(JSON.stringify(mine)).not.toContain(token);
    expect(JSON.stringify(mine)).not.toContain('198.51.100.1');
  });

  it('lists with filters and cursor pages', async () => {
    const soon = new Date(Date.now() + 3_600_000).toISOString();
    const { key: expiring } = await create('bob', 'Expiring', { expiresAt: soon });
    const { key: inactive } = await create('bob', 'Inactive', { active: false });
    const filtered = (
      await call('GET', `/keys?expiringBefore=${encodeURIComponent(new Date(Date.now() + 7_200_000).toISOString())}`, { user: 'bob' })
    ).body as { keys: Key[] };
    expect(filtered.keys.map((k) => k.id)).toEqual([expiring.id]);
    const off = (await call('GET', '/keys?active=false', { user: 'bob' })).body as { keys: Key[] };
    expect(off.keys.map((k) => k.id)).toEqual([inactive.id]);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
      const page = (await call('GET', `/keys?limit=1${query}`, { user: 'bob' })).body as { keys: Key[]; nextCursor: string | null };
      expect(page.keys.length).toBeLessThanOrEqual(1);
      seen.push(...page.keys.map((k) => k.id));
      cursor = page.nextCursor;
    } while (cursor !== null);
    const all = (await call('GET', '/keys?limit=100', { user: 'bob' })).body as { keys: Key[] };
    expect(seen).toEqual(all.keys.map((k) => k.id));
    const unused = (await call('GET', `/keys?unusedSince=${encodeURIComponent(new Date().toISOString())}`, { user: 'bob' })).body as {
      keys: Key[];
    };
    expect(unused.keys.length).toBe(all.keys.length);
  });

  it('serves the page without inline script or style, its files, and the OpenAPI document', async () => {
    const signedIn = { authorization: authorization('alice') };
    const redirect = await fetch(app.url, { headers: signedIn, redirect: 'manual' });
    expect(redirect.status).toBe(308);
    expect(redirect.headers.get('location')).toBe(`${MOUNT}/`);
    const page = await fetch(`${app.url}/`, { headers: signedIn });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await page.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
    expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i);
    expect(html).toContain(`${MOUNT}/assets/admin.js`);
    for (const file of ['admin.js', 'admin.css', 'theme.css']) {
      const asset = await fetch(`${app.url}/assets/${file}`, { headers: signedIn });
      expect(asset.status, file).toBe(200);
      const etag = asset.headers.get('etag') as string;
      const again = await fetch(`${app.url}/assets/${file}`, { headers: { ...signedIn, 'if-none-match': etag } });
      expect(again.status).toBe(304);
    }
    const doc = await fetch(`${app.url}/openapi.json`, { headers: signedIn });
    const served = (await doc.json()) as { servers: Array<{ url: string }>; paths: object };
    expect(served.servers).toEqual([{ url: `${MOUNT}/api` }]);
    expect(Object.keys(served.paths)).toEqual(Object.keys(openApiDocument.paths));
    expect((await fetch(`${app.url}/nope`, { headers: signedIn })).status).toBe(404);
    // The host's sign-in runs first: without it, the host answers.
    expect((await fetch(`${app.url}/api/keys`)).status).toBe(401);
  });

  it('answers a method a route does not take with 405 and Allow', async () => {
    const reply = await call('PUT', '/keys', { body: {}, documented: false });
    expect(reply.status).toBe(405);
    expect(reply.headers.get('allow')).toBe('GET, POST');
  });
});

describe('a host body parser in front of the mount', () => {
  for (const framework of ADMIN_FRAMEWORKS.filter((f) => f.name.startsWith('Express') || f.name.startsWith('Koa'))) {
    it(`${framework.name}: the admin takes the body it parsed`, async () => {
      const keys = createKeyManager({ store: memoryStore() });
      const app = await framework.start({ keys, ownBodyParser: true });
      try {
        const reply = await fetch(`${app.url}/api/keys`, {
          method: 'POST',
          headers: { authorization: authorization('alice'), origin: app.origin, 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'Parsed first', scopes: ['all'] }),
        });
        expect(reply.status).toBe(201);
        expect(((await reply.json()) as { key: Key }).key.name).toBe('Parsed first');
      } finally {
        await app.close();
        await keys.close();
      }
    });
  }
});
