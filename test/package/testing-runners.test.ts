// keygate/testing's store contract suite runs under node:test too: the runner is the caller's.
import { describe, expect, it } from 'vitest';
import { nodeTest as runNodeTest } from '../support/child-tests.js';

const fixture = 'test/package/fixtures/store-contract.node-test.mjs';

/** The fixture under `node --test`, on the given store. */
async function nodeTest(store: string) {
  const summary = await runNodeTest(fixture, { KEYGATE_CONTRACT_STORE: store });
  expect(summary.code === 0).toBe(summary.fail === 0);
  return summary;
}

describe('storeContractSuite under node:test, from the built package', () => {
  it('passes every check on MemoryStore', async () => {
    const { tests, pass, fail, output } = await nodeTest('memory');
    expect(fail, output).toBe(0);
    expect(pass).toBeGreaterThanOrEqual(19);
    expect(pass).toBe(tests);
  });

  it('fails the compare-and-set checks of a store that loses updates', async () => {
    const { pass, fail, output } = await nodeTest('lost-updates');
    expect(fail).toBeGreaterThan(0);
    expect(pass).toBeGreaterThan(0);
    expect(output).toMatch(/not ok \d+ - lets exactly one of 50 parallel edits of one version win/);
    expect(output).toMatch(/not ok \d+ - applies concurrent edits without expectedVersion one after another, losing none/);
  });
});
