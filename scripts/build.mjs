// Builds dist/ with tsup unless it was already built from exactly these sources (a content hash, not file times).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Everything tsup reads: the sources and the files that configure the build. */
const INPUTS = ['src', 'adapters', 'tsup.config.ts', 'tsconfig.json', 'package.json'];
const stamp = join(root, 'node_modules/.cache/keygate/build-hash');

function files(path) {
  if (!existsSync(path)) return [];
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .sort()
    .flatMap((name) => files(join(path, name)));
}

/** One hash of the paths and contents of these files and folders. */
function hashOf(paths) {
  const hash = createHash('sha256');
  for (const file of paths.flatMap((path) => files(join(root, path)))) {
    hash.update(relative(root, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  return hash.digest('hex');
}

// The stamp holds the hash of the inputs and of the dist/ they produced: a change to either rebuilds.
const force = process.argv.includes('--force');
const inputs = hashOf(INPUTS);
const built = existsSync(stamp) && readFileSync(stamp, 'utf8') === `${inputs} ${hashOf(['dist'])}`;
if (built && !force) {
  if (!process.argv.includes('--quiet')) console.error('dist/ is up to date with src/ and adapters/: not rebuilt');
} else {
  execFileSync(process.execPath, [join(root, 'node_modules/tsup/dist/cli-default.js'), '--silent'], { cwd: root, stdio: 'inherit' });
  mkdirSync(dirname(stamp), { recursive: true });
  writeFileSync(stamp, `${inputs} ${hashOf(['dist'])}`);
}
