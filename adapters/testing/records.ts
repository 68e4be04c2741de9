// A sample KeyRecord for checks that write to a store directly, with any fields overridden. Internal to keygate/testing and keygate's own tests.
import type { KeyRecord } from '../../src/store.js';

/** An active record with one scope, created at 2030-01-01T00:00Z; `id` is random unless given, `digest` is `d-${id}` unless given. */
export function sampleRecord(overrides: Partial<KeyRecord> = {}): KeyRecord {
  const at = new Date(Date.UTC(2030, 0, 1));
  const id = overrides.id ?? `rec${Math.random().toString(36).slice(2, 12)}`;
  return {
    id,
    ownerId: null,
    name: 'direct',
    active: true,
    scopes: ['orders:list'],
    allowedIps: [],
    hint: 'kg_abc…wxyz',
    createdAt: at,
    updatedAt: at,
    lastUsedAt: null,
    lastUsedIp: null,
    expiresAt: null,
    metadata: {},
    rateLimit: null,
    remaining: null,
    refill: null,
    refilledAt: null,
    version: 1,
    digest: `d-${id}`,
    previousDigest: null,
    previousDigestExpiresAt: null,
    ...overrides,
  };
}
