// One NestJS major with the keygate/nestjs build made for it: what the shared Nest apps and tests are given.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as Common from '@nestjs/common';
import type * as Core from '@nestjs/core';
import type * as PlatformExpress from '@nestjs/platform-express';
import type * as PlatformFastify from '@nestjs/platform-fastify';
import type * as Adapter from '../../adapters/nestjs/index.js';
import type { ValidationError } from '../../src/errors.js';

/**
 * The Nest packages of one major, as imported from one place, and the keygate/nestjs that resolves
 * the same @nestjs/common. Typed as NestJS 12; NestJS 11 has the same shape for what the apps use.
 */
export interface NestKit {
  /** Where the packages came from, e.g. `node_modules` or `test/nestjs/v11/node_modules`. */
  from: string;
  /** The version of the @nestjs/core package the `core` namespace was loaded from. */
  version: string;
  common: typeof Common;
  core: typeof Core;
  express: typeof PlatformExpress;
  fastify: typeof PlatformFastify;
  keygate: typeof Adapter;
  /** keygate's ValidationError, from the same copy of keygate as `keygate`. */
  ValidationError: typeof ValidationError;
}

/**
 * The directory and version of the @nestjs/core that a module at `fromFile` (a file URL) resolves,
 * read from that package's own package.json.
 */
export function resolvedNestCore(fromFile: string): { entry: string; root: string; version: string } {
  const entry = createRequire(fromFile).resolve('@nestjs/core');
  const marker = `${sep}node_modules${sep}@nestjs${sep}core${sep}`;
  const root = entry.slice(0, entry.lastIndexOf(marker) + marker.length - 1);
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  return { entry, root: dirname(dirname(root)), version };
}

const REPO = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The kit of the Nest packages imported by the module at `fromFile`, after checking that they are
 * what that module resolves (so a missing install cannot quietly stand in another major) and that
 * `keygate` extends that very @nestjs/common.
 */
export async function checkedKit(fromFile: string, modules: Omit<NestKit, 'from' | 'version'>): Promise<NestKit> {
  const { entry, root, version } = resolvedNestCore(fromFile);
  const loaded = (await import(pathToFileURL(entry).href)) as Partial<typeof Core> & { default?: Partial<typeof Core> };
  const factory = loaded.NestFactory ?? loaded.default?.NestFactory;
  if (factory !== modules.core.NestFactory) {
    throw new Error(`the @nestjs/core imported next to ${fromFile} is not the one at ${entry}`);
  }
  if (!(modules.keygate.ApiKeyException.prototype instanceof modules.common.HttpException)) {
    throw new Error(`keygate/nestjs here extends another copy of @nestjs/common than the one at ${root}`);
  }
  return { ...modules, from: relative(REPO, root), version };
}
