// Runs test files under node:test or jest in a child process and reads back how many checks passed and failed.
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

export const root = resolve(__dirname, '../..');

/** What a child test run reported. */
export interface ChildRun {
  tests: number;
  pass: number;
  fail: number;
  /** The exit code: 0 when every check passed. */
  code: number;
  output: string;
}

async function run(args: string[], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string; code: number }> {
  return promisify(execFile)(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...env },
    timeout: 180_000,
    maxBuffer: 64 * 1024 * 1024,
  }).then(
    (r) => ({ stdout: r.stdout, stderr: r.stderr, code: 0 }),
    (e: { stdout?: string; stderr?: string; code?: number }) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: e.code ?? -1 }),
  );
}

/** `node --test` on one file, read from its TAP summary. */
export async function nodeTest(file: string, env: Record<string, string> = {}): Promise<ChildRun> {
  const { stdout, stderr, code } = await run(['--test', '--test-reporter=tap', join(root, file)], env);
  const count = (name: string): number => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(stdout)?.[1] ?? Number.NaN);
  return { tests: count('tests'), pass: count('pass'), fail: count('fail'), code, output: `${stdout}\n${stderr}` };
}

/** jest on the files under `rootDir` whose path matches `pattern`, read from its JSON report. */
export async function jest(rootDir: string, pattern: string): Promise<ChildRun> {
  const bin = join(root, 'node_modules/jest/bin/jest.js');
  const { stdout, stderr, code } = await run([bin, '--rootDir', join(root, rootDir), '--ci', '--json', pattern]);
  const report = JSON.parse(stdout) as { numTotalTests: number; numPassedTests: number; numFailedTests: number };
  return { tests: report.numTotalTests, pass: report.numPassedTests, fail: report.numFailedTests, code, output: stderr };
}
