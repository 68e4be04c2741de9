// Scopes: All implies everything, edit implies list, unknown scopes are refused on write.
import { describe, expect, it } from 'vitest';
import { b2bWaveScopes, defineScopes, ValidationError } from '../../src/index.js';

const ALL = ['all', 'orders:list', 'orders:edit', 'products:list', 'products:edit', 'customers:list', 'customers:edit'];

/** The rule, stated independently of the implementation. */
function reference(granted: readonly string[], required: string): boolean {
  if (granted.includes('all')) return true;
  if (granted.includes(required)) return true;
  if (required.endsWith(':list')) return granted.includes(required.replace(':list', ':edit'));
  return false;
}

describe('scopes.parse on oversized input', () => {
  it('refuses a string too long for 1000 scope names before splitting it', () => {
    const huge = 'orders:list,'.repeat(1_700_000); // about 20 MB
    expect(() => b2bWaveScopes.parse(huge)).toThrow(/^scopes: is 20400000 characters long; at most 1000 scope names are allowed/);
  });

  it('refuses an array of more than 1000 entries before reading them', () => {
    expect(() => b2bWaveScopes.parse(Array.from({ length: 1001 }, () => 42))).toThrow(/^scopes: has 1001 entries; at most 1000/);
  });

  it('still accepts 1000 names, duplicates included, as a string or an array', () => {
    const names = Array.from({ length: 1000 }, (_, i) => (i % 2 ? 'customers:edit' : 'orders:list'));
    expect(b2bWaveScopes.parse(names.join(','))).toEqual(['orders:list', 'customers:edit']);
    expect(b2bWaveScopes.parse(names)).toEqual(['orders:list', 'customers:edit']);
  });
});

describe('b2bWaveScopes', () => {
  it('lists the seven B2B Wave scopes with their labels', () => {
    expect(b2bWaveScopes.list().map((s) => [s.name, s.label])).toEqual([
      ['all', 'All'],
      ['orders:list', 'Order list'],
      ['orders:edit', 'Order edit'],
      ['products:list', 'Product list'],
      ['products:edit', 'Product edit'],
      ['customers:list', 'Customer list'],
      ['customers:edit', 'Customer edit'],
    ]);
  });

  it('agrees with the reference rule for all 2^7 granted sets × every required scope', () => {
    let checked = 0;
    for (let mask = 0; mask < 1 << ALL.length; mask++) {
      const granted = ALL.filter((_, i) => mask & (1 << i));
      for (const required of ALL) {
        expect(b2bWaveScopes.satisfies(granted, required), `${granted.join('+') || '(none)'} ⊢ ${required}`).toBe(
          reference(granted, required),
        );
        checked++;
      }
      // Several required scopes: all of them are needed.
      expect(b2bWaveScopes.satisfies(granted, ['orders:list', 'products:edit'])).toBe(
        reference(granted, 'orders:list') && reference(granted, 'products:edit'),
      );
    }
    expect(checked).toBe(128 * 7);
  });

  it('expands granted scopes to everything they imply', () => {
    expect(b2bWaveScopes.expand(['orders:edit'])).toEqual(['orders:list', 'orders:edit']);
    expect(b2bWaveScopes.expand(['all'])).toEqual(ALL);
    expect(b2bWaveScopes.expand(['customers:list'])).toEqual(['customers:list']);
  });

  it('describes scopes by label', () => {
    expect(b2bWaveScopes.describe(['orders:edit', 'products:list'])).toEqual(['Order edit', 'Product list']);
  });

  it('parses scopes for writing: de-duplicated, in catalog order', () => {
    expect(b2bWaveScopes.parse(['products:list', 'orders:edit', 'products:list'])).toEqual(['orders:edit', 'products:list']);
    expect(b2bWaveScopes.parse('orders:list,all')).toEqual(['all', 'orders:list']);
  });

  it('refuses an empty scope list and unknown scopes, naming the field', () => {
    expect(() => b2bWaveScopes.parse([])).toThrow(/scopes: choose at least one scope/);
    expect(() => b2bWaveScopes.parse(['orders:delete'])).toThrow(/unknown scope 'orders:delete'/);
    expect(() => b2bWaveScopes.parse(['Orders:List'])).toThrow(ValidationError);
    expect(() => b2bWaveScopes.parse([7])).toThrow(/entry 1 must be a string/);
    expect(() => b2bWaveScopes.parse(null)).toThrow(ValidationError);
  });
});

describe('defineScopes', () => {
  const catalog = defineScopes({
    resources: { invoices: 'Invoice', reports: 'Report' },
    actions: { read: 'read', write: { label: 'write', implies: ['read'] }, admin: { label: 'admin', implies: ['write'] } },
    all: { name: 'root', label: 'Everything' },
  });

  it('builds resource:action scopes with transitive implication', () => {
    expect(catalog.satisfies(['invoices:admin'], 'invoices:read')).toBe(true);
    expect(catalog.satisfies(['invoices:admin'], 'reports:read')).toBe(false);
    expect(catalog.satisfies(['root'], 'reports:admin')).toBe(true);
    expect(catalog.list().find((s) => s.name === 'invoices:write')?.label).toBe('Invoice write');
  });

  it('can have no all-scope', () => {
    const plain = defineScopes({ resources: { a: 'A' }, actions: { x: 'x' }, all: false });
    expect(plain.list().map((s) => s.name)).toEqual(['a:x']);
  });

  it('refuses bad definitions', () => {
    expect(() => defineScopes({ resources: {}, actions: { read: 'read' } })).toThrow(ValidationError);
    expect(() => defineScopes({ resources: { a: 'A' }, actions: { write: { label: 'w', implies: ['read'] } } })).toThrow(
      /implies unknown action 'read'/,
    );
    expect(() => defineScopes({ resources: { 'Bad Name': 'x' }, actions: { read: 'read' } })).toThrow(ValidationError);
  });
});
