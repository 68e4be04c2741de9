// decide(): the verify rules, once the record of a token (or its absence) is known. Pure: no clock, no store, no events.

import { ValidationError } from './errors.js';
import { toApiKey } from './fields.js';
import { isIpAllowed } from './ip.js';
import type { ScopeCatalog } from './scopes.js';
import type { KeyRecord } from './store.js';
import type { VerifyFailureCode, VerifyOptions, VerifyResult } from './types.js';

const MESSAGES: Record<VerifyFailureCode, string> = {
  MISSING: 'No API key was given.',
  MALFORMED: 'The API key is malformed.',
  NOT_FOUND: 'The API key does not exist.',
  INACTIVE: 'The API key is deactivated.',
  EXPIRED: 'The API key has expired.',
  IP_NOT_ALLOWED: 'The client address is not allowed to use this API key.',
  INSUFFICIENT_SCOPE: 'The API key does not grant the required scope.',
  RATE_LIMITED: 'The API key has made too many requests; retry later.',
  USAGE_EXCEEDED: 'The API key has no uses left.',
};

/** One frozen result object per failure code: rejections allocate nothing. */
export const FAILURES = Object.fromEntries(
  Object.entries(MESSAGES).map(([code, message]) => [code, Object.freeze({ valid: false as const, code, message })]),
) as Record<VerifyFailureCode, VerifyResult & { valid: false }>;

/**
 * Steps 3-6 of verify (DESIGN.md): the digest matches the current token, or the previous one
 * within its grace period; then active, expiry, client address, scope. `now` is the clock's
 * reading in ms. Throws only for a required scope the catalog does not know: a programming error.
 */
export function decide(
  record: KeyRecord | null,
  digest: string,
  options: VerifyOptions | undefined,
  now: number,
  catalog: ScopeCatalog,
): VerifyResult {
  if (record === null) return FAILURES.NOT_FOUND;
  if (record.digest !== digest) {
    // The token of before the last rotation: valid during its grace period, or with no end while
    // that rotation is not confirmed (its new token may never have reached the caller).
    const graceEnd = record.previousDigestExpiresAt;
    if (record.previousDigest !== digest || (graceEnd !== null && now >= graceEnd.getTime())) return FAILURES.NOT_FOUND;
  }
  if (!record.active) return FAILURES.INACTIVE;
  if (record.expiresAt !== null && now >= record.expiresAt.getTime()) return FAILURES.EXPIRED;
  if (record.allowedIps.length > 0 && !isIpAllowed(record.allowedIps, options?.ip ?? null)) return FAILURES.IP_NOT_ALLOWED;
  const scope = options?.scope;
  if (scope !== undefined && !catalog.satisfies(record.scopes, scope)) {
    assertKnownScopes(catalog, scope);
    return FAILURES.INSUFFICIENT_SCOPE;
  }
  return { valid: true, key: toApiKey(record) };
}

/** An unknown required scope is the caller's mistake, not the client's: say so loudly. */
function assertKnownScopes(catalog: ScopeCatalog, scope: string | readonly string[]): void {
  for (const s of typeof scope === 'string' ? [scope] : scope) {
    if (!catalog.has(s)) {
      const known = catalog
        .list()
        .map((i) => i.name)
        .join(', ');
      throw new ValidationError('scope', `unknown scope '${String(s)}'; known scopes: ${known}`);
    }
  }
}
