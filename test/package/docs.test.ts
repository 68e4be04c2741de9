// Every ```ts and ```js block of the docs runs, as written, against the packed package installed in a fresh project.
//
// A block runs as an ES module in the directory of its page (copied into the project), so relative
// imports work as in the repository. TypeScript is stripped of its types with esbuild. A block
// that reads `process.env.DATABASE_URL` or `process.env.REDIS_URL` needs that server: it gets a
// database (or Redis database) of its own for the run from the KEYGATE_TEST_* variables, and is
// skipped without them (under CI=true it fails instead). `process.env.REDIS_CLUSTER_URL` (root
// nodes, comma-separated) is the test cluster itself: such a block deletes the keys it creates. A block that starts a server reads
// `process.env.PORT` and must stop it: a block that does not exit fails. A block that imports vitest
// is a test file and runs under vitest. ```ts fragment marks a block that is not run; the run
// counts and names them.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, relative } from 'node:path';
import { transform } from 'esbuild';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVICES, type ServiceName, serviceUrl } from '../support/services.js';
import { createPackedProject, type PackedProject, root } from './packed.js';

/** The pages whose code blocks must run. */
const PAGES = [
  'README.md',
  'CONTRIBUTING.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
  'examples/b2b-store/README.md',
  'bench/README.md',
].filter((page) => existsSync(join(root, page)));

/** Languages that are run; every other fenced block (sh, text, sql, json…) is shown only. */
const RUN = new Set(['ts', 'typescript', 'js', 'javascript', 'mjs']);
/** Words allowed after the language in a fence's info string. */
const MARKERS = new Set(['fragment']);

/** Whether a version satisfies a peer range made of comparators such as `>=4.6 <6`. */
function satisfies(version: string, range: string): boolean {
  const parts = (v: string) => [...v.split('-')[0]!.split('.').map(Number), 0, 0, 0].slice(0, 3) as [number, number, number];
  const compare = (a: string, b: string) => {
    const [x, y] = [parts(a), parts(b)];
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  };
  return range.split(/\s+/).every((comparator) => {
    const [, op = '=', bound = ''] = /^(>=|<=|>|<|=)?(.+)$/.exec(comparator) ?? [];
    const c = compare(version, bound);
    return op === '>=' ? c >= 0 : op === '<=' ? c <= 0 : op === '>' ? c > 0 : op === '<' ? c < 0 : c === 0;
  });
}

/**
 * The drivers and frameworks the blocks may import: for each peer dependency, the newest copy in
 * the repository's node_modules (the package itself or an alias such as `redis5`) that its peer
 * range allows, as `[name, source, version]`.
 */
function peerCopies(): [string, string, string][] {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { peerDependencies: Record<string, string> };
  const installed = readdirSync(join(root, 'node_modules'));
  return Object.entries(pkg.peerDependencies).map(([name, range]) => {
    // A scoped peer (@nestjs/common) has no alias copies: only the package itself.
    const candidates = name.startsWith('@') ? (existsSync(join(root, 'node_modules', name)) ? [name] : []) : installed;
    const copies = candidates
      .filter((dir) => dir === name || new RegExp(`^${name}-?\\d+$`).test(dir))
      .map(
        (dir) =>
          [
            dir,
            (JSON.parse(readFileSync(join(root, 'node_modules', dir, 'package.json'), 'utf8')) as { version: string }).version,
          ] as const,
      )
      // The copy must run on this Node too (better-sqlite3 13 needs Node 22: on 20 the block gets 12).
      .filter(([dir, version]) => satisfies(version, range) && runsHere(dir))
      .sort((a, b) => (satisfies(a[1], `<${b[1]}`) ? 1 : -1));
    if (!copies[0]) throw new Error(`no copy of ${name} in node_modules satisfies its peer range ${range}`);
    return [name, copies[0][0], copies[0][1]];
  });
}

/** Whether the package in node_modules/`dir` declares support for the running Node (its `engines.node`). */
function runsHere(dir: string): boolean {
  const manifest = JSON.parse(readFileSync(join(root, 'node_modules', dir, 'package.json'), 'utf8')) as { engines?: { node?: string } };
  const range = manifest.engines?.node;
  return (
    range === undefined || /^>=\s*\d+(\.\d+){0,2}$/.test(range) === false || satisfies(process.versions.node, range.replace(/\s+/g, ''))
  );
}

/**
 * Test tools a block may import, and what a framework's example needs beside the peer itself (Nest's
 * platform and its own peers), linked from the repository: a block that imports vitest runs under it.
 */
const TOOLS = ['vitest', 'supertest', '@hono/node-server', '@nestjs/platform-express', 'reflect-metadata', 'rxjs'];

interface Block {
  page: string;
  line: number;
  lang: string;
  fragment: boolean;
  code: string;
  services: ServiceName[];
}

