// The keygate command itself: the built file runs as a program, help, usage errors, the library's messages, missing drivers, store URLs.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { mysqlSchema } from '../../adapters/mysql/index.js';
import { postgresSchema } from '../../adapters/postgres/index.js';
import { sqliteSchema } from '../../adapters/sqlite/index.js';
import { type CreateKeyInput, createKeyManager } from '../../src/index.js';
import { serviceUrl } from '../support/services.js';
import { refusedPort, silentServer } from '../support/tcp.js';
import { assertBuilt, CLI, occurrences, parsed, root, runCli } from './support.js';

const redisUrl = serviceUrl('redis');

/** The message the library gives for this input to create(), to compare with the command's. */
async function libraryMessage(input: Partial<CreateKeyInput>): Promise<string> {
  const keys = createKeyManager({ store: memoryStore() });
  try {
    await keys.create({ name: 'ok', scopes: ['all'], ...input } as CreateKeyInput);
  } catch (error) {
    return (error as Error).message;
  } finally {
    await keys.close();
  }
  throw new Error(`the library accepted ${JSON.stringify(input)}`);
}

let dir: string;
beforeAll(() => {
  assertBuilt();
  dir = mkdtempSync(join(tmpdir(), 'keygate-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the built command', () => {
  it('starts with a node shebang, is executable, and runs when executed directly', async () => {
    expect(readFileSync(CLI, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
    expect(statSync(CLI).mode & 0o111).not.toBe(0);
    const run = await runCli(['--help'], { direct: true });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^keygate: manage and check API keys/);
    const version = await runCli(['--version'], { direct: true });
    expect(version.stdout).toBe(`${JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version}\n`);
  });

  it('works end to end when executed directly, on a SQLite file relative to the current directory', async () => {
    const cwd = mkdtempSync(join(dir, 'relative-'));
    const env = { KEYGATE_STORE_URL: 'sqlite:./keys.db' };
    const missing = await runCli(['list'], { direct: true, cwd, env });
    expect(missing.code).toBe(5);
    expect(missing.stderr).toMatch(/does not exist; create it with keygate migrate/);
    expect(existsSync(join(cwd, 'keys.db'))).toBe(false);
    expect((await runCli(['migrate'], { direct: true, cwd, env })).code).toBe(0);
    expect(existsSync(join(cwd, 'keys.db'))).toBe(true);
    const created = parsed<{ token: string }>(
      await runCli(['create', '--name', 'a', '--scopes', 'all', '--json'], { direct: true, cwd, env }),
    );
    expect((await runCli(['verify', created.token], { direct: true, cwd, env })).code).toBe(0);
  });

  it('says to run migrate when the table is missing', async () => {
    const cwd = mkdtempSync(join(dir, 'no-table-'));
    const env = { KEYGATE_STORE_URL: 'sqlite:keys.db' };
    expect((await runCli(['migrate', '--table', 'other'], { cwd, env })).code).toBe(0);
    const run = await runCli(['list'], { cwd, env });
    expect(run.code).toBe(5);
    expect(run.stderr).toMatch(/no such table: keygate_keys/);
    expect(run.stderr).toMatch(/Run keygate migrate/);
  });
});

describe('--timeout', () => {
  it('bounds connecting to a server that accepts and never answers: 5, and the process exits at once', async () => {
    const server = await silentServer();
    try {
      for (const url of [
        `postgres://u@127.0.0.1:${server.port}/db`,
        `mysql://u@127.0.0.1:${server.port}/db`,
        `redis://127.0.0.1:${server.port}`,
      ]) {
        const started = Date.now();
        const run = await runCli(['list', '--store', url, '--timeout', '300ms']);
        expect(run.code, `${url}: ${run.all}`).toBe(5);
        expect(run.stderr).toMatch(/^keygate: Key store unavailable during \w+: /);
        expect(Date.now() - started).toBeLessThan(5000);
        expect(run.exitLagMs, url).toBeLessThan(1000);
      }
    } finally {
      await server.close();
    }
  });
});

describe('help and usage errors', () => {
  it('prints help for keygate and for every command, with each option, and exits 0', async () => {
    for (const args of [['--help'], ['-h'], ['help']]) {
      const run = await runCli(args);
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/^Usage: keygate <command>/m);
      for (const code of [0, 1, 2, 3, 4, 5, 6, 7]) expect(run.stdout).toMatch(new RegExp(`^  ${code}  `, 'm'));
    }
    const commands: Record<string, string[]> = {
      migrate: ['--print'],
      create: ['--name', '--scopes', '--allowed-ips', '--owner', '--expires', '--metadata', '--inactive'],
      list: ['--owner', '--active', '--inactive', '--limit', '--cursor', '--all'],
      show: [],
      update: ['--name', '--scopes', '--allowed-ips', '--expires', '--metadata', '--active', '--inactive', '--notify', '--channel'],
      activate: ['--notify'],
      deactivate: ['--notify', '--channel'],
      rotate: ['--grace', '--notify'],
      delete: ['--yes', '--notify'],
      verify: ['--scope', '--ip'],
    };
    for (const [command, options] of Object.entries(commands)) {
      for (const args of [
        [command, '--help'],
        ['help', command],
      ]) {
        const run = await runCli(args);
        expect(run.code, args.join(' ')).toBe(0);
        expect(run.stdout).toMatch(new RegExp(`^Usage: keygate ${command}`));
        for (const option of [...options, '--store', '--table', '--prefix', '--token-prefix', '--pepper-env', '--timeout', '--json']) {
          expect(run.stdout, `${command} ${option}`).toMatch(new RegExp(`^  ${option}\\b`, 'm'));
        }
      }
    }
  });

  it('refuses unknown commands and options, and missing or extra arguments, with 2 and a usage hint', async () => {
    const env = { KEYGATE_STORE_URL: `sqlite:${join(dir, 'usage.db')}` };
    const cases: Array<[string[], RegExp]> = [
      [[], /^keygate: manage and check/],
      [['bogus'], /unknown command 'bogus'; the commands are migrate, create, list/],
      [['list', '--bogus'], /list has no option --bogus/],
      [['show', '--grace', '1s', 'abc'], /show has no option --grace/],
      [['create', '--name'], /--name <value>' argument missing/],
      [['show'], /show takes one argument, <id>; got none/],
      [['show', 'a', 'b'], /show takes one argument, <id>; got 2 arguments/],
      [['verify'], /verify takes one argument, <token>/],
      [['list', 'extra'], /list takes no arguments/],
      [['list', '--active', '--inactive'], /--active and --inactive exclude each other/],
      [['update', 'abc'], /update needs something to change/],
      [['delete', 'abc'], /delete is permanent.*--yes/],
    ];
    for (const [args, message] of cases) {
      const run = await runCli(args, { env });
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr, args.join(' ')).toMatch(message);
      if (args.length > 0) expect(run.stderr).toMatch(/Run keygate (\w+ )?--help for usage\./);
    }
  });

  it('needs a store URL, and never echoes one', async () => {
    const none = await runCli(['list']);
    expect([none.code, none.stderr]).toEqual([2, expect.stringMatching(/no store given: pass --store <url> or set KEYGATE_STORE_URL/)]);
    const cases: Array<[string[], Record<string, string>, RegExp]> = [
      [['list', '--store', 'ftp://user:hunter2pw@host/x'], {}, /--store: must be a store URL such as sqlite:.*; got the scheme 'ftp:'/],
      [['list'], { KEYGATE_STORE_URL: 'postgres://user:hunter2pw@[bad' }, /KEYGATE_STORE_URL: is not a valid postgres:\/\/ URL/],
      [['list', '--store', 'hunter2pw'], {}, /--store: must be a store URL .*; got no scheme/],
      [['list', '--store', 'sqlite:'], {}, /must name a SQLite file/],
      [['list', '--store', 'redis://127.0.0.1:1', '--table', 't'], {}, /--table is for SQL stores/],
      [['list', '--store', 'sqlite:x.db', '--prefix', '{p}:'], {}, /--prefix is the key prefix of a Redis store/],
      [['deactivate', 'abc', '--store', 'sqlite:x.db', '--notify'], {}, /--notify needs an invalidation bus/],
    ];
    for (const [args, env, message] of cases) {
      const run = await runCli(args, { env, cwd: dir });
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr).toMatch(message);
      expect(run.all).not.toContain('hunter2pw');
    }
  });

  it('never echoes a token typed where a command or an id belongs', async () => {
    const env = { KEYGATE_STORE_URL: `sqlite:${join(dir, 'usage.db')}` };
    const token = `kg_${'A1b2C3d4E5'.repeat(3)}xyzXYZ12`;
    for (const args of [[token], ['show', token], ['delete', token, '--yes'], ['create', '--name', 'x', '--scopes', token]]) {
      const run = await runCli(args, { env });
      expect(run.code, args[0]).toBe(2);
      expect(occurrences(run.all, token)).toBe(0);
    }
  });

  it('takes the pepper only from the environment: --pepper is refused without echoing it', async () => {
    for (const args of [
      ['list', '--pepper', 'pepper-on-argv-1234'],
      ['--pepper=pepper-on-argv-1234', 'list'],
    ]) {
      const run = await runCli(args);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/the pepper is never taken from the command line.*KEYGATE_PEPPER.*--pepper-env/);
      expect(run.all).not.toContain('pepper-on-argv-1234');
    }
    const unset = await runCli(['list', '--store', 'sqlite:x.db', '--pepper-env', 'NOT_SET_ANYWHERE'], { cwd: dir });
    expect([unset.code, unset.stderr]).toEqual([2, expect.stringMatching(/NOT_SET_ANYWHERE is not set/)]);
  });
});

describe('bad input gets the library message, naming the field, and exit 2; nothing is written', () => {
  const store = () => `sqlite:${join(dir, 'input.db')}`;
  const create = (...args: string[]) => runCli(['create', '--store', store(), ...args]);
  beforeAll(async () => {
    expect((await runCli(['migrate', '--store', store()])).code).toBe(0);
  });

  it('for each key field, as the library words it, with the option', async () => {
    const cases: Array<[string[], Partial<CreateKeyInput>, string]> = [
      [['--scopes', 'all'], { name: undefined as never }, '--name'],
      [['--name', 'x'.repeat(101), '--scopes', 'all'], { name: 'x'.repeat(101) }, '--name'],
      [['--name', 'x'], { scopes: [] }, '--scopes'],
      [['--name', 'x', '--scopes', 'orders:list,bogus'], { scopes: 'orders:list,bogus' as never }, '--scopes'],
      [['--name', 'x', '--scopes', 'all', '--allowed-ips', '10.0.0.0/8'], { allowedIps: '10.0.0.0/8' }, '--allowed-ips'],
      [
        ['--name', 'x', '--scopes', 'all', '--allowed-ips', '203.0.113.7, 10.0.0.1'],
        { allowedIps: '203.0.113.7, 10.0.0.1' },
        '--allowed-ips',
      ],
      [['--name', 'x', '--scopes', 'all', '--owner', 'a\tb'], { ownerId: 'a\tb' }, '--owner'],
      [['--name', 'x', '--scopes', 'all', '--expires', '2020-01-01'], { expiresAt: '2020-01-01' }, '--expires'],
      [['--name', 'x', '--scopes', 'all', '--expires', '2026-13-45'], { expiresAt: '2026-13-45' }, '--expires'],
      [['--name', 'x', '--scopes', 'all', '--metadata', '[1,2]'], { metadata: [1, 2] as never }, '--metadata'],
    ];
    for (const [args, input, option] of cases) {
      const run = await create(...args);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr).toBe(`keygate: ${await libraryMessage(input)} (${option})\n`);
    }
    const list = parsed<{ keys: unknown[] }>(await runCli(['list', '--store', store(), '--json']));
    expect(list.keys).toEqual([]);
  });

  it('for the command own values: durations, dates, JSON, page sizes, addresses, scopes, prefixes, tables', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['create', '--name', 'x', '--scopes', 'all', '--metadata', '{nope'], /^keygate: --metadata: is not valid JSON/],
      [['create', '--name', 'x', '--scopes', 'all', '--expires', '1700000000000'], /^keygate: --expires: a bare number is ambiguous/],
      [
        ['rotate', 'abc', '--grace', 'soon'],
        /^keygate: --grace: must be a duration such as 30s, 15m, 2h, 7d or 1w, or a whole number of ms/,
      ],
      [['list', '--timeout', '0'], /^keygate: --timeout: must be at least 1 ms/],
      [['list', '--limit', 'ten'], /^keygate: --limit: must be a whole number from 1 to 1000/],
      [['list', '--limit', '0'], /^keygate: limit: must be a whole number from 1 to 1000, got 0 \(--limit\)/],
      [['list', '--cursor', '!!'], /^keygate: cursor: is not a cursor returned by list\(\); start again without one \(--cursor\)/],
      [['verify', 'kg_x', '--ip', '10.0.0.*'], /^keygate: --ip: is not an IP address/],
      [['verify', 'kg_x', '--scope', 'orders:delete'], /^keygate: scope: unknown scope 'orders:delete'; known scopes: all, /],
      [['list', '--token-prefix', 'KG'], /^keygate: prefix: must be lower-case letters and digits.* \(--token-prefix\)/],
      [['list', '--table', 'bad-name'], /^keygate: table: must be a plain identifier.* \(--table\)/],
      [['list', '--pepper-encoding', 'rot13'], /^keygate: --pepper-encoding: must be utf8, hex or base64/],
    ];
    for (const [args, message] of cases) {
      const run = await runCli([...args, '--store', store()], { env: { KEYGATE_PEPPER: 'a pepper of at least 16 bytes' } });
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr, args.join(' ')).toMatch(message);
    }
  });
});

