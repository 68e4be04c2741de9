// The B2B store example without a browser: keygate's admin API as the example mounts it, and the guarded store API, on SQLite.

import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeyEvent } from '../../src/index.js';
import { ADMIN_PATH, type RunningApp, startB2bStore } from './b2b-store-support.js';

let running: RunningApp;
let admin: { user: string; password: string };
const events: KeyEvent[] = [];

beforeAll(async () => {
  running = await startB2bStore({ keyManager: { onEvent: (event) => events.push(event) } });
  admin = { user: 'admin', password: running.adminPassword };
});

afterAll(async () => {
  await running?.close();
});

const http = () => request(running.baseUrl);
const API = `${ADMIN_PATH}/api`;

/** Admin API calls, signed in and sent as the page sends them: JSON, from the app's own origin. */
const adminCall = {
  get: (path: string) => http().get(`${API}${path}`).auth(admin.user, admin.password),
  post: (path: string, body?: object) => {
    const req = http().post(`${API}${path}`).auth(admin.user, admin.password).set('Origin', running.baseUrl);
    return body === undefined ? req : req.send(body);
  },
  patch: (path: string, body: object) =>
    http().patch(`${API}${path}`).auth(admin.user, admin.password).set('Origin', running.baseUrl).send(body),
  delete: (path: string) => http().delete(`${API}${path}`).auth(admin.user, admin.password).set('Origin', running.baseUrl),
};

interface Listed {
  id: string;
  name: string;
  active: boolean;
  scopes: string[];
  allowedIps: string[];
  rateLimit: { limit: number; windowMs: number } | null;
  remaining: number | null;
  refill: { amount: number; intervalMs: number } | null;
  version: number;
}

/** Every key the admin API lists, page after page. */
async function allKeys(): Promise<Listed[]> {
  const keys: Listed[] = [];
  let cursor: string | null = null;
  do {
    const res = await adminCall.get(`/keys?limit=100${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`).expect(200);
    keys.push(...(res.body.keys as Listed[]));
    cursor = res.body.nextCursor as string | null;
  } while (cursor !== null);
  return keys;
}

const keyCount = async (): Promise<number> => (await allKeys()).length;
const listed = async (id: string): Promise<Listed | undefined> => (await allKeys()).find((k) => k.id === id);