/** The fenced code blocks of a Markdown page. */
function blocksOf(page: string): { blocks: Block[]; problems: string[] } {
  const lines = readFileSync(join(root, page), 'utf8').split('\n');
  const blocks: Block[] = [];
  const problems: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(lines[i] as string);
    if (!open) continue;
    const [, indent = '', fence = '', info = ''] = open;
    const [lang = '', ...words] = info.trim().split(/\s+/).filter(Boolean);
    const start = i + 1;
    const body: string[] = [];
    for (i++; i < lines.length && !new RegExp(`^\\s*${fence}${fence[0]}*\\s*$`).test(lines[i] as string); i++) {
      body.push((lines[i] as string).startsWith(indent) ? (lines[i] as string).slice(indent.length) : (lines[i] as string));
    }
    if (!lang) problems.push(`${page}:${start}: a code block without a language (use sh, text, ts, js…)`);
    for (const word of words) if (!MARKERS.has(word)) problems.push(`${page}:${start}: unknown marker '${word}' after \`\`\`${lang}`);
    if (!RUN.has(lang)) continue;
    const code = body.join('\n');
    blocks.push({ page, line: start, lang, fragment: words.includes('fragment'), code, services: servicesOf(code, page, start, problems) });
  }
  return { blocks, problems };
}

/** The servers a block talks to, from the conventional variables it reads. */
function servicesOf(code: string, page: string, line: number, problems: string[]): ServiceName[] {
  const services: ServiceName[] = [];
  if (code.includes('process.env.REDIS_URL')) services.push('redis');
  if (code.includes('process.env.REDIS_CLUSTER_URL')) services.push('redisCluster');
  if (code.includes('process.env.DATABASE_URL')) {
    const postgres = /from ['"](pg|keygate\/postgres)['"]/.test(code);
    const mysqlDb = /from ['"](mysql2(\/promise)?|keygate\/mysql)['"]/.test(code);
    if (postgres === mysqlDb) problems.push(`${page}:${line}: reads DATABASE_URL but imports neither pg nor mysql2 (or both)`);
    services.push(postgres ? 'postgres' : 'mysql');
  }
  return services;
}

const peers = peerCopies();
const pages = PAGES.map(blocksOf);
const blocks = pages.flatMap((p) => p.blocks);
const runnable = blocks.filter((b) => !b.fragment);
const fragments = blocks.filter((b) => b.fragment);

/** The test servers, or why not: a missing variable skips (or, under CI=true, fails). */
const servers = new Map<ServiceName, { url?: string; error?: unknown }>();
for (const name of Object.keys(SERVICES) as ServiceName[]) {
  try {
    servers.set(name, { url: serviceUrl(name) });
  } catch (error) {
    servers.set(name, { error });
  }
}

/** A free TCP port on 127.0.0.1, for a block's `PORT`. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A database (PostgreSQL, MySQL) or Redis database of this run's own, and how to drop it. */
interface Isolated {
  url: string;
  drop(): Promise<void>;
}

async function isolate(name: ServiceName, base: string): Promise<Isolated> {
  // A Redis Cluster has only database 0: a block on it gets the cluster as it is, and keeps to
  // key ids of its own (the manager's, random) under the prefix it shows.
  if (name === 'redisCluster') return { url: base, drop: async () => {} };
  const label = `kg_docs_${randomBytes(5).toString('hex')}`;
  const url = new URL(base);
  if (name === 'postgres') {
    const admin = new pg.Client({ connectionString: base });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${label}"`);
    await admin.end();
    url.pathname = `/${label}`;
    return {
      url: url.toString(),
      drop: async () => {
        const c = new pg.Client({ connectionString: base });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS "${label}" WITH (FORCE)`);
        await c.end();
      },
    };
  }
  if (name === 'mysql') {
    const admin = await mysql.createConnection({ uri: base });
    await admin.query(`CREATE DATABASE \`${label}\``);
    await admin.end();
    url.pathname = `/${label}`;
    return {
      url: url.toString(),
      drop: async () => {
        const c = await mysql.createConnection({ uri: base });
        await c.query(`DROP DATABASE IF EXISTS \`${label}\``);
        await c.end();
      },
    };
  }
  // Redis: claim one of databases 1..15 with a lock key (the store tests use database 0), empty it.
  const lock = 'keygate-docs-test:lock';
  for (let db = 1; db <= 15; db++) {
    url.pathname = `/${db}`;
    const client = new Redis(url.toString(), { lazyConnect: true, maxRetriesPerRequest: 1 });
    await client.connect();
    if ((await client.set(lock, label, 'EX', 900, 'NX')) === 'OK') {
      await client.multi().flushdb().set(lock, label, 'EX', 900).exec();
      await client.quit();
      const claimed = url.toString();
      return {
        url: claimed,
        drop: async () => {
          const c = new Redis(claimed, { lazyConnect: true, maxRetriesPerRequest: 1 });
          await c.connect();
          if ((await c.get(lock)) === label) await c.flushdb();
          await c.quit();
        },
      };
    }
    await client.quit();
  }
  throw new Error('every Redis database 1..15 is claimed by another run of the docs test');
}

/** Runs node with these arguments (a file, or vitest and a file); resolves with its exit status and output, killing it after `timeoutMs`. */
function runNode(args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number) {
  return new Promise<{ code: number | null; timedOut: boolean; out: string }>((resolve) => {
    const child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, timedOut, out });
    });
  });
}