describe('migrate --print', () => {
  it('prints the schema of each SQL store without connecting, and says Redis needs none', async () => {
    const port = await refusedPort();
    const cases: Array<[string, string]> = [
      [`postgres://u@127.0.0.1:${port}/db`, postgresSchema({ table: 'api_keys' })],
      [`mysql://u@127.0.0.1:${port}/db`, mysqlSchema({ table: 'api_keys' })],
      ['sqlite:./never-created.db', sqliteSchema({ table: 'api_keys' })],
    ];
    for (const [url, schema] of cases) {
      const run = await runCli(['migrate', '--print', '--store', url, '--table', 'api_keys'], { cwd: dir });
      expect([run.code, run.stdout]).toEqual([0, `${schema.trimEnd()}\n`]);
    }
    expect(existsSync(join(dir, 'never-created.db'))).toBe(false);
    const redis = await runCli(['migrate', '--print', '--store', `redis://127.0.0.1:${port}`]);
    expect([redis.code, redis.stdout]).toEqual([0, 'Redis needs no schema: keys are written as they are created.\n']);
    const json = parsed(await runCli(['migrate', '--print', '--json', '--store', `postgres://u@127.0.0.1:${port}/db`]));
    expect(json).toEqual({ store: 'postgres', schema: postgresSchema() });
  });
});

