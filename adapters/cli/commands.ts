// The commands of keygate: their arguments, options, help text, and what each does through the public KeyManager.

import {
  type ApiKey,
  b2bWaveScopes,
  canonicalIp,
  type CreateKeyInput,
  type KeyManager,
  KeyNotFoundError,
  type UpdateKeyInput,
  ValidationError,
  type VerifyFailureCode,
} from '../../src/index.js';
import { tokenPrefixOf } from '../../src/token.js';
import { DEFAULT_TABLE } from '../sql/index.js';
import { EXIT, type ExitCode, Exit, usageError } from './exit.js';
import { json, keyDetails, keyTable } from './output.js';
import { type OpenedStore, schemaOf, type StoreTarget } from './stores.js';
import { parseDuration, parseExpires, parseLimit, parseMetadata } from './values.js';

/** An option as `node:util` parseArgs takes it, with its help line. */
export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
  /** The value's placeholder in help, e.g. `<url>`. */
  readonly value?: string;
  readonly help: string;
}

export type Values = Readonly<Record<string, string | boolean | Array<string | boolean> | undefined>>;

/** What a command can reach: its input, the output, and the store (opened on first use, closed by the caller). */
export interface CommandContext {
  readonly name: string;
  readonly values: Values;
  /** The positional arguments after the command name. */
  readonly args: readonly string[];
  readonly json: boolean;
  readonly now: () => number;
  out(text: string): void;
  err(text: string): void;
  /** Reads standard input to its end. */
  stdin(): Promise<string>;
  /** The store URL, parsed; no connection. */
  target(): StoreTarget;
  /** Opens the store (once). `create`: a missing SQLite file may be created. */
  store(create?: boolean): Promise<OpenedStore>;
  /** The key manager over the store (once); with `--notify`, it tells the servers' caches of each change. */
  keys(): Promise<KeyManager>;
  /** A value never to print: it is replaced in every error message. */
  secret(value: string): void;
}

export interface Command {
  readonly name: string;
  /** The positional arguments, for usage lines: `<id>`. */
  readonly args: readonly string[];
  readonly summary: string;
  /** More help, after the usage line. */
  readonly description: string;
  readonly options: Readonly<Record<string, OptionSpec>>;
  run(ctx: CommandContext): Promise<ExitCode>;
}

/** Options of every command: where the store is and how tokens are made. */
export const STORE_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  store: {
    type: 'string',
    value: '<url>',
    help: 'the store: sqlite:./keys.db, postgres://…, mysql://…, redis://… (default: $KEYGATE_STORE_URL)',
  },
  table: { type: 'string', value: '<name>', help: 'SQL stores: the table (default keygate_keys)' },
  prefix: { type: 'string', value: '<prefix>', help: "Redis: the key prefix, with a hash tag (default '{keygate}:')" },
  'token-prefix': { type: 'string', value: '<prefix>', help: 'the token prefix your server uses (default kg, as in kg_…)' },
  'pepper-env': {
    type: 'string',
    value: '<VAR>',
    help: 'read the pepper from this environment variable (default KEYGATE_PEPPER); never from the command line',
  },
  'pepper-encoding': {
    type: 'string',
    value: '<enc>',
    help: 'utf8 (the text as is, default), hex or base64: as your server decodes it',
  },
  timeout: { type: 'string', value: '<duration>', help: 'bound on connecting and on every key operation (default 2s)' },
  json: { type: 'boolean', help: 'print JSON for scripts instead of a table' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
};

/** Options of the commands that change a key: tell the servers' verify caches at once. */
const NOTIFY_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  notify: {
    type: 'boolean',
    help: "PostgreSQL and Redis: publish the change on the invalidation bus, so servers' verify caches drop the key at once",
  },
  channel: {
    type: 'string',
    value: '<name>',
    help: "the bus channel, as your servers' (default keygate_invalidation / keygate:invalidate); implies --notify",
  },
};

