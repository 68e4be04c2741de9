// The B2B store example without a browser: its admin JSON API and the guarded store API, on SQLite.

import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startB2bStore, type RunningApp } from './b2b-store-support.js';

let running: RunningApp;
let admin: { user: string; password: string };

beforeAll(async () => {
  running = await startB2bStore();
  admin = { user: 'admin', password: running.adminPassword };
});

afterAll(async () => {
  await running?.close();
});

const http = () => request(running.baseUrl);

/** Admin API calls, signed in and sent as JSON like the page does. */
const adminCall = {
  get: (path: string) => http().get(`/admin/api${path}`).auth(admin.user, admin.password),
  post: (path: string, body: object) => http().post(`/admin/api${path}`).auth(admin.user, admin.password).send(body),
  patch: (path: string, body: object) => http().patch(`/admin/api${path}`).auth(admin.user, admin.password).send(body),
  delete: (path: string) => http().delete(`/admin/api${path}`).auth(admin.user, admin.password),
};

async function keyCount(): Promise<number> {
  const res = await adminCall.get('/keys').expect(200);
  return (res.body as { keys: unknown[] }).keys.length;
}

describe('B2B store example: admin page protection', () => {
  it('asks for the admin password on the page and the admin API', async () => {
    const page = await http().get('/admin/api-keys').set('Accept', 'text/html');
    expect(page.status).toBe(401);
    expect(page.headers['www-authenticate']).toMatch(/^Basic realm="keygate admin"/);
    const api = await http().get('/admin/api/keys');
    expect(api.status).toBe(401);
    expect(api.body.error.code).toBe('admin_auth_required');
  });

  it('refuses a wrong password and a wrong user name', async () => {
    await http().get('/admin/api/keys').auth('admin', `${admin.password}x`).expect(401);
    await http().get('/admin/api/keys').auth('root', admin.password).expect(401);
    await http().get('/admin/api/keys').set('Authorization', 'Basic !!!').expect(401);
  });

  it('serves the page, with a content security policy, to the admin', async () => {
    const res = await http().get('/admin/api-keys').auth(admin.user, admin.password).expect(200);
    expect(res.text).toContain('<h1>API Keys</h1>');
    expect(res.text).toContain('+ Create API key');
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    await http()
      .get('/admin/assets/admin.js')
      .auth(admin.user, admin.password)
      .expect(200)
      .expect('Content-Type', /javascript/);
  });

  it('the page has the rate limit and quota columns and controls, each control labelled, and no inline script', async () => {
    const html = (await http().get('/admin/api-keys').auth(admin.user, admin.password).expect(200)).text;
    const headings = [...html.matchAll(/<th scope="col">([^<]*)<\/th>/g)].map((m) => m[1]);
    expect(headings).toEqual(['Name', 'Scope', 'Allowed IPs', 'Rate limit', 'Uses left', 'Active', 'Created', 'Last used', 'Key']);
    expect(html).toContain('<legend>Rate limit</legend>');
    expect(html).toContain('<legend>Usage quota</legend>');
    const controls = [...html.matchAll(/<(input|select)\b[^>]*\bid="([^"]+)"/g)].map((m) => m[2]);
    expect(controls).toEqual(
      expect.arrayContaining(['key-rate-limit', 'key-rate-window', 'key-remaining', 'key-refill-amount', 'key-refill-interval']),
    );
    for (const id of controls) {
      const labelled = html.includes(`<label for="${id}"`) || new RegExp(`<label[^>]*>\\s*<input[^>]*id="${id}"`).test(html);
      expect(labelled, `a label for #${id}`).toBe(true);
    }
    // The content security policy allows only the page's own script file.
    expect([...html.matchAll(/<script\b[^>]*>/g)].map((m) => m[0])).toEqual(['<script type="module" src="/admin/assets/admin.js">']);
    expect(html).not.toMatch(/\son[a-z]+=/i);
  });

  it('refuses writes that are not JSON or come from another origin, and creates nothing', async () => {
    const before = await keyCount();
    const form = await http()
      .post('/admin/api/keys')
      .auth(admin.user, admin.password)
      .set('Content-Type', 'text/plain')
      .send('{"name":"x","scopes":["all"]}');
    expect(form.status).toBe(415);
    const crossSite = await http()
      .post('/admin/api/keys')
      .auth(admin.user, admin.password)
      .set('Origin', 'https://attacker.example')
      .send({ name: 'x', scopes: ['all'] });
    expect(crossSite.status).toBe(403);
    expect(await keyCount()).toBe(before);
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
    expect(res.body.error.field).toBe('allowedIps');
    expect(res.body.error.reason).toBe("entry 2 '10.0.0.*': wildcard masks are not allowed; list each exact address");
    expect(await keyCount()).toBe(before);
  });

  it('a blank name and an empty scope list are refused on their own fields', async () => {
    const noName = await adminCall.post('/keys', { name: '  ', scopes: ['orders:list'] });
    expect(noName.status).toBe(400);
    expect(noName.body.error.field).toBe('name');
    const noScope = await adminCall.post('/keys', { name: 'No scope', scopes: [] });
    expect(noScope.status).toBe(400);
    expect(noScope.body.error.field).toBe('scopes');
  });
});

