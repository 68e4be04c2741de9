// Result rows: building them from measurements, and printing them as a Markdown table.

import { summarize, pairedRatio } from './harness.mjs';

/** A row of per-operation times (ns per op, one per round), optionally paired with a reference. */
export function timeRow({ id, label, samples, against, ratioLabel, target, also, difference }) {
  const value = summarize(samples.map((ns) => ns / 1000));
  const row = { id, label, unit: 'µs/op', value };
  if (against) {
    // Time ratio: how many times longer this takes than the reference, per round.
    const ratio = pairedRatio(samples, against);
    row.ratio = { label: ratioLabel, ...ratio };
    if (target) row.target = { text: target.text, met: target.check(ratio.median) };
    // With `difference`, also the per-round difference in µs: what a timing attacker would look for.
    if (difference) row.difference = summarize(samples.map((ns, i) => (ns - against[i]) / 1000));
  }
  // A second reference, printed next to the first (e.g. the awaited limit next to the limit).
  if (also) row.also = { label: also.label, ...pairedRatio(samples, also.samples) };
  return row;
}

/** A row that could not be measured, with the reason. */
export function skippedRow(id, label, reason) {
  return { id, label, skipped: reason };
}

function num(x, digits = 3) {
  if (x >= 1000) return Math.round(x).toLocaleString('en-US');
  return Number(x.toPrecision(digits)).toString();
}

function formatValue(row) {
  const v = row.value;
  if (row.unit === 'µs/op') {
    const perSec = 1e6 / v.median;
    return [`${num(v.median)} µs (${num(perSec)}/s)`, `${num(v.min)}–${num(v.max)} µs`];
  }
  return [`${num(v.median)} ${row.unit}`, `${num(v.min)}–${num(v.max)} ${row.unit}`];
}

/** The Markdown table of all rows. */
export function markdownTable(rows) {
  const lines = ['| Case | Median | Spread (min–max) | Ratio: median (min–max) | Target |', '| --- | --- | --- | --- | --- |'];
  for (const row of rows) {
    if (row.skipped) {
      lines.push(`| ${row.label} | skipped: ${row.skipped} | | | |`);
      continue;
    }
    const [median, spread] = formatValue(row);
    let ratio = row.ratio ? `${num(row.ratio.median)}× ${row.ratio.label} (${num(row.ratio.min)}–${num(row.ratio.max)})` : '';
    if (row.also) ratio += `; ${num(row.also.median)}× ${row.also.label} (${num(row.also.min)}–${num(row.also.max)})`;
    if (row.difference) {
      const d = row.difference;
      const signed = (x) => `${x >= 0 ? '+' : '−'}${num(Math.abs(x))}`;
      ratio += `; ${signed(d.median)} µs (${signed(d.min)}…${signed(d.max)})`;
    }
    const target = row.target ? `${row.target.text}: ${row.target.met ? 'met' : '**missed**'}` : '';
    lines.push(`| ${row.label} | ${median} | ${spread} | ${ratio} | ${target} |`);
  }
  return lines.join('\n');
}
