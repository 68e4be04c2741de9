// Trusted proxies: the entries `trustedProxies` accepts, what each matches, and the entries refused at guard creation.
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { type AddressMatcher, canonicalIp, compileTrustedProxies } from '../../src/ip.js';

function matcher(entries: string | readonly string[]): AddressMatcher {
  const compiled = compileTrustedProxies(entries);
  if (compiled === null) throw new Error('expected a matcher');
  return compiled;
}

function refusal(entries: unknown): ValidationError {
  try {
    compileTrustedProxies(entries);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error(`expected ${JSON.stringify(entries)} to be refused`);
}

describe('compileTrustedProxies: what each documented form matches', () => {
  it.each<[string, string[], string[]]>([
    ['127.0.0.1', ['127.0.0.1', '::ffff:127.0.0.1', '::FFFF:7f00:1'], ['127.0.0.2', '::1', '0177.0.0.1', '127.1', '2130706433']],
    ['10.0.0.0/8', ['10.0.0.0', '10.255.255.255', '::ffff:10.0.0.1'], ['11.0.0.0', '9.255.255.255', '010.0.0.1', '::10.0.0.1']],
    ['10.0.0.0/255.0.0.0', ['10.1.2.3', '::ffff:10.1.2.3'], ['11.1.2.3']],
    ['10.1.2.3/8', ['10.200.0.1'], ['11.1.2.3']],
    ['192.168.1.7/32', ['192.168.1.7'], ['192.168.1.6']],
    ['172.16.0.0/12', ['172.16.0.1', '172.31.255.255'], ['172.32.0.0', '172.15.255.255']],
    ['2001:db8::/32', ['2001:db8::1', '2001:DB8:ffff::1'], ['2001:db9::1', '2001:db8::1%eth0', '[2001:db8::1]']],
    ['2001:db8::1', ['2001:db8:0:0:0:0:0:1'], ['2001:db8::2']],
    ['::1', ['::1', '0:0:0:0:0:0:0:1'], ['127.0.0.1', '::2']],
    ['::ffff:10.0.0.1', ['10.0.0.1', '::ffff:10.0.0.1'], ['10.0.0.2']],
    ['::ffff:10.0.0.0/104', ['10.9.8.7', '::ffff:10.9.8.7'], ['11.0.0.0']],
    ['::ffff:0:0/96', ['1.2.3.4', '::ffff:1.2.3.4'], ['::1', '2001:db8::1']],
    // A mapped range shorter than /96 spans native IPv6 space; like proxy-addr, it trusts nobody.
    ['::ffff:10.0.0.0/80', [], ['10.0.0.1', '::ffff:10.0.0.1', '::1']],
    // A native IPv6 range never covers IPv4 clients, mapped or not.
    ['::/64', ['::1'], ['10.0.0.1', '::ffff:10.0.0.1']],
    ['loopback', ['127.0.0.1', '127.255.255.254', '::ffff:127.0.0.1', '::1'], ['128.0.0.1', '::2', '0177.0.0.1', '127.1', '0x7f.0.0.1']],
    ['linklocal', ['169.254.0.1', 'fe80::1', 'febf::1'], ['169.255.0.1', 'fec0::1', 'fe80::1%eth0']],
    ['uniquelocal', ['10.1.1.1', '172.20.0.1', '192.168.0.1', 'fc00::1', 'fdff::1'], ['172.32.0.1', '192.169.0.1', 'fe00::1', '127.0.0.1']],
  ])('%s', (entry, matches, misses) => {
    for (const form of [entry, [entry], ` ${entry} `]) {
      const trusted = matcher(form);
      for (const address of matches) expect(trusted(address), `${address} in ${entry}`).toBe(true);
      for (const address of misses) expect(trusted(address), `${address} not in ${entry}`).toBe(false);
    }
  });

  it('reads a comma-separated string and an array alike, and matches any entry', () => {
    for (const trusted of [matcher('loopback, 10.0.0.0/8,2001:db8::1'), matcher(['loopback', ' 10.0.0.0/8', '2001:db8::1'])]) {
      expect(['127.0.0.1', '10.2.3.4', '2001:db8::1', '::1'].map(trusted)).toEqual([true, true, true, true]);
      expect(['192.168.0.1', '2001:db8::2', '', 'unknown'].map(trusted)).toEqual([false, false, false, false]);
    }
  });

  it('never matches what is not an address', () => {
    const trusted = matcher(['loopback', '0.0.0.0/1', '128.0.0.0/1', '::ffff:0:0/96', '2000::/3']);
    for (const address of [
      undefined,
      null,
      '',
      ' 127.0.0.1',
      '127.0.0.1 ',
      '127.0.0.1:80',
      '[::1]',
      '::1%lo',
      '127.0.0.1/8',
      'localhost',
    ]) {
      expect(trusted(address)).toBe(false);
    }
  });

  it('trusts nobody when blank', () => {
    for (const blank of [undefined, null, '', '  ', []]) expect(compileTrustedProxies(blank)).toBeNull();
  });
});

describe('compileTrustedProxies: refused entries', () => {
  it.each<[unknown, string]>([
    ['nonsense', "entry 1 'nonsense': not an exact address"],
    ['loopback,', "entry 2 '': not an exact address"],
    ['Loopback', "entry 1 'Loopback': not an exact address"],
    [['10.0.0.1', '0177.0.0.1'], "entry 2 '0177.0.0.1': not an exact address"],
    ['127.1', "entry 1 '127.1': not an exact address"],
    ['0x7f.0.0.1', "entry 1 '0x7f.0.0.1': not an exact address"],
    ['10.0.0.*', "entry 1 '10.0.0.*': not an exact address"],
    ['10.0.0.0-10.0.0.9', "entry 1 '10.0.0.0-10.0.0.9': not an exact address"],
    ['fe80::1%eth0', "entry 1 'fe80::1%eth0': not an exact address"],
    ['[::1]', "entry 1 '[::1]': not an exact address"],
    ['::1.2.3.4', "entry 1 '::1.2.3.4': not an exact address"],
    ['10.0.0.0/33', "entry 1 '10.0.0.0/33': the prefix length must be 1 to 32 for an IPv4 range"],
    ['10.0.0.0/0', "entry 1 '10.0.0.0/0': the prefix length must be 1 to 32 for an IPv4 range"],
    ['2001:db8::/129', "entry 1 '2001:db8::/129': the prefix length must be 1 to 128 for an IPv6 range"],
    ['::/0', "entry 1 '::/0': the prefix length must be 1 to 128 for an IPv6 range"],
    ['10.0.0.0/0008', "entry 1 '10.0.0.0/0008': the range must be a prefix length from 1 to 32 or a netmask"],
    ['10.0.0.0/8/8', "entry 1 '10.0.0.0/8/8': the range must be a prefix length"],
    ['10.0.0.0/', "entry 1 '10.0.0.0/': the range must be a prefix length"],
    ['10.0.0.0/ 8', "entry 1 '10.0.0.0/ 8': the range must be a prefix length"],
    ['10.0.0.0/255.0.255.0', "entry 1 '10.0.0.0/255.0.255.0': the netmask must be contiguous"],
    ['10.0.0.0/0.0.0.0', "entry 1 '10.0.0.0/0.0.0.0': the netmask must be contiguous and not 0.0.0.0"],
    ['10.0.0.0/255.000.0.0', "entry 1 '10.0.0.0/255.000.0.0': the range must be a prefix length"],
    ['10.0.0.0/::ffff:255.0.0.0', "entry 1 '10.0.0.0/::ffff:255.0.0.0': the range must be a prefix length"],
    ['2001:db8::/ffff:ffff::', "entry 1 '2001:db8::/ffff:ffff::': the range must be a prefix length from 1 to 128"],
    ['::ffff:10.0.0.0/255.0.0.0', "entry 1 '::ffff:10.0.0.0/255.0.0.0': the range must be a prefix length from 1 to 128"],
    [['loopback', 5], 'entry 2 must be a string, got number'],
    [true, 'must be an array or a comma-separated string'],
    [() => true, 'must be an array or a comma-separated string'],
    [2, 'must be an array or a comma-separated string'],
  ])('%j', (entries, reason) => {
    const error = refusal(entries);
    expect(error.field).toBe('trustedProxies');
    expect(error.reason.startsWith(reason), error.reason).toBe(true);
    expect(error.message).toBe(`trustedProxies: ${error.reason}`);
  });

  it('names the option it was given', () => {
    expect(() => compileTrustedProxies('nope', 'proxies')).toThrow(/^proxies: entry 1 'nope'/);
  });
});

/**
 * The reference: an entry is a (family, base, prefix) triple or a name; an address matches when its
 * canonical form (canonicalIp, the strict parse) has the same family and the same first `prefix`
 * bits, compared as big integers. Names are checked with ipaddr.js's own `range()`.
 */
type Entry =
  | { kind: 4; base: bigint; bits: number; text: string }
  | { kind: 6; base: bigint; bits: number; text: string }
  | { kind: 'named'; name: 'loopback' | 'linklocal' | 'uniquelocal'; text: string };

const RANGE_NAMES = {
  loopback: { 4: 'loopback', 6: 'loopback' },
  linklocal: { 4: 'linkLocal', 6: 'linkLocal' },
  uniquelocal: { 4: 'private', 6: 'uniqueLocal' },
} as const;

const TOP4 = (1n << 32n) - 1n;
const TOP6 = (1n << 128n) - 1n;

function v4Text(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((n >> shift) & 255n)).join('.');
}