const KEY_FIELDS: Readonly<Record<string, OptionSpec>> = {
  name: { type: 'string', value: '<text>', help: 'display name, 1..100 characters' },
  scopes: {
    type: 'string',
    value: '<list>',
    help: `comma-separated, no spaces: ${b2bWaveScopes
      .list()
      .map((s) => s.name)
      .join(', ')}`,
  },
  'allowed-ips': {
    type: 'string',
    value: '<list>',
    help: "exact addresses, comma-separated, no spaces (203.0.113.7,2001:db8::1); '' = any address",
  },
  expires: {
    type: 'string',
    value: '<when>',
    help: 'a date (2026-12-31, 2026-12-31T23:59:59Z, UTC), a duration from now (90d, 12h) or never',
  },
  metadata: { type: 'string', value: '<json>', help: 'a JSON object kept with the key, e.g. \'{"team":"erp"}\'' },
};

// --- helpers -------------------------------------------------------------------------------------

function text(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

function flag(values: Values, name: string): boolean {
  return values[name] === true;
}

function texts(values: Values, name: string): string[] {
  const value = values[name];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
  return typeof value === 'string' ? [value] : [];
}

/** The one positional argument a command takes. */
function theArgument(ctx: CommandContext, what: string): string {
  if (ctx.args.length === 1) {
    const value = ctx.args[0] as string;
    // A token given where an id belongs would be echoed by "no key with id …": refuse it unseen.
    if (what === '<id>' && tokenPrefixOf(value) !== null) {
      throw usageError(
        `${ctx.name} takes the id of a key (keygate list shows them), and this looks like a token; it is not shown`,
        ctx.name,
      );
    }
    return value;
  }
  // The arguments are not echoed: one may be a token.
  const got = ctx.args.length === 0 ? 'none' : `${ctx.args.length} arguments`;
  throw usageError(`${ctx.name} takes one argument, ${what}; got ${got}`, ctx.name);
}

function noArguments(ctx: CommandContext): void {
  if (ctx.args.length > 0) throw usageError(`${ctx.name} takes no arguments; got ${ctx.args.length}`, ctx.name);
}

/** `--active` / `--inactive` as a boolean, or undefined when neither is given. */
function activeFlag(ctx: CommandContext): boolean | undefined {
  const active = flag(ctx.values, 'active');
  const inactive = flag(ctx.values, 'inactive');
  if (active && inactive) throw usageError('--active and --inactive exclude each other', ctx.name);
  return active ? true : inactive ? false : undefined;
}

/** The key fields given as options, in the manager's shapes; the manager checks them. */
function keyFields(ctx: CommandContext): UpdateKeyInput {
  const { values } = ctx;
  const changes: { -readonly [K in keyof UpdateKeyInput]: UpdateKeyInput[K] } = {};
  const name = text(values, 'name');
  if (name !== undefined) changes.name = name;
  const scopes = text(values, 'scopes');
  if (scopes !== undefined) changes.scopes = b2bWaveScopes.parse(scopes, 'scopes');
  const ips = text(values, 'allowed-ips');
  if (ips !== undefined) changes.allowedIps = ips;
  const expires = text(values, 'expires');
  if (expires !== undefined) changes.expiresAt = parseExpires(expires, ctx.now());
  const metadata = text(values, 'metadata');
  if (metadata !== undefined) changes.metadata = parseMetadata(metadata);
  return changes;
}

function printKey(ctx: CommandContext, key: ApiKey, headline: string): void {
  ctx.out(ctx.json ? json(key) : `${headline}\n${keyTable([key], ctx.now())}`);
}

/** A new token: in the JSON as `token`; for people, apart on a line of its own, with the warning that it is shown once. */
function printToken(ctx: CommandContext, key: ApiKey, token: string, headline: string): void {
  if (ctx.json) {
    ctx.out(json({ ...key, token }));
    return;
  }
  ctx.out(
    `${headline}\n${keyTable([key], ctx.now())}\ntoken: ${token}\n\nThe token is shown this once and cannot be read again: store it now.\n`,
  );
}

/** A failure code of verify, as a guard would answer it. */
const FORBIDDEN: ReadonlySet<VerifyFailureCode> = new Set(['INSUFFICIENT_SCOPE', 'IP_NOT_ALLOWED']);

// --- the commands --------------------------------------------------------------------------------

const migrate: Command = {
  name: 'migrate',
  args: [],
  summary: 'create the keys table and its indexes, or add what an older one lacks (SQL stores); Redis needs none',
  description:
    "Runs the store's own migration: CREATE TABLE / INDEX IF NOT EXISTS, and ADD COLUMN for the columns a table created by an earlier keygate lacks, so running it again is harmless. A SQLite file is created if missing. Redis keeps keys as they are written and needs no migration. With --print, prints the SQL that creates the table for your own migration tool instead, without connecting.",
  options: { print: { type: 'boolean', help: 'print the SQL instead of running it (no connection, no driver needed)' } },
  async run(ctx) {
    noArguments(ctx);
    const target = ctx.target();
    const table = text(ctx.values, 'table');
    if (flag(ctx.values, 'print')) {
      const sql = schemaOf(target.kind, table);
      if (ctx.json) ctx.out(json({ store: target.kind, schema: sql }));
      else ctx.out(sql === null ? 'Redis needs no schema: keys are written as they are created.\n' : `${sql.trimEnd()}\n`);
      return EXIT.ok;
    }
    if (target.kind === 'redis') {
      const message = 'Redis needs no migration: keys are written as they are created. Nothing to do.';
      ctx.out(ctx.json ? json({ store: 'redis', migrated: false, message }) : `${message}\n`);
      return EXIT.ok;
    }
    const store = await ctx.store(true);
    await store.migrate();
    const name = table ?? DEFAULT_TABLE;
    ctx.out(ctx.json ? json({ store: target.kind, table: name, migrated: true }) : `The table ${name} is ready in ${target.display}.\n`);
    return EXIT.ok;
  },
};

const create: Command = {
  name: 'create',
  args: [],
  summary: 'create a key and print its token, this once',
  description: 'Creates a key with --name and --scopes (both required) and prints its token once: the store keeps only a digest.',
  options: {
    ...KEY_FIELDS,
    owner: { type: 'string', value: '<id>', help: 'who the key belongs to (a shop, a tenant); cannot be changed later' },
    inactive: { type: 'boolean', help: 'create it deactivated (it works once activated)' },
  },
  async run(ctx) {
    noArguments(ctx);
    const fields = keyFields(ctx);
    const input: CreateKeyInput = {
      ...fields,
      // Left out, the library says what is required.
      name: fields.name as string,
      scopes: fields.scopes ?? b2bWaveScopes.parse([], 'scopes'),
      ownerId: text(ctx.values, 'owner') ?? null,
      active: !flag(ctx.values, 'inactive'),
    };
    const keys = await ctx.keys();
    const { key, token } = await keys.create(input);
    printToken(ctx, key, token, `Created the key ${key.id}.`);
    return EXIT.ok;
  },
};

const list: Command = {
  name: 'list',
  args: [],
  summary: 'list keys (never a token)',
  description: 'Lists keys in creation order, one page at a time (--limit, --cursor), or every page with --all.',
  options: {
    owner: { type: 'string', value: '<id>', help: 'only the keys of this owner' },
    active: { type: 'boolean', help: 'only active keys' },
    inactive: { type: 'boolean', help: 'only deactivated keys' },
    limit: { type: 'string', value: '<n>', help: 'keys per page, 1..1000 (default 100)' },
    cursor: { type: 'string', value: '<cursor>', help: 'the page after this one, as the previous page printed' },
    all: { type: 'boolean', help: 'every page' },
  },
  async run(ctx) {
    noArguments(ctx);
    const active = activeFlag(ctx);
    const rawLimit = text(ctx.values, 'limit');
    const limit = rawLimit === undefined ? undefined : parseLimit(rawLimit);
    const ownerId = text(ctx.values, 'owner');
    let cursor = text(ctx.values, 'cursor') ?? null;
    const keys = await ctx.keys();
    const found: ApiKey[] = [];
    for (;;) {
      const page = await keys.list({ ownerId, active, limit, cursor });
      found.push(...page.keys);
      cursor = page.nextCursor;
      if (cursor === null || !flag(ctx.values, 'all')) break;
    }
    if (ctx.json) ctx.out(json({ keys: found, nextCursor: cursor }));
    else if (found.length === 0) ctx.out('No API keys.\n');
    else ctx.out(keyTable(found, ctx.now()) + (cursor === null ? '' : `\nMore keys: keygate list --cursor ${cursor} (or --all)\n`));
    return EXIT.ok;
  },
};

const show: Command = {
  name: 'show',
  args: ['<id>'],
  summary: 'show one key (never its token)',
  description: 'Shows every field of a key but its token, which is not stored.',
  options: {},
  async run(ctx) {
    const id = theArgument(ctx, '<id>');
    const keys = await ctx.keys();
    const key = await keys.get(id);
    if (key === null) throw new KeyNotFoundError(id);
    ctx.out(ctx.json ? json(key) : keyDetails(key, ctx.now()));
    return EXIT.ok;
  },
};

const update: Command = {
  name: 'update',
  args: ['<id>'],
  summary: "change a key's name, scopes, allowed IPs, expiry, metadata or Active flag",
  description: 'Changes only the fields given. The owner of a key cannot be changed; create a new key instead.',
  options: {
    ...KEY_FIELDS,
    active: { type: 'boolean', help: 'set Active on' },
    inactive: { type: 'boolean', help: 'set Active off' },
    owner: { type: 'string', value: '<id>', help: 'refused: the owner of a key cannot be changed' },
    ...NOTIFY_OPTIONS,
  },
  async run(ctx) {
    const id = theArgument(ctx, '<id>');
    if (text(ctx.values, 'owner') !== undefined) {
      throw new ValidationError('ownerId', 'cannot be changed: a key belongs to one owner for good; create a new key for the other owner');
    }
    const changes: UpdateKeyInput = { ...keyFields(ctx), active: activeFlag(ctx) };
    if (Object.values(changes).every((value) => value === undefined)) {
      throw usageError(
        'update needs something to change: --name, --scopes, --allowed-ips, --expires, --metadata, --active or --inactive',
        ctx.name,
      );
    }
    const keys = await ctx.keys();
    printKey(ctx, await keys.update(id, changes), `Updated the key ${id}.`);
    return EXIT.ok;
  },
};

function setActive(active: boolean): Command {
  const name = active ? 'activate' : 'deactivate';
  return {
    name,
    args: ['<id>'],
    summary: active ? 'set Active on: the key works again' : 'set Active off: every request with the key fails until it is activated',
    description: active
      ? 'Sets Active on. Nothing happens to a key that is already active.'
      : "Sets Active off: the key stays, and every verify of its token fails (401) until it is activated. Servers with a verify cache see it within the cache's ttlMs, or at once with --notify.",
    options: NOTIFY_OPTIONS,
    async run(ctx) {
      const id = theArgument(ctx, '<id>');
      const keys = await ctx.keys();
      const key = active ? await keys.activate(id) : await keys.deactivate(id);
      printKey(ctx, key, `The key ${id} is now ${active ? 'active' : 'inactive'}.`);
      return EXIT.ok;
    },
  };
}

const rotate: Command = {
  name: 'rotate',
  args: ['<id>'],
  summary: 'issue a new token and print it, this once',
  description: "Issues a new token for the key. The old one stops working at once, or after --grace (never past the key's expiry).",
  options: {
    grace: { type: 'string', value: '<duration>', help: 'how long the old token keeps working: 30s, 15m, 2h, 7d or ms (default 0)' },
    ...NOTIFY_OPTIONS,
  },
  async run(ctx) {
    const id = theArgument(ctx, '<id>');
    const grace = text(ctx.values, 'grace');
    const gracePeriodMs = grace === undefined ? 0 : parseDuration('--grace', grace);
    const keys = await ctx.keys();
    const { key, token } = await keys.rotate(id, { gracePeriodMs });
    const until = gracePeriodMs > 0 ? `; the old token works for ${grace} more` : '; the old token no longer works';
    printToken(ctx, key, token, `Rotated the key ${id}${until}.`);
    return EXIT.ok;
  },
};

const remove: Command = {
  name: 'delete',
  args: ['<id>'],
  summary: 'delete a key for good (needs --yes)',
  description:
    'Deletes the key: its token can never work again. This cannot be undone, so it needs --yes; to stop a key reversibly, deactivate it.',
  options: { yes: { type: 'boolean', help: 'confirm: delete the key for good' }, ...NOTIFY_OPTIONS },
  async run(ctx) {
    const id = theArgument(ctx, '<id>');
    if (!flag(ctx.values, 'yes')) {
      throw usageError(
        `delete is permanent: the key's token can never work again. Run keygate delete ${id} --yes to delete it, or keygate deactivate ${id} to stop it reversibly`,
        ctx.name,
      );
    }
    const keys = await ctx.keys();
    if (!(await keys.delete(id))) throw new KeyNotFoundError(id);
    ctx.out(ctx.json ? json({ id, deleted: true }) : `Deleted the key ${id}.\n`);
    return EXIT.ok;
  },
};

const verify: Command = {
  name: 'verify',
  args: ['<token>'],
  summary: 'check a token for a scope and a client address; the exit status says the outcome',
  description:
    "Checks a token as a guard would, and answers with the exit status: 0 valid, 3 invalid (a guard's 401: missing, malformed, unknown, deactivated, expired), 4 forbidden (a guard's 403: scope not granted, address not allowed), 5 store unavailable (503). Give - as the token to read it from standard input, out of the shell's history and ps. A valid verify updates the key's last used time, as any verify does.",
  options: {
    scope: { type: 'string', multiple: true, value: '<scope>', help: 'a scope the request needs (repeat or comma-separate for several)' },
    ip: { type: 'string', value: '<address>', help: "the client address, checked against the key's allow-list" },
  },
  async run(ctx) {
    const given = theArgument(ctx, '<token> (or - to read it from standard input)');
    const token = given === '-' ? (await ctx.stdin()).replace(/\r?\n$/, '') : given;
    ctx.secret(token);
    const scopes = texts(ctx.values, 'scope').flatMap((s) => s.split(','));
    const scope = scopes.length === 0 ? undefined : b2bWaveScopes.parse(scopes, 'scope');
    const ip = text(ctx.values, 'ip');
    if (ip !== undefined && canonicalIp(ip) === null) {
      throw new ValidationError(
        '--ip',
        `is not an IP address (such as 203.0.113.7 or 2001:db8::1); got ${JSON.stringify(ip.slice(0, 60))}`,
      );
    }
    const keys = await ctx.keys();
    const result = await keys.verify(token, { scope, ip });
    if (result.valid) {
      ctx.out(ctx.json ? json(result) : `valid: the key ${result.key.id} (${result.key.name})\n`);
      return EXIT.ok;
    }
    const forbidden = FORBIDDEN.has(result.code);
    ctx.out(ctx.json ? json(result) : `${forbidden ? 'forbidden' : 'invalid'}: ${result.code}: ${result.message}\n`);
    const foreign = result.code === 'MALFORMED' ? tokenPrefixOf(token) : null;
    if (foreign !== null && foreign !== keys.prefix) {
      ctx.err(`keygate: the token's prefix is '${foreign}', not '${keys.prefix}': pass --token-prefix ${foreign}\n`);
    }
    return forbidden ? EXIT.forbidden : EXIT.invalid;
  },
};

/** Every command, in the order of the help. */
export const COMMANDS: readonly Command[] = [
  migrate,
  create,
  list,
  show,
  update,
  setActive(true),
  setActive(false),
  rotate,
  remove,
  verify,
];

/** A command by name, or a usage error that lists them. */
export function commandNamed(name: string): Command {
  const command = COMMANDS.find((c) => c.name === name);
  if (command) return command;
  // Only a word is echoed: what was typed may be a token.
  const shown = /^[a-z][a-z-]{0,19}$/.test(name) ? ` '${name}'` : '';
  throw new Exit(EXIT.usage, `unknown command${shown}; the commands are ${COMMANDS.map((c) => c.name).join(', ')}`, '');
}
