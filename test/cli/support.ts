// Runs the built keygate command (dist/cli.js) as a user would, and reads what it printed and how it exited.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The repository root. */
export const root = resolve(__dirname, '../..');
/** The built command. */
export const CLI = join(root, 'dist/cli.js');

/** What one run printed and how it ended. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Both streams, for "never printed" checks. */
  all: string;
  /** ms from the last output to the exit: a connection left open keeps the process alive after its output. */
  exitLagMs: number;
}

export interface RunOptions {
  /** Variables besides PATH and HOME; KEYGATE_* are not inherited. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Written to standard input, then closed. */
  stdin?: string;
  /** Run another file (a copy of dist/cli.js) instead. */
  bin?: string;
  /** Execute the file itself (its shebang line picks node) instead of `node <file>`. */
  direct?: boolean;
}

/** Fails clearly when dist/ was not built: these tests run the built command, as `npx keygate` would. */
export function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first with node scripts/build.mjs`);
}

/** The environment of a run: only what a shell would pass, never the test runner's KEYGATE_* variables. */
function environment(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, LANG: 'C' };
  for (const [name, value] of Object.entries(extra)) if (value !== undefined) env[name] = value;
  return env;
}

/** Runs the command with these arguments. */
export function runCli(args: readonly string[], options: RunOptions = {}): Promise<CliRun> {
  const bin = options.bin ?? CLI;
  const [command, argv] = options.direct ? [bin, [...args]] : [process.execPath, [bin, ...args]];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, argv, { cwd: options.cwd ?? root, env: environment(options.env ?? {}), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let all = '';
    let lastOutput = Date.now();
    child.stdout.on('data', (d: Buffer) => ((stdout += d), (all += d), (lastOutput = Date.now())));
    child.stderr.on('data', (d: Buffer) => ((stderr += d), (all += d), (lastOutput = Date.now())));
    child.on('error', reject);
    child.on('exit', () => {
      const exitedAt = Date.now();
      child.on('close', (code) => resolvePromise({ code, stdout, stderr, all, exitLagMs: exitedAt - lastOutput }));
    });
    child.stdin.end(options.stdin ?? '');
  });
}

/** The JSON document a `--json` run printed. */
export function parsed<T = Record<string, unknown>>(run: CliRun): T {
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${run.code}):\n${run.stdout}\n${run.stderr}`);
  }
}

/** How many times `needle` occurs in `text`. */
export function occurrences(text: string, needle: string): number {
  return text.split(needle).length - 1;
}
