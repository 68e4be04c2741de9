// Case: heap bytes per key in MemoryStore at 1M keys (run with --expose-gc): heapUsed after gc, before and after filling.

import { summarize } from '../lib/harness.mjs';
import { loadDist } from '../lib/keygate.mjs';

function settledHeap() {
  for (let i = 0; i < 4; i++) globalThis.gc();
  return process.memoryUsage().heapUsed;
}

export async function run({ quick, log }) {
  if (typeof globalThis.gc !== 'function') throw new Error('the heap case needs node --expose-gc');
  const { createKeyManager } = await loadDist('index');
  const { memoryStore } = await loadDist('memory');
  // The quick smoke run measures 100k keys; the full run the 1M of the target.
  const count = quick ? 100_000 : 1_000_000;
  const size = quick ? '100k' : '1M';
  const rounds = quick ? 1 : 2;
  const perKey = [];
  for (let r = 0; r < rounds; r++) {
    let store = memoryStore();
    const keys = createKeyManager({ store });
    const before = settledHeap();
    // keys.create builds each record exactly as in use and hands it to store.insert; the manager
    // itself keeps nothing per key (no verify runs here, so no last-used times are pending).
    for (let i = 0; i < count; i++) {
      await keys.create({ name: `ERP sync ${i}`, scopes: ['orders:edit', 'products:list'], ownerId: `shop-${i % 1000}` });
    }
    const after = settledHeap();
    if (store.size !== count) throw new Error(`expected ${count} keys, the store has ${store.size}`);
    perKey.push((after - before) / count);
    log(`heap: ${count} keys took ${Math.round((after - before) / 1e6)} MB (${Math.round((after - before) / count)} B/key)`);
    await keys.close();
    store = null;
  }
  const value = summarize(perKey);
  return [
    {
      id: `heap-memory-${size}`,
      label: `Heap per key, MemoryStore, ${size} keys (made by keys.create)`,
      unit: 'B/key',
      value,
      target: { text: '≤ 600 B/key', met: value.median <= 600 },
    },
  ];
}
