// The driver and framework versions the tests run on fall inside the declared peer ranges, one major each.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(__dirname, '../..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
};

/** NestJS 11's own install (its packages require each other by name, so they cannot be aliased). */
const NEST_11 = '../test/nestjs/v11/node_modules';

/** Each peer and the installed folders (the package itself and its major aliases) the tests use. */
const TESTED: Record<string, { folders: string[]; majors: number[] }> = {
  pg: { folders: ['pg'], majors: [8] },
  mysql2: { folders: ['mysql2'], majors: [3] },
  'better-sqlite3': { folders: ['better-sqlite3-11', 'better-sqlite3', 'better-sqlite3-13'], majors: [11, 12, 13] },
  ioredis: { folders: ['ioredis5', 'ioredis'], majors: [5, 6] },
  redis: { folders: ['redis4', 'redis5', 'redis'], majors: [4, 5, 6] },
  express: { folders: ['express4', 'express'], majors: [4, 5] },
  koa: { folders: ['koa2', 'koa'], majors: [2, 3] },
  fastify: { folders: ['fastify4', 'fastify'], majors: [4, 5] },
  hono: { folders: ['hono'], majors: [4] },
  '@nestjs/common': { folders: [`${NEST_11}/@nestjs/common`, '@nestjs/common'], majors: [11, 12] },
  '@nestjs/core': { folders: [`${NEST_11}/@nestjs/core`, '@nestjs/core'], majors: [11, 12] },
};

type Version = [number, number, number];
const parse = (text: string): Version => {
  const match = /^(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(text);
  if (!match) throw new Error(`not a version: ${text}`);
  return [Number(match[1]), Number(match[2] ?? 0), Number(match[3] ?? 0)];
};
const compare = (a: Version, b: Version): number => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/** The declared ranges all have the form `>=LOW <HIGH`; anything else fails here, on purpose. */
function inRange(version: string, range: string): boolean {
  const match = /^>=(\S+) <(\S+)$/.exec(range);
  if (!match) throw new Error(`peer range '${range}' is not of the form '>=LOW <HIGH'`);
  const v = parse(version.replace(/-.*$/, ''));
  return compare(v, parse(match[1] as string)) >= 0 && compare(v, parse(match[2] as string)) < 0;
}

const installed = (folder: string): string =>
  (JSON.parse(readFileSync(join(root, 'node_modules', folder, 'package.json'), 'utf8')) as { version: string }).version;

/**
 * NestJS 11 is a second install (`npm ci --prefix test/nestjs/v11`), which CI always makes; on a
 * machine without it, its suite is skipped (and says so), and so is its major here.
 */
const present = (folder: string): boolean =>
  !folder.startsWith(NEST_11) || process.env.CI === 'true' || existsSync(join(root, 'node_modules', folder, 'package.json'));

describe('peer dependency ranges', () => {
  it('every peer is optional and tested', () => {
    expect(Object.keys(pkg.peerDependencies).sort()).toEqual(Object.keys(TESTED).sort());
    for (const name of Object.keys(pkg.peerDependencies)) expect(pkg.peerDependenciesMeta[name]?.optional, name).toBe(true);
  });

  for (const [name, { folders, majors }] of Object.entries(TESTED)) {
    it(`${name}: the tested majors ${majors.join(', ')} are installed and inside '${pkg.peerDependencies[name]}'`, () => {
      const here = folders.map((folder, i) => [folder, majors[i] as number] as const).filter(([folder]) => present(folder));
      const versions = here.map(([folder]) => installed(folder));
      expect(versions.map((v) => parse(v)[0])).toEqual(here.map(([, major]) => major));
      for (const version of versions) expect(inRange(version, pkg.peerDependencies[name] as string), `${name}@${version}`).toBe(true);
      // The range stops right after the newest tested major: an untested major is never declared.
      const high = parse((/<(\S+)$/.exec(pkg.peerDependencies[name] as string) as RegExpExecArray)[1] as string);
      expect(high, `${name}: the range's upper bound`).toEqual([Math.max(...majors) + 1, 0, 0]);
    });
  }
});
