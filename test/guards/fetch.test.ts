// keygate/fetch on Web Request objects: Authorization values joined by Headers, the client address a Request lacks, rejection responses.

import { beforeAll, describe, expect, it } from 'vitest';
import { createFetchGuard, rejectionResponse } from '../../adapters/fetch/index.js';
import { memoryStore } from '../../adapters/memory/index.js';
import { ValidationError } from '../../src/errors.js';
import type { GuardOutcome } from '../../src/http.js';
import { createKeyManager, type KeyEvent, type KeyManager } from '../../src/manager.js';
import { brokenStore } from '../support/counting-store.js';
import { createKeyStates, INVALID_KEY_BODY, type KeyStates } from './fixtures.js';

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** A request whose headers are these lines, in order, appended as a server appends repeated headers. */
function requestWith(lines: ReadonlyArray<readonly [string, string]>): Request {
  const headers = new Headers();
  for (const [name, value] of lines) headers.append(name, value);
  return new Request('http://api.example/orders', { headers });
}

/** `'valid'` for a pass with the `valid` key, else the verify code of the refusal. */
function decision(outcome: GuardOutcome, states: KeyStates): string {
  if (outcome.ok) return outcome.key.id === states.validId ? 'valid' : `key ${outcome.key.name}`;
  return outcome.reason;
}

describe('createFetchGuard with Authorization values joined by Headers', () => {
  let states: KeyStates;
  let guard: ReturnType<typeof createFetchGuard>;

  beforeAll(async () => {
    states = await createKeyStates();
    guard = createFetchGuard(states.keys, { scope: 'orders:list', carriers: ['bearer', 'x-api-key', 'basic'] });
  });

  it('sees repeated Authorization headers as one value joined with ", " (what the guard has to split)', () => {
    const request = requestWith([
      ['Authorization', 'Bearer a'],
      ['Authorization', 'Bearer b'],
    ]);
    expect(request.headers.get('authorization')).toBe('Bearer a, Bearer b');
  });

  const cases: ReadonlyArray<{ what: string; lines: (t: KeyStates['tokens']) => Array<[string, string]>; expected: string }> = [
    {
      what: 'the same key in two Authorization: Bearer headers',
      lines: (t) => [
        ['Authorization', `Bearer ${t.valid}`],
        ['Authorization', `bearer  ${t.valid}`],
      ],
      expected: 'valid',
    },
    {
      what: 'two different keys in two Authorization: Bearer headers',
      lines: (t) => [
        ['Authorization', `Bearer ${t.valid}`],
        ['Authorization', `Bearer ${t.edit}`],
      ],
      expected: 'MALFORMED',
    },
    {
      what: 'the same key as Basic user name and as Basic password',
      lines: (t) => [
        ['Authorization', basic(t.valid, '')],
        ['Authorization', basic('shop-42', t.valid)],
      ],
      expected: 'valid',
    },
    {
      what: 'a Basic and a Bearer header with different keys',
      lines: (t) => [
        ['Authorization', basic(t.edit, '')],
        ['Authorization', `Bearer ${t.valid}`],
      ],
      expected: 'MALFORMED',
    },
    {
      what: 'a Digest header with commas between its parameters, then a Bearer key',
      lines: (t) => [
        ['Authorization', 'Digest username="shop", realm="api, v2", response="6629fae4"'],
        ['Authorization', `Bearer ${t.valid}`],
      ],
      expected: 'valid',
    },
    {
      what: 'a Bearer key, then a Digest header',
      lines: (t) => [
        ['Authorization', `Bearer ${t.valid}`],
        ['Authorization', 'Digest username="shop", response="6629fae4"'],
      ],
      expected: 'valid',
    },
    {
      what: 'a key inside a quoted Digest parameter, which is not a credential',
      lines: (t) => [['Authorization', `Digest username="shop", opaque="x, Bearer ${t.valid}"`]],
      expected: 'MISSING',
    },
    {
      what: 'a valid key, then an empty Bearer header',
      lines: (t) => [
        ['Authorization', `Bearer ${t.valid}`],
        ['Authorization', 'Bearer'],
      ],
      expected: 'MALFORMED',
    },
    {
      what: 'a valid key, then a Bearer header with extra words',
      lines: (t) => [
        ['Authorization', `Bearer ${t.valid}`],
        ['Authorization', `Bearer ${t.valid} x`],
      ],
      expected: 'MALFORMED',
    },
    {
      what: 'a valid key in Authorization and a different one in two X-API-Key headers',
      lines: (t) => [
        ['Authorization', `Bearer ${t.valid}`],
        ['X-API-Key', t.valid],
        ['X-API-Key', t.edit],
      ],
      expected: 'MALFORMED',
    },
    {
      what: 'the same key in Authorization and twice in X-API-Key',
      lines: (t) => [
        ['X-API-Key', t.valid],
        ['Authorization', `Bearer ${t.valid}`],
        ['X-API-Key', t.valid],
      ],
      expected: 'valid',
    },
  ];

  it.each(cases)('$what: $expected', async ({ lines, expected }) => {
    expect(decision(await guard.authenticate(requestWith(lines(states.tokens))), states)).toBe(expected);
  });

  it('reads any object with headers.get(), not only a Request', async () => {
    const headers = new Map([['authorization', `Bearer ${states.tokens.valid}`]]);
    const outcome = await guard.authenticate({ headers: { get: (name) => headers.get(name.toLowerCase()) ?? null } });
    expect(decision(outcome, states)).toBe('valid');
  });
});

