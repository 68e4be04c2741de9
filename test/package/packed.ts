// Packs keygate with npm and installs the tarball into a fresh temporary project, as a user would get it.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** The repository root. */
export const root = resolve(__dirname, '../..');

/** Every import specifier the package exports (`keygate`, `keygate/memory`, …). */
export function packageSubpaths(): string[] {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
  return Object.keys(pkg.exports)
    .filter((s) => s !== './package.json')
    .map((s) => (s === '.' ? 'keygate' : `keygate/${s.slice(2)}`));
}

/** Runs a command to completion and returns its stdout; throws with its stderr when it fails. */
export function run(command: string, args: string[], cwd: string): string {
  return execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 });
}

/** A temporary project with the packed tarball installed. */
export interface PackedProject {
  /** The project directory. */
  dir: string;
  /** The paths inside the tarball. */
  files: string[];
  /** Makes a package of the repository's node_modules (a driver, a framework) importable as `name`, from `source` (an alias such as `redis5`). */
  link(name: string, source?: string): void;
  /** Deletes the project. */
  remove(): void;
}

/**
 * Packs the repository (dist/ must be built) and installs the tarball into a new temporary project,
 * with only the tarball's own dependencies: no driver, no framework. `@types/node` is linked in.
 */
export function createPackedProject(label = 'pack'): PackedProject {
  const dir = mkdtempSync(join(tmpdir(), `keygate-${label}-`));
  const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', dir], root)) as [
    { filename: string; files: { path: string }[] },
  ];
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, version: '1.0.0' }));
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(dir, packed[0].filename)], dir);
  const link = (name: string, source = name) => {
    const target = join(dir, 'node_modules', name);
    mkdirSync(resolve(target, '..'), { recursive: true });
    symlinkSync(join(root, 'node_modules', source), target);
  };
  link('@types/node');
  return {
    dir,
    files: packed[0].files.map((f) => f.path),
    link,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