describe('drivers: loaded only for the URL scheme, from beside keygate or from the current project', () => {
  /** A copy of dist/ with keygate's own dependencies and no driver: what `npx keygate` sees outside a project. */
  let bin: string;
  beforeAll(() => {
    const copy = join(dir, 'copy');
    cpSync(join(root, 'dist'), join(copy, 'dist'), { recursive: true });
    writeFileSync(join(copy, 'package.json'), JSON.stringify({ name: 'keygate', version: '0.0.0-copy', type: 'module' }));
    for (const dependency of ['ipaddr.js', 'lru-cache']) {
      mkdirSync(join(copy, 'node_modules'), { recursive: true });
      symlinkSync(join(root, 'node_modules', dependency), join(copy, 'node_modules', dependency));
    }
    bin = join(copy, 'dist/cli.js');
  });

  /** A project directory whose node_modules holds these drivers (linked from the repository's). */
  const project = (name: string, drivers: string[]): string => {
    const cwd = join(dir, name);
    mkdirSync(join(cwd, 'node_modules'), { recursive: true });
    for (const driver of drivers) symlinkSync(join(root, 'node_modules', driver), join(cwd, 'node_modules', driver));
    return cwd;
  };

  it('names the package to install when the driver is missing (exit 7)', async () => {
    const cwd = project('no-drivers', []);
    const port = await refusedPort();
    const cases: Array<[string, string]> = [
      [
        'sqlite:keys.db',
        'the sqlite store needs the better-sqlite3 package, which is not installed. Install it in your project: npm install better-sqlite3',
      ],
      [
        `postgres://u@127.0.0.1:${port}/db`,
        'the postgres store needs the pg package, which is not installed. Install it in your project: npm install pg',
      ],
      [
        `mysql://u@127.0.0.1:${port}/db`,
        'the mysql store needs the mysql2 package, which is not installed. Install it in your project: npm install mysql2',
      ],
      [
        `redis://127.0.0.1:${port}`,
        'the redis store needs the ioredis or the redis package, which is not installed. Install it in your project: npm install ioredis (or npm install redis)',
      ],
    ];
    for (const [url, message] of cases) {
      const run = await runCli(['list', '--store', url], { bin, cwd });
      expect(run.code, url).toBe(7);
      expect(run.stderr).toBe(`keygate: ${message}\n`);
    }
    // Only a command that needs the store loads a driver: printing the schema needs none.
    const printed = await runCli(['migrate', '--print', '--store', 'sqlite:keys.db'], { bin, cwd });
    expect([printed.code, printed.stdout]).toEqual([0, `${sqliteSchema().trimEnd()}\n`]);
  });

  it("loads the driver from the current directory's project when it is not beside keygate", async () => {
    const cwd = project('with-sqlite', ['better-sqlite3']);
    const env = { KEYGATE_STORE_URL: 'sqlite:keys.db' };
    expect((await runCli(['migrate'], { bin, cwd, env })).code).toBe(0);
    const created = parsed<{ token: string }>(await runCli(['create', '--name', 'x', '--scopes', 'all', '--json'], { bin, cwd, env }));
    expect((await runCli(['verify', created.token], { bin, cwd, env })).code).toBe(0);
  });

  it.skipIf(!redisUrl)('uses node-redis when ioredis is not installed', async () => {
    const cwd = project('with-node-redis', ['redis']);
    const prefix = `{kgt-cli-node-redis-${process.pid}}:`;
    const env = { KEYGATE_STORE_URL: redisUrl };
    const created = await runCli(['create', '--prefix', prefix, '--name', 'x', '--scopes', 'all', '--json'], { bin, cwd, env });
    expect(created.code, created.stderr).toBe(0);
    const { id, token } = parsed<{ id: string; token: string }>(created);
    expect((await runCli(['verify', token, '--prefix', prefix], { bin, cwd, env })).code).toBe(0);
    expect((await runCli(['delete', id, '--yes', '--prefix', prefix], { bin, cwd, env })).code).toBe(0);
    const down = await runCli(['list', '--store', `redis://127.0.0.1:${await refusedPort()}`], { bin, cwd });
    expect(down.code).toBe(5);
    expect(down.exitLagMs).toBeLessThan(1000);
    const server = await silentServer();
    try {
      const silent = await runCli(['list', '--store', `redis://127.0.0.1:${server.port}`, '--timeout', '300ms'], { bin, cwd });
      expect([silent.code, silent.stderr]).toEqual([5, expect.stringMatching(/no answer within 300 ms/)]);
      expect(silent.exitLagMs).toBeLessThan(1000);
    } finally {
      await server.close();
    }
  });
});
