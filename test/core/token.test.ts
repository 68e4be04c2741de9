// Tokens: prefix, 190 random bits in base62, a CRC32 checksum that stops typos before the store.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { createKeyManager, ValidationError } from '../../src/index.js';
import { countingStore } from '../support/counting-store.js';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

describe('tokens', () => {
  it('look like {prefix}_{38 base62 characters} and are all different', async () => {
    const keys = createKeyManager({ store: memoryStore(), prefix: 'shop_live' });
    const tokens = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const { token, key } = await keys.create({ name: `t${i}`, scopes: ['all'] });
      expect(token).toMatch(/^shop_live_[0-9A-Za-z]{38}$/);
      expect(key.hint).toBe(`shop_live_${token.slice(10, 13)}…${token.slice(-4)}`);
      tokens.add(token);
    }
    expect(tokens.size).toBe(200);
  });

  it('use every base62 character in the random part (no - or _ from the default nanoid alphabet)', async () => {
    const keys = createKeyManager({ store: memoryStore() });
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const { token } = await keys.create({ name: 'x', scopes: ['all'] });
      for (const c of token.slice(3, 35)) seen.add(c);
    }
    expect([...seen].sort().join('')).toBe([...BASE62].sort().join(''));
  });

  it('with any single character changed fail as MALFORMED without a store call', async () => {
    const store = countingStore(memoryStore());
    const keys = createKeyManager({ store });
    const { token } = await keys.create({ name: 'typo', scopes: ['all'] });
    const before = store.calls.total;
    let variants = 0;
    for (let i = 0; i < token.length; i++) {
      for (const c of ['a', 'Z', '0', '_', '-', 'é']) {
        if (token[i] === c) continue;
        const typo = token.slice(0, i) + c + token.slice(i + 1);
        expect(await keys.verify(typo), typo).toMatchObject({ valid: false, code: 'MALFORMED' });
        variants++;
      }
    }
    expect(variants).toBeGreaterThan(200);
    expect(store.calls.total).toBe(before);
    expect((await keys.verify(token)).valid).toBe(true);
    expect(store.calls.findByDigest).toBe(1);
  });

  it('that are random strings never reach the store (property)', async () => {
    const store = countingStore(memoryStore());
    const keys = createKeyManager({ store });
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.stringMatching(/^kg_[0-9A-Za-z]{38}$/)), async (t) => {
        const result = await keys.verify(t);
        expect(result.valid).toBe(false);
      }),
      { numRuns: 1000 },
    );
    // 1 in 62^6 random bodies passes the checksum by chance; none of 1000 should.
    expect(store.calls.findByDigest).toBe(0);
  });

  it('refuse bad prefixes at manager creation', () => {
    for (const prefix of ['', 'KG', '1kg', 'kg-live', 'kg_', 'a_b_c', 'averyveryverylongprefix']) {
      expect(() => createKeyManager({ store: memoryStore(), prefix }), prefix).toThrow(ValidationError);
    }
  });

  it('from another prefix are MALFORMED', async () => {
    const a = createKeyManager({ store: memoryStore(), prefix: 'aa' });
    const shared = memoryStore();
    const b = createKeyManager({ store: shared, prefix: 'bb' });
    const { token } = await a.create({ name: 'a', scopes: ['all'] });
    expect(await b.verify(token)).toMatchObject({ code: 'MALFORMED' });
  });

  it('are looked up by an HMAC digest when a pepper is set', async () => {
    const store = memoryStore();
    const peppered = createKeyManager({ store, pepper: 'server-secret' });
    const { token } = await peppered.create({ name: 'p', scopes: ['all'] });
    expect((await peppered.verify(token)).valid).toBe(true);
    expect(await createKeyManager({ store }).verify(token)).toMatchObject({ code: 'NOT_FOUND' });
    expect(await createKeyManager({ store, pepper: 'other' }).verify(token)).toMatchObject({ code: 'NOT_FOUND' });
    expect(() => createKeyManager({ store, pepper: '' })).toThrow(/pepper/);
  });
});
