// Case: how long verify takes to refuse an unknown token, an inactive key's and a rotated-out one's (small and 8 KB metadata), per store.
// Each answer is the same 401 to a client; a difference in time is what a holder of an old token could measure.
// Run alone with `node bench/cases/failure-timing.mjs [--quick]` (KEYGATE_BENCH_DIST=<dir> measures another build), or in `npm run bench`.

import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { compare } from '../lib/harness.mjs';
import { hasDist, loadDist } from '../lib/keygate.mjs';
import { markdownTable, skippedRow, timeRow } from '../lib/report.mjs';
import { BENCH_STORES } from '../lib/stores.mjs';

/** Tokens per kind: verifies cycle through them, so no single row or cache line is measured. */
const PER_KIND = 200;

const SMALL = { erp: 'sap', region: 'eu' };

/** About 8 KB of JSON in many small fields, the shape that costs JSON.parse the most per byte. */
function largeMetadata(bytes) {
  const out = {};
  for (let i = 0; JSON.stringify(out).length < bytes - 90; i++) {
    out[`field${String(i).padStart(3, '0')}`] = { label: `value ${i} of the ERP mapping`, n: i, on: i % 2 === 0, tags: ['eu', 'b2b'] };
  }
  return out;
}
const LARGE = largeMetadata(8 * 1024);

/** The stores measured; on Redis the verify cache is measured too. */
const STORES = [BENCH_STORES.memory, BENCH_STORES.sqlite, BENCH_STORES.postgres, { ...BENCH_STORES.redis, cached: true }];

/** `count` keys with this metadata, `parallel` at a time; resolves their ids and tokens. */
async function createMany(keys, count, metadata, parallel) {
  const out = [];
  for (let i = 0; i < count; i += parallel) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + parallel); j++) {
      batch.push(keys.create({ name: `Timing key ${j}`, scopes: ['orders:list'], metadata }));
    }
    for (const { key, token } of await Promise.all(batch)) out.push({ id: key.id, token });
  }
  return out;
}

async function inBatches(items, parallel, fn) {
  for (let i = 0; i < items.length; i += parallel) await Promise.all(items.slice(i, i + parallel).map(fn));
}

/** Tokens of each kind on this manager: inactive keys', rotated-out ones (the record still holds their digest), unknown ones. */
async function tokensOf(keys, createKeyManager, memoryStore, parallel) {
  const kinds = {};
  for (const [size, metadata] of [
    ['small', SMALL],
    ['8k', LARGE],
  ]) {
    const inactive = await createMany(keys, PER_KIND, metadata, parallel);
    await inBatches(inactive, parallel, (k) => keys.deactivate(k.id));
    const rotated = await createMany(keys, PER_KIND, metadata, parallel);
    // A grace period of 1 ms keeps the old digest in the record; the sleep below lets it end.
    await inBatches(rotated, parallel, (k) => keys.rotate(k.id, { gracePeriodMs: 1 }));
    kinds[`inactive-${size}`] = inactive.map((k) => k.token);
    kinds[`rotated-${size}`] = rotated.map((k) => k.token);
  }
  // Well-formed tokens with valid checksums that this store never saw.
  const elsewhere = createKeyManager({ store: memoryStore() });
  kinds.unknown = (await createMany(elsewhere, PER_KIND, {}, PER_KIND)).map((k) => k.token);
  await elsewhere.close();
  await sleep(20);
  return kinds;
}

const EXPECTED = { unknown: 'NOT_FOUND', inactive: 'INACTIVE', rotated: 'NOT_FOUND' };

/**
 * With the cache, a repeated token is answered from memory: an existing key's record from the
 * cached keys, an unknown token from the remembered misses. Without remembered misses
 * (`maxMisses: 0`), only the unknown token still costs a store call.
 */
