// What the keygate command must do on every store, run by the built binary against a real server (or SQLite file).

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ApiKey } from '../../src/index.js';
import { refusedPort } from '../support/tcp.js';
import { assertBuilt, type CliRun, occurrences, parsed, type RunOptions, runCli } from './support.js';

/** An ApiKey as `--json` prints it: dates as ISO strings. */
export type KeyJson = { [K in keyof ApiKey]: ApiKey[K] extends Date ? string : ApiKey[K] extends Date | null ? string | null : ApiKey[K] };

/** A store the suite runs on. */
export interface CliStoreSetup {
  /** The store URL, with the options that give this run a table or key prefix of its own. */
  url: string;
  args: readonly string[];
  /** A URL of the same kind where nothing answers (a closed port). */
  downUrl: string;
  /** Secrets of `downUrl` that must never be printed. */
  downSecrets?: readonly string[];
  /** Drops the table / deletes the keys. */
  cleanup(): Promise<void>;
  /**
   * A server of the test process that caches verifies and listens on the store's invalidation bus
   * (PostgreSQL, Redis), to see `--notify` reach it. Resolves with its verify and a stop function.
   */
  server?: (channel: string) => Promise<{ verify(token: string): Promise<boolean>; stop(): Promise<void> }>;
}

const DOWN_PASSWORD = 'down-secret-pw';

/** `url` moved to a closed port, with a password the suite checks is never printed: spread into a setup. */
export async function unreachable(url: string): Promise<Pick<CliStoreSetup, 'downUrl' | 'downSecrets'>> {
  const down = new URL(url);
  down.port = String(await refusedPort());
  down.password = DOWN_PASSWORD;
  return { downUrl: down.toString(), downSecrets: [DOWN_PASSWORD] };
}

/** A well-formed token for prefix `kg` that no store holds (valid checksum), made by creating and deleting a key. */
async function deletedToken(cli: (args: readonly string[], options?: RunOptions) => Promise<CliRun>): Promise<string> {
  const created = parsed<KeyJson & { token: string }>(await cli(['create', '--name', 'deleted', '--scopes', 'all', '--json']));
  expect((await cli(['delete', created.id, '--yes'])).code).toBe(0);
  return created.token;
}

/**
 * Registers the suite. `name` is the store's; `bus`: whether it has an invalidation bus (then
 * `setup` gives a `server`), known before the setup runs so that the right tests are declared.
 */
