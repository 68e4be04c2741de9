// LastUsedBuffer on its own: one write at a time, failed batches kept (newer times win), batches of 1000, and a close() bounded by its deadline; the address of each use, through the buffer and the manager.
import { afterEach, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { LastUsedBuffer } from '../../src/last-used.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import type { TouchEntry } from '../../src/store.js';

type Mode = 'hold' | 'ok' | 'fail' | 'hang';

/** A write function that records its batches and answers as the test says. */
class FakeWrite {
  readonly batches: Array<Map<string, number>> = [];
  /** The entries of each call, as given. */
  readonly sent: TouchEntry[][] = [];
  /** `hold`: each call waits for `settle`; `ok`: resolves at once; `fail`: rejects at once; `hang`: never settles. */
  mode: Mode = 'ok';
  /** Modes for the next calls, in order, before `mode` applies again. */
  readonly plan: Mode[] = [];
  private waiting: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];

  readonly write = (entries: TouchEntry[]): Promise<void> => {
    this.batches.push(new Map(entries.map(({ id, lastUsedAt }) => [id, lastUsedAt.getTime()])));
    this.sent.push([...entries]);
    const mode = this.plan.shift() ?? this.mode;
    if (mode === 'ok') return Promise.resolve();
    if (mode === 'fail') return Promise.reject(new Error('store down'));
    return new Promise<void>((resolve, reject) => {
      if (mode === 'hold') this.waiting.push({ resolve, reject });
    });
  };

  /** Settles the oldest held call. */
  settle(error?: Error): void {
    const next = this.waiting.shift();
    if (!next) throw new Error('no write is waiting');
    if (error) next.reject(error);
    else next.resolve();
  }

  get held(): number {
    return this.waiting.length;
  }
}

const buffers: LastUsedBuffer[] = [];
afterEach(async () => {
  // Stops their timers; whatever they still hold is given up at once.
  for (const buffer of buffers.splice(0)) await buffer.close(performance.now());
});

