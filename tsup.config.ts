// Build: ESM + CJS + declarations for the core and every adapter subpath.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import type { Plugin } from 'esbuild';
import { defineConfig } from 'tsup';

const entries: Record<string, string> = {
  index: 'src/index.ts',
  memory: 'adapters/memory/index.ts',
  postgres: 'adapters/postgres/index.ts',
  mysql: 'adapters/mysql/index.ts',
  sqlite: 'adapters/sqlite/index.ts',
  redis: 'adapters/redis/index.ts',
  express: 'adapters/express/index.ts',
  koa: 'adapters/koa/index.ts',
  fastify: 'adapters/fastify/index.ts',
  testing: 'adapters/testing/index.ts',
  fetch: 'adapters/fetch/index.ts',
  hono: 'adapters/hono/index.ts',
  next: 'adapters/next/index.ts',
  nestjs: 'adapters/nestjs/index.ts',
  cli: 'adapters/cli/index.ts',
  admin: 'src/admin/index.ts',
};

/**
 * `import text from './file.css?raw'` gives the file's text, as Vite (and so the tests) reads it:
 * the admin page's files are bundled as strings, so the package serves them without reading files.
 */
const rawText: Plugin = {
  name: 'raw-text',
  setup(build) {
    // The path keeps its `?raw`, so that no plugin for the file's own type (CSS) takes it.
    build.onResolve({ filter: /\?raw$/ }, (args) => ({
      path: relative(process.cwd(), resolve(args.resolveDir, args.path)),
      namespace: 'raw-text',
    }));
    build.onLoad({ filter: /\?raw$/, namespace: 'raw-text' }, (args) => {
      const file = resolve(args.path.slice(0, -'?raw'.length));
      return { contents: readFileSync(file, 'utf8'), loader: 'text', resolveDir: dirname(file) };
    });
  },
};

export default defineConfig({
  entry: Object.fromEntries(Object.entries(entries).filter(([, file]) => existsSync(file))),
  format: ['esm', 'cjs'],
  dts: true,
  splitting: true,
  sourcemap: false,
  clean: true,
  target: 'node20',
  platform: 'node',
  // nanoid 5 ships ESM only: bundle it so require('keygate') works.
  noExternal: ['nanoid'],
  esbuildPlugins: [rawText],
  external: [
    'pg',
    'mysql2',
    'better-sqlite3',
    'ioredis',
    'redis',
    'express',
    'koa',
    'fastify',
    'fastify-plugin',
    'hono',
    /^@nestjs\//,
    'reflect-metadata',
    'rxjs',
  ],
});
