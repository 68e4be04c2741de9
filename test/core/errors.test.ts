// isKeygateError: recognises keygate's errors, also from another copy of the library, and nothing else.
import { describe, expect, it } from 'vitest';
import {
  isKeygateError,
  KeyNotFoundError,
  ManagerClosedError,
  StoreUnavailableError,
  ValidationError,
  VersionConflictError,
} from '../../src/index.js';

describe('isKeygateError', () => {
  it('is true for every error class keygate throws', () => {
    for (const error of [
      new ValidationError('name', 'is required'),
      new KeyNotFoundError('k1'),
      new VersionConflictError('k1', 1, 2),
      new StoreUnavailableError('findByDigest', 'timeout'),
      new ManagerClosedError(),
    ]) {
      expect(isKeygateError(error), error.name).toBe(true);
    }
  });

  it('is true for an error of another copy of keygate: same code and status, other class identity', () => {
    const foreign = Object.assign(new Error('Key store unavailable'), {
      name: 'StoreUnavailableError',
      code: 'STORE_UNAVAILABLE',
      status: 503,
    });
    expect(isKeygateError(foreign)).toBe(true);
  });

  it('is false for other errors and values, even ones with a code', () => {
    const system = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const statusOnly = Object.assign(new Error('teapot'), { code: 'TOSTRING', status: 418 });
    const inherited = Object.assign(new Error('proto'), { code: 'toString', status: 500 });
    for (const value of [
      system,
      statusOnly,
      inherited,
      new Error('x'),
      { code: 'KEY_NOT_FOUND', status: 404 },
      null,
      undefined,
      'KEY_NOT_FOUND',
    ]) {
      expect(isKeygateError(value)).toBe(false);
    }
  });
});
