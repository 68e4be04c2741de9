// Tokens: prefix, 190 random bits in base62, a CRC32 checksum that stops typos before the store.
import { createSecretKey, generateKeyPairSync, randomBytes } from 'node:crypto';
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
    const peppered = createKeyManager({ store, pepper: 'server-secret-of-32-characters!!' });
    const { token } = await peppered.create({ name: 'p', scopes: ['all'] });
    expect((await peppered.verify(token)).valid).toBe(true);
    expect(await createKeyManager({ store }).verify(token)).toMatchObject({ code: 'NOT_FOUND' });
    expect(await createKeyManager({ store, pepper: 'another-secret-of-32-characters!' }).verify(token)).toMatchObject({
      code: 'NOT_FOUND',
    });
  });

  it('give the same digests for a pepper as a string, a Buffer, a Uint8Array and a secret KeyObject', async () => {
    const secret = randomBytes(32);
    const store = memoryStore();
    const { token } = await createKeyManager({ store, pepper: secret }).create({ name: 'p', scopes: ['all'] });
    for (const pepper of [new Uint8Array(secret), createSecretKey(secret)]) {
      expect((await createKeyManager({ store, pepper }).verify(token)).valid).toBe(true);
    }
    const text = 'a pepper given as a plain string';
    const { token: fromText } = await createKeyManager({ store, pepper: text }).create({ name: 't', scopes: ['all'] });
    expect((await createKeyManager({ store, pepper: Buffer.from(text) }).verify(fromText)).valid).toBe(true);
  });
});

describe('a pepper', () => {
  const store = memoryStore();
  const refused = (pepper: unknown): ValidationError => {
    try {
      createKeyManager({ store, pepper: pepper as string });
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      return error as ValidationError;
    }
    throw new Error(`pepper ${String(pepper)} was accepted`);
  };

  it('that is empty is refused when the manager is created, as a string, Buffer, Uint8Array or KeyObject', () => {
    // What `Buffer.from(process.env.UNSET ?? '', 'hex')` gives: an HMAC keyed with a public empty key.
    for (const empty of [
      '',
      Buffer.from(process.env.KEYGATE_UNSET_PEPPER ?? '', 'hex'),
      new Uint8Array(0),
      createSecretKey(Buffer.alloc(0)),
    ]) {
      const error = refused(empty);
      expect(error.field).toBe('pepper');
      expect(error.message).toMatch(/at least 16 bytes, got 0/);
    }
  });

  it('shorter than 16 bytes is refused, and a string counts its UTF-8 bytes', () => {
    expect(refused('server-secret').message).toMatch(/at least 16 bytes, got 13/);
    expect(refused(randomBytes(15)).message).toMatch(/got 15/);
    // Eight characters, sixteen UTF-8 bytes.
    expect(() => createKeyManager({ store, pepper: 'éééééééé' })).not.toThrow();
    expect(() => createKeyManager({ store, pepper: randomBytes(16) })).not.toThrow();
  });

  it('of another type is refused when the manager is created, not at the first verify', () => {
    for (const wrong of [1234567890123456, 12345678901234567890n, true, {}, [1, 2, 3], null]) {
      expect(refused(wrong).message).toMatch(/^pepper: must be a string, a Buffer\/Uint8Array or a secret KeyObject/);
    }
    const { publicKey } = generateKeyPairSync('ed25519');
    expect(refused(publicKey).message).toMatch(/secret KeyObject/);
  });
});
