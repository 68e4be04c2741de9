// How keys are printed: a fixed-column table for people (never a secret), the library's ApiKey JSON for scripts.

import type { ApiKey } from '../../src/index.js';

/** A time for people: UTC, to the second; `never` for none. */
export function time(at: Date | null, now?: number): string {
  if (at === null) return 'never';
  const text = at.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return now !== undefined && at.getTime() <= now ? `${text} (expired)` : text;
}

/** An allow-list for people: `any` when empty, the first addresses and a count when long. */
function addresses(ips: readonly string[]): string {
  if (ips.length === 0) return 'any';
  if (ips.length <= 3) return ips.join(',');
  return `${ips.slice(0, 2).join(',')} (+${ips.length - 2} more)`;
}

/** The columns of the table, in order. None holds a secret: the hint is not enough to use a key. */
const COLUMNS: ReadonlyArray<readonly [string, (key: ApiKey, now: number) => string]> = [
  ['ID', (k) => k.id],
  ['NAME', (k) => k.name],
  ['ACTIVE', (k) => (k.active ? 'yes' : 'no')],
  ['SCOPES', (k) => k.scopes.join(',')],
  ['ALLOWED IPS', (k) => addresses(k.allowedIps)],
  ['OWNER', (k) => k.ownerId ?? '-'],
  ['HINT', (k) => k.hint],
  ['LAST USED', (k) => time(k.lastUsedAt)],
  ['EXPIRES', (k, now) => time(k.expiresAt, now)],
];

/** Characters, not UTF-16 units, so that a name with an emoji keeps the columns aligned. */
function width(text: string): number {
  return [...text].length;
}

/** The keys as a table with a header row, one key per line. */
export function keyTable(keys: readonly ApiKey[], now: number): string {
  const rows = [COLUMNS.map(([title]) => title), ...keys.map((key) => COLUMNS.map(([, cell]) => cell(key, now)))];
  const widths = COLUMNS.map((_, column) => Math.max(...rows.map((row) => width(row[column] as string))));
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell + ' '.repeat((widths[column] as number) - width(cell)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
    .concat('\n');
}

/** One key, field by field, with what the table leaves out (created, updated, last used IP, version, metadata). */
export function keyDetails(key: ApiKey, now: number): string {
  const fields: Array<[string, string]> = [
    ['id', key.id],
    ['name', key.name],
    ['active', key.active ? 'yes' : 'no'],
    ['scopes', key.scopes.join(',')],
    ['allowed IPs', key.allowedIps.length === 0 ? 'any' : key.allowedIps.join(',')],
    ['owner', key.ownerId ?? '-'],
    ['hint', key.hint],
    ['created', time(key.createdAt)],
    ['updated', time(key.updatedAt)],
    ['last used', time(key.lastUsedAt)],
    ['last used IP', key.lastUsedIp ?? '-'],
    ['expires', time(key.expiresAt, now)],
    ['version', String(key.version)],
    ['metadata', JSON.stringify(key.metadata)],
  ];
  const pad = Math.max(...fields.map(([label]) => label.length));
  return fields
    .map(([label, value]) => `${label.padEnd(pad)}  ${value}`)
    .join('\n')
    .concat('\n');
}

/** A value as JSON for scripts, one document per command. */
export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
