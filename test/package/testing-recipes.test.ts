// The testing recipes of examples/testing run and pass: jest and node:test in child processes, vitest in this run.
import { describe, expect, it } from 'vitest';
import config from '../../vitest.config.js';
import { jest, nodeTest } from '../support/child-tests.js';

describe('the testing recipes in examples/testing', () => {
  it('jest: jest.test.cjs passes, loading keygate as a user does', async () => {
    const run = await jest('examples/testing', 'jest\\.test\\.cjs$');
    expect(run.fail, run.output).toBe(0);
    expect(run.pass).toBeGreaterThanOrEqual(6);
    expect(run.pass).toBe(run.tests);
    expect(run.code).toBe(0);
  });

  it('node:test: node-test.test.mjs passes', async () => {
    const run = await nodeTest('examples/testing/node-test.test.mjs');
    expect(run.fail, run.output).toBe(0);
    expect(run.pass).toBeGreaterThanOrEqual(4);
    expect(run.pass).toBe(run.tests);
    expect(run.code).toBe(0);
  });

  it('vitest: vitest.test.ts is part of this very run', () => {
    expect(config.test?.include).toContain('examples/testing/*.test.ts');
  });
});
