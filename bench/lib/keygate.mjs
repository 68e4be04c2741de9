// Loads the built library (dist/), and makes keys: real ones through keys.create, filler records straight into a store.

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

/** The built library: the root's dist/, or KEYGATE_BENCH_DIST to measure another build of it. */
const DIST = process.env.KEYGATE_BENCH_DIST
  ? pathToFileURL(`${resolve(process.env.KEYGATE_BENCH_DIST)}/`)
  : new URL('../../dist/', import.meta.url);

/** Whether the built entry for this subpath (index, memory, sqlite, …) exists. */
export function hasDist(name) {
  return existsSync(new URL(`${name}.js`, DIST));
}

/** Imports dist/<name>.js; retries briefly, since a concurrent rebuild empties dist/ for a moment. */
export async function loadDist(name) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await import(new URL(`${name}.js`, DIST).href);
    } catch (error) {
      if (attempt >= 5) throw error;
      await sleep(2000);
    }
  }
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Random bytes drawn from a pool refilled 64 KiB at a time: one crypto call per ~1000 records, not five per record. */
let pool = Buffer.alloc(0);
let poolAt = 0;
function random(length) {
  if (poolAt + length > pool.length) {
    pool = randomBytes(65_536);
    poolAt = 0;
  }
  poolAt += length;
  return pool.subarray(poolAt - length, poolAt);
}

/** Base62 text built one character at a time, as nanoid's customAlphabet builds keygate's ids. */
function base62(length) {
  const bytes = random(length);
  let out = '';
  for (let i = 0; i < length; i++) out += BASE62[bytes[i] % 62];
  return out;
}

/** keys.create shares one frozen empty list among all keys without an IP allow-list. */
const NO_IPS = Object.freeze([]);

/**
 * A stored record like the ones keys.create writes, for a token nobody holds: its digest is 32
 * random bytes in base64url, the shape of a real SHA-256 digest. Filler records are inserted in
 * creation order (as keys.create would), `index` ms after `baseTime`.
 */
export function fillerRecord(index, baseTime) {
  const id = base62(20);
  const createdAt = new Date(baseTime + index);
  return {
    id,
    ownerId: `shop-${index % 1000}`,
    // trim(), as keys.create's name check does (it also leaves the text in one piece).
    name: `ERP sync ${index}`.trim(),
    active: true,
    scopes: Object.freeze(['orders:edit', 'products:list']),
    allowedIps: NO_IPS,
    hint: `kg_${base62(3)}…${base62(4)}`,
    createdAt,
    updatedAt: createdAt,
    lastUsedAt: null,
    expiresAt: null,
    metadata: {},
    rateLimit: null,
    remaining: null,
    refill: null,
    refilledAt: null,
    version: 1,
    digest: random(32).toString('base64url'),
    previousDigest: null,
    previousDigestExpiresAt: null,
  };
}

/** Inserts `count` filler records into `store`, `parallel` at a time, created long before now. */
export async function fillStore(store, count, parallel = 1) {
  const baseTime = Date.now() - 30 * 86_400_000 - count;
  for (let i = 0; i < count; i += parallel) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + parallel); j++) batch.push(store.insert(fillerRecord(j, baseTime)));
    await Promise.all(batch);
  }
}

/** Creates `count` real keys through the manager and returns their tokens. */
export async function createKeys(keys, count, parallel = 1) {
  const tokens = [];
  for (let i = 0; i < count; i += parallel) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + parallel); j++) {
      batch.push(keys.create({ name: `Bench key ${j}`, scopes: ['orders:edit', 'products:list'], ownerId: `shop-${j % 1000}` }));
    }
    for (const { token } of await Promise.all(batch)) tokens.push(token);
  }
  return tokens;
}

/** Throws unless `result` is a successful verify: a benchmark that measured rejections would lie. */
export function assertValid(result, what) {
  if (result?.valid !== true) throw new Error(`${what}: verify did not accept a real token (${JSON.stringify(result)})`);
}
