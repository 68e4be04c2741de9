// SECURITY 6 at the HTTP layer: any bytes of any size in any carrier give a 4xx, never a 500, in every framework.

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { createKeyManager } from '../../src/manager.js';
import { FRAMEWORKS, type RunningApp } from './apps.js';
import { sendRaw } from './client.js';

/** How a hostile value is put into a request header. */
const PLACEMENTS = {
  bearer: (v: Buffer) => Buffer.concat([Buffer.from('Authorization: Bearer '), v]),
  'x-api-key': (v: Buffer) => Buffer.concat([Buffer.from('X-API-Key: '), v]),
  'basic, raw': (v: Buffer) => Buffer.concat([Buffer.from('Authorization: Basic '), v]),
  'basic, encoded': (v: Buffer) => Buffer.from(`Authorization: Basic ${v.toString('base64')}`),
  'authorization, raw': (v: Buffer) => Buffer.concat([Buffer.from('Authorization: '), v]),
} as const;
type Placement = keyof typeof PLACEMENTS;

/**
 * Bytes Node's HTTP parser refuses in a header value (it answers 400 before any app code runs):
 * control characters other than tab. CR and LF are left out of the values altogether: in a raw
 * request they end the header line, which makes a different request rather than a hostile value.
 */
function parserRefuses(value: Buffer): boolean {
  return value.some((b) => (b < 0x20 && b !== 0x09) || b === 0x7f);
}

/** Node's default limit on the size of all request headers together (the other lines take ~100 bytes). */
const HEADER_LIMIT = 16 * 1024;

/** The status Node or the guard must give a request with this one extra header line. */
function expectedStatus(line: Buffer, accepted: number, otherHeaderBytes = 0): number[] {
  const size = line.length + otherHeaderBytes;
  if (size > HEADER_LIMIT) return [431];
  if (parserRefuses(line)) return [400];
  // Close to the limit, the request line and the other headers decide which side it falls on.
  if (size > HEADER_LIMIT - 200) return [accepted, 431];
  return [accepted];
}

const bytes = fc
  .oneof(
    fc.string({ unit: 'binary', maxLength: 200 }).map((s) => Buffer.from(s, 'utf8')),
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    fc.string({ unit: 'grapheme', maxLength: 100 }).map((s) => Buffer.from(s, 'utf8')),
    fc
      .constantFrom('kg_', 'Bearer ', ', , ,', ':', '=')
      .chain((head) => fc.string({ maxLength: 60 }).map((tail) => Buffer.from(head + tail))),
    fc.integer({ min: 1000, max: 30_000 }).map((n) => Buffer.alloc(n, 'k')),
  )
  .map((b) => Buffer.from(b.filter((byte) => byte !== 0x0d && byte !== 0x0a)));

describe.each(FRAMEWORKS)('$name with hostile headers', (framework) => {
  let app: RunningApp;
  let token: string;

  beforeAll(async () => {
    const keys = createKeyManager({ store: memoryStore() });
    token = (await keys.create({ name: 'erp', scopes: ['all'] })).token;
    app = await framework.start({ keys, guard: { carriers: ['bearer', 'x-api-key', 'basic'], trustedProxies: 'loopback' } });
  });
  afterAll(async () => {
    await app.close();
  });

  it('answers 401 (or the parser 400 / 431), never 500, for any value in any carrier (fast-check)', async () => {
    const placement = fc.constantFrom(...(Object.keys(PLACEMENTS) as Placement[]));
    await fc.assert(
      fc.asyncProperty(placement, bytes, async (where, value) => {
        const line = PLACEMENTS[where](value);
        expect(expectedStatus(line, 401)).toContain(await sendRaw('127.0.0.1', app.port, [line]));
      }),
      { numRuns: 150 },
    );
    // Still serving, and still letting the right key through.
    expect(await sendRaw('127.0.0.1', app.port, [Buffer.from(`X-API-Key: ${token}`)])).toBe(200);
  });

  it('never answers 500 for hostile X-Forwarded-For from a trusted proxy (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(bytes, async (value) => {
        const xff = Buffer.concat([Buffer.from('X-Forwarded-For: '), value]);
        const status = await sendRaw('127.0.0.1', app.port, [Buffer.from(`X-API-Key: ${token}`), xff]);
        // The key has no allow-list: any forwarded address may use it.
        expect(expectedStatus(xff, 200, 60)).toContain(status);
      }),
      { numRuns: 100 },
    );
  });

  it('answers 401 for a key of 15 KB, and Node itself answers 431 past its header limit', async () => {
    expect(await sendRaw('127.0.0.1', app.port, [Buffer.from(`X-API-Key: ${'k'.repeat(15_000)}`)])).toBe(401);
    expect(await sendRaw('127.0.0.1', app.port, [Buffer.from(`Authorization: Bearer ${'k'.repeat(64_000)}`)])).toBe(431);
    // Node joins repeated X-API-Key headers with ', ': 50 copies of one key are still that key.
    const many = Array.from({ length: 50 }, () => Buffer.from(`X-API-Key: ${token}`));
    expect(await sendRaw('127.0.0.1', app.port, many)).toBe(200);
  });
});
