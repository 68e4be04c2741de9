// Strict IP parsing: one canonical form for allow-list entries and client addresses alike.

import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { ValidationError } from './errors.js';

/** The longest textual IPv6 address (with an embedded IPv4 tail) is 45 characters. */
const MAX_IP_LENGTH = 45;
/** An allow-list holds at most this many addresses. */
export const MAX_ALLOWED_IPS = 1000;
/** The longest allow-list string that can hold {@link MAX_ALLOWED_IPS} addresses; longer is refused unsplit. */
const MAX_ALLOWED_IPS_LENGTH = MAX_ALLOWED_IPS * (MAX_IP_LENGTH + 1) - 1;

const EMBEDDED_V4 = /^(.*:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * The canonical form of an exact IP address, or `null` when the text is not one.
 *
 * Accepts only what `net.isIP` accepts and, for IPv4, four decimal parts without leading zeros.
 * IPv6 comes out compressed and lower-case; `::ffff:a.b.c.d` comes out as `a.b.c.d`. Rejected:
 * zone ids, brackets, ports, CIDR suffixes, wildcards, ranges, shorthand IPv4 (`127.1`, `0x7f.0.0.1`,
 * `0177.0.0.1`, `2130706433`) and the deprecated IPv4-compatible IPv6 addresses (`::a.b.c.d`).
 *
 * @example canonicalIp('2001:DB8:0::1') // '2001:db8::1'
 */
export function canonicalIp(input: unknown): string | null {
  if (typeof input !== 'string' || input.length === 0 || input.length > MAX_IP_LENGTH) return null;
  const family = isIP(input);
  if (family === 4) {
    return ipaddr.IPv4.isValidFourPartDecimal(input) ? input : null;
  }
  if (family !== 6 || input.includes('%')) return null;
  return strictIpv6(input)?.toString() ?? null;
}

/** The address `canonicalIp` accepts, parsed once: an IPv4 or IPv6 address of ipaddr.js, or `null`. */
function strictIp(input: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  if (input.length === 0 || input.length > MAX_IP_LENGTH) return null;
  const family = isIP(input);
  if (family === 4) return ipaddr.IPv4.isValidFourPartDecimal(input) ? ipaddr.IPv4.parse(input) : null;
  if (family !== 6 || input.includes('%')) return null;
  return strictIpv6(input);
}

/** An IPv6 address as written, `::ffff:a.b.c.d` as its IPv4 address; `null` for the deprecated `::a.b.c.d` or what does not parse. */
function strictIpv6(input: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  // ipaddr.js reads `::1.2.3.4` as `::ffff:1.2.3.4`; rewrite a dotted tail as two hex groups first
  // so that the address parsed is exactly the one written.
  let text = input;
  const dotted = EMBEDDED_V4.exec(input);
  if (dotted) {
    const [, head, a, b, c, d] = dotted as unknown as [string, string, string, string, string, string];
    const hi = (Number(a) << 8) | Number(b);
    const lo = (Number(c) << 8) | Number(d);
    text = `${head}${hi.toString(16)}:${lo.toString(16)}`;
  }
  let address: ipaddr.IPv6;
  try {
    address = ipaddr.IPv6.parse(text);
  } catch {
    return null;
  }
  const p = address.parts;
  if (p[0] === 0 && p[1] === 0 && p[2] === 0 && p[3] === 0 && p[4] === 0) {
    if (p[5] === 0xffff) return address.toIPv4Address();
    // ::/96 other than :: and ::1 is the deprecated IPv4-compatible range (RFC 4291 2.5.5.1).
    if (p[5] === 0 && (p[6] !== 0 || (p[7] !== 0 && p[7] !== 1))) return null;
  }
  return address;
}

/** Whether a canonical address is the unspecified address, which many tools read as "any". */
function isUnspecified(canonical: string): boolean {
  return canonical === '0.0.0.0' || canonical === '::';
}

function explainBadEntry(entry: string): string {
  if (entry.length === 0) return 'empty entry; remove the extra comma';
  if (/\s/.test(entry)) return 'contains a space; separate addresses with commas only, no spaces';
  if (entry.includes('*')) return 'wildcard masks are not allowed; list each exact address';
  if (entry.includes('/')) return 'CIDR ranges are not allowed; list each exact address';
  if (/^[\d.]+-[\d.]+$/.test(entry) || /^[\da-f:]+-[\da-f:]+$/i.test(entry)) {
    return 'address ranges are not allowed; list each exact address';
  }
  if (entry.includes('%')) return 'zone ids (%eth0) are not allowed; give the address alone';
  if (entry.startsWith('[') || /^\d+\.\d+\.\d+\.\d+:\d+$/.test(entry)) {
    return 'ports and brackets are not allowed; give the address alone';
  }
  if (/^[\d.x]+$/i.test(entry) && !entry.includes(':')) {
    return 'not a valid IPv4 address; use four decimal numbers 0-255 without leading zeros, like 203.0.113.7';
  }
  if (entry.length > MAX_IP_LENGTH) return 'too long to be an IP address';
  return 'not a valid IPv4 or IPv6 address';
}

function show(entry: string): string {
  return entry.length > 60 ? `'${entry.slice(0, 57)}...'` : `'${entry}'`;
}

/**
 * Parses an allow-list as the admin form sends it: exact addresses separated by commas, no spaces,
 * no wildcard masks. An array of addresses is accepted too. Blank (`''`, `null`, `undefined`, `[]`)
 * means any address and gives `[]`. Returns canonical, de-duplicated addresses in input order.
 *
 * @throws ValidationError naming the entry and the reason, e.g.
 *   `allowedIps: entry 2 '10.0.0.*': wildcard masks are not allowed; list each exact address`
 * @example parseAllowedIps('203.0.113.7,2001:DB8::1') // ['203.0.113.7', '2001:db8::1']
 */
export function parseAllowedIps(input: unknown, field = 'allowedIps'): string[] {
  if (input === undefined || input === null || input === '') return [];
  let entries: string[];
  if (typeof input === 'string') {
    // Refused before it is trimmed or split: a 20 MB string would otherwise cost seconds and hundreds of MB.
    if (input.length > MAX_ALLOWED_IPS_LENGTH) {
      throw new ValidationError(
        field,
        `is ${input.length} characters long; at most ${MAX_ALLOWED_IPS} addresses (${MAX_ALLOWED_IPS_LENGTH} characters) are allowed`,
      );
    }
    if (input.trim() === '') {
      throw new ValidationError(field, 'contains only spaces: leave it empty to allow any address');
    }
    entries = input.split(',');
  } else if (Array.isArray(input)) {
    if (input.length > MAX_ALLOWED_IPS) {
      throw new ValidationError(field, `has ${input.length} entries; at most ${MAX_ALLOWED_IPS} are allowed`);
    }
    entries = [];
    input.forEach((entry: unknown, index) => {
      if (typeof entry !== 'string') {
        throw new ValidationError(field, `entry ${index + 1} must be a string, got ${typeof entry}`);
      }
      entries.push(entry);
    });
  } else {
    throw new ValidationError(field, 'must be a comma-separated string of addresses or an array of addresses');
  }
  if (entries.length > MAX_ALLOWED_IPS) {
    throw new ValidationError(field, `has ${entries.length} entries; at most ${MAX_ALLOWED_IPS} are allowed`);
  }
  const result: string[] = [];
  const seen = new Set<string>();
  entries.forEach((entry, index) => {
    const label = `entry ${index + 1} ${show(entry)}`;
    if (Array.isArray(input) && entry.includes(',')) {
      throw new ValidationError(field, `${label}: contains a comma; give one address per array entry`);
    }
    const canonical = canonicalIp(entry);
    if (canonical === null) throw new ValidationError(field, `${label}: ${explainBadEntry(entry)}`);
    if (isUnspecified(canonical)) {
      throw new ValidationError(
        field,
        `${label}: the unspecified address means "any" to many tools; leave the field blank to allow any address`,
      );
    }
    if (!seen.has(canonical)) {
      seen.add(canonical);
      result.push(canonical);
    }
  });
  return result;
}

/**
 * Whether `ip` may use a key with this allow-list. An empty list allows every address; an address
 * that does not parse strictly never matches a non-empty list.
 *
 * @param allowed canonical addresses, as `parseAllowedIps` returns them
 * @example isIpAllowed(['127.0.0.1'], '::ffff:127.0.0.1') // true
 */
export function isIpAllowed(allowed: readonly string[], ip: string | null | undefined): boolean {
  if (allowed.length === 0) return true;
  const canonical = canonicalIp(ip);
  return canonical !== null && allowed.includes(canonical);
}

/** Whether an address belongs to a compiled list of addresses and ranges. */
export type AddressMatcher = (address: string | null | undefined) => boolean;

/**
 * The names `trustedProxies` accepts, and the ranges each stands for (the same as proxy-addr's,
 * which Express's `trust proxy` uses; ipaddr.js's `range()` calls them `loopback`, `linkLocal`,
 * `private` and `uniqueLocal`).
 */
const NAMED_PROXY_RANGES: Readonly<Record<'loopback' | 'linklocal' | 'uniquelocal', readonly string[]>> = Object.freeze({
  loopback: Object.freeze(['127.0.0.0/8', '::1/128']),
  linklocal: Object.freeze(['169.254.0.0/16', 'fe80::/10']),
  uniquelocal: Object.freeze(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7']),
});

const PROXY_FORMS = "addresses, CIDR ranges (10.0.0.0/8) or 'loopback' | 'linklocal' | 'uniquelocal'";

function isNamedRange(entry: string): entry is keyof typeof NAMED_PROXY_RANGES {
  return Object.hasOwn(NAMED_PROXY_RANGES, entry);
}

/**
 * One `trustedProxies` entry as CIDR text in canonical form (`10.0.0.0/8`, `::1/128`), or `null`
 * for an entry that can match no client address, or a reason why the entry is refused.
 *
 * The base address is parsed strictly (`canonicalIp`). The range is a prefix length of 1 to 3
 * digits (1..32 for IPv4, 1..128 for IPv6) or, after an IPv4 address, a contiguous netmask
 * (`255.0.0.0`). An IPv4-mapped base (`::ffff:10.0.0.0/104`) stands for the IPv4 range it maps
 * (`10.0.0.0/8`); a mapped range shorter than /96 reaches beyond the mapped block, so it is kept
 * from matching anything, as proxy-addr does.
 */
function proxyEntryCidr(entry: string): { cidr: string | null } | { reason: string } {
  const slash = entry.indexOf('/');
  const base = slash < 0 ? entry : entry.slice(0, slash);
  const canonical = canonicalIp(base);
  if (canonical === null) return { reason: 'not an exact address, a CIDR range (10.0.0.0/8) or one of loopback, linklocal, uniquelocal' };
  const family = isIP(base);
  const max = family === 4 ? 32 : 128;
  let bits = max;
  if (slash >= 0) {
    const range = entry.slice(slash + 1);
    if (/^\d{1,3}$/.test(range)) {
      bits = Number(range);
      if (bits < 1 || bits > max) return { reason: `the prefix length must be 1 to ${max} for an IPv${family} range` };
    } else if (family === 4 && isIP(range) === 4 && canonicalIp(range) !== null) {
      const length = ipaddr.IPv4.parse(range).prefixLengthFromSubnetMask();
      if (length === null || length === 0) return { reason: 'the netmask must be contiguous and not 0.0.0.0, like 255.255.0.0' };
      bits = length;
    } else {
      return {
        reason:
          family === 4
            ? 'the range must be a prefix length from 1 to 32 or a netmask like 255.0.0.0'
            : 'the range must be a prefix length from 1 to 128',
      };
    }
  }
  const mapped = family === 6 && !canonical.includes(':');
  if (!mapped) return { cidr: `${canonical}/${bits}` };
  return { cidr: bits >= 96 ? `${canonical}/${bits - 96}` : null };
}

/**
 * Compiles a list of trusted proxies: exact addresses, CIDR ranges (`10.0.0.0/8`,
 * `10.0.0.0/255.0.0.0`, `2001:db8::/32`) and the names `loopback`, `linklocal`, `uniquelocal`,
 * as an array or a comma-separated string. Blank (`''`, `null`, `undefined`, `[]`) gives `null`:
 * no proxy is trusted.
 *
 * The matcher parses the address it is given strictly (`canonicalIp`), so `0177.0.0.1` is no
 * loopback proxy and an address that does not parse matches nothing. An IPv4-mapped address
 * (`::ffff:10.0.0.1`) matches the IPv4 ranges; a native IPv6 address matches only IPv6 ranges.
 *
 * @throws ValidationError naming the entry and the reason, e.g.
 *   `trustedProxies: entry 1 '10.0.0.0/33': the prefix length must be 1 to 32 for an IPv4 range`
 * @example compileTrustedProxies('loopback,10.0.0.0/8')?.('::ffff:10.1.2.3') // true
 */
export function compileTrustedProxies(input: unknown, field = 'trustedProxies'): AddressMatcher | null {
  if (input === undefined || input === null) return null;
  let entries: string[];
  if (typeof input === 'string') entries = input.trim() === '' ? [] : input.split(',');
  else if (Array.isArray(input)) {
    entries = input.map((entry: unknown, index) => {
      if (typeof entry !== 'string') throw new ValidationError(field, `entry ${index + 1} must be a string, got ${typeof entry}`);
      return entry;
    });
  } else {
    throw new ValidationError(field, `must be an array or a comma-separated string of ${PROXY_FORMS}`);
  }
  if (entries.length === 0) return null;
  const v4: [ipaddr.IPv4, number][] = [];
  const v6: [ipaddr.IPv6, number][] = [];
  const add = (cidr: string): void => {
    const [address, bits] = ipaddr.parseCIDR(cidr);
    if (address.kind() === 'ipv4') v4.push([address as ipaddr.IPv4, bits]);
    else v6.push([address as ipaddr.IPv6, bits]);
  };
  entries.forEach((raw, index) => {
    const entry = raw.trim();
    if (isNamedRange(entry)) {
      for (const cidr of NAMED_PROXY_RANGES[entry]) add(cidr);
      return;
    }
    const parsed = proxyEntryCidr(entry);
    if ('reason' in parsed) throw new ValidationError(field, `entry ${index + 1} ${show(entry)}: ${parsed.reason}`);
    if (parsed.cidr !== null) add(parsed.cidr);
  });
  return (address) => {
    // Parsed once, as strictly as canonicalIp: an address that does not parse matches nothing.
    const ip = typeof address === 'string' ? strictIp(address) : null;
    if (ip === null) return false;
    if (ip.kind() === 'ipv6') {
      for (const range of v6) if ((ip as ipaddr.IPv6).match(range)) return true;
      return false;
    }
    for (const range of v4) if ((ip as ipaddr.IPv4).match(range)) return true;
    return false;
  };
}