describe('B2B store example: a key through its whole life', () => {
  let id = '';
  let token = '';
  let version = 0;

  const orders = () => http().get('/api/orders').set('Authorization', `Bearer ${token}`);
  const edit = async (changes: object) => {
    const res = await adminCall.patch(`/keys/${id}`, { ...changes, expectedVersion: version });
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
    const list = await adminCall.get('/keys').expect(200);
    expect(list.text).not.toContain(token);
    expect(list.text).not.toContain(token.slice(3, 35));
    const listed = list.body.keys.find((k: { id: string }) => k.id === id);
    expect(listed).toMatchObject({ name: 'ERP sync', active: true, scopes: ['orders:list'], allowedIps: [] });
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

  it('an edit based on a stale version is refused (409) and changes nothing', async () => {
    const res = await adminCall.patch(`/keys/${id}`, { name: 'Renamed', expectedVersion: version - 1 });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('VERSION_CONFLICT');
    const key = (await adminCall.get('/keys')).body.keys.find((k: { id: string }) => k.id === id);
    expect(key.name).toBe('ERP sync');
  });

  it('deleting it refuses the token for good (401); deleting again is 404', async () => {
    await adminCall.delete(`/keys/${id}`).expect(204);
    await orders().expect(401);
    await adminCall.delete(`/keys/${id}`).expect(404);
    const edited = await adminCall.patch(`/keys/${id}`, { active: true });
    expect(edited.status).toBe(404);
  });
});

describe('B2B store example: rate limits and usage quotas', () => {
  interface Listed {
    id: string;
    name: string;
    rateLimit: { limit: number; windowMs: number } | null;
    remaining: number | null;
    refill: { amount: number; intervalMs: number } | null;
    version: number;
  }

  const shop = (token: string) => http().get('/api/orders').set('Authorization', `Bearer ${token}`);
  const listed = async (id: string): Promise<Listed | undefined> =>
    ((await adminCall.get('/keys').expect(200)).body.keys as Listed[]).find((k) => k.id === id);
  const create = async (body: object): Promise<{ id: string; token: string; key: Listed }> => {
    const res = await adminCall.post('/keys', { scopes: ['orders:list'], allowedIps: '', ...body });
    expect(res.status).toBe(201);
    return { id: res.body.key.id, token: res.body.token, key: res.body.key };
  };

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
    expect(zero.body.error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'rateLimit.limit' });
    expect(zero.body.error.reason).toMatch(/whole number/);
    const notAnObject = await adminCall.post('/keys', { name: 'Fast', scopes: ['orders:list'], rateLimit: 'fast' });
    expect(notAnObject.status).toBe(400);
    expect(notAnObject.body.error.field).toBe('rateLimit');
    const negative = await adminCall.post('/keys', { name: 'Negative', scopes: ['orders:list'], remaining: -1 });
    expect(negative.status).toBe(400);
    expect(negative.body.error.field).toBe('remaining');
    const noInterval = await adminCall.post('/keys', {
      name: 'No interval',
      scopes: ['orders:list'],
      remaining: 10,
      refill: { amount: 10, intervalMs: 0 },
    });
    expect(noInterval.status).toBe(400);
    expect(noInterval.body.error.field).toBe('refill.intervalMs');
    expect(await keyCount()).toBe(before);

    const { id, key } = await create({ name: 'Kept as it was', rateLimit: { limit: 2, windowMs: 60_000 } });
    const badWindow = await adminCall.patch(`/keys/${id}`, { rateLimit: { limit: 2, windowMs: 'x' }, expectedVersion: key.version });
    expect(badWindow.status).toBe(400);
    expect(badWindow.body.error.field).toBe('rateLimit.windowMs');
    expect(badWindow.body.error.reason).toMatch(/"x"/);
    const badLimit = await adminCall.patch(`/keys/${id}`, { name: 'Renamed', rateLimit: { limit: 0, windowMs: 60_000 } });
    expect(badLimit.status).toBe(400);
    expect(badLimit.body.error.field).toBe('rateLimit.limit');
    expect(await listed(id)).toMatchObject({ name: 'Kept as it was', rateLimit: { limit: 2, windowMs: 60_000 }, version: key.version });
  });
});