describe('createFetchGuard and the client address', () => {
  let keys: KeyManager;
  const events: KeyEvent[] = [];
  let locked: string;
  let open: string;
  const bearer = (token: string, extra: Record<string, string> = {}) =>
    new Request('http://api.example/orders', { headers: { authorization: `Bearer ${token}`, ...extra } });

  beforeAll(async () => {
    keys = createKeyManager({ store: memoryStore(), onEvent: (event) => events.push(event) });
    locked = (await keys.create({ name: 'till', scopes: ['orders:list'], allowedIps: '203.0.113.7' })).token;
    open = (await keys.create({ name: 'anywhere', scopes: ['orders:list'] })).token;
  });

  it('refuses a key with an allow-list when no address is given, and lets a key without one through', async () => {
    const guard = createFetchGuard(keys);
    const refused = await guard.authenticate(bearer(locked));
    expect(refused).toMatchObject({ ok: false, status: 403, reason: 'IP_NOT_ALLOWED', body: { error: { code: 'ip_not_allowed' } } });
    expect(await guard.authenticate(bearer(locked), { clientAddress: null })).toMatchObject({ ok: false, reason: 'IP_NOT_ALLOWED' });
    expect(await guard.authenticate(bearer(open))).toMatchObject({ ok: true });
    const last = events.at(-2);
    expect(last).toMatchObject({ type: 'rejected', code: 'IP_NOT_ALLOWED', ip: null });
  });

  it('checks the allow-list against clientAddress, and ignores X-Forwarded-For without trustedProxies', async () => {
    const guard = createFetchGuard(keys);
    expect(await guard.authenticate(bearer(locked), { clientAddress: '203.0.113.7' })).toMatchObject({ ok: true });
    const forged = await guard.authenticate(bearer(locked, { 'x-forwarded-for': '203.0.113.7' }), { clientAddress: '198.51.100.1' });
    expect(forged).toMatchObject({ ok: false, reason: 'IP_NOT_ALLOWED' });
  });

  it('reads X-Forwarded-For only when clientAddress is a trusted proxy', async () => {
    const guard = createFetchGuard(keys, { trustedProxies: '10.0.0.0/8' });
    const forwarded = bearer(locked, { 'x-forwarded-for': '198.51.100.1, 203.0.113.7' });
    expect(await guard.authenticate(forwarded, { clientAddress: '10.1.2.3' })).toMatchObject({ ok: true });
    expect(await guard.authenticate(forwarded, { clientAddress: '198.51.100.9' })).toMatchObject({ ok: false, reason: 'IP_NOT_ALLOWED' });
    // No peer address: there is no proxy to believe, so the header is never read.
    expect(await guard.authenticate(forwarded)).toMatchObject({ ok: false, reason: 'IP_NOT_ALLOWED' });
  });

  it('rejects a clientAddress that is not a string as misuse', async () => {
    const guard = createFetchGuard(keys);
    await expect(guard.authenticate(bearer(open), { clientAddress: 42 as unknown as string })).rejects.toThrow(ValidationError);
  });

  it('fails at creation, not per request, when misconfigured', () => {
    expect(() => createFetchGuard(keys, { scope: 'orders:delete' })).toThrow(/scope/);
    expect(() => createFetchGuard(keys, { trustedProxies: '10.0.0.0/33' })).toThrow(/trustedProxies/);
    expect(() => createFetchGuard(keys, { carriers: ['query' as 'bearer'] })).toThrow(/carriers/);
  });
});

describe('rejectionResponse', () => {
  it('answers a 401 with WWW-Authenticate and the JSON body every guard sends', async () => {
    const states = await createKeyStates();
    const outcome = await createFetchGuard(states.keys).authenticate(new Request('http://api.example/'));
    if (outcome.ok) throw new Error('expected a rejection');
    const response = rejectionResponse(outcome);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await response.json()).toEqual(INVALID_KEY_BODY);
  });

  it('answers a failing store with 503 and Retry-After', async () => {
    const keys = createKeyManager({ store: brokenStore('reject') });
    const token = (await createKeyManager({ store: memoryStore() }).create({ name: 'x', scopes: ['all'] })).token;
    const guard = createFetchGuard(keys, { retryAfterSeconds: 30 });
    const outcome = await guard.authenticate(new Request('http://api.example/', { headers: { 'x-api-key': token } }));
    if (outcome.ok) throw new Error('expected a rejection');
    const response = rejectionResponse(outcome);
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('30');
    expect(await response.json()).toEqual({
      error: { code: 'key_store_unavailable', message: 'The API key store is unavailable; retry later.' },
    });
  });

  it('sends what a caller changed in the rejection', async () => {
    const states = await createKeyStates();
    const outcome = await createFetchGuard(states.keys, { scope: 'orders:list' }).authenticate(
      new Request('http://api.example/', { headers: { authorization: `Bearer ${states.tokens.wrongScope}` } }),
    );
    if (outcome.ok) throw new Error('expected a rejection');
    outcome.headers['Cache-Control'] = 'no-store';
    outcome.body.error.message = 'Ask your admin for the orders scope.';
    const response = rejectionResponse(outcome);
    expect(response.status).toBe(403);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.json()).toEqual({ error: { code: 'insufficient_scope', message: 'Ask your admin for the orders scope.' } });
  });
});