describe('B2B store example: the admin sign-in', () => {
  it('asks for the admin password on the page, its files and the admin API', async () => {
    const page = await http().get(`${ADMIN_PATH}/`).set('Accept', 'text/html');
    expect(page.status).toBe(401);
    expect(page.headers['www-authenticate']).toMatch(/^Basic realm="keygate admin"/);
    expect(page.text).toContain('Sign in');
    await http().get(`${ADMIN_PATH}/assets/admin.js`).expect(401);
    await http().get(`${ADMIN_PATH}/openapi.json`).expect(401);
    const api = await http().get(`${API}/keys`);
    expect(api.status).toBe(401);
    expect(api.body.error.code).toBe('admin_auth_required');
    // A write from the page's own origin is no way around it.
    const before = await keyCount();
    const write = await http()
      .post(`${API}/keys`)
      .set('Origin', running.baseUrl)
      .send({ name: 'x', scopes: ['all'] });
    expect(write.status).toBe(401);
    expect(await keyCount()).toBe(before);
  });

  it('refuses a wrong password, a wrong user name and a malformed header', async () => {
    await http().get(`${API}/keys`).auth('admin', `${admin.password}x`).expect(401);
    await http().get(`${API}/keys`).auth('root', admin.password).expect(401);
    await http().get(`${API}/keys`).set('Authorization', 'Basic !!!').expect(401);
  });

  it('sends / to the page, and serves it, branded, with a content security policy, to the admin', async () => {
    await http().get('/').expect(302).expect('Location', `${ADMIN_PATH}/`);
    await http().get(ADMIN_PATH).auth(admin.user, admin.password).expect(308).expect('Location', `${ADMIN_PATH}/`);
    const res = await http().get(`${ADMIN_PATH}/`).auth(admin.user, admin.password).expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.text).toContain('<title>B2B Store API Keys</title>');
    expect(res.text).toContain(`src="${ADMIN_PATH}/assets/admin.js"`);
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    await http()
      .get(`${ADMIN_PATH}/assets/admin.js`)
      .auth(admin.user, admin.password)
      .expect(200)
      .expect('Content-Type', /javascript/);
  });

  it('refuses writes that are not JSON, come from another origin or name none, and creates nothing', async () => {
    const before = await keyCount();
    const form = await adminCall.post('/keys').set('Content-Type', 'text/plain').send('{"name":"x","scopes":["all"]}');
    expect(form.status).toBe(415);
    expect(form.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    const crossSite = await adminCall.post('/keys', { name: 'x', scopes: ['all'] }).set('Origin', 'https://attacker.example');
    expect(crossSite.status).toBe(403);
    expect(crossSite.body.error.code).toBe('ORIGIN_MISMATCH');
    const noOrigin = await http()
      .post(`${API}/keys`)
      .auth(admin.user, admin.password)
      .send({ name: 'x', scopes: ['all'] });
    expect(noOrigin.status).toBe(403);
    expect(noOrigin.body.error.code).toBe('ORIGIN_MISMATCH');
    expect(await keyCount()).toBe(before);
  });

  it('manages the keys without an owner (the shop has one tenant) and records each change as made by admin', async () => {
    const made = await running.keys.create({ name: 'Made in code', scopes: ['orders:list'] });
    expect((await listed(made.key.id))?.name).toBe('Made in code');

    events.length = 0;
    const created = await adminCall.post('/keys', { name: 'Through the page', scopes: ['orders:list'] }).expect(201);
    const id = created.body.key.id as string;
    expect((await running.keys.get(id))?.ownerId).toBeNull();
    await adminCall.post(`/keys/${id}/deactivate`, {}).expect(200);
    await adminCall.delete(`/keys/${id}`).expect(204);
    expect(events.map((e) => [e.type, 'actor' in e ? e.actor : undefined])).toEqual([
      ['created', 'admin'],
      ['deactivated', 'admin'],
      ['deleted', 'admin'],
    ]);

    // A key of another owner, made in code, is not one of the shop's.
    const foreign = await running.keys.create({ name: 'Other tenant', scopes: ['orders:list'], ownerId: 'tenant-2' });
    expect(await listed(foreign.key.id)).toBeUndefined();
    const read = await adminCall.get(`/keys/${foreign.key.id}`);
    expect(read.status).toBe(404);
    expect(read.body.error.code).toBe('KEY_NOT_FOUND');
    await running.keys.delete(made.key.id);
    await running.keys.delete(foreign.key.id);
  });
});

describe('B2B store example: the scopes the form offers', () => {
  it('lists the seven B2B Wave scopes with their labels and the IP rule', async () => {
    const res = await adminCall.get('/config').expect(200);
    expect(res.body.scopes.map((s: { label: string }) => s.label)).toEqual([
      'All',
      'Order list',
      'Order edit',
      'Product list',
      'Product edit',
      'Customer list',
      'Customer edit',
    ]);
    expect(res.body.ipRule).toMatch(/comma/i);
  });
});

describe('B2B store example: validation errors name their field', () => {
  it('a wildcard IP is refused with the entry and the reason, and nothing is created', async () => {
    const before = await keyCount();
    const res = await adminCall.post('/keys', { name: 'Office', scopes: ['orders:list'], allowedIps: '203.0.113.7,10.0.0.*' });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('VALIDATION_FAILED');
    expect(res.body.error.fields).toEqual([
      { field: 'allowedIps', message: "entry 2 '10.0.0.*': wildcard masks are not allowed; list each exact address" },
    ]);
    expect(await keyCount()).toBe(before);
  });

  it('a blank name and an empty scope list are refused together, each on its field', async () => {
    const res = await adminCall.post('/keys', { name: '  ', scopes: [] });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('VALIDATION_FAILED');
    expect(res.body.error.fields.map((f: { field: string }) => f.field)).toEqual(['name', 'scopes']);
  });
});

