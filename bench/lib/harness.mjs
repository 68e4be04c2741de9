// The measuring harness: warm-up, then rounds that time a fixed batch of each case in turn (rotating the order), paired per round.

/** Median, quartiles and extremes of a list of numbers. */
export function summarize(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => {
    const pos = (sorted.length - 1) * q;
    const lo = Math.floor(pos);
    const hi = Math.ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  };
  return { median: at(0.5), q1: at(0.25), q3: at(0.75), min: sorted[0], max: sorted[sorted.length - 1], n: sorted.length };
}

/** Per-round ratios a[i] / b[i], summarized: both lists come from the same rounds. */
export function pairedRatio(a, b) {
  const ratios = a.map((x, i) => x / b[i]);
  return summarize(ratios);
}

/** Runs `fn(i)` `count` times (awaiting it when `isAsync`) and returns the elapsed nanoseconds. */
async function timeBatch(fn, count, isAsync) {
  let sink;
  const start = process.hrtime.bigint();
  if (isAsync) {
    for (let i = 0; i < count; i++) sink = await fn(i);
  } else {
    for (let i = 0; i < count; i++) sink = fn(i);
  }
  const elapsed = Number(process.hrtime.bigint() - start);
  if (sink === undefined) throw new Error('a benchmarked function returned nothing; it must return its result');
  return elapsed;
}

/**
 * Measures several cases against each other in one process.
 *
 * Each case is `{ id, fn }`, where `fn(i)` does one operation (sync, or async returning a promise)
 * and returns its result. After a warm-up, the batch size of each case is set so that one batch
 * takes about `batchMs`; then every round times one batch of every case, the order rotating from
 * round to round so that no case always runs first or last. Returns, per case id, the nanoseconds
 * per operation of each round (same round index = measured side by side).
 */
export async function compare(cases, { rounds = 10, batchMs = 60, warmupMs = 300 } = {}) {
  const prepared = [];
  for (const c of cases) {
    const first = c.fn(0);
    const isAsync = typeof first?.then === 'function';
    if (isAsync) await first;
    // Warm-up: let the JIT settle, and learn how long one operation takes.
    let count = 16;
    let elapsedMs = 0;
    let spent = 0;
    while (spent < warmupMs) {
      elapsedMs = (await timeBatch(c.fn, count, isAsync)) / 1e6;
      spent += elapsedMs;
      if (elapsedMs < batchMs / 4) count *= 2;
    }
    const perOpMs = elapsedMs / count;
    prepared.push({ ...c, isAsync, batch: Math.max(8, Math.round(batchMs / perOpMs)) });
  }
  const results = Object.fromEntries(cases.map((c) => [c.id, []]));
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < prepared.length; k++) {
      const c = prepared[(r + k) % prepared.length];
      const ns = await timeBatch(c.fn, c.batch, c.isAsync);
      results[c.id].push(ns / c.batch);
    }
  }
  return results;
}