function v6Text(n: bigint): string {
  return [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) => ((n >> shift) & 0xffffn).toString(16)).join(':');
}

function v4Value(text: string): bigint {
  return text.split('.').reduce((sum, part) => (sum << 8n) | BigInt(part), 0n);
}

function v6Value(text: string): bigint {
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  return groups.reduce((sum, group) => (sum << 16n) | BigInt(`0x${group}`), 0n);
}

function samePrefix(a: bigint, b: bigint, bits: number, width: number): boolean {
  return (a ^ b) >> BigInt(width - bits) === 0n;
}

function reference(entries: readonly Entry[], address: string): boolean {
  const canonical = canonicalIp(address);
  if (canonical === null) return false;
  const family = canonical.includes(':') ? 6 : 4;
  const value = family === 4 ? v4Value(canonical) : v6Value(canonical);
  const range = ipaddr.parse(canonical).range();
  return entries.some((entry) => {
    if (entry.kind === 'named') return range === RANGE_NAMES[entry.name][family];
    return entry.kind === family && samePrefix(value, entry.base, entry.bits, family === 4 ? 32 : 128);
  });
}

const v4Int = fc.bigInt({ min: 0n, max: TOP4 });
const v6Int = fc.bigInt({ min: 0n, max: TOP6 }).filter((n) => canonicalIp(v6Text(n))?.includes(':') === true);