const BLOCK_TIMEOUT_MS = 30_000;

describe(`every code block of the docs (with ${peers.map(([name, , version]) => `${name} ${version}`).join(', ')})`, () => {
  let project: PackedProject | undefined;
  const isolated = new Map<ServiceName, Isolated>();

  beforeAll(async () => {
    project = createPackedProject('docs');
    for (const [name, source] of peers) project.link(name, source);
    for (const name of TOOLS) project.link(name);
    // As in the repository: .js files are ES modules.
    const manifest = join(project.dir, 'package.json');
    writeFileSync(manifest, JSON.stringify({ ...JSON.parse(readFileSync(manifest, 'utf8')), type: 'module' }));
    // The pages' own directories, so that a block's relative imports resolve as in the repository.
    cpSync(join(root, 'examples'), join(project.dir, 'examples'), {
      recursive: true,
      filter: (src) => !/[\\/](data|node_modules)$/.test(src),
    });
    const needed = new Set(runnable.flatMap((b) => b.services));
    for (const name of needed) {
      const url = servers.get(name)?.url;
      if (url) isolated.set(name, await isolate(name, url));
    }
  }, 240_000);

  afterAll(async () => {
    for (const db of isolated.values()) await db.drop();
    project?.remove();
  });

  it('are fenced with a language and known markers', () => {
    expect(pages.flatMap((p) => p.problems)).toEqual([]);
    expect(runnable.length).toBeGreaterThan(0);
  });

  it(`${fragments.length} block(s) marked fragment are not run${fragments.length ? `: ${fragments.map((b) => `${b.page}:${b.line}`).join(', ')}` : ''}`, () => {
    // Fragments are the exception: a type signature or a shape, never an example to paste.
    expect(fragments.length).toBeLessThanOrEqual(5);
  });

  for (const block of runnable) {
    const where = `${block.page}:${block.line} (${block.lang})`;
    const missing = block.services.filter((s) => !servers.get(s)?.url);
    const ciError = block.services.map((s) => servers.get(s)?.error).find(Boolean);
    if (ciError) {
      it(where, () => {
        throw ciError;
      });
      continue;
    }
    if (missing.length > 0) {
      const vars = missing.map((s) => SERVICES[s].variable).join(' and ');
      it.skip(`${where}: needs ${missing.join(' and ')}, skipped (set ${vars})`, () => {});
      continue;
    }

    it(
      block.services.length ? `${where} on ${block.services.join(' and ')}` : where,
      async () => {
        const dir = join(project!.dir, dirname(block.page));
        mkdirSync(dir, { recursive: true });
        const base = `docs-block-${block.page.replace(/[^A-Za-z0-9]+/g, '-')}-${block.line}`;
        const source =
          block.lang === 'ts' || block.lang === 'typescript'
            ? (
                await transform(block.code, {
                  loader: 'ts',
                  format: 'esm',
                  target: 'node20',
                  // As in a Nest project's tsconfig.json: its examples use TypeScript's decorators.
                  tsconfigRaw: { compilerOptions: { experimentalDecorators: true } },
                })
              ).code
            : block.code;
        // A block that imports vitest is a test file: it runs under vitest, as its reader would run it.
        const underVitest = /from ['"]vitest['"]/.test(block.code);
        const file = join(dir, underVitest ? `${base}.test.mjs` : `${base}.mjs`);
        writeFileSync(file, source);
        const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(await freePort()) };
        for (const v of ['DATABASE_URL', 'REDIS_URL', 'REDIS_CLUSTER_URL', 'CI', ...Object.values(SERVICES).map((s) => s.variable)])
          delete env[v];
        for (const v of Object.keys(env)) if (v.startsWith('VITEST') || v === 'NODE_ENV') delete env[v];
        for (const name of block.services) {
          const url = isolated.get(name)!.url;
          if (name === 'redis') env.REDIS_URL = url;
          else if (name === 'redisCluster') env.REDIS_CLUSTER_URL = url;
          else env.DATABASE_URL = url;
        }
        const args = underVitest ? [join(root, 'node_modules/vitest/vitest.mjs'), 'run', '--root', dir, file] : [file];
        const result = await runNode(args, dir, env, BLOCK_TIMEOUT_MS);
        const shown = `${where}, run as ${relative(project!.dir, file)}:\n${result.out}`;
        if (result.timedOut) {
          throw new Error(`did not exit within ${BLOCK_TIMEOUT_MS} ms (a block that starts a server must stop it). ${shown}`);
        }
        expect(result.code, shown).toBe(0);
      },
      BLOCK_TIMEOUT_MS + 5_000,
    );
  }
});
