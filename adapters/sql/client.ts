// Checks that a driver adapter was given a client object, with a message that says what to pass instead.

import { ValidationError } from '../../src/errors.js';

/** What a value is, in words, for error messages. */
function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return 'a string (keygate never opens connections itself: pass a client, not a URL or file name)';
  if (typeof value !== 'object' && typeof value !== 'function') return typeof value;
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name !== 'Object' ? `a ${name} object` : 'an object';
}

/**
 * Throws a ValidationError unless `client` is an object with every method in `methods`.
 * @param expected what to pass, e.g. `a pg Pool or Client`
 * @param help how to get one, e.g. "npm install pg, then pass new Pool({ connectionString })"
 */
export function assertClient(client: unknown, methods: readonly string[], expected: string, help: string): void {
  const isObject = client !== null && (typeof client === 'object' || typeof client === 'function');
  const missing = isObject ? methods.filter((m) => typeof (client as Record<string, unknown>)[m] !== 'function') : methods;
  if (missing.length === 0) return;
  const without = isObject ? ` without ${missing.map((m) => `${m}()`).join(' or ')}` : '';
  throw new ValidationError('client', `must be ${expected}; got ${describe(client)}${without}. ${help}`);
}