export function cliStoreSuite(options: { name: string; bus: boolean }, setup: () => Promise<CliStoreSetup>): void {
  let store: CliStoreSetup;
  /** Runs the command on this store. */
  const cli = (args: readonly string[], options: RunOptions = {}) => runCli([...args, '--store', store.url, ...store.args], options);
  const create = async (...args: string[]): Promise<KeyJson & { token: string }> => {
    const run = await cli(['create', '--json', ...args]);
    expect(run.code, run.stderr).toBe(0);
    return parsed(run);
  };

  beforeAll(async () => {
    assertBuilt();
    store = await setup();
    const migrated = await cli(['migrate']);
    expect(migrated.code, migrated.stderr).toBe(0);
  });
  afterAll(async () => {
    await store?.cleanup();
  });

  it('migrate is harmless run again, and says so plainly', async () => {
    const run = await cli(['migrate']);
    expect(run.code, run.stderr).toBe(0);
    if (options.name === 'Redis') expect(run.stdout).toMatch(/Redis needs no migration/);
    else expect(run.stdout).toMatch(/is ready in/);
    const json = parsed(await cli(['migrate', '--json']));
    expect(json.migrated).toBe(options.name !== 'Redis');
  });

  it('create prints the token exactly once; list and show never print it', async () => {
    const run = await cli(['create', '--name', 'ERP sync', '--scopes', 'orders:edit,products:list']);
    expect(run.code, run.stderr).toBe(0);
    const token = /^token: (\S+)$/m.exec(run.stdout)?.[1] as string;
    expect(token).toMatch(/^kg_[0-9A-Za-z]{38}$/);
    expect(occurrences(run.all, token)).toBe(1);
    expect(run.stdout).toMatch(/shown this once/);
    const id = /Created the key (\S+)\./.exec(run.stdout)?.[1] as string;
    for (const args of [['list'], ['list', '--json'], ['show', id], ['show', id, '--json']]) {
      const shown = await cli(args);
      expect(shown.code, shown.stderr).toBe(0);
      expect(shown.all).toContain(id);
      expect(occurrences(shown.all, token)).toBe(0);
    }
    const json = await cli(['create', '--json', '--name', 'json', '--scopes', 'all']);
    const created = parsed<KeyJson & { token: string }>(json);
    expect(occurrences(json.all, created.token)).toBe(1);
    expect((await cli(['verify', token, '--scope', 'orders:list'])).code).toBe(0);
  });

  it('create takes every field, in the library formats, and --json prints the library ApiKey with the token', async () => {
    const owner = `shop-${randomBytes(4).toString('hex')}`;
    const key = await create(
      '--name',
      '  Nightly export  ',
      '--scopes',
      'products:list,orders:edit,orders:list',
      '--allowed-ips',
      '203.0.113.7,2001:DB8::1',
      '--owner',
      owner,
      '--expires',
      '2099-01-02T03:04:05Z',
      '--metadata',
      '{"team":"erp","n":[1,2]}',
      '--inactive',
    );
    expect(Object.keys(key).sort()).toEqual(
      [
        'id',
        'ownerId',
        'name',
        'active',
        'scopes',
        'allowedIps',
        'hint',
        'createdAt',
        'updatedAt',
        'lastUsedAt',
        'lastUsedIp',
        'expiresAt',
        'metadata',
        'rateLimit',
        'remaining',
        'refill',
        'version',
        'token',
      ].sort(),
    );
    expect(key).toMatchObject({
      name: 'Nightly export',
      active: false,
      scopes: ['orders:list', 'orders:edit', 'products:list'],
      allowedIps: ['203.0.113.7', '2001:db8::1'],
      ownerId: owner,
      expiresAt: '2099-01-02T03:04:05.000Z',
      metadata: { team: 'erp', n: [1, 2] },
      lastUsedAt: null,
      lastUsedIp: null,
      rateLimit: null,
      remaining: null,
      refill: null,
      version: 1,
    });
    expect(key.hint).toBe(`kg_${key.token.slice(3, 6)}…${key.token.slice(-4)}`);
    const shown = parsed<KeyJson>(await cli(['show', key.id, '--json']));
    const { token: _token, ...withoutToken } = key;
    expect(shown).toEqual(withoutToken);
    const table = await cli(['show', key.id]);
    expect(table.stdout).toMatch(/^allowed IPs\s+203\.0\.113\.7,2001:db8::1$/m);
    expect(table.stdout).toMatch(/^expires\s+2099-01-02T03:04:05Z$/m);
    expect(table.stdout).toMatch(/^last used IP\s+-$/m);
  });

  it('verify answers with the exit status: 0 valid, 3 invalid, 4 forbidden', async () => {
    const { id, token } = await create('--name', 'verify', '--scopes', 'orders:edit', '--allowed-ips', '203.0.113.7');
    const verify = (...args: string[]) => cli(['verify', ...args]);

    const valid = await verify(token, '--scope', 'orders:list', '--ip', '203.0.113.7');
    expect([valid.code, valid.stdout]).toEqual([0, `valid: the key ${id} (verify)\n`]);
    const json = parsed<{ valid: boolean; key: KeyJson }>(await verify(token, '--scope', 'orders:edit', '--ip', '203.0.113.7', '--json'));
    expect(json.valid).toBe(true);
    expect(json.key.id).toBe(id);
    // Read from standard input, out of ps and the shell's history.
    expect((await cli(['verify', '-', '--ip', '203.0.113.7'], { stdin: `${token}\n` })).code).toBe(0);

    const outcomes: Array<[string[], number, string]> = [
      [[token, '--scope', 'products:list', '--ip', '203.0.113.7'], 4, 'INSUFFICIENT_SCOPE'],
      [[token, '--scope', 'orders:list', '--ip', '198.51.100.1'], 4, 'IP_NOT_ALLOWED'],
      [[token], 4, 'IP_NOT_ALLOWED'],
      [['kg_abc', '--ip', '203.0.113.7'], 3, 'MALFORMED'],
      [[await deletedToken(cli), '--ip', '203.0.113.7'], 3, 'NOT_FOUND'],
    ];
    for (const [args, code, reason] of outcomes) {
      const run = await verify(...args, '--json');
      expect([run.code, parsed<{ code: string }>(run).code], args.join(' ')).toEqual([code, reason]);
      const human = await verify(...args);
      expect(human.code).toBe(code);
      expect(human.stdout).toBe(`${code === 4 ? 'forbidden' : 'invalid'}: ${reason}: ${parsed<{ message: string }>(run).message}\n`);
      expect(occurrences(human.all, token)).toBe(0);
    }

    expect((await cli(['deactivate', id])).code).toBe(0);
    const inactive = await verify(token, '--ip', '203.0.113.7', '--json');
    expect([inactive.code, parsed(inactive).code]).toEqual([3, 'INACTIVE']);
    expect((await cli(['activate', id])).code).toBe(0);
    expect((await verify(token, '--ip', '203.0.113.7')).code).toBe(0);

    expect((await cli(['update', id, '--expires', '2020-01-01T00:00:00Z'])).code).toBe(0);
    const expired = await verify(token, '--ip', '203.0.113.7', '--json');
    expect([expired.code, parsed(expired).code]).toEqual([3, 'EXPIRED']);
  });

  it('verify writes the last-used time and address before it exits, and the process ends right after its output', async () => {
    const { id, token } = await create('--name', 'last used', '--scopes', 'all');
    const run = await cli(['verify', token, '--ip', '::ffff:192.0.2.4']);
    expect(run.code).toBe(0);
    expect(run.exitLagMs).toBeLessThan(1000);
    const key = parsed<KeyJson>(await cli(['show', id, '--json']));
    expect(key.lastUsedAt).not.toBeNull();
    expect(key.lastUsedIp).toBe('192.0.2.4');
    expect((await cli(['show', id])).stdout).toMatch(/^last used IP\s+192\.0\.2\.4$/m);
    const listed = await cli(['list']);
    expect(listed.exitLagMs).toBeLessThan(1000);
  });

  it('rotate prints the new token once; the old one stops at once, or after --grace', async () => {
    const { id, token: first } = await create('--name', 'rotate', '--scopes', 'all');
    const run = await cli(['rotate', id]);
    expect(run.code, run.stderr).toBe(0);
    const second = /^token: (\S+)$/m.exec(run.stdout)?.[1] as string;
    expect(occurrences(run.all, second)).toBe(1);
    expect(occurrences(run.all, first)).toBe(0);
    expect((await cli(['verify', first])).code).toBe(3);
    expect((await cli(['verify', second])).code).toBe(0);

    const graced = await cli(['rotate', id, '--grace', '1h', '--json']);
    const rotated = parsed<KeyJson & { token: string }>(graced);
    expect(occurrences(graced.all, rotated.token)).toBe(1);
    expect(rotated.id).toBe(id);
    expect(rotated.version).toBe(5);
    expect((await cli(['verify', second])).code).toBe(0);
    expect((await cli(['verify', rotated.token])).code).toBe(0);
  });

  it('update changes only the fields given; activate and deactivate set Active', async () => {
    const { id } = await create('--name', 'before', '--scopes', 'orders:list', '--allowed-ips', '203.0.113.7', '--metadata', '{"a":1}');
    const run = await cli(['update', id, '--name', 'after', '--scopes', 'all', '--allowed-ips', '', '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(parsed<KeyJson>(run)).toMatchObject({ name: 'after', scopes: ['all'], allowedIps: [], metadata: { a: 1 }, version: 2 });
    const off = parsed<KeyJson>(await cli(['deactivate', id, '--json']));
    expect(off.active).toBe(false);
    const human = await cli(['activate', id]);
    expect(human.stdout).toMatch(new RegExp(`^The key ${id} is now active\\.\\n`));
    expect(human.stdout).toMatch(/^ID\s+NAME\s+ACTIVE\s+SCOPES\s+ALLOWED IPS\s+OWNER\s+HINT\s+LAST USED\s+EXPIRES$/m);
    expect(parsed<KeyJson>(await cli(['show', id, '--json'])).active).toBe(true);
    expect((await cli(['update', id, '--inactive'])).code).toBe(0);
    expect(parsed<KeyJson>(await cli(['show', id, '--json'])).active).toBe(false);
  });

  it('delete needs --yes; then the key and its token are gone (6 for a key that does not exist)', async () => {
    const { id, token } = await create('--name', 'delete me', '--scopes', 'all');
    const refused = await cli(['delete', id]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--yes/);
    expect((await cli(['show', id])).code).toBe(0);
    const deleted = await cli(['delete', id, '--yes', '--json']);
    expect([deleted.code, parsed(deleted)]).toEqual([0, { id, deleted: true }]);
    for (const args of [
      ['show', id],
      ['delete', id, '--yes'],
      ['activate', id],
      ['deactivate', id],
      ['rotate', id],
      ['update', id, '--name', 'x'],
    ]) {
      const run = await cli(args);
      expect(run.code, args.join(' ')).toBe(6);
      expect(run.stderr).toContain(`No API key with id '${id}' exists`);
    }
    expect((await cli(['verify', token])).code).toBe(3);
  });

  it('list pages with --limit and --cursor, or reads them all with --all, and filters', async () => {
    const owner = `pages-${randomBytes(4).toString('hex')}`;
    const made = [];
    for (const name of ['p1', 'p2', 'p3']) made.push(await create('--name', name, '--scopes', 'all', '--owner', owner));
    await cli(['deactivate', made[1]!.id]);
    const page = parsed<{ keys: KeyJson[]; nextCursor: string | null }>(await cli(['list', '--owner', owner, '--limit', '2', '--json']));
    expect(page.keys.map((k) => k.name)).toEqual(['p1', 'p2']);
    expect(page.nextCursor).toEqual(expect.any(String));
    const next = parsed<{ keys: KeyJson[]; nextCursor: string | null }>(
      await cli(['list', '--owner', owner, '--limit', '2', '--cursor', page.nextCursor as string, '--json']),
    );
    expect([next.keys.map((k) => k.name), next.nextCursor]).toEqual([['p3'], null]);
    const all = parsed<{ keys: KeyJson[] }>(await cli(['list', '--owner', owner, '--limit', '1', '--all', '--json']));
    expect(all.keys.map((k) => k.name)).toEqual(['p1', 'p2', 'p3']);
    const inactive = parsed<{ keys: KeyJson[] }>(await cli(['list', '--owner', owner, '--inactive', '--json']));
    expect(inactive.keys.map((k) => k.name)).toEqual(['p2']);
    const human = await cli(['list', '--owner', owner, '--limit', '2']);
    expect(human.stdout.split('\n')[0]).toMatch(/^ID\s+NAME\s+ACTIVE\s+SCOPES\s+ALLOWED IPS\s+OWNER\s+HINT\s+LAST USED\s+EXPIRES$/);
    expect(human.stdout).toMatch(/More keys: keygate list --cursor \S+/);
    expect((await cli(['list', '--owner', `none-${owner}`])).stdout).toBe('No API keys.\n');
  });

  it('a pepper from the environment is used and never printed: a token made with one fails with another', async () => {
    const pepperA = `pepper-A-${randomBytes(12).toString('hex')}`;
    const pepperB = `pepper-B-${randomBytes(12).toString('hex')}`;
    const made = await cli(['create', '--name', 'peppered', '--scopes', 'all', '--json'], { env: { KEYGATE_PEPPER: pepperA } });
    const { token } = parsed<{ token: string }>(made);
    const runs = [
      made,
      await cli(['verify', token], { env: { KEYGATE_PEPPER: pepperA } }),
      await cli(['verify', token], { env: { KEYGATE_PEPPER: pepperB } }),
      await cli(['verify', token]),
      await cli(['verify', token, '--pepper-env', 'SHOP_PEPPER'], { env: { SHOP_PEPPER: pepperA } }),
      await cli(['verify', token, '--pepper-env', 'SHOP_PEPPER', '--pepper-encoding', 'hex'], { env: { SHOP_PEPPER: pepperA } }),
      await cli(['list', '--json'], { env: { KEYGATE_PEPPER: pepperA } }),
      await cli(['verify', token], { env: { KEYGATE_PEPPER: 'xq7short' } }),
    ];
    expect(runs.map((r) => r.code)).toEqual([0, 0, 3, 3, 0, 2, 0, 2]);
    expect(runs[2]!.stdout).toMatch(/NOT_FOUND/);
    expect(runs[7]!.stderr).toMatch(/pepper: must be at least 16 bytes, got 8.*KEYGATE_PEPPER/);
    for (const run of runs) {
      expect(run.all).not.toContain(pepperA);
      expect(run.all).not.toContain(pepperB);
      expect(run.all).not.toContain('xq7short');
    }
    const onArgv = await cli(['list', `--pepper=${pepperA}`]);
    expect(onArgv.code).toBe(2);
    expect(onArgv.stderr).toMatch(/never taken from the command line/);
    expect(onArgv.all).not.toContain(pepperA);
  });

  it('a store that is down ends with 5 and says why, without the password', async () => {
    const down = (args: string[]) => runCli([...args, '--store', store.downUrl, ...store.args]);
    const { token } = await create('--name', 'down', '--scopes', 'all');
    for (const args of [
      ['verify', token],
      ['list'],
      ['create', '--name', 'x', '--scopes', 'all'],
      ['show', 'abc'],
      ['deactivate', 'abc'],
    ]) {
      const run = await down(args);
      expect(run.code, `${args[0]}: ${run.all}`).toBe(5);
      expect(run.stderr).toMatch(/^keygate: Key store unavailable during /);
      expect(run.stdout).toBe('');
      expect(run.exitLagMs).toBeLessThan(1000);
      expect(occurrences(run.all, token)).toBe(0);
      for (const secret of store.downSecrets ?? []) expect(run.all).not.toContain(secret);
    }
  });

  // Only what applies to this store is registered: a store without a bus refuses --notify.
  if (options.bus) {
    it('--notify tells the servers caching verifies of a deactivation at once', async () => {
      const channel = `kg_cli_${randomBytes(4).toString('hex')}`;
      const server = await (store.server as NonNullable<CliStoreSetup['server']>)(channel);
      try {
        const quiet = await create('--name', 'cached', '--scopes', 'all');
        const told = await create('--name', 'told', '--scopes', 'all');
        expect(await server.verify(quiet.token)).toBe(true);
        expect(await server.verify(told.token)).toBe(true);
        // Without --notify, the server's cache keeps serving the key it holds.
        expect((await cli(['deactivate', quiet.id])).code).toBe(0);
        expect(await server.verify(quiet.token)).toBe(true);
        const run = await cli(['deactivate', told.id, '--channel', channel]);
        expect(run.code, run.stderr).toBe(0);
        const until = Date.now() + 5000;
        while ((await server.verify(told.token)) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
        expect(await server.verify(told.token)).toBe(false);
      } finally {
        await server.stop();
      }
    });
  } else {
    it('refuses --notify: the store has no invalidation bus', async () => {
      const refused = await cli(['deactivate', 'abcdefghij', '--notify']);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/--notify needs an invalidation bus/);
    });
  }
}