describe('B2B store example: a key through its whole life', () => {
  let id = '';
  let token = '';
  let version = 0;

  const orders = () => http().get('/api/orders').set('Authorization', `Bearer ${token}`);
  const edit = async (changes: object) => {
    const res = await adminCall.patch(`/keys/${id}`, { ...changes, version });
    expect(res.status).toBe(200);
    version = res.body.key.version;
    return res.body.key;
  };

  it('is created with Order list only; the token is returned once and never listed', async () => {
    const res = await adminCall.post('/keys', { name: 'ERP sync', active: true, scopes: ['orders:list'], allowedIps: '' });
    expect(res.status).toBe(201);
    token = res.body.token;
    id = res.body.key.id;
    version = res.body.key.version;
    expect(token).toMatch(/^kg_[0-9A-Za-z]{38}$/);
    expect(res.body.key.scopeLabels).toEqual(['Order list']);
    const list = await adminCall.get('/keys?limit=100').expect(200);
    expect(list.text).not.toContain(token);
    expect(list.text).not.toContain(token.slice(3, 35));
    expect(await listed(id)).toMatchObject({ name: 'ERP sync', active: true, scopes: ['orders:list'], allowedIps: [] });
  });

  it('lists orders (200) with Bearer or X-API-Key, and may not create one (403)', async () => {
    const ok = await orders();
    expect(ok.status).toBe(200);
    expect(ok.body.data.length).toBeGreaterThan(0);
    await http().get('/api/orders').set('X-API-Key', token).expect(200);
    const create = await http().post('/api/orders').set('Authorization', `Bearer ${token}`).send({ customerId: 'cus_1001' });
    expect(create.status).toBe(403);
    expect(create.body.error.code).toBe('insufficient_scope');
    const products = await http().get('/api/products').set('Authorization', `Bearer ${token}`);
    expect(products.status).toBe(403);
  });

  it('answers 401 without a key or with a wrong one', async () => {
    const none = await http().get('/api/orders');
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('invalid_api_key');
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    const wrong = await http()
      .get('/api/orders')
      .set('Authorization', `Bearer ${token.slice(0, -1)}${token.endsWith('a') ? 'b' : 'a'}`);
    expect(wrong.status).toBe(401);
  });

  it('unchecking Active refuses it (401); re-checking restores it (200)', async () => {
    expect((await edit({ active: false })).active).toBe(false);
    const off = await orders();
    expect(off.status).toBe(401);
    expect(off.body.error.code).toBe('invalid_api_key');
    expect((await edit({ active: true })).active).toBe(true);
    await orders().expect(200);
  });

  it("the list's Active switch (deactivate, activate) refuses it (401) and restores it (200)", async () => {
    const off = await adminCall.post(`/keys/${id}/deactivate`, {}).expect(200);
    expect(off.body.key.active).toBe(false);
    await orders().expect(401);
    const on = await adminCall.post(`/keys/${id}/activate`, {}).expect(200);
    expect(on.body.key.active).toBe(true);
    version = on.body.key.version;
    await orders().expect(200);
  });

  it('an allow-list without this client refuses it (403); with 127.0.0.1 it works again', async () => {
    expect((await edit({ allowedIps: '203.0.113.9' })).allowedIps).toEqual(['203.0.113.9']);
    const blocked = await orders();
    expect(blocked.status).toBe(403);
    expect(blocked.body.error.code).toBe('ip_not_allowed');
    // A client cannot talk its way onto the list with a forwarding header.
    await orders().set('X-Forwarded-For', '203.0.113.9').expect(403);
    await edit({ allowedIps: '127.0.0.1' });
    await orders().expect(200);
  });

  it('Order edit grants creating orders (201) and, by implication, listing them', async () => {
    await edit({ scopes: ['orders:edit'] });
    const created = await http().post('/api/orders').set('Authorization', `Bearer ${token}`).send({ customerId: 'cus_1002' });
    expect(created.status).toBe(201);
    expect(created.body.data).toMatchObject({ customerId: 'cus_1002' });
    const list = await orders().expect(200);
    expect(list.body.data.map((o: { id: string }) => o.id)).toContain(created.body.data.id);
  });

  it('an edit based on a stale version is refused (409 with version, 412 with If-Match) and changes nothing', async () => {
    const inBody = await adminCall.patch(`/keys/${id}`, { name: 'Renamed', version: version - 1 });
    expect(inBody.status).toBe(409);
    expect(inBody.body.error.code).toBe('VERSION_CONFLICT');
    const header = await adminCall.patch(`/keys/${id}`, { name: 'Renamed' }).set('If-Match', `"${version - 1}"`);
    expect(header.status).toBe(412);
    expect(header.body.error.code).toBe('VERSION_CONFLICT');
    expect(await listed(id)).toMatchObject({ name: 'ERP sync', version });
    // The key's current version, as its ETag, lets the edit through.
    const read = await adminCall.get(`/keys/${id}`).expect(200);
    expect(read.headers.etag).toBe(`"${version}"`);
    const renamed = await adminCall.patch(`/keys/${id}`, { name: 'ERP sync 2' }).set('If-Match', read.headers.etag as string);
    expect(renamed.status).toBe(200);
    expect(renamed.body.key.name).toBe('ERP sync 2');
  });

  it('deleting it refuses the token for good (401); deleting again is 404', async () => {
    await adminCall.delete(`/keys/${id}`).expect(204);
    await orders().expect(401);
    const again = await adminCall.delete(`/keys/${id}`);
    expect(again.status).toBe(404);
    expect(again.body.error.code).toBe('KEY_NOT_FOUND');
    const edited = await adminCall.patch(`/keys/${id}`, { active: true });
    expect(edited.status).toBe(404);
  });
});

