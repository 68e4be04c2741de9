// The published package: packed, installed into a fresh project, used from CJS, ESM and TypeScript.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(__dirname, '../..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
const subpaths = Object.keys(pkg.exports)
  .filter((s) => s !== './package.json')
  .map((s) => (s === '.' ? 'keygate' : `keygate/${s.slice(2)}`));

function run(command: string, args: string[], cwd: string): string {
  return execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 });
}

describe('the packed package', () => {
  let project: string;

  beforeAll(() => {
    project = mkdtempSync(join(tmpdir(), 'keygate-pack-'));
    const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', project], root)) as [
      { filename: string; files: { path: string }[] },
    ];
    const files = packed[0].files.map((f) => f.path);
    expect(files).toContain('dist/index.cjs');
    expect(files.some((f) => f.startsWith('src/') || f.startsWith('test/'))).toBe(false);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, version: '1.0.0' }));
    // Only the tarball and its own dependencies: no driver, no framework.
    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(project, packed[0].filename)], project);
    mkdirSync(join(project, 'node_modules/@types'), { recursive: true });
    symlinkSync(join(root, 'node_modules/@types/node'), join(project, 'node_modules/@types/node'));
  }, 240_000);

  afterAll(() => {
    if (project) rmSync(project, { recursive: true, force: true });
  });

  const program = (load: (s: string) => string) => `
    const { createKeyManager, KeygateError, StoreConflictError, b2bWaveScopes } = ${load('keygate')};
    const { MemoryStore } = ${load('keygate/memory')};
    const keys = createKeyManager({ store: new MemoryStore() });
    const { key, token } = await keys.create({ name: 'pkg', scopes: ['orders:edit'], allowedIps: '127.0.0.1' });
    const ok = await keys.verify(token, { scope: 'orders:list', ip: '::ffff:127.0.0.1' });
    const store = new MemoryStore();
    await store.insert({ ...(await keys.get(key.id)), digest: 'd', previousDigest: null, previousDigestExpiresAt: null });
    let sameClass = false;
    try { await store.insert({ ...(await keys.get(key.id)), digest: 'e', previousDigest: null, previousDigestExpiresAt: null }); }
    catch (e) { sameClass = e instanceof StoreConflictError && e instanceof KeygateError; }
    const loaded = [];
    for (const s of ${JSON.stringify(subpaths)}) loaded.push(Object.keys(${load('s')}).length > 0);
    console.log(JSON.stringify({ valid: ok.valid, sameClass, scopes: b2bWaveScopes.list().length, loaded }));
    await keys.close();
  `;

  const expected = { valid: true, sameClass: true, scopes: 7, loaded: subpaths.map(() => true) };

  it('works from CommonJS (require), with every subpath loadable without drivers installed', () => {
    writeFileSync(
      join(project, 'main.cjs'),
      `(async () => { ${program((s) => (s === 's' ? 'require(s)' : `require('${s}')`))} })().catch((e) => { console.error(e); process.exit(1); });`,
    );
    expect(JSON.parse(run('node', ['main.cjs'], project))).toEqual(expected);
  });

  it('works from ESM (import), with every subpath loadable without drivers installed', () => {
    writeFileSync(
      join(project, 'main.mjs'),
      program((s) => (s === 's' ? '(await import(s))' : `(await import('${s}'))`)),
    );
    expect(JSON.parse(run('node', ['main.mjs'], project))).toEqual(expected);
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
      import { createKeyManager, type ApiKey, type VerifyResult, ValidationError } from 'keygate';
      import { MemoryStore } from 'keygate/memory';
      const keys = createKeyManager({ store: new MemoryStore(), prefix: 'shop', storeTimeoutMs: 500 });
      export async function check(token: string): Promise<ApiKey | null> {
        const result: VerifyResult = await keys.verify(token, { scope: 'orders:list', ip: '127.0.0.1' });
        if (result.valid) return result.key;
        const code: 'MISSING' | 'MALFORMED' | 'NOT_FOUND' | 'INACTIVE' | 'EXPIRED' | 'IP_NOT_ALLOWED' | 'INSUFFICIENT_SCOPE' = result.code;
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

  it('passes publint and Are the Types Wrong', () => {
    const publint = run('node', [join(root, 'node_modules/publint/src/cli.js'), '--strict'], root);
    expect(publint).not.toMatch(/error|warning/i);
    const attw = run(
      'node',
      [join(root, 'node_modules/@arethetypeswrong/cli/dist/index.js'), '--pack', '.', '--profile', 'node16', '--format', 'json'],
      root,
    );
    type Problem = { kind: string; resolutionKind?: string; entrypoint?: string };
    const report = JSON.parse(attw) as { analysis?: { problems?: Problem[] }; problems?: Problem[] };
    // node10 resolution has no "exports" support, so subpaths cannot resolve there by design.
    const problems = (report.analysis?.problems ?? report.problems ?? []).filter((p) => p.resolutionKind !== 'node10');
    expect(problems).toEqual([]);
  }, 120_000);
});