function setup() {
  const fake = new FakeWrite();
  const reported: unknown[] = [];
  // A flush interval far beyond any test: only explicit flushes write.
  const buffer = new LastUsedBuffer(fake.write, 60_000, (error) => reported.push(error));
  buffers.push(buffer);
  return { fake, buffer, reported };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const entries = (batch: Map<string, number> | undefined) => Object.fromEntries(batch ?? []);

describe('flush', () => {
  it('runs one write at a time; times that come in meanwhile go in one follow-up write', async () => {
    const { fake, buffer } = setup();
    fake.mode = 'hold';
    buffer.touch('a', 1);
    buffer.touch('b', 1);
    const first = buffer.flush();
    expect(fake.batches).toHaveLength(1);
    expect(entries(fake.batches[0])).toEqual({ a: 1, b: 1 });

    buffer.touch('c', 2);
    buffer.touch('a', 3);
    const second = buffer.flush();
    const third = buffer.flush();
    buffer.touch('d', 4);
    await sleep(5);
    expect(fake.batches).toHaveLength(1);

    fake.settle();
    await sleep(0);
    expect(fake.batches).toHaveLength(2);
    expect(entries(fake.batches[1])).toEqual({ c: 2, a: 3, d: 4 });
    fake.settle();
    await Promise.all([first, second, third]);
    expect(fake.batches).toHaveLength(2);
    expect(fake.held).toBe(0);
  });

  it('keeps a failed batch for the next flush, but a newer time for the same key wins', async () => {
    const { fake, buffer, reported } = setup();
    fake.mode = 'hold';
    buffer.touch('a', 1);
    buffer.touch('b', 1);
    const failing = buffer.flush();
    // While the write is out, a newer time for `a` comes in.
    buffer.touch('a', 2);
    fake.settle(new Error('store down'));
    await failing;
    expect(reported).toHaveLength(1);
    expect((reported[0] as Error).message).toBe('store down');

    fake.mode = 'ok';
    await buffer.flush();
    expect(fake.batches).toHaveLength(2);
    expect(entries(fake.batches[1])).toEqual({ a: 2, b: 1 });
    // Written: nothing is left for another flush.
    await buffer.flush();
    expect(fake.batches).toHaveLength(2);
  });

  it('writes at most 1000 times per call', async () => {
    const { fake, buffer } = setup();
    for (let i = 0; i < 2500; i++) buffer.touch(`k${i}`, i);
    await buffer.flush();
    expect(fake.batches.map((batch) => batch.size)).toEqual([1000, 1000, 500]);
    const written = new Map(fake.batches.flatMap((batch) => [...batch]));
    expect(written.size).toBe(2500);
    expect(written.get('k1234')).toBe(1234);
  });

  it('forget() drops a pending time', async () => {
    const { fake, buffer } = setup();
    buffer.touch('a', 1);
    buffer.touch('b', 1);
    buffer.forget('a');
    await buffer.flush();
    expect(entries(fake.batches[0])).toEqual({ b: 1 });
  });
});

describe('close', () => {
  it('gives up on a write that hangs at the deadline, and counts the times not written', async () => {
    const { fake, buffer } = setup();
    fake.mode = 'hang';
    buffer.touch('a', 1);
    buffer.touch('b', 1);
    buffer.touch('c', 1);
    void buffer.flush();
    buffer.touch('d', 2);
    buffer.touch('e', 2);
    const started = performance.now();
    const notWritten = await buffer.close(started + 100);
    const took = performance.now() - started;
    expect(notWritten).toBe(5);
    expect(buffer.dropped).toBe(5);
    expect(took).toBeGreaterThanOrEqual(95);
    expect(took).toBeLessThan(300);
  });

  it('gives up on its own write that hangs at the deadline', async () => {
    const { fake, buffer } = setup();
    fake.mode = 'hang';
    for (const id of ['a', 'b', 'c']) buffer.touch(id, 1);
    const started = performance.now();
    expect(await buffer.close(started + 80)).toBe(3);
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(75);
    expect(took).toBeLessThan(300);
    expect(fake.batches).toHaveLength(1);
  });

  it('counts the times of a final write that failed', async () => {
    const { fake, buffer, reported } = setup();
    fake.mode = 'fail';
    for (const id of ['a', 'b', 'c']) buffer.touch(id, 1);
    expect(await buffer.close(performance.now() + 1000)).toBe(3);
    expect(reported).toHaveLength(1);
  });

  it('counts a failed batch once when the flush in flight hangs on its next batch', async () => {
    const { fake, buffer } = setup();
    fake.plan.push('fail');
    fake.mode = 'hang';
    for (let i = 0; i < 1500; i++) buffer.touch(`k${i}`, i);
    void buffer.flush();
    await sleep(0);
    expect(fake.batches.map((batch) => batch.size)).toEqual([1000, 500]);
    expect(await buffer.close(performance.now() + 50)).toBe(1500);
  });

  const finalWrites: Array<[Mode, number]> = [
    ['ok', 500],
    ['fail', 1500],
  ];
  it.each(finalWrites)(
    'counts only the times not written when its own write hangs after a first batch that went %s',
    async (first, expected) => {
      const { fake, buffer } = setup();
      fake.plan.push(first);
      fake.mode = 'hang';
      for (let i = 0; i < 1500; i++) buffer.touch(`k${i}`, i);
      expect(await buffer.close(performance.now() + 50)).toBe(expected);
      expect(fake.batches).toHaveLength(2);
    },
  );

  it('with a working store, waits for the write in flight, writes the rest, and gives up nothing', async () => {
    const { fake, buffer } = setup();
    fake.mode = 'hold';
    buffer.touch('a', 1);
    buffer.touch('b', 1);
    void buffer.flush();
    buffer.touch('c', 2);
    buffer.touch('a', 3);
    const closing = buffer.close(performance.now() + 1000);
    await sleep(20);
    fake.mode = 'ok';
    fake.settle();
    expect(await closing).toBe(0);
    expect(buffer.dropped).toBe(0);
    expect(fake.batches.map(entries)).toEqual([
      { a: 1, b: 1 },
      { c: 2, a: 3 },
    ]);
  });
});

/** The address of each entry of a call, by id. */
const ipsOf = (sent: TouchEntry[] | undefined) => Object.fromEntries((sent ?? []).map(({ id, ip }) => [id, ip]));

describe('the address of each use', () => {
  it('goes with the latest time of its key, canonical; a use without one, or with one that does not parse, gives null', async () => {
    const { fake, buffer } = setup();
    buffer.touch('mapped', 1, '::ffff:203.0.113.7');
    buffer.touch('v6', 1, '2001:DB8:0:0:0:0:0:1');
    buffer.touch('none', 1);
    buffer.touch('null', 1, null);
    buffer.touch('garbage', 1, 'not-an-ip');
    buffer.touch('zone', 1, 'fe80::1%eth0');
    buffer.touch('long', 1, `${'1'.repeat(40)}.0.0.1`);
    // The latest use wins, with its address: one without an address clears the earlier one's.
    buffer.touch('cleared', 1, '192.0.2.1');
    buffer.touch('cleared', 2);
    buffer.touch('replaced', 1, '192.0.2.1');
    buffer.touch('replaced', 2, '192.0.2.2');
    buffer.touch('set', 1);
    buffer.touch('set', 2, '192.0.2.3');
    await buffer.flush();
    expect(ipsOf(fake.sent[0])).toEqual({
      mapped: '203.0.113.7',
      v6: '2001:db8::1',
      none: null,
      null: null,
      garbage: null,
      zone: null,
      long: null,
      cleared: null,
      replaced: '192.0.2.2',
      set: '192.0.2.3',
    });
    expect(entries(fake.batches[0])).toMatchObject({ cleared: 2, replaced: 2, set: 2 });
    // Nothing is left over for the next flush.
    buffer.touch('mapped', 3);
    await buffer.flush();
    expect(ipsOf(fake.sent[1])).toEqual({ mapped: null });
  });

  it('is kept with a failed time for the next flush, unless a newer use came in meanwhile, and forgotten with its key', async () => {
    const { fake, buffer } = setup();
    fake.mode = 'hold';
    buffer.touch('a', 1, '192.0.2.1');
    buffer.touch('b', 1, '192.0.2.2');
    buffer.touch('c', 1, '192.0.2.3');
    const failing = buffer.flush();
    buffer.touch('b', 2, '198.51.100.2');
    buffer.touch('c', 2);
    fake.settle(new Error('store down'));
    await failing;
    buffer.touch('d', 3, '192.0.2.4');
    buffer.forget('d');
    buffer.touch('d', 4);
    fake.mode = 'ok';
    await buffer.flush();
    expect(entries(fake.batches[1])).toEqual({ a: 1, b: 2, c: 2, d: 4 });
    expect(ipsOf(fake.sent[1])).toEqual({ a: '192.0.2.1', b: '198.51.100.2', c: null, d: null });
  });
});

describe('lastUsedIp through the manager', () => {
  const managers: KeyManager[] = [];
  afterEach(async () => {
    for (const m of managers.splice(0)) await m.close();
  });

  function manager() {
    let now = Date.UTC(2030, 0, 1);
    const store = memoryStore();
    const keys = createKeyManager({ store, lastUsedFlushMs: 60_000, now: () => now });
    managers.push(keys);
    return { keys, store, advance: (ms: number) => void (now += ms), now: () => now };
  }

  it('is the canonical address of the latest successful verify, written with lastUsedAt at the flush', async () => {
    const { keys, advance, now } = manager();
    const { key, token } = await keys.create({ name: 'used', scopes: ['orders:list'] });
    expect(await keys.verify(token, { ip: '::ffff:203.0.113.7' })).toMatchObject({ valid: true, key: { lastUsedIp: null } });
    expect((await keys.get(key.id))?.lastUsedIp).toBeNull();
    await keys.flush();
    expect(await keys.get(key.id)).toMatchObject({ lastUsedAt: new Date(now()), lastUsedIp: '203.0.113.7' });
    // The next verify returns the key as stored, with the address of the use before it.
    advance(1000);
    expect(await keys.verify(token, { ip: '2001:DB8::A' })).toMatchObject({ valid: true, key: { lastUsedIp: '203.0.113.7' } });
    await keys.flush();
    expect(await keys.get(key.id)).toMatchObject({ lastUsedAt: new Date(now()), lastUsedIp: '2001:db8::a' });
    // A verify given no address, or one that does not parse, is a use from no known address.
    advance(1000);
    await keys.verify(token);
    await keys.flush();
    expect(await keys.get(key.id)).toMatchObject({ lastUsedAt: new Date(now()), lastUsedIp: null });
    advance(1000);
    await keys.verify(token, { ip: '203.0.113.007' });
    await keys.flush();
    expect(await keys.get(key.id)).toMatchObject({ lastUsedAt: new Date(now()), lastUsedIp: null });
  });

  it('is not written by a refused verify, nor by one for another key', async () => {
    const { keys, advance } = manager();
    const { key, token } = await keys.create({ name: 'allow-listed', scopes: ['orders:list'], allowedIps: '203.0.113.7' });
    const { token: other } = await keys.create({ name: 'other', scopes: ['all'] });
    expect((await keys.verify(token, { ip: '::ffff:203.0.113.7' })).valid).toBe(true);
    await keys.flush();
    const first = await keys.get(key.id);
    expect(first?.lastUsedIp).toBe('203.0.113.7');
    advance(1000);
    expect(await keys.verify(token, { ip: '198.51.100.1' })).toMatchObject({ valid: false, code: 'IP_NOT_ALLOWED' });
    expect(await keys.verify(token, { ip: '203.0.113.7', scope: 'orders:edit' })).toMatchObject({
      valid: false,
      code: 'INSUFFICIENT_SCOPE',
    });
    expect((await keys.verify(other, { ip: '198.51.100.2' })).valid).toBe(true);
    await keys.flush();
    expect(await keys.get(key.id)).toMatchObject({ lastUsedAt: first?.lastUsedAt, lastUsedIp: '203.0.113.7' });
  });
});