describe('B2B store example: rate limits and usage quotas', () => {
  const shop = (token: string) => http().get('/api/orders').set('Authorization', `Bearer ${token}`);
  const create = async (body: object): Promise<{ id: string; token: string; key: Listed }> => {
    const res = await adminCall.post('/keys', { scopes: ['orders:list'], allowedIps: '', ...body });
    expect(res.status).toBe(201);
    return { id: res.body.key.id, token: res.body.token, key: res.body.key };
  };
  const fieldsOf = (res: { body: { error: { fields: Array<{ field: string }> } } }) => res.body.error.fields.map((f) => f.field);

  it('a key made with 2 requests a minute is listed with it; its third request is refused (429 rate_limited)', async () => {
    const { id, token, key } = await create({ name: 'Two a minute', rateLimit: { limit: 2, windowMs: 60_000 } });
    expect(key).toMatchObject({ rateLimit: { limit: 2, windowMs: 60_000 }, remaining: null, refill: null });
    expect(await listed(id)).toMatchObject({ rateLimit: { limit: 2, windowMs: 60_000 }, remaining: null, refill: null });

    const first = await shop(token).expect(200);
    expect(first.headers['ratelimit-policy']).toBe('"key";q=2;w=60');
    expect(first.headers.ratelimit).toMatch(/^"key";r=1;t=\d+$/);
    const second = await shop(token).expect(200);
    expect(second.headers.ratelimit).toMatch(/^"key";r=0;t=\d+$/);
    const third = await shop(token);
    expect(third.status).toBe(429);
    expect(third.body.error.code).toBe('rate_limited');
    expect(typeof third.body.error.message).toBe('string');
    expect(third.headers['ratelimit-policy']).toBe('"key";q=2;w=60');
    // The wait runs to the end of this minute and, the sliding window being full, up to 30 s more.
    const wait = Number(third.headers['retry-after']);
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(wait).toBeLessThanOrEqual(90);
    expect(third.headers.ratelimit).toBe(`"key";r=0;t=${wait}`);
  });

  it('a key made with 1 use passes once, then is refused (429 usage_exceeded); the list shows 0 left', async () => {
    const { id, token, key } = await create({ name: 'One use', remaining: 1 });
    expect(key.remaining).toBe(1);
    await shop(token).expect(200);
    const second = await shop(token);
    expect(second.status).toBe(429);
    expect(second.body.error.code).toBe('usage_exceeded');
    // No refill: no time at which it would pass.
    expect(second.headers['retry-after']).toBeUndefined();
    expect((await listed(id))?.remaining).toBe(0);
  });

  it('a raised rate limit lets a refused key through again, and a removed one lifts it', async () => {
    const { id, token } = await create({ name: 'Raised later', rateLimit: { limit: 1, windowMs: 3_600_000 } });
    await shop(token).expect(200);
    expect((await shop(token)).status).toBe(429);

    const raised = await adminCall.patch(`/keys/${id}`, { rateLimit: { limit: 3, windowMs: 3_600_000 } });
    expect(raised.status).toBe(200);
    expect(raised.body.key.rateLimit).toEqual({ limit: 3, windowMs: 3_600_000 });
    // The counter kept the use made so far: two more in this hour.
    await shop(token).expect(200);
    await shop(token).expect(200);
    expect((await shop(token)).status).toBe(429);

    const removed = await adminCall.patch(`/keys/${id}`, { rateLimit: null });
    expect(removed.body.key.rateLimit).toBeNull();
    expect((await listed(id))?.rateLimit).toBeNull();
    for (let i = 0; i < 5; i++) await shop(token).expect(200);
  });

  it('the uses left are set anew by an edit that sends them, and kept by one that does not', async () => {
    const { id, token } = await create({ name: 'Metered', remaining: 0 });
    const spent = await shop(token);
    expect(spent.status).toBe(429);
    expect(spent.body.error.code).toBe('usage_exceeded');

    const refilled = await adminCall.patch(`/keys/${id}`, { remaining: 3, refill: { amount: 1000, intervalMs: 86_400_000 } });
    expect(refilled.status).toBe(200);
    expect(refilled.body.key).toMatchObject({ remaining: 3, refill: { amount: 1000, intervalMs: 86_400_000 } });
    await shop(token).expect(200);
    expect((await listed(id))?.remaining).toBe(2);

    // Renaming leaves the count where the key's use has brought it.
    const renamed = await adminCall.patch(`/keys/${id}`, { name: 'Metered ERP' });
    expect(renamed.status).toBe(200);
    expect(await listed(id)).toMatchObject({ name: 'Metered ERP', remaining: 2, refill: { amount: 1000, intervalMs: 86_400_000 } });

    const unlimited = await adminCall.patch(`/keys/${id}`, { remaining: null, refill: null });
    expect(unlimited.body.key).toMatchObject({ remaining: null, refill: null });
    for (let i = 0; i < 4; i++) await shop(token).expect(200);
  });

  it('bad limits are refused (400) on the field at fault, and change nothing', async () => {
    const before = await keyCount();
    const zero = await adminCall.post('/keys', { name: 'Zero', scopes: ['orders:list'], rateLimit: { limit: 0, windowMs: 60_000 } });
    expect(zero.status).toBe(400);
    expect(zero.body.error.code).toBe('VALIDATION_FAILED');
    expect(fieldsOf(zero)).toEqual(['rateLimit.limit']);
    expect(zero.body.error.fields[0].message).toMatch(/whole number/);
    const notAnObject = await adminCall.post('/keys', { name: 'Fast', scopes: ['orders:list'], rateLimit: 'fast' });
    expect(notAnObject.status).toBe(400);
    expect(fieldsOf(notAnObject)).toEqual(['rateLimit']);
    const negative = await adminCall.post('/keys', { name: 'Negative', scopes: ['orders:list'], remaining: -1 });
    expect(negative.status).toBe(400);
    expect(fieldsOf(negative)).toEqual(['remaining']);
    const noInterval = await adminCall.post('/keys', {
      name: 'No interval',
      scopes: ['orders:list'],
      remaining: 10,
      refill: { amount: 10, intervalMs: 0 },
    });
    expect(noInterval.status).toBe(400);
    expect(fieldsOf(noInterval)).toEqual(['refill.intervalMs']);
    expect(await keyCount()).toBe(before);

    const { id, key } = await create({ name: 'Kept as it was', rateLimit: { limit: 2, windowMs: 60_000 } });
    const badWindow = await adminCall.patch(`/keys/${id}`, { rateLimit: { limit: 2, windowMs: 'x' }, version: key.version });
    expect(badWindow.status).toBe(400);
    expect(fieldsOf(badWindow)).toEqual(['rateLimit.windowMs']);
    expect(badWindow.body.error.fields[0].message).toMatch(/"x"/);
    const badLimit = await adminCall.patch(`/keys/${id}`, { name: 'Renamed', rateLimit: { limit: 0, windowMs: 60_000 } });
    expect(badLimit.status).toBe(400);
    expect(fieldsOf(badLimit)).toEqual(['rateLimit.limit']);
    expect(await listed(id)).toMatchObject({ name: 'Kept as it was', rateLimit: { limit: 2, windowMs: 60_000 }, version: key.version });
  });
});
