// createOriginCheck: whether a request's Origin is its own, directly and behind a trusted TLS-terminating proxy.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { createOriginCheck, type HeaderBag, type OriginCheckRequest } from '../../src/http.js';

const direct = createOriginCheck();
const proxied = createOriginCheck({ trustedProxies: ['10.0.0.0/8', '::1'] });

/** A request on a plain connection from `remoteAddress`. */
function on(headers: HeaderBag, remoteAddress = '203.0.113.9', encrypted = false): OriginCheckRequest {
  return { headers, remoteAddress, encrypted };
}

describe('createOriginCheck, clients connecting directly', () => {
  it('accepts the request’s own origin: scheme, host and port', () => {
    expect(direct(on({ host: 'shop.example', origin: 'http://shop.example' }))).toBe(true);
    expect(direct(on({ host: 'shop.example:8080', origin: 'http://shop.example:8080' }))).toBe(true);
    expect(direct(on({ host: 'shop.example', origin: 'https://shop.example' }, '203.0.113.9', true))).toBe(true);
  });

  it('accepts a request without Origin, which no browser leaves out of a cross-site write', () => {
    expect(direct(on({ host: 'shop.example' }))).toBe(true);
  });

  it('refuses a cross-site origin, another port, another scheme', () => {
    expect(direct(on({ host: 'shop.example', origin: 'https://attacker.example' }))).toBe(false);
    expect(direct(on({ host: 'shop.example', origin: 'http://shop.example.attacker.example' }))).toBe(false);
    expect(direct(on({ host: 'shop.example:8080', origin: 'http://shop.example:8081' }))).toBe(false);
    expect(direct(on({ host: 'shop.example:8080', origin: 'http://shop.example' }))).toBe(false);
    expect(direct(on({ host: 'shop.example', origin: 'https://shop.example' }))).toBe(false);
    expect(direct(on({ host: 'shop.example', origin: 'http://shop.example' }, '203.0.113.9', true))).toBe(false);
  });

  it('refuses Origin: null, for writes from sandboxed frames, file: pages and some redirects', () => {
    expect(direct(on({ host: 'shop.example', origin: 'null' }))).toBe(false);
  });

  it('normalises default ports and the case of the host', () => {
    expect(direct(on({ host: 'shop.example:80', origin: 'http://shop.example' }))).toBe(true);
    expect(direct(on({ host: 'shop.example', origin: 'http://shop.example:80' }))).toBe(true);
    expect(direct(on({ host: 'Shop.Example', origin: 'http://shop.example' }))).toBe(true);
    expect(direct(on({ host: 'shop.example:443', origin: 'https://shop.example' }, '203.0.113.9', true))).toBe(true);
    // 443 is the default of https only.
    expect(direct(on({ host: 'shop.example:443', origin: 'http://shop.example' }))).toBe(false);
  });

  it('compares IPv6 hosts in brackets, with and without a port, in any spelling', () => {
    expect(direct(on({ host: '[::1]:3000', origin: 'http://[::1]:3000' }, '::1'))).toBe(true);
    expect(direct(on({ host: '[2001:db8::7]', origin: 'http://[2001:DB8:0:0::7]' }))).toBe(true);
    expect(direct(on({ host: '[::1]:3000', origin: 'http://[::1]:3001' }, '::1'))).toBe(false);
    expect(direct(on({ host: '[::1]:3000', origin: 'http://[::2]:3000' }, '::1'))).toBe(false);
  });

  it('refuses an Origin that is not one scheme://host[:port]', () => {
    for (const origin of [
      '',
      'shop.example',
      'http://shop.example/',
      'http://shop.example/admin',
      'http://user@shop.example',
      'http://shop.example?x',
      'http://shop.example, http://shop.example',
      'HTTP://shop.example',
      'ftp://shop.example',
      'http://shop.example:99999',
      'http:// shop.example',
    ]) {
      expect({ origin, same: direct(on({ host: 'shop.example', origin })) }).toEqual({ origin, same: false });
    }
    expect(direct(on({ host: 'shop.example', origin: ['http://shop.example', 'http://shop.example'] }))).toBe(false);
  });

  it('refuses any Origin when the request’s own origin cannot be told', () => {
    expect(direct(on({ origin: 'http://shop.example' }))).toBe(false);
    expect(direct(on({ host: 'shop.example/x', origin: 'http://shop.example' }))).toBe(false);
    expect(direct(on({ host: 'a@shop.example', origin: 'http://shop.example' }))).toBe(false);
  });

  it('reads :authority when there is no Host (HTTP/2)', () => {
    expect(direct(on({ ':authority': 'shop.example:8443', origin: 'https://shop.example:8443' }, '203.0.113.9', true))).toBe(true);
  });
});

