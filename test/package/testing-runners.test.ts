// keygate/testing's store contract suite runs under node:test too: the runner is the caller's.
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = resolve(__dirname, '../..');
const fixture = join(root, 'test/package/fixtures/store-contract.node-test.mjs');

/** Runs the fixture with `node --test` and reads the TAP summary. */
async function nodeTest(store: string): Promise<{ tests: number; pass: number; fail: number; output: string }> {
  const { stdout, code } = await promisify(execFile)(process.execPath, ['--test', '--test-reporter=tap', fixture], {
    cwd: root,
    env: { ...process.env, KEYGATE_CONTRACT_STORE: store },
    timeout: 120_000,
  }).then(
    (r) => ({ stdout: r.stdout, code: 0 }),
    (e: { stdout?: string; code?: number }) => ({ stdout: e.stdout ?? '', code: e.code ?? -1 }),
  );
  const count = (name: string): number => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(stdout)?.[1] ?? Number.NaN);
  const summary = { tests: count('tests'), pass: count('pass'), fail: count('fail'), output: stdout };
  expect(code === 0).toBe(summary.fail === 0);
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
