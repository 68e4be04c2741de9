// The framework-neutral guard core: options checked at creation, token carriers, client address, outcomes.

import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { StoreUnavailableError, ValidationError } from '../../src/errors.js';
import { canonicalIp } from '../../src/ip.js';
import { createGuardCore, type GuardOptions, type GuardOutcome, type GuardRequest } from '../../src/http.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import type { KeyRecord, KeyStore } from '../../src/store.js';
import { DelegatingStore } from '../support/counting-store.js';

let keys: KeyManager;
let token: string;
let other: string;
let locked: string;

beforeAll(async () => {
  keys = createKeyManager({ store: memoryStore() });
  token = (await keys.create({ name: 'erp', scopes: ['orders:edit'] })).token;
  other = (await keys.create({ name: 'crm', scopes: ['customers:list'] })).token;
  locked = (await keys.create({ name: 'office', scopes: ['all'], allowedIps: '203.0.113.7,2001:db8::7' })).token;
});

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function request(headers: GuardRequest['headers'], remoteAddress: string | undefined = '127.0.0.1'): GuardRequest {
  return { headers, remoteAddress };
}

/** The verify code behind an outcome: `ok`, or the rejection's reason. */
async function reasonOf(options: GuardOptions, req: GuardRequest): Promise<string> {
  const outcome = await createGuardCore(keys, { exposeReasons: true, ...options }).authenticate(req);
  return outcome.ok ? 'ok' : outcome.reason;
}

function fieldOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return (error as ValidationError).field;
  }
  throw new Error('expected a ValidationError');
}

describe('createGuardCore options', () => {
  it.each<[string, GuardOptions | Record<string, unknown>, string]>([
    ['an unknown scope', { scope: 'orders:delete' }, 'scope'],
    ['an unknown scope among several', { scope: ['orders:list', 'nope'] }, 'scope'],
    ['an empty scope list', { scope: [] }, 'scope'],
    ['a carrier that does not exist', { carriers: ['query'] }, 'carriers'],
    ['no carriers', { carriers: [] }, 'carriers'],
    ['a proxy entry that is not an address', { trustedProxies: 'nonsense' }, 'trustedProxies'],
    ['a shorthand IPv4 proxy', { trustedProxies: ['0177.0.0.1'] }, 'trustedProxies'],
    ['a CIDR suffix out of range', { trustedProxies: '10.0.0.0/33' }, 'trustedProxies'],
    ['a wildcard proxy', { trustedProxies: '10.0.0.*' }, 'trustedProxies'],
    ['an empty entry among proxies', { trustedProxies: 'loopback,' }, 'trustedProxies'],
    ['a non-string proxy', { trustedProxies: ['loopback', 5] }, 'trustedProxies'],
    ['trust-everyone', { trustedProxies: true }, 'trustedProxies'],
    ['a negative Retry-After', { retryAfterSeconds: -1 }, 'retryAfterSeconds'],
    ['a fractional Retry-After', { retryAfterSeconds: 1.5 }, 'retryAfterSeconds'],
    ['a non-boolean exposeReasons', { exposeReasons: 'yes' }, 'exposeReasons'],
  ])('refuses %s when the guard is created', (_what, options, field) => {
    expect(fieldOf(() => createGuardCore(keys, options as GuardOptions))).toBe(field);
  });

  it('refuses a missing manager', () => {
    expect(fieldOf(() => createGuardCore(undefined as unknown as KeyManager))).toBe('keys');
  });

  it.each(['loopback', 'uniquelocal', 'linklocal', '10.0.0.0/8', '10.0.0.0/255.0.0.0', '2001:db8::/32', '::1', 'loopback, 10.0.0.1', ''])(
    'accepts trustedProxies %j',
    (trustedProxies) => {
      expect(() => createGuardCore(keys, { trustedProxies })).not.toThrow();
    },
  );
});

