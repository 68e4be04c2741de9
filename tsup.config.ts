// Build: ESM + CJS + declarations for the core and every adapter subpath.
import { existsSync } from 'node:fs';
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
