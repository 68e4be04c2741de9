// The published package: packed, installed into a fresh project, used from CJS, ESM and TypeScript.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPackedProject, type PackedProject, packageSubpaths, root, run } from './packed.js';

const subpaths = packageSubpaths();
/** The entries built on their framework's own code: they load only where the framework is installed. */
const NEEDS_FRAMEWORK = ['keygate/nestjs'];
const withoutPeers = subpaths.filter((s) => !NEEDS_FRAMEWORK.includes(s));

describe('the packed package', () => {
  let packed: PackedProject | undefined;
  let project: string;

  beforeAll(() => {
    // Only the tarball and its own dependencies: no driver, no framework.
    packed = createPackedProject('pack');
    project = packed.dir;
    expect(packed.files).toContain('dist/index.cjs');
    expect(packed.files.some((f) => f.startsWith('src/') || f.startsWith('test/'))).toBe(false);
  }, 240_000);

  afterAll(() => {
    packed?.remove();
  });

  const program = (load: (s: string) => string) => `
    const { createKeyManager, KeygateError, StoreConflictError, b2bWaveScopes } = ${load('keygate')};
    const { memoryStore, MemoryStore } = ${load('keygate/memory')};
    const keys = createKeyManager({ store: memoryStore() });
    const { key, token } = await keys.create({ name: 'pkg', scopes: ['orders:edit'], allowedIps: '127.0.0.1' });
    const ok = await keys.verify(token, { scope: 'orders:list', ip: '::ffff:127.0.0.1' });
    // The deprecated constructor still works until 0.3.
    const store = new MemoryStore();
    await store.insert({ ...(await keys.get(key.id)), digest: 'd', previousDigest: null, previousDigestExpiresAt: null });
    let sameClass = false;
    try { await store.insert({ ...(await keys.get(key.id)), digest: 'e', previousDigest: null, previousDigestExpiresAt: null }); }
    catch (e) { sameClass = e instanceof StoreConflictError && e instanceof KeygateError; }
    const { createTestKeys } = ${load('keygate/testing')};
    const t = createTestKeys({ seed: 'pack' });
    const expired = await t.mint({ scopes: ['orders:list'], expired: true });
    const testing = (await t.keys.verify(expired.token)).code;
    const loaded = [];
    for (const s of ${JSON.stringify(withoutPeers)}) loaded.push(Object.keys(${load('s')}).length > 0);
    console.log(JSON.stringify({ valid: ok.valid, sameClass, scopes: b2bWaveScopes.list().length, loaded, testing, seeded: expired.token }));
    await keys.close();
    await t.close();
  `;

  const expected = { valid: true, sameClass: true, scopes: 7, loaded: withoutPeers.map(() => true), testing: 'EXPIRED' };
  /** The seeded token each module format printed: the same seed must give the same token in both. */
  const seeded: string[] = [];

  it('works from CommonJS (require), with every subpath but keygate/nestjs loadable without drivers or frameworks installed', () => {
    writeFileSync(
      join(project, 'main.cjs'),
      `(async () => { ${program((s) => (s === 's' ? 'require(s)' : `require('${s}')`))} })().catch((e) => { console.error(e); process.exit(1); });`,
    );
    const { seeded: token, ...rest } = JSON.parse(run('node', ['main.cjs'], project));
    expect(rest).toEqual(expected);
    seeded.push(token);
  });

  it('works from ESM (import), with every subpath but keygate/nestjs loadable without drivers or frameworks installed', () => {
    writeFileSync(
      join(project, 'main.mjs'),
      program((s) => (s === 's' ? '(await import(s))' : `(await import('${s}'))`)),
    );
    const { seeded: token, ...rest } = JSON.parse(run('node', ['main.mjs'], project));
    expect(rest).toEqual(expected);
    seeded.push(token);
  });

  it('installs the keygate command, which names the driver to install when the store needs one', () => {
    const bin = join(project, 'node_modules/.bin/keygate');
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    expect(run(bin, ['--version'], project).trim()).toBe(version);
    // No driver is installed in this project: the command says which one, with its own exit code.
    const result = spawnSync(bin, ['migrate', '--store', 'sqlite:./keys.db'], { cwd: project, encoding: 'utf8' });
    expect(result.status).toBe(7);
    expect(result.stderr).toMatch(/npm install better-sqlite3/);
  });

  it('gives the same seeded test token from CommonJS and ESM, and a real one', () => {
    expect(seeded).toHaveLength(2);
    expect(seeded[0]).toMatch(/^kg_[0-9A-Za-z]{38}$/);
    expect(seeded[1]).toBe(seeded[0]);
  });

  it('keeps keygate/testing out of the core entry: nothing it loads reaches the testing code', () => {
    const dist = join(project, 'node_modules/keygate/dist');
    for (const entry of ['index.js', 'index.cjs']) {
      const seen = new Set<string>();
      const visit = (file: string): void => {
        if (seen.has(file)) return;
        seen.add(file);
        const text = readFileSync(join(dist, file), 'utf8');
        expect(text, file).not.toMatch(/storeContractSuite|createTestKeys|assert\/strict/);
        for (const m of text.matchAll(/(?:from |require\(|import\()\s*["']\.\/([^"']+)["']/g)) visit(m[1] as string);
      };
      visit(entry);
      expect([...seen].some((f) => f.startsWith('testing'))).toBe(false);
      expect(seen.size).toBeGreaterThan(1);
    }
  });

  it('loads nothing but its own files, ipaddr.js and lru-cache, from require and from import', () => {
    // Every module a program loads: ESM resolutions through a resolve hook, CommonJS ones from require.cache.
    writeFileSync(
      join(project, 'record-hooks.mjs'),
      `import { appendFileSync } from 'node:fs';
      let log;
      export function initialize(data) { log = data.log; }
      export async function resolve(specifier, context, next) {
        const result = await next(specifier, context);
        appendFileSync(log, result.url + '\\n');
        return result;
      }`,
    );
    writeFileSync(
      join(project, 'record.mjs'),
      `import { register } from 'node:module';
      register('./record-hooks.mjs', import.meta.url, { data: { log: process.env.LOADED_LOG } });`,
    );
    writeFileSync(join(project, 'load.cjs'), `require('keygate'); console.log(JSON.stringify(Object.keys(require.cache)));`);
    writeFileSync(
      join(project, 'load.mjs'),
      `import { createRequire } from 'node:module';
      await import('keygate');
      console.log(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));`,
    );
    const loaded = (program: string): string[] => {
      const log = join(project, `${program}.log`);
      writeFileSync(log, '');
      const output = execFileSync('node', ['--import', './record.mjs', program], {
        cwd: project,
        encoding: 'utf8',
        env: { ...process.env, LOADED_LOG: log },
        timeout: 60_000,
      });
      const urls = readFileSync(log, 'utf8')
        .split('\n')
        .filter((line) => line !== '' && !line.startsWith('node:'));
      const files = [...urls.map((url) => (url.startsWith('file:') ? fileURLToPath(url) : url)), ...(JSON.parse(output) as string[])];
      return [...new Set(files.map((file) => relative(project, file).split(sep).join('/')))].sort();
    };
    const allowed = /^node_modules\/(keygate|ipaddr\.js|lru-cache)\//;
    for (const [program, entry] of [
      ['load.cjs', 'node_modules/keygate/dist/index.cjs'],
      ['load.mjs', 'node_modules/keygate/dist/index.js'],
    ] as const) {
      const files = loaded(program);
      // The recording works: it saw keygate itself and its address parser.
      expect(files).toContain(entry);
      expect(files.some((file) => file.startsWith('node_modules/ipaddr.js/'))).toBe(true);
      expect(files.filter((file) => file !== program && !allowed.test(file))).toEqual([]);
    }
  });

  it('type-checks against the shipped declarations, from ESM and CommonJS TypeScript', () => {
    const source = `
      import { createKeyManager, isKeygateError, memoryLimiter, type ApiKey, type RateLimiter, type VerifyResult, ValidationError } from 'keygate';
      import type { SqlLimiter } from 'keygate/postgres';
      import { redisLimiter } from 'keygate/redis';
      import { memoryStore, type MemoryStore } from 'keygate/memory';
      import type { RedisStore } from 'keygate/redis';
      import type { SqlStore } from 'keygate/sqlite';
      import { createTestKeys, storeContractSuite, type MintedKey, type StoreFixture, type TestRunner } from 'keygate/testing';
      export async function minted(): Promise<MintedKey> {
        const t = createTestKeys({ prefix: 'shop', seed: 'types' });
        t.clock.advance(1000);
        return t.mint({ scopes: ['orders:list'], rotated: { gracePeriodMs: 60_000 }, allowedIps: ['127.0.0.1'] });
      }
      export function register(runner: TestRunner): void {
        storeContractSuite(runner, async (): Promise<StoreFixture> => ({ store: memoryStore() }), { name: 'memory' });
      }
      // @ts-expect-error a runner needs at least describe and it
      register({ describe: () => {} });
      const store: MemoryStore = memoryStore();
      const limiter: RateLimiter = memoryLimiter();
      const keys = createKeyManager({ store, prefix: 'shop', storeTimeoutMs: 500, rateLimits: { limiter, default: { limit: 10, windowMs: 1000 } } });
      export const limiters = (sql: SqlLimiter, redis: ReturnType<typeof redisLimiter>): RateLimiter[] => [sql, redis];
      // @ts-expect-error a rate limit needs a window
      void keys.create({ name: 'x', scopes: ['all'], rateLimit: { limit: 5 } });
      export const storeTypes = (redis: RedisStore, sql: SqlStore): string => redis.prefix + sql.table;
      export const status = (e: unknown): number => (isKeygateError(e) ? e.status : 500);
      export async function check(token: string): Promise<ApiKey | null> {
        const result: VerifyResult = await keys.verify(token, { scope: 'orders:list', ip: '127.0.0.1' });
        if (result.valid) return result.key;
        const code:
          | 'MISSING'
          | 'MALFORMED'
          | 'NOT_FOUND'
          | 'INACTIVE'
          | 'EXPIRED'
          | 'IP_NOT_ALLOWED'
          | 'INSUFFICIENT_SCOPE'
          | 'RATE_LIMITED'
          | 'USAGE_EXCEEDED' = result.code;
        const wait: number | null | undefined = result.retryAfterMs;
        void wait;
        void code;
        return null;
      }
      export const isValidation = (e: unknown): boolean => e instanceof ValidationError && e.field.length > 0;
      // @ts-expect-error scopes are required
      void keys.create({ name: 'x' });
    `;
    writeFileSync(join(project, 'esm.mts'), source);
    writeFileSync(join(project, 'cjs.cts'), source);
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          module: 'node16',
          moduleResolution: 'node16',
          target: 'es2022',
          types: ['node'],
          skipLibCheck: false,
        },
        files: ['esm.mts', 'cjs.cts'],
      }),
    );
    const tsc = join(root, 'node_modules/typescript/bin/tsc');
    expect(() => run('node', [tsc, '-p', 'tsconfig.json'], project)).not.toThrow();
  }, 60_000);

  it('passes publint --strict and Are the Types Wrong with its default profile (node10 included)', () => {
    const publint = run('node', [join(root, 'node_modules/publint/src/cli.js'), '--strict'], root);
    expect(publint).not.toMatch(/error|warning|suggestion/i);
    const attw = run('node', [join(root, 'node_modules/@arethetypeswrong/cli/dist/index.js'), '--pack', '.', '--format', 'json'], root);
    type Problem = { kind: string; resolutionKind?: string; entrypoint?: string };
    const report = JSON.parse(attw) as { analysis?: { problems?: Problem[] }; problems?: Problem[] };
    expect(report.analysis?.problems ?? report.problems ?? []).toEqual([]);
  }, 120_000);

  it('resolves every subpath under moduleResolution "node" (node10), as older TypeScript apps use', () => {
    const imports = subpaths.map((s, i) => `import * as m${i} from '${s}';`).join('\n');
    const uses = subpaths.map((_, i) => `m${i}`).join(', ');
    writeFileSync(join(project, 'node10.ts'), `${imports}\nexport const all = [${uses}];\n`);
    writeFileSync(
      join(project, 'tsconfig.node10.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          module: 'commonjs',
          moduleResolution: 'node',
          target: 'es2022',
          types: ['node'],
          esModuleInterop: true,
          // The framework entries' declarations import their peers, which this project does not install.
          skipLibCheck: true,
        },
        files: ['node10.ts'],
      }),
    );
    const tsc = join(root, 'node_modules/typescript/bin/tsc');
    expect(() => run('node', [tsc, '-p', 'tsconfig.node10.json'], project)).not.toThrow();
  }, 60_000);
});