async function cachedRows(createKeyManager, spec, store, tokens, quick, label) {
  const rows = [];
  for (const [slug, suffix, cache] of [
    ['cache', 'cache on', { ttlMs: 600_000 }],
    ['cache-nomisses', 'cache on, maxMisses 0', { ttlMs: 600_000, maxMisses: 0 }],
  ]) {
    const keys = createKeyManager({ store, cache });
    for (const kind of ['unknown', 'inactive-8k']) for (const token of tokens[kind]) await keys.verify(token);
    const results = await compare(
      ['unknown', 'inactive-8k'].map((kind) => ({ id: kind, fn: (i) => keys.verify(tokens[kind][i % PER_KIND]) })),
      { rounds: quick ? 8 : 30, batchMs: quick ? 40 : 80, warmupMs: quick ? 150 : 400 },
    );
    rows.push(
      timeRow({ id: `failure-${spec.id}-${slug}-unknown`, label: label(`unknown tokens, ${suffix}`), samples: results.unknown }),
      timeRow({
        id: `failure-${spec.id}-${slug}-inactive`,
        label: label(`inactive keys, 8 KB metadata, ${suffix}`),
        samples: results['inactive-8k'],
        against: results.unknown,
        ratioLabel: 'of unknown',
        difference: true,
      }),
    );
    await keys.close();
  }
  return rows;
}

export async function run({ quick, log }) {
  const { createKeyManager } = await loadDist('index');
  const { memoryStore } = await loadDist('memory');
  const rows = [];
  for (const spec of STORES) {
    const label = (what) => `verify refuses ${what}, ${spec.label}`;
    if (!hasDist(spec.dist)) {
      rows.push(skippedRow(`failure-${spec.id}`, label('unknown tokens'), `dist/${spec.dist}.js is not built`));
      continue;
    }
    const connection = await spec.open();
    if (connection.skip) {
      rows.push(skippedRow(`failure-${spec.id}`, label('unknown tokens'), connection.skip));
      continue;
    }
    const { store, drop } = await spec.make(await loadDist(spec.dist), connection.client);
    try {
      const parallel = spec.id === 'sqlite' || spec.id === 'memory' ? 1 : 16;
      // No cache (the default): every refusal reads the store.
      const keys = createKeyManager({ store });
      const started = Date.now();
      const tokens = await tokensOf(keys, createKeyManager, memoryStore, parallel);
      log(`${spec.id}: ${4 * PER_KIND} keys in ${Date.now() - started} ms`);
      for (const [kind, list] of Object.entries(tokens)) {
        const result = await keys.verify(list[0]);
        const want = EXPECTED[kind.split('-')[0]];
        if (result.valid || result.code !== want) throw new Error(`${spec.id} ${kind}: expected ${want}, got ${JSON.stringify(result)}`);
      }
      const kinds = Object.keys(tokens);
      const results = await compare(
        kinds.map((kind) => ({ id: kind, fn: (i) => keys.verify(tokens[kind][i % PER_KIND]) })),
        { rounds: quick ? 8 : 30, batchMs: quick ? 40 : 80, warmupMs: quick ? 150 : 400 },
      );
      rows.push(timeRow({ id: `failure-${spec.id}-unknown`, label: label('unknown tokens'), samples: results.unknown }));
      for (const kind of kinds.filter((k) => k !== 'unknown')) {
        const [state, size] = kind.split('-');
        const what = `${state === 'inactive' ? 'inactive keys' : 'rotated-out tokens'}, ${size === '8k' ? '8 KB' : 'small'} metadata`;
        rows.push(
          timeRow({
            id: `failure-${spec.id}-${kind}`,
            label: label(what),
            samples: results[kind],
            against: results.unknown,
            ratioLabel: 'of unknown',
            difference: true,
          }),
        );
      }
      await keys.close();
      if (spec.cached) rows.push(...(await cachedRows(createKeyManager, spec, store, tokens, quick, label)));
    } finally {
      await drop();
      await connection.close();
    }
  }
  return rows;
}

// Alone: print the table.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const rows = await run({ quick: process.argv.includes('--quick'), log: (m) => console.log(`  ${m}`) });
  console.log(`\nNode ${process.version}\n`);
  console.log(markdownTable(rows));
}
