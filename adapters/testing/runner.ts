// The test-runner shape the shipped suites are registered with: vitest, jest and node:test all fit.

import { ValidationError } from '../../src/errors.js';

/** A test body. The suites only register async bodies and never use a runner's context argument. */
export type TestBody = () => Promise<void>;

/**
 * The functions of your test runner that the suites call. Pass vitest's or jest's
 * `{ describe, it, beforeAll, afterAll }` as they are, or node:test's `{ describe, it, before, after }`
 * (its hooks are named `before` / `after`; either name is accepted).
 *
 * The suites call `it(name, body, timeoutMs)` and `beforeAll(body, timeoutMs)`: vitest and jest read
 * the number as that test's timeout; node:test ignores it (its tests have no timeout by default).
 */
export interface TestRunner {
  /** Groups checks under a name: `describe` of vitest, jest or node:test. */
  describe: (name: string, body: () => void) => unknown;
  /** Registers one check: `it` (or `test`) of vitest, jest or node:test. */
  it: (name: string, body: TestBody, timeoutMs?: number) => unknown;
  /** Runs once before the group's checks: vitest's / jest's `beforeAll`. */
  beforeAll?: (body: TestBody, timeoutMs?: number) => unknown;
  /** Runs once after the group's checks: vitest's / jest's `afterAll`. */
  afterAll?: (body: TestBody, timeoutMs?: number) => unknown;
  /** node:test's name for `beforeAll`. */
  before?: (body: TestBody, timeoutMs?: number) => unknown;
  /** node:test's name for `afterAll`. */
  after?: (body: TestBody, timeoutMs?: number) => unknown;
}

/** The runner's before-all and after-all hooks, whichever names it uses; a ValidationError when they are missing. */
export function hooksOf(runner: TestRunner): {
  beforeAll: NonNullable<TestRunner['beforeAll']>;
  afterAll: NonNullable<TestRunner['afterAll']>;
} {
  if (!runner || typeof runner.describe !== 'function' || typeof runner.it !== 'function') {
    throw new ValidationError('runner', "must hold your test runner's functions, e.g. { describe, it, beforeAll, afterAll } from vitest");
  }
  const beforeAll = runner.beforeAll ?? runner.before;
  const afterAll = runner.afterAll ?? runner.after;
  if (typeof beforeAll !== 'function' || typeof afterAll !== 'function') {
    throw new ValidationError('runner', 'needs beforeAll and afterAll (vitest, jest) or before and after (node:test)');
  }
  return { beforeAll, afterAll };
}