describe('the packed package with the frameworks of its fetch, Hono, Next.js and NestJS entries installed', () => {
  let packed: PackedProject | undefined;
  let project: string;

  beforeAll(() => {
    packed = createPackedProject('frameworks');
    project = packed.dir;
    for (const name of ['hono', '@hono/node-server', '@nestjs/common', '@nestjs/core', 'reflect-metadata', 'rxjs']) packed.link(name);
  }, 240_000);

  afterAll(() => {
    packed?.remove();
  });

  /** Loads each entry and reports the names it exports that a user reaches for first. */
  const program = (load: (s: string) => string) => `
    const fetchEntry = ${load('keygate/fetch')};
    const honoEntry = ${load('keygate/hono')};
    const nextEntry = ${load('keygate/next')};
    const nestEntry = ${load('keygate/nestjs')};
    console.log(JSON.stringify({
      fetch: [typeof fetchEntry.createFetchGuard, typeof fetchEntry.rejectionResponse],
      hono: [typeof honoEntry.apiKeyGuard],
      next: [typeof nextEntry.createNextGuard],
      nestjs: [typeof nestEntry.KeygateModule, typeof nestEntry.ApiKeyGuard, typeof nestEntry.RequireScope],
    }));
  `;
  const expected = {
    fetch: ['function', 'function'],
    hono: ['function'],
    next: ['function'],
    nestjs: ['function', 'function', 'function'],
  };

  it('loads keygate/fetch, keygate/hono, keygate/next and keygate/nestjs from CommonJS (require)', () => {
    writeFileSync(
      join(project, 'frameworks.cjs'),
      `(async () => { ${program((s) => `require('${s}')`)} })().catch((e) => { console.error(e); process.exit(1); });`,
    );
    expect(JSON.parse(run('node', ['frameworks.cjs'], project))).toEqual(expected);
  });

  it('loads keygate/fetch, keygate/hono, keygate/next and keygate/nestjs from ESM (import)', () => {
    writeFileSync(
      join(project, 'frameworks.mjs'),
      program((s) => `(await import('${s}'))`),
    );
    expect(JSON.parse(run('node', ['frameworks.mjs'], project))).toEqual(expected);
  });

  it('type-checks a Hono app, a Next.js route, a fetch handler and a Nest module against the shipped declarations', () => {
    const source = `
      import { Hono } from 'hono';
      import { createKeyManager, type ApiKey } from 'keygate';
      import { memoryStore } from 'keygate/memory';
      import { createFetchGuard, rejectionResponse } from 'keygate/fetch';
      import { apiKeyGuard } from 'keygate/hono';
      import { createNextGuard } from 'keygate/next';
      import { ApiKeyGuard, KeygateModule, RequireScope, type RequestWithApiKey } from 'keygate/nestjs';
      const keys = createKeyManager({ store: memoryStore() });
      const guard = createFetchGuard(keys, { scope: 'orders:list' });
      export async function handle(request: Request): Promise<Response> {
        const outcome = await guard.authenticate(request, { clientAddress: '127.0.0.1' });
        if (!outcome.ok) return rejectionResponse(outcome);
        const key: ApiKey = outcome.key;
        return Response.json({ calledBy: key.name });
      }
      export const app = new Hono().get('/orders', apiKeyGuard(keys, { scope: 'orders:list' }), (c) => c.json({ name: c.get('apiKey').name }));
      const withApiKey = createNextGuard(keys, { trustedProxies: true });
      export const GET = withApiKey(async (_request: Request, _context: { params: Promise<{ id: string }> }, apiKey: ApiKey) => Response.json({ id: apiKey.id }), { scope: 'orders:list' });
      export const module = KeygateModule.forRoot({ keys });
      export const requireList = RequireScope('orders:list');
      export const guardClass: typeof ApiKeyGuard = ApiKeyGuard;
      export const nameOf = (request: RequestWithApiKey<{ url: string }>): string => request.apiKey.name + request.url;
    `;
    writeFileSync(join(project, 'frameworks.mts'), source);
    writeFileSync(join(project, 'frameworks.cts'), source);
    writeFileSync(
      join(project, 'tsconfig.frameworks.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          module: 'node16',
          moduleResolution: 'node16',
          target: 'es2022',
          lib: ['es2022', 'dom'],
          types: ['node'],
          // The frameworks' own declarations are theirs to check.
          skipLibCheck: true,
        },
        files: ['frameworks.mts', 'frameworks.cts'],
      }),
    );
    const tsc = join(root, 'node_modules/typescript/bin/tsc');
    expect(() => run('node', [tsc, '-p', 'tsconfig.frameworks.json'], project)).not.toThrow();
  }, 60_000);
});