const entryArb: fc.Arbitrary<Entry> = fc.oneof(
  fc.tuple(v4Int, fc.integer({ min: 1, max: 32 }), fc.constantFrom('prefix', 'netmask', 'exact')).map(([base, bits, form]): Entry => {
    if (form === 'exact') return { kind: 4, base, bits: 32, text: v4Text(base) };
    const mask = (TOP4 << BigInt(32 - bits)) & TOP4;
    return { kind: 4, base, bits, text: `${v4Text(base)}/${form === 'netmask' ? v4Text(mask) : bits}` };
  }),
  fc
    .tuple(v6Int, fc.integer({ min: 1, max: 128 }), fc.boolean())
    .map(
      ([base, bits, exact]): Entry =>
        exact ? { kind: 6, base, bits: 128, text: v6Text(base) } : { kind: 6, base, bits, text: `${v6Text(base)}/${bits}` },
    ),
  // An IPv4-mapped range of /96 or longer is the IPv4 range it maps.
  fc
    .tuple(v4Int, fc.integer({ min: 96, max: 128 }))
    .map(([base, bits]): Entry => ({ kind: 4, base, bits: bits - 96, text: `::ffff:${v4Text(base)}/${bits}` })),
  fc.constantFrom('loopback', 'linklocal', 'uniquelocal').map((name): Entry => ({ kind: 'named', name, text: name })),
);

/** Near an entry (its base with one bit flipped), so both outcomes come up often. */
function near(entry: Entry, bit: number, mapped: boolean): string {
  if (entry.kind === 'named') {
    const base = { loopback: '127.0.0.1', linklocal: 'fe80::1', uniquelocal: '172.16.0.1' }[entry.name];
    return base.includes(':') ? v6Text(v6Value(base) ^ (1n << BigInt(bit % 128))) : v4Text(v4Value(base) ^ (1n << BigInt(bit % 32)));
  }
  if (entry.kind === 4) {
    const text = v4Text(entry.base ^ (1n << BigInt(bit % 32)));
    return mapped ? `::ffff:${text}` : text;
  }
  return v6Text(entry.base ^ (1n << BigInt(bit % 128)));
}

describe('compileTrustedProxies against a reference (fast-check)', () => {
  it('matches exactly the addresses whose canonical form shares an entry’s prefix', () => {
    const scenario = fc.array(entryArb, { minLength: 1, maxLength: 5 }).chain((entries) =>
      fc.tuple(
        fc.constant(entries),
        fc.array(
          fc.oneof(
            fc
              .tuple(fc.nat({ max: entries.length - 1 }), fc.nat({ max: 127 }), fc.boolean())
              .map(([i, bit, mapped]) => near(entries[i] as Entry, bit, mapped)),
            v4Int.map(v4Text),
            v4Int.map((n) => `::ffff:${v4Text(n)}`),
            v6Int.map(v6Text),
            fc.ipV4Extended(),
            fc.ipV6(),
            fc.constantFrom('127.0.0.1', '::1', '10.0.0.1', '169.254.9.9', 'fd00::1', '0177.0.0.1', '127.1', '::127.0.0.1', ''),
          ),
          { minLength: 1, maxLength: 10 },
        ),
      ),
    );
    fc.assert(
      fc.property(scenario, ([entries, addresses]) => {
        const asArray = matcher(entries.map((entry) => entry.text));
        const asString = matcher(entries.map((entry) => entry.text).join(','));
        for (const address of addresses) {
          const expected = reference(entries, address);
          expect(asArray(address), `${address} against ${entries.map((e) => e.text).join(',')}`).toBe(expected);
          expect(asString(address)).toBe(expected);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
