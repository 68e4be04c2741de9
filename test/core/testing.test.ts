// createTestKeys: minted states are the manager's real states, the clock is the manager's, seeds are stable.
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../adapters/memory/index.js';
import { ValidationError } from '../../src/index.js';
import { createTestKeys } from '../../adapters/testing/index.js';

const code = async (t: ReturnType<typeof createTestKeys>, token: string | undefined, options?: { ip?: string; scope?: string }) => {
  const result = await t.keys.verify(token, options);
  return result.valid ? 'VALID' : result.code;
};

describe('createTestKeys', () => {
  it('mints keys in every state, each verified as that state', async () => {
    const t = createTestKeys();
    const at = t.clock.now();
    expect(await code(t, (await t.mint()).token)).toBe('VALID');
    const inactive = await t.mint({ active: false });
    expect(inactive.key.active).toBe(false);
    expect(await code(t, inactive.token)).toBe('INACTIVE');
    const expired = await t.mint({ expired: true });
    expect(expired.key.expiresAt?.getTime()).toBe(at);
    expect(expired.key.createdAt.getTime()).toBe(at - 86_400_000);
    expect(await code(t, expired.token)).toBe('EXPIRED');
    const rotated = await t.mint({ rotated: true });
    expect(await code(t, rotated.previousToken)).toBe('NOT_FOUND');
    expect(await code(t, rotated.token)).toBe('VALID');
    expect(rotated.key.version).toBe(3);
    const grace = await t.mint({ rotated: { gracePeriodMs: 1000 }, active: false });
    expect(await code(t, grace.previousToken)).toBe('INACTIVE');
    await t.keys.activate(grace.key.id);
    expect(await code(t, grace.previousToken)).toBe('VALID');
    const listed = await t.mint({ allowedIps: ['2001:DB8::1'], scopes: ['orders:list'], ownerId: 'o1', metadata: { a: 1 } });
    expect(listed.key).toMatchObject({ allowedIps: ['2001:db8::1'], scopes: ['orders:list'], ownerId: 'o1', metadata: { a: 1 } });
    expect(await code(t, listed.token, { ip: '2001:db8::1', scope: 'orders:list' })).toBe('VALID');
    expect(await code(t, listed.token, { ip: '2001:db8::2' })).toBe('IP_NOT_ALLOWED');
    expect(await code(t, listed.token, { ip: '2001:db8::1', scope: 'orders:edit' })).toBe('INSUFFICIENT_SCOPE');
    expect(await code(t, t.unknownToken())).toBe('NOT_FOUND');
    // The clock is where it was: minting never moves it for the caller.
    expect(t.clock.now()).toBe(at);
    t.clock.advance(1000);
    expect(await code(t, grace.previousToken)).toBe('NOT_FOUND');
    await t.close();
  });

  it('an expired key rotated with a grace period has no working old token', async () => {
    const t = createTestKeys();
    const m = await t.mint({ expired: new Date(t.clock.now() - 5000), rotated: { gracePeriodMs: 3_600_000 } });
    expect(await code(t, m.previousToken)).toBe('NOT_FOUND');
    expect(await code(t, m.token)).toBe('EXPIRED');
  });

  it('runs mints one at a time, so a backdated mint never leaks its time into another', async () => {
    const t = createTestKeys({ startAt: '2030-01-01T00:00:00Z' });
    const minted = await Promise.all([t.mint({ expired: true }), t.mint(), t.mint({ createdAt: '2029-01-01T00:00:00Z' }), t.mint()]);
    expect(minted.map((m) => m.key.createdAt.toISOString())).toEqual([
      '2029-12-31T00:00:00.000Z',
      '2030-01-01T00:00:00.000Z',
      '2029-01-01T00:00:00.000Z',
      '2030-01-01T00:00:00.000Z',
    ]);
    expect(t.clock.date().toISOString()).toBe('2030-01-01T00:00:00.000Z');
  });

  it('refuses impossible states, naming the field, and leaves the clock alone', async () => {
    const t = createTestKeys();
    const at = t.clock.now();
    const cases: [object, string][] = [
      [{ expired: at + 1 }, 'expired'],
      [{ expired: true, expiresAt: at + 1000 }, 'expiresAt'],
      [{ createdAt: at + 1 }, 'createdAt'],
      [{ expired: at - 1000, createdAt: at - 1000 }, 'createdAt'],
      [{ expired: 'not a date' }, 'expired'],
      [{ scopes: ['nope'] }, 'scopes'],
    ];
    for (const [options, field] of cases) {
      const error = await t.mint(options).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field).toBe(field);
    }
    expect(t.clock.now()).toBe(at);
    expect(() => t.clock.advance(-1)).toThrow(ValidationError);
    expect(() => createTestKeys({ seed: '' })).toThrow(ValidationError);
    expect((await t.mint()).key.name).toBe('test key 1');
  });

  it('with a seed, gives the same tokens, ids and dates in every instance; another seed gives others', async () => {
    const run = async (seed: string) => {
      const t = createTestKeys({ seed, prefix: 'shop_test' });
      const a = await t.mint({ rotated: { gracePeriodMs: 10 } });
      const b = await t.mint();
      return [a.token, a.previousToken, a.key.id, a.key.createdAt.toISOString(), b.token, b.key.id, t.unknownToken()];
    };
    const first = await run('one');
    expect(await run('one')).toEqual(first);
    expect(first[3]).toBe('2025-01-01T00:00:00.000Z');
    expect(new Set(first).size).toBe(first.length);
    const other = await run('two');
    for (let i = 0; i < first.length; i++) if (i !== 3) expect(other[i]).not.toBe(first[i]);
    // Without a seed, tokens come from the CSPRNG.
    const [x, y] = [createTestKeys(), createTestKeys()];
    expect((await x.mint()).token).not.toBe((await y.mint()).token);
  });

  it('seeded tokens are well-formed tokens of the prefix, verified like any other', async () => {
    const t = createTestKeys({ seed: 'form', prefix: 'shop_test' });
    const { token } = await t.mint();
    expect(token).toMatch(/^shop_test_[0-9A-Za-z]{38}$/);
    expect(await code(t, token)).toBe('VALID');
    expect(await code(t, `${token.slice(0, -1)}${token.endsWith('a') ? 'b' : 'a'}`)).toBe('MALFORMED');
  });

  it('uses a store it is given and hands the manager options through', async () => {
    const store = new MemoryStore();
    const events: string[] = [];
    const t = createTestKeys({ store, onEvent: (e) => events.push(e.type) });
    await t.mint({ active: false });
    expect(store.size).toBe(1);
    expect(t.store).toBe(store);
    expect(events).toEqual(['created', 'deactivated']);
  });
});
