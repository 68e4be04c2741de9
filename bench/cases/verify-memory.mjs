// Case: the limit (one one-shot SHA-256 + one Map lookup) against keys.verify on MemoryStore with 1k, 100k and 1M keys.

import * as crypto from 'node:crypto';

/** node:crypto's one-shot SHA-256 (crypto.hash, Node 20.12+), the cheapest digest Node offers. */
const sha256 =
  typeof crypto.hash === 'function'
    ? (text) => crypto.hash('sha256', text, 'base64url')
    : (text) => crypto.createHash('sha256').update(text).digest('base64url');
import { compare } from '../lib/harness.mjs';
import { timeRow } from '../lib/report.mjs';
import { assertValid, createKeys, fillStore, loadDist } from '../lib/keygate.mjs';

/** Tokens verified at every size: the same number, so only the number of stored keys changes. */
const REAL_KEYS = 1000;

export async function run({ quick, log }) {
  const { createKeyManager } = await loadDist('index');
  const { memoryStore } = await loadDist('memory');
  // The quick smoke run skips 1M keys: filling them takes about a minute on a small machine.
  const sizes = quick ? [1_000, 100_000] : [1_000, 100_000, 1_000_000];
  const rows = [];
  for (const size of sizes) {
    const label = size >= 1e6 ? `${size / 1e6}M` : `${size / 1e3}k`;
    const store = memoryStore();
    const keys = createKeyManager({ store });
    // The limit's Map holds the same digests as the store.
    const limitMap = new Map();
    const started = Date.now();
    // Filler first: it is older than the real keys, so every insert appends to the store's list.
    const real = Math.min(REAL_KEYS, size);
    await fillStore(
      {
        insert: (record) => {
          limitMap.set(record.digest, record);
          return store.insert(record);
        },
      },
      size - real,
    );
    const tokens = await createKeys(keys, real);
    for (const token of tokens) limitMap.set(sha256(token), { token });
    // Collect the filling's garbage now rather than during the rounds.
    globalThis.gc();
    log(`memory ${label}: ${store.size} keys stored in ${Date.now() - started} ms`);
    assertValid(await keys.verify(tokens[0], { scope: 'orders:list' }), `MemoryStore ${label}`);

    const n = tokens.length;
    const limitAwaited = async (token) => limitMap.get(sha256(token));
    const results = await compare(
      [
        { id: 'limit', fn: (i) => limitMap.get(sha256(tokens[i % n])) },
        // The same work behind a promise, as any verify whose API returns one (keys.verify does) must pay.
        { id: 'awaited', fn: (i) => limitAwaited(tokens[i % n]) },
        { id: 'verify', fn: (i) => keys.verify(tokens[i % n], { scope: 'orders:list' }) },
      ],
      { rounds: quick ? 5 : 15, batchMs: quick ? 40 : 80, warmupMs: quick ? 200 : 500 },
    );
    rows.push(
      timeRow({ id: `limit-${label}`, label: `Limit: one-shot SHA-256 + Map.get, ${label} entries`, samples: results.limit }),
      timeRow({
        id: `limit-awaited-${label}`,
        label: `Limit, awaited: the same in an async function, ${label} entries`,
        samples: results.awaited,
        against: results.limit,
        ratioLabel: 'of the limit',
      }),
      timeRow({
        id: `memory-${label}`,
        label: `keys.verify, MemoryStore, ${label} keys`,
        samples: results.verify,
        against: results.limit,
        ratioLabel: 'of the limit',
        target: size >= 100_000 ? { text: '≤ 1.5× limit', check: (r) => r <= 1.5 } : undefined,
        also: { samples: results.awaited, label: 'of the awaited limit' },
      }),
    );
    await keys.close();
  }
  return rows;
}
