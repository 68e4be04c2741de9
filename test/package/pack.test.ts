// The published package: packed, installed into a fresh project, used from CJS, ESM and TypeScript.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
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

  it('type-checks against the shipped declarations, from ESM and CommonJS TypeScript', () => {
    const source = `
      import { createKeyManager, isKeygateError, type ApiKey, type VerifyResult, ValidationError } from 'keygate';
      import { memoryStore, type MemoryStore } from 'keygate/memory';
      import type { RedisStore } from 'keygate/redis';
      import type { SqlStore } from 'keygate/sqlite';
      const store: MemoryStore = memoryStore();
      const keys = createKeyManager({ store, prefix: 'shop', storeTimeoutMs: 500 });
      export const storeTypes = (redis: RedisStore, sql: SqlStore): string => redis.prefix + sql.table;
      export const status = (e: unknown): number => (isKeygateError(e) ? e.status : 500);
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