describe('createOriginCheck behind a reverse proxy', () => {
  const forwarded = { host: 'shop.example', 'x-forwarded-proto': 'https', origin: 'https://shop.example' };

  it('believes X-Forwarded-Proto from a trusted proxy that terminates TLS', () => {
    expect(proxied(on(forwarded, '10.0.0.5'))).toBe(true);
    expect(proxied(on({ ...forwarded, origin: 'http://shop.example' }, '10.0.0.5'))).toBe(false);
    expect(proxied(on(forwarded, '::ffff:10.0.0.5'))).toBe(true);
    expect(proxied(on({ ...forwarded, host: '[::1]:3000', origin: 'https://[::1]:3000' }, '::1'))).toBe(true);
  });

  it('does not believe X-Forwarded-Proto or X-Forwarded-Host from a client that is not a trusted proxy', () => {
    expect(proxied(on(forwarded))).toBe(false);
    expect(direct(on(forwarded, '10.0.0.5'))).toBe(false);
    const forgedHost = { host: 'shop.example', 'x-forwarded-host': 'attacker.example', origin: 'http://attacker.example' };
    expect(proxied(on(forgedHost))).toBe(false);
    expect(proxied(on(forgedHost, '10.0.0.5'))).toBe(true);
    // An address that does not parse strictly is never a proxy.
    expect(proxied(on(forwarded, '010.0.0.5'))).toBe(false);
    expect(proxied({ headers: forwarded, remoteAddress: undefined })).toBe(false);
  });

  it('takes the host from X-Forwarded-Host, else Host, with its port', () => {
    const headers = { host: '10.0.0.9:3000', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example:8443' };
    expect(proxied(on({ ...headers, origin: 'https://shop.example:8443' }, '10.0.0.5'))).toBe(true);
    expect(proxied(on({ ...headers, origin: 'https://shop.example' }, '10.0.0.5'))).toBe(false);
    expect(proxied(on({ ...headers, origin: 'https://10.0.0.9:3000' }, '10.0.0.5'))).toBe(false);
    expect(proxied(on({ host: 'shop.example:8443', 'x-forwarded-proto': 'https', origin: 'https://shop.example:8443' }, '10.0.0.5'))).toBe(
      true,
    );
  });

  it('takes the first entry of each forwarded header, as Express does', () => {
    const chained = { host: 'internal', 'x-forwarded-proto': 'https, http', 'x-forwarded-host': 'shop.example, internal' };
    expect(proxied(on({ ...chained, origin: 'https://shop.example' }, '10.0.0.5'))).toBe(true);
    expect(proxied(on({ ...chained, origin: 'http://internal' }, '10.0.0.5'))).toBe(false);
    expect(proxied(on({ ...chained, 'x-forwarded-proto': ['HTTPS', 'http'], origin: 'https://shop.example' }, '10.0.0.5'))).toBe(true);
  });

  it('keeps the connection’s scheme when the proxy sends no X-Forwarded-Proto, and refuses one it cannot use', () => {
    expect(proxied(on({ host: 'shop.example', origin: 'http://shop.example' }, '10.0.0.5'))).toBe(true);
    expect(proxied(on({ host: 'shop.example', origin: 'https://shop.example' }, '10.0.0.5', true))).toBe(true);
    expect(proxied(on({ ...forwarded, 'x-forwarded-proto': 'wss' }, '10.0.0.5'))).toBe(false);
    expect(proxied(on({ ...forwarded, origin: 'null' }, '10.0.0.5'))).toBe(false);
  });
});

describe('createOriginCheck options', () => {
  it('refuses a bad trustedProxies entry at creation, naming the option', () => {
    expect(() => createOriginCheck({ trustedProxies: '10.0.0.*' })).toThrow(ValidationError);
    expect(() => createOriginCheck({ trustedProxies: '10.0.0.*' })).toThrow(/trustedProxies/);
    expect(() => createOriginCheck(null as unknown as undefined)).toThrow(/options/);
    expect(() => createOriginCheck('loopback' as unknown as undefined)).toThrow(/options/);
  });

  it('never throws, whatever the headers hold (fast-check)', () => {
    const text = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.constantFrom('null', 'http://shop.example', 'https://[::1]:3000', 'https, http', '[::1', 'shop.example:'),
    );
    const value = fc.oneof(text, fc.array(text, { maxLength: 3 }), fc.constant(undefined));
    const headers = fc.record(
      { origin: value, host: value, 'x-forwarded-proto': value, 'x-forwarded-host': value, ':authority': value },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(headers, fc.constantFrom('10.0.0.5', '203.0.113.9', undefined), fc.boolean(), (bag, remoteAddress, encrypted) => {
        expect(typeof proxied({ headers: bag, remoteAddress, encrypted })).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });
});
