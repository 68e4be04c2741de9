// IP addresses: one strict canonical form for allow-list entries and client addresses alike.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalIp, isIpAllowed, parseAllowedIps, ValidationError } from '../../src/index.js';

describe('canonicalIp', () => {
  it.each([
    ['203.0.113.7', '203.0.113.7'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8::1', '2001:db8::1'],
    ['::1', '::1'],
    ['::', '::'],
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['::FFFF:7f00:1', '127.0.0.1'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
    ['fe80::1', 'fe80::1'],
    ['2001:0db8:0000:0000:0000:ff00:0042:8329', '2001:db8::ff00:42:8329'],
  ])('canonicalises %s to %s', (input, expected) => {
    expect(canonicalIp(input)).toBe(expected);
  });

  it.each([
    ['127.1', 'shorthand IPv4'],
    ['0x7f.0.0.1', 'hex part'],
    ['0177.0.0.1', 'octal part'],
    ['010.0.0.1', 'leading zero (8.0.0.1 to some parsers)'],
    ['2130706433', 'single integer'],
    ['127.0.0.1.', 'trailing dot'],
    ['256.0.0.1', 'part over 255'],
    ['fe80::1%eth0', 'zone id'],
    ['[::1]', 'brackets'],
    ['127.0.0.1:80', 'port'],
    ['[::1]:80', 'bracketed port'],
    ['10.0.0.0/8', 'CIDR suffix'],
    ['2001:db8::/32', 'IPv6 CIDR'],
    ['10.0.0.*', 'wildcard'],
    ['*', 'bare wildcard'],
    ['10.0.0.1-10.0.0.9', 'range'],
    ['::1.2.3.4', 'deprecated IPv4-compatible'],
    ['::102:304', 'deprecated IPv4-compatible, hex form'],
    [' 127.0.0.1', 'leading space'],
    ['127.0.0.1 ', 'trailing space'],
    ['', 'empty'],
    ['localhost', 'host name'],
    ['1:2:3:4:5:6:7:8:9', 'too many groups'],
    ['1::2::3', 'two ::'],
    ['１２７.0.0.1', 'full-width digits'],
  ])('rejects %s (%s)', (input) => {
    expect(canonicalIp(input)).toBeNull();
  });

  it('rejects values that are not strings', () => {
    for (const v of [undefined, null, 2130706433, {}, ['127.0.0.1']]) expect(canonicalIp(v)).toBeNull();
  });

  it('rejects every IPv4 written in a non-canonical way (property)', () => {
    const canonicalV4 = (ip: string): boolean =>
      /^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/.test(ip) && ip.split('.').every((part) => Number(part) <= 255);
    fc.assert(
      fc.property(fc.ipV4Extended(), (ip) => {
        expect(canonicalIp(ip)).toBe(canonicalV4(ip) ? ip : null);
      }),
      { numRuns: 3000 },
    );
  });

  it('is idempotent and case-insensitive (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended(), fc.string()), (ip) => {
        const once = canonicalIp(ip);
        if (once !== null) {
          expect(canonicalIp(once)).toBe(once);
          expect(canonicalIp(ip.toUpperCase())).toBe(once);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('agrees with the WHATWG URL serialiser on every IPv6 address (property)', () => {
    // An independent reference: URL compresses IPv6 as RFC 5952 does; keygate also unwraps
    // ::ffff:a.b.c.d and refuses the deprecated ::a.b.c.d range (::/96 but :: and ::1).
    const reference = (ip: string): string | null => {
      const host = new URL(`http://[${ip}]`).hostname.slice(1, -1);
      const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
      if (mapped) {
        const hi = parseInt(mapped[1] as string, 16);
        const lo = parseInt(mapped[2] as string, 16);
        return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
      }
      if (host !== '::' && host !== '::1' && /^::[0-9a-f]{1,4}(:[0-9a-f]{1,4})?$/.test(host)) return null;
      return host;
    };
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        expect(canonicalIp(ip)).toBe(reference(ip));
      }),
      { numRuns: 5000 },
    );
  });
});

describe('parseAllowedIps', () => {
  it('parses the admin form: comma-separated, no spaces, canonical and de-duplicated', () => {
    expect(parseAllowedIps('203.0.113.7,2001:DB8::1,203.0.113.7,::ffff:203.0.113.7')).toEqual(['203.0.113.7', '2001:db8::1']);
  });

  it('treats blank as any address', () => {
    for (const blank of ['', null, undefined, []]) expect(parseAllowedIps(blank)).toEqual([]);
  });

  it('accepts an array of addresses', () => {
    expect(parseAllowedIps(['127.0.0.1', '::1'])).toEqual(['127.0.0.1', '::1']);
  });

  it('refuses a string too long for 1000 addresses before splitting it', () => {
    const huge = '1.1.1.1,'.repeat(2_500_000); // 20 MB
    expect(() => parseAllowedIps(huge)).toThrow(/^allowedIps: is 20000000 characters long; at most 1000 addresses \(45999 characters\)/);
    // A list of 1000 long addresses is still under the cap and parses.
    const max = Array.from({ length: 1000 }, (_, i) => `2001:db8:aaaa:bbbb:cccc:dddd:${(i + 0x1000).toString(16)}:1`);
    expect(parseAllowedIps(max.join(','))).toHaveLength(1000);
  });

  it('refuses an array of more than 1000 entries before reading them', () => {
    const entries = Array.from({ length: 1001 }, () => 0 as unknown as string);
    expect(() => parseAllowedIps(entries)).toThrow(/^allowedIps: has 1001 entries; at most 1000 are allowed/);
  });

  it.each([
    ['203.0.113.7, 10.0.0.1', "entry 2 ' 10.0.0.1': contains a space"],
    ['203.0.113.7,,10.0.0.1', "entry 2 '': empty entry"],
    ['203.0.113.7,', "entry 2 '': empty entry"],
    ['10.0.0.1,10.0.0.*', "entry 2 '10.0.0.*': wildcard masks are not allowed"],
    ['10.0.0.0/24', "entry 1 '10.0.0.0/24': CIDR ranges are not allowed"],
    ['10.0.0.1-10.0.0.5', 'address ranges are not allowed'],
    ['fe80::1%eth0', 'zone ids'],
    ['127.0.0.1:8080', 'ports and brackets'],
    ['[::1]', 'ports and brackets'],
    ['0177.0.0.1', "entry 1 '0177.0.0.1': not a valid IPv4 address"],
    ['127.1', 'not a valid IPv4 address'],
    ['0.0.0.0', 'unspecified address'],
    ['::', 'unspecified address'],
    ['::ffff:0.0.0.0', 'unspecified address'],
    ['example.com', 'not a valid IPv4 or IPv6 address'],
    ['   ', 'contains only spaces'],
  ])('rejects %j naming the entry and the reason', (input, reason) => {
    let error: unknown;
    try {
      parseAllowedIps(input);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe('allowedIps');
    expect((error as ValidationError).message).toContain(reason);
    expect((error as ValidationError).message.startsWith('allowedIps: ')).toBe(true);
  });

  it('rejects array entries that are not strings or hold several addresses', () => {
    expect(() => parseAllowedIps([1])).toThrow(/entry 1 must be a string/);
    expect(() => parseAllowedIps(['1.2.3.4,5.6.7.8'])).toThrow(/contains a comma/);
    expect(() => parseAllowedIps({})).toThrow(ValidationError);
  });

  it('limits the list length', () => {
    const many = Array.from({ length: 1001 }, (_, i) => `10.0.${i >> 8}.${i & 255}`).join(',');
    expect(() => parseAllowedIps(many)).toThrow(/at most 1000/);
  });
});

describe('isIpAllowed', () => {
  it('allows any address when the list is empty', () => {
    expect(isIpAllowed([], '203.0.113.7')).toBe(true);
    expect(isIpAllowed([], undefined)).toBe(true);
  });

  it('matches the canonical form of the client address', () => {
    expect(isIpAllowed(['127.0.0.1'], '::ffff:127.0.0.1')).toBe(true);
    expect(isIpAllowed(['2001:db8::1'], '2001:DB8:0::1')).toBe(true);
    expect(isIpAllowed(['127.0.0.1'], '127.0.0.2')).toBe(false);
  });

  it('never matches a client address that does not parse strictly', () => {
    for (const bad of ['0177.0.0.1', '127.1', '2130706433', '127.0.0.1 ', '', undefined, null]) {
      expect(isIpAllowed(['127.0.0.1'], bad)).toBe(false);
    }
  });
});