describe('token carriers', () => {
  it('reads Authorization: Bearer and X-API-Key by default, Basic only when enabled', async () => {
    expect(await reasonOf({}, request({ authorization: `Bearer ${token}` }))).toBe('ok');
    expect(await reasonOf({}, request({ authorization: `Bearer\t${token}` }))).toBe('ok');
    expect(await reasonOf({}, request({ 'x-api-key': token }))).toBe('ok');
    expect(await reasonOf({}, request({ authorization: basic(token, '') }))).toBe('MISSING');
    expect(await reasonOf({ carriers: ['basic'] }, request({ authorization: basic(token, '') }))).toBe('ok');
    expect(await reasonOf({ carriers: ['basic'] }, request({ 'x-api-key': token }))).toBe('MISSING');
    expect(await reasonOf({ carriers: ['x-api-key'] }, request({ authorization: `Bearer ${token}` }))).toBe('MISSING');
  });

  it.each<[string, string, string]>([
    ['the token as user name, empty password', 'TOKEN', ''],
    ['the token as password, any user name', 'shop-42', 'TOKEN'],
    ['the token as password, empty user name', '', 'TOKEN'],
    ['the token as user name, any password', 'TOKEN', 'x'],
    ['the token twice', 'TOKEN', 'TOKEN'],
  ])('takes Basic with %s', async (_what, user, password) => {
    const header = basic(user.replace('TOKEN', token), password.replace('TOKEN', token));
    expect(await reasonOf({ carriers: ['basic'] }, request({ authorization: header }))).toBe('ok');
  });

  it.each<[string, () => string]>([
    ['two different tokens', () => basic(token, other)],
    ['no colon', () => `Basic ${Buffer.from(token).toString('base64')}`],
    ['nothing at all', () => basic('', '')],
    ['neither part a token', () => basic('user', 'password')],
    ['text that is not base64', () => 'Basic %%%not-base64%%%'],
    ['an empty credential', () => 'Basic '],
  ])('refuses Basic with %s as malformed', async (_what, header) => {
    expect(await reasonOf({ carriers: ['basic'] }, request({ authorization: header() }))).toBe('MALFORMED');
  });

  it('accepts the same key in several places and refuses different keys as malformed', async () => {
    const all: GuardOptions = { carriers: ['bearer', 'x-api-key', 'basic'] };
    expect(await reasonOf(all, request({ authorization: `Bearer ${token}`, 'x-api-key': token }))).toBe('ok');
    expect(await reasonOf(all, request({ 'x-api-key': `${token}, ${token}` }))).toBe('ok');
    expect(await reasonOf(all, request({ 'x-api-key': [token, token] }))).toBe('ok');
    expect(await reasonOf(all, request({ authorization: [`Bearer ${token}`, basic(token, '')] }))).toBe('ok');
    expect(await reasonOf(all, request({ authorization: `Bearer ${token}`, 'x-api-key': other }))).toBe('MALFORMED');
    expect(await reasonOf(all, request({ 'x-api-key': `${token}, ${other}` }))).toBe('MALFORMED');
    expect(await reasonOf(all, request({ 'x-api-key': [token, other] }))).toBe('MALFORMED');
    // A malformed carrier spoils the request even when another carries a good key.
    expect(await reasonOf(all, request({ authorization: 'Bearer', 'x-api-key': token }))).toBe('MALFORMED');
  });

  it('reads every Authorization header of rawHeaders, where Node keeps only the first in headers', async () => {
    const all: GuardOptions = { carriers: ['bearer', 'x-api-key', 'basic'] };
    const raw = (...lines: string[]): GuardRequest => {
      const rawHeaders = lines.flatMap((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)]);
      const first = rawHeaders.findIndex((name, i) => i % 2 === 0 && name.toLowerCase() === 'authorization');
      return { headers: first < 0 ? {} : { authorization: rawHeaders[first + 1] }, rawHeaders, remoteAddress: '127.0.0.1' };
    };
    expect(await reasonOf(all, raw(`Authorization: Bearer ${token}`, `Authorization: Bearer ${other}`))).toBe('MALFORMED');
    expect(await reasonOf(all, raw(`Authorization: Bearer ${token}`, `AUTHORIZATION: ${basic('', other)}`))).toBe('MALFORMED');
    expect(await reasonOf(all, raw(`Authorization: Bearer ${token}`, 'Host: shop', `authorization: ${basic(token, '')}`))).toBe('ok');
    expect(await reasonOf(all, raw(`Authorization: Bearer ${token}`, `Authorization: Bearer ${token}`))).toBe('ok');
    expect(await reasonOf(all, raw('Authorization: Negotiate abc', `Authorization: Bearer ${token}`))).toBe('ok');
    // Without rawHeaders only the first is seen.
    expect(await reasonOf(all, request({ authorization: `Bearer ${token}` }))).toBe('ok');
    // A header removed from `headers` (say by a middleware) is not read back from rawHeaders.
    const removed = raw(`Authorization: Bearer ${token}`, `Authorization: Bearer ${other}`);
    expect(await reasonOf(all, { ...removed, headers: { 'x-api-key': token } })).toBe('ok');
    // Odd lengths and non-strings in a hand-made rawHeaders are skipped, never thrown on.
    const odd = { headers: { authorization: `Bearer ${token}` }, rawHeaders: ['authorization', 5, 'Authorization'], remoteAddress: '::1' };
    expect(await reasonOf(all, odd as unknown as GuardRequest)).toBe('ok');
  });

  it('treats empty values as absent and over-long values as malformed', async () => {
    expect(await reasonOf({}, request({ 'x-api-key': '' }))).toBe('MISSING');
    expect(await reasonOf({}, request({ 'x-api-key': ' , ' }))).toBe('MISSING');
    expect(await reasonOf({}, request({ 'x-api-key': [] }))).toBe('MISSING');
    expect(await reasonOf({}, request({ 'x-api-key': 'a'.repeat(1_000_000) }))).toBe('MALFORMED');
    expect(await reasonOf({}, request({ authorization: `Bearer ${'a'.repeat(1_000_000)}` }))).toBe('MALFORMED');
    expect(await reasonOf({ carriers: ['basic'] }, request({ authorization: `Basic ${'QUFB'.repeat(300_000)}` }))).toBe('MALFORMED');
  });

  it('turns any header bag into a 401, never a throw (fast-check)', async () => {
    const core = createGuardCore(keys, { carriers: ['bearer', 'x-api-key', 'basic'], trustedProxies: 'loopback' });
    const text = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc
        .constantFrom('Bearer ', 'Basic ', 'bearer', 'BASIC  ', ', ,', ':')
        .chain((head) => fc.string({ maxLength: 100 }).map((tail) => head + tail)),
      fc.string({ maxLength: 100 }).map((s) => `Basic ${Buffer.from(s).toString('base64')}`),
      fc.nat({ max: 70_000 }).map((n) => 'k'.repeat(n)),
    );
    const value = fc.oneof(text, fc.array(text, { maxLength: 4 }), fc.constant(undefined));
    const headers = fc.record({ authorization: value, 'x-api-key': value, 'x-forwarded-for': value }, { requiredKeys: [] });
    const rawName = fc.constantFrom('Authorization', 'authorization', 'AuthoriZation', 'X-API-Key', 'Host');
    const rawLines = fc.option(
      fc.array(fc.tuple(rawName, text), { maxLength: 4 }).map((lines) => lines.flat()),
      { nil: undefined },
    );
    await fc.assert(
      fc.asyncProperty(headers, fc.option(fc.string({ maxLength: 60 }), { nil: undefined }), rawLines, async (bag, remote, rawHeaders) => {
        const outcome = await core.authenticate({ headers: bag, remoteAddress: remote, rawHeaders });
        expect(outcome.ok).toBe(false);
        expect(outcome.ok ? 0 : outcome.status).toBe(401);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('client address', () => {
  it('is the socket peer unless a trusted proxy forwarded it', async () => {
    const forged = { authorization: `Bearer ${locked}`, 'x-forwarded-for': '203.0.113.7' };
    expect(await reasonOf({}, request(forged, '127.0.0.1'))).toBe('IP_NOT_ALLOWED');
    expect(await reasonOf({}, request({ authorization: `Bearer ${locked}` }, '203.0.113.7'))).toBe('ok');
    expect(await reasonOf({ trustedProxies: 'loopback' }, request(forged, '127.0.0.1'))).toBe('ok');
    expect(await reasonOf({ trustedProxies: 'loopback' }, request(forged, '198.51.100.1'))).toBe('IP_NOT_ALLOWED');
    expect(await reasonOf({ trustedProxies: '10.0.0.0/8' }, request(forged, '10.1.2.3'))).toBe('ok');
    expect(await reasonOf({ trustedProxies: '10.0.0.0/8' }, request(forged, '::ffff:10.1.2.3'))).toBe('ok');
    expect(await reasonOf({ trustedProxies: '10.0.0.0/8' }, request(forged, '11.1.2.3'))).toBe('IP_NOT_ALLOWED');
  });

  it('trusts an IPv4-mapped peer like its IPv4 form and reads repeated headers in order', async () => {
    const headers = { authorization: `Bearer ${locked}`, 'x-forwarded-for': ['198.51.100.1', '203.0.113.7, 127.0.0.1'] };
    expect(await reasonOf({ trustedProxies: 'loopback' }, request(headers, '::ffff:127.0.0.1'))).toBe('ok');
    const ipv6 = { authorization: `Bearer ${locked}`, 'x-forwarded-for': '2001:DB8:0::7' };
    expect(await reasonOf({ trustedProxies: '::1' }, request(ipv6, '::1'))).toBe('ok');
  });

  it('stops at the first hop that does not parse strictly, and that hop never matches', async () => {
    const headers = (xff: string) => ({ authorization: `Bearer ${locked}`, 'x-forwarded-for': xff });
    for (const hop of ['0177.0.0.1', '127.1', '2130706433', '[::1]', '127.0.0.1:80', 'fe80::1%eth0', 'unknown']) {
      expect(await reasonOf({ trustedProxies: 'loopback' }, request(headers(`203.0.113.7, ${hop}`)))).toBe('IP_NOT_ALLOWED');
    }
    expect(await reasonOf({ trustedProxies: 'loopback' }, request(headers(' , 203.0.113.7 ,, ')))).toBe('ok');
  });

  it('fails a non-empty allow-list when the socket is gone', async () => {
    expect(await reasonOf({}, request({ authorization: `Bearer ${locked}` }, undefined))).toBe('IP_NOT_ALLOWED');
    expect(await reasonOf({}, request({ authorization: `Bearer ${token}` }, undefined))).toBe('ok');
  });

  it('lets a forwarded address through only when it is the allowed one (fast-check)', async () => {
    const core = createGuardCore(keys, { trustedProxies: ['loopback', '10.0.0.0/8'] });
    const hop = fc.oneof(
      fc.ipV4(),
      fc.ipV4Extended(),
      fc.ipV6(),
      fc.constantFrom('203.0.113.7', '127.0.0.1', '10.9.9.9', ''),
      fc.string({ maxLength: 20 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(hop, { maxLength: 6 }), fc.constantFrom(', ', ',', ' ,'), async (hops, separator) => {
        const xff = hops.join(separator);
        const outcome: GuardOutcome = await core.authenticate(request({ 'x-api-key': locked, 'x-forwarded-for': xff }));
        if (outcome.ok) {
          // Right to left, only loopback / 10.x proxies may be skipped before the allowed address.
          const trusted = (h: string): boolean => {
            const ip = canonicalIp(h);
            return ip !== null && (ip === '::1' || /^(127|10)\.\d+\.\d+\.\d+$/.test(ip));
          };
          // The header is read as written: a generated hop may itself hold a comma.
          const client = xff
            .split(',')
            .map((h) => h.trim())
            .filter((h) => h !== '')
            .reverse()
            .find((h) => !trusted(h));
          expect(client).toBe('203.0.113.7');
        } else {
          expect(outcome.reason).toBe('IP_NOT_ALLOWED');
        }
      }),
      // The example is a hop that is itself a comma: the header then holds only the allowed address.
      { numRuns: 1000, examples: [[['203.0.113.7', ','], ', ']] },
    );
  });
});

describe('outcomes', () => {
  it('maps every refusal to its status, code and headers, with a fresh object each time', async () => {
    const core = createGuardCore(keys, { scope: 'orders:list' });
    const first = await core.authenticate(request({ 'x-api-key': other }));
    expect(first).toEqual({
      ok: false,
      status: 403,
      body: { error: { code: 'insufficient_scope', message: 'The API key does not grant the scope this request needs.' } },
      headers: {},
      reason: 'INSUFFICIENT_SCOPE',
      error: null,
    });
    if (!first.ok) first.headers['X-Changed'] = 'yes';
    const second = await core.authenticate(request({ 'x-api-key': other }));
    expect(second.ok ? null : second.headers).toEqual({});

    const missing = await core.authenticate(request({}));
    expect(missing).toMatchObject({ status: 401, headers: { 'WWW-Authenticate': 'Bearer' }, reason: 'MISSING' });
    expect(missing.ok ? null : missing.body).toEqual({ error: { code: 'invalid_api_key', message: 'A valid API key is required.' } });
    const ip = await core.authenticate(request({ 'x-api-key': locked }));
    expect(ip).toMatchObject({ status: 403, body: { error: { code: 'ip_not_allowed' } }, reason: 'IP_NOT_ALLOWED' });
    expect(await core.authenticate(request({ 'x-api-key': token }))).toMatchObject({ ok: true, key: { name: 'erp' } });
  });

  it('requires every scope of a list', async () => {
    expect(await reasonOf({ scope: ['orders:list', 'orders:edit'] }, request({ 'x-api-key': token }))).toBe('ok');
    expect(await reasonOf({ scope: ['orders:list', 'customers:list'] }, request({ 'x-api-key': token }))).toBe('INSUFFICIENT_SCOPE');
  });

  it('turns a store failure into 503 with Retry-After and the error for logs', async () => {
    // A delegating store answers only asynchronously, so verify reaches the failing findByDigest.
    const failing: KeyStore = Object.assign(new DelegatingStore(), {
      findByDigest: (): Promise<KeyRecord | null> => Promise.reject(new Error('connection reset')),
    });
    const down = createKeyManager({ store: failing });
    const { token: downToken } = await down.create({ name: 'x', scopes: ['all'] });
    const outcome = await createGuardCore(down, { retryAfterSeconds: 9 }).authenticate(request({ 'x-api-key': downToken }));
    expect(outcome).toMatchObject({
      ok: false,
      status: 503,
      body: { error: { code: 'key_store_unavailable' } },
      headers: { 'Retry-After': '9' },
      reason: 'STORE_UNAVAILABLE',
    });
    expect(outcome.ok ? null : outcome.error).toBeInstanceOf(StoreUnavailableError);
    expect(JSON.stringify(outcome)).not.toContain(downToken);
  });

  it('recognises a store failure thrown by another copy of keygate (ESM next to CJS)', async () => {
    /** The same class as loaded from the other build: equal name and code, different identity. */
    class ForeignStoreUnavailableError extends Error {
      override name = 'StoreUnavailableError';
      readonly code = 'STORE_UNAVAILABLE';
    }
    const foreign: KeyManager = { ...keys, verify: () => Promise.reject(new ForeignStoreUnavailableError('down')) };
    const outcome = await createGuardCore(foreign).authenticate(request({ 'x-api-key': token }));
    expect(outcome).toMatchObject({ status: 503, reason: 'STORE_UNAVAILABLE' });
  });

  it('rethrows any other error instead of refusing the key', async () => {
    const closed = createKeyManager({ store: memoryStore() });
    const { token: closedToken } = await closed.create({ name: 'x', scopes: ['all'] });
    await closed.close();
    await expect(createGuardCore(closed).authenticate(request({ 'x-api-key': closedToken }))).rejects.toMatchObject({
      code: 'MANAGER_CLOSED',
    });
  });
});
