// keygate/nestjs as installed from the built package, on NestJS 11 (test/nestjs/v11), Express and Fastify.
//
// NestJS 11 lives in its own install, test/nestjs/v11/node_modules (`npm ci --prefix test/nestjs/v11`),
// since Nest's packages require each other by name. The suite copies the built package (package.json
// and dist/) into it as node_modules/keygate, as a user's install has it, so keygate/nestjs resolves
// @nestjs/common 11 from there. Without that install the suite is skipped, except under CI=true.

import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { describeNest } from './suite.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const V11 = fileURLToPath(new URL('./v11/', import.meta.url));
const INSTALL = 'npm ci --prefix test/nestjs/v11';
const installed = existsSync(`${V11}node_modules/@nestjs/core/package.json`);

/** Builds dist/ when the sources changed, then copies the package into the NestJS 11 install. */
function installKeygate(): void {
  execFileSync(process.execPath, ['scripts/build.mjs', '--quiet'], { cwd: ROOT, stdio: 'inherit' });
  const target = `${V11}node_modules/keygate/`;
  rmSync(target, { recursive: true, force: true });
  mkdirSync(target, { recursive: true });
  cpSync(`${ROOT}package.json`, `${target}package.json`);
  // A copy, not a symlink: a symlink resolves back to the repository and its NestJS 12.
  cpSync(`${ROOT}dist`, `${target}dist`, { recursive: true });
}

if (installed) {
  describeNest('11', async () => {
    installKeygate();
    // Once package.json exports keygate/nestjs, it must be the file this suite loads.
    const { exports } = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as {
      exports: Record<string, { import?: { default?: string } }>;
    };
    expect(exports['./nestjs']?.import?.default ?? './dist/nestjs.js').toBe('./dist/nestjs.js');
    const { loadKit } = await import('./v11/kit.js');
    return loadKit();
  });
} else if (process.env.CI === 'true') {
  describe('keygate/nestjs on NestJS 11', () => {
    it('needs NestJS 11 installed in test/nestjs/v11', () => {
      throw new Error(`test/nestjs/v11/node_modules is missing, and CI=true requires the NestJS 11 suite to run: run \`${INSTALL}\`.`);
    });
  });
} else {
  console.warn(`\nkeygate/nestjs on NestJS 11: SKIPPED, test/nestjs/v11/node_modules is missing (run \`${INSTALL}\`).\n`);
  describe.skip(`keygate/nestjs on NestJS 11: SKIPPED (run \`${INSTALL}\`)`, () => {
    it('runs the NestJS suite on NestJS 11', () => {});
  });
}
