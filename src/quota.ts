// Usage quotas: how many uses a key has left, and the refill computed from the stored time of the last one.

import { ValidationError } from './errors.js';
import { checkWholeNumber } from './validate.js';

/** Uses given back to a key: up to `amount` every `intervalMs`. */
export interface QuotaRefill {
  /** Each interval tops `remaining` up to this many uses (never lowers it), 1..1,000,000,000. */
  amount: number;
  /** How often, in ms: 1 ms .. 366 days. Counted from when the quota was set, not from the last use. */
  intervalMs: number;
}

/** The largest `remaining`, `amount` and cost. */
export const QUOTA_MAX = 1_000_000_000;
const INTERVAL_MAX_MS = 366 * 24 * 3600 * 1000;

/** `value` as a frozen QuotaRefill, `null` for `null`; else a ValidationError naming `field`. */
export function checkRefill(field: string, value: unknown): Readonly<QuotaRefill> | null {
  if (value === null) return null;
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new ValidationError(field, 'must be { amount, intervalMs } (e.g. { amount: 1000, intervalMs: 86400000 }) or null for no refill');
  }
  const { amount, intervalMs, ...rest } = value as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw new ValidationError(field, `has unknown field '${extra[0]}'; only amount and intervalMs are allowed`);
  return Object.freeze({
    amount: checkWholeNumber(`${field}.amount`, amount, { max: QUOTA_MAX }),
    intervalMs: checkWholeNumber(`${field}.intervalMs`, intervalMs, { max: INTERVAL_MAX_MS, unit: 'ms' }),
  });
}

/** `remaining` as given: a whole number of uses 0..QUOTA_MAX, or `null` for no quota. */
export function checkRemaining(value: unknown): number | null {
  if (value === null) return null;
  return checkWholeNumber('remaining', value, { min: 0, max: QUOTA_MAX });
}

/** A key's quota counters as stored. */
export interface QuotaState {
  remaining: number;
  /** When the last refill was due (the start of the current interval); `null` without a refill. */
  refilledAt: number | null;
}

/**
 * The quota after refills due by `now` and, if enough is left, after spending `cost`. Refills
 * are counted from the stored `refilledAt` in whole intervals, and `refilledAt` moves by whole
 * intervals too, so a refill never drifts however rarely the key is used. Every store computes
 * exactly this in one atomic step (a SQL statement, a Redis script).
 */
export function spendQuota(
  state: QuotaState,
  refill: QuotaRefill | null,
  cost: number,
  now: number,
): { state: QuotaState; spent: boolean } {
  let { remaining, refilledAt } = state;
  if (refill !== null && refilledAt !== null && now - refilledAt >= refill.intervalMs) {
    refilledAt += Math.floor((now - refilledAt) / refill.intervalMs) * refill.intervalMs;
    if (remaining < refill.amount) remaining = refill.amount;
  }
  const spent = remaining >= cost;
  if (spent) remaining -= cost;
  return { state: { remaining, refilledAt }, spent };
}

/** Ms until a refused spend of `cost` could succeed: the next refill, or `null` when none will make it. */
export function quotaRetryAfter(state: QuotaState, refill: QuotaRefill | null, cost: number, now: number): number | null {
  if (refill === null || state.refilledAt === null || Math.max(state.remaining, refill.amount) < cost) return null;
  return Math.max(1, state.refilledAt + refill.intervalMs - now);
}
