// Keys in every state a guard must tell apart, and the table of what each one gets in every framework.

import { expect } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { createKeyManager, type KeyEvent, type KeyManager, type KeyManagerOptions } from '../../src/manager.js';
import type { Reply } from './client.js';

const HOUR = 3_600_000;

/** A token with one character of its body changed: the checksum no longer matches. */
export function withTypo(token: string): string {
  const last = token[token.length - 1];
  return token.slice(0, -1) + (last === 'a' ? 'b' : 'a');
}

export interface KeyStates {
  keys: KeyManager;
  events: KeyEvent[];
  /** Tokens by state name; `validId` is the id of the key behind `valid`. */
  tokens: {
    valid: string;
    edit: string;
    wrongScope: string;
    inactive: string;
    expired: string;
    deleted: string;
    ipLocked: string;
    unknown: string;
  };
  validId: string;
  editId: string;
}

/** A manager on a MemoryStore holding one key per state; the clock has moved past `expired`'s expiry. */
export async function createKeyStates(extra: Partial<KeyManagerOptions> = {}): Promise<KeyStates> {
  let clock = Date.UTC(2030, 0, 1);
  const events: KeyEvent[] = [];
  const keys = createKeyManager({ store: memoryStore(), now: () => clock, onEvent: (e) => events.push(e), ...extra });
  const valid = await keys.create({ name: 'valid', scopes: ['orders:list'] });
  const edit = await keys.create({ name: 'edit implies list', scopes: ['orders:edit'] });
  const wrongScope = await keys.create({ name: 'products only', scopes: ['products:list'] });
  const inactive = await keys.create({ name: 'inactive', scopes: ['all'], active: false });
  const expired = await keys.create({ name: 'expires', scopes: ['all'], expiresAt: clock + HOUR });
  const deleted = await keys.create({ name: 'deleted', scopes: ['all'] });
  await keys.delete(deleted.key.id);
  const ipLocked = await keys.create({ name: 'ip locked', scopes: ['all'], allowedIps: '203.0.113.7' });
  // Well-formed, right prefix, never stored here.
  const stranger = await createKeyManager({ store: memoryStore() }).create({ name: 'elsewhere', scopes: ['all'] });
  clock += 2 * HOUR;
  return {
    keys,
    events,
    tokens: {
      valid: valid.token,
      edit: edit.token,
      wrongScope: wrongScope.token,
      inactive: inactive.token,
      expired: expired.token,
      deleted: deleted.token,
      ipLocked: ipLocked.token,
      unknown: stranger.token,
    },
    validId: valid.key.id,
    editId: edit.key.id,
  };
}

export type Expected =
  | { status: 200; keyId: 'valid' | 'edit' }
  | { status: 401; reason: 'MISSING' | 'MALFORMED' | 'NOT_FOUND' | 'INACTIVE' | 'EXPIRED' }
  | { status: 403; code: 'insufficient_scope' | 'ip_not_allowed' };

export interface Row {
  state: string;
  /** The token to send, or `null` to send none. */
  token: (t: KeyStates['tokens']) => string | null;
  expected: Expected;
}

/** Every key state on `GET /orders` (scope `orders:list`) from 127.0.0.1. */
export const KEY_STATE_TABLE: readonly Row[] = [
  { state: 'missing header', token: () => null, expected: { status: 401, reason: 'MISSING' } },
  { state: 'malformed', token: () => 'not-an-api-key', expected: { status: 401, reason: 'MALFORMED' } },
  { state: 'bad checksum', token: (t) => withTypo(t.valid), expected: { status: 401, reason: 'MALFORMED' } },
  { state: 'unknown', token: (t) => t.unknown, expected: { status: 401, reason: 'NOT_FOUND' } },
  { state: 'inactive', token: (t) => t.inactive, expected: { status: 401, reason: 'INACTIVE' } },
  { state: 'expired', token: (t) => t.expired, expected: { status: 401, reason: 'EXPIRED' } },
  { state: 'deleted', token: (t) => t.deleted, expected: { status: 401, reason: 'NOT_FOUND' } },
  { state: 'wrong scope', token: (t) => t.wrongScope, expected: { status: 403, code: 'insufficient_scope' } },
  { state: 'IP not allowed', token: (t) => t.ipLocked, expected: { status: 403, code: 'ip_not_allowed' } },
  { state: 'valid', token: (t) => t.valid, expected: { status: 200, keyId: 'valid' } },
  { state: 'valid, edit implies list', token: (t) => t.edit, expected: { status: 200, keyId: 'edit' } },
];

/** How a token travels. */
export type Carrier = 'bearer' | 'x-api-key' | 'basic-user' | 'basic-password';

/** Every carrier, for tests that run once per carrier. */
export const CARRIERS: readonly Carrier[] = ['bearer', 'x-api-key', 'basic-user', 'basic-password'];

export function carry(carrier: Carrier, token: string): Record<string, string> {
  switch (carrier) {
    case 'bearer':
      return { authorization: `Bearer ${token}` };
    case 'x-api-key':
      return { 'x-api-key': token };
    case 'basic-user':
      return { authorization: `Basic ${Buffer.from(`${token}:`).toString('base64')}` };
    case 'basic-password':
      return { authorization: `Basic ${Buffer.from(`shop-42:${token}`).toString('base64')}` };
  }
}

/** The one body every bad key gets when reasons are not exposed. */
export const INVALID_KEY_BODY = { error: { code: 'invalid_api_key', message: 'A valid API key is required.' } };

/**
 * Checks a reply against a row of the table: status, body, `www-authenticate`, and on errors the
 * content type (`toBe` for a string, `toMatch` for a RegExp; Nest sets the charset, the others vary).
 */
export function expectOutcome(
  reply: Reply,
  expected: Expected,
  states: KeyStates,
  exposeReasons: boolean,
  contentType: string | RegExp = /^application\/json/,
): void {
  expect(reply.status).toBe(expected.status);
  if (expected.status === 200) {
    expect(reply.json).toEqual({ keyId: expected.keyId === 'valid' ? states.validId : states.editId });
    return;
  }
  if (typeof contentType === 'string') {
    expect(reply.headers['content-type']).toBe(contentType);
  } else {
    expect(reply.headers['content-type']).toMatch(contentType);
  }
  if (expected.status === 401) {
    expect(reply.headers['www-authenticate']).toBe('Bearer');
    if (exposeReasons) {
      expect(reply.json).toMatchObject({ error: { code: 'invalid_api_key', reason: expected.reason } });
    } else {
      expect(reply.json).toEqual(INVALID_KEY_BODY);
    }
    return;
  }
  expect(reply.headers['www-authenticate']).toBeUndefined();
  expect(reply.json).toMatchObject({ error: { code: expected.code } });
  expect((reply.json as { error: { reason?: string } }).error.reason).toBeUndefined();
}
