// Runs one keygate command: parses the arguments, opens the store and the manager, prints, maps the outcome to an exit code, closes.

import { readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { createKeyManager, type InvalidationBus, isKeygateError, type KeyManager, ValidationError } from '../../src/index.js';
import { type Command, type CommandContext, COMMANDS, commandNamed, type OptionSpec, STORE_OPTIONS, type Values } from './commands.js';
import { tokenPrefixOf } from '../../src/token.js';
import { EXIT, type ExitCode, Exit, usageError } from './exit.js';
import { type OpenedStore, openStore, parseStoreUrl, type StoreTarget } from './stores.js';
import { decodePepper, parseDuration } from './values.js';

/** The process as the command sees it. */
export interface Io {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  readonly stdin: AsyncIterable<string | Buffer>;
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
  /** The running script (for `--version`: the package.json beside dist/). */
  readonly script: string | undefined;
}

const DEFAULT_PEPPER_VARIABLE = 'KEYGATE_PEPPER';
const DEFAULT_TIMEOUT_MS = 2000;

/** Every option any command takes: the first pass finds the command name wherever the options are. */
const ALL_OPTIONS: Readonly<Record<string, OptionSpec>> = Object.assign({}, STORE_OPTIONS, ...COMMANDS.map((c) => c.options), {
  version: { type: 'boolean', help: '' },
});

/** Library fields by the option that sets them, to name the option in a refusal. */
const OPTION_OF_FIELD: Readonly<Record<string, string>> = {
  name: '--name',
  scopes: '--scopes',
  scope: '--scope',
  allowedIps: '--allowed-ips',
  ownerId: '--owner',
  expiresAt: '--expires',
  metadata: '--metadata',
  gracePeriodMs: '--grace',
  limit: '--limit',
  cursor: '--cursor',
  storeTimeoutMs: '--timeout',
  id: 'the <id> argument',
};

/** Runs the command line in `io.argv` and resolves with the exit code; never rejects. */
export async function main(io: Io): Promise<ExitCode> {
  const secrets = new Set<string>();
  // Anything shaped like a token is never echoed in a message, wherever it was typed.
  for (const arg of io.argv) {
    const value = arg.replace(/^--?[a-z-]+=/, '');
    if (tokenPrefixOf(value) !== null) secrets.add(value);
  }
  const redact = (text: string): string => {
    let out = text;
    for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join('[redacted]');
    return out;
  };
  const err = (text: string): void => void io.stderr.write(redact(text));
  const session = new Session(io, secrets, err);
  let code: ExitCode;
  let command: string | null = null;
  try {
    const parsed = parse(io);
    if (typeof parsed === 'number') return parsed;
    command = parsed.command.name;
    code = await parsed.command.run(session.context(parsed.command, parsed.values, parsed.args));
  } catch (error) {
    code = report(error, command, err);
  }
  const warnings = await session.close();
  for (const warning of warnings) err(`keygate: warning: ${warning}\n`);
  if (session.notifyFailed && code === EXIT.ok) {
    err("keygate: the change is saved, but the servers' caches could not be told of it: they drop the key within their cache ttlMs\n");
    code = EXIT.failure;
  }
  return code;

  function parse(io: Io): { command: Command; values: Values; args: string[] } | ExitCode {
    const args = [...io.argv];
    const end = args.indexOf('--');
    const options = end === -1 ? args : args.slice(0, end);
    if (options.some((a) => a === '--pepper' || a.startsWith('--pepper='))) {
      // Its value is not echoed, and not even kept in a message.
      throw usageError(
        `the pepper is never taken from the command line, where ps and the shell's history would show it: put it in ${DEFAULT_PEPPER_VARIABLE}, or name another variable with --pepper-env <VAR>`,
      );
    }
    const first = parseArgs({ args, options: ALL_OPTIONS, strict: false, allowPositionals: true });
    const name = first.positionals[0];
    if (name === undefined) {
      if (first.values.version === true) {
        io.stdout.write(`${version(io.script) ?? 'unknown'}\n`);
        return EXIT.ok;
      }
      if (first.values.help === true) {
        io.stdout.write(generalHelp());
        return EXIT.ok;
      }
      io.stderr.write(generalHelp());
      return EXIT.usage;
    }
    if (name === 'help') {
      const topic = first.positionals[1];
      io.stdout.write(topic === undefined ? generalHelp() : commandHelp(commandNamed(topic)));
      return EXIT.ok;
    }
    const command = commandNamed(name);
    let second: ReturnType<typeof parseArgs>;
    try {
      second = parseArgs({ args, options: { ...STORE_OPTIONS, ...command.options }, strict: true, allowPositionals: true });
    } catch (error) {
      throw usageError(describeParseError(error, command), command.name);
    }
    if (second.values.help === true) {
      io.stdout.write(commandHelp(command));
      return EXIT.ok;
    }
    return { command, values: second.values as Values, args: second.positionals.slice(1) };
  }
}

/** What parseArgs refused, in the words of this command. */
function describeParseError(error: unknown, command: Command): string {
  const { code, message } = error as { code?: string; message?: string };
  const option = /'(-[^' ]*)/.exec(message ?? '')?.[1] ?? '';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `${command.name} has no option ${option}`;
  return (message ?? String(error)).replace(/^Option/, 'the option');
}

/** Prints why the command failed and returns its exit code. */
function report(error: unknown, command: string | null, err: (text: string) => void): ExitCode {
  if (error instanceof Exit) {
    err(`keygate: ${error.message}\n`);
    if (error.usage !== null) err(`Run keygate ${error.usage === '' ? '' : `${error.usage} `}--help for usage.\n`);
    return error.code;
  }
  if (isKeygateError(error)) {
    if (error.code === 'VALIDATION_FAILED') {
      const field = (error as ValidationError).field ?? '';
      const option = OPTION_OF_FIELD[field.replace(/[[.].*$/, '')];
      err(`keygate: ${error.message}${option ? ` (${option})` : ''}\n`);
      return EXIT.usage;
    }
    err(`keygate: ${error.message}\n`);
    if (error.code === 'KEY_NOT_FOUND') return EXIT.notFound;
    if (error.code === 'STORE_UNAVAILABLE' || error.code === 'STORE_OUTCOME_UNKNOWN') {
      if (/does not exist|doesn't exist|no such table/i.test(error.message))
        err('Has the table been created? Run keygate migrate (with the same --store and --table).\n');
      return EXIT.unavailable;
    }
    return EXIT.failure;
  }
  const message = error instanceof Error ? error.message : String(error);
  err(`keygate: unexpected error${command ? ` in ${command}` : ''}: ${message}\n`);
  return EXIT.failure;
}

/** The store and manager of one command, opened on first use and closed once. */
class Session {
  private target_: StoreTarget | null = null;
  private store_: Promise<OpenedStore> | null = null;
  private keys_: Promise<KeyManager> | null = null;
  private readonly warnings: string[] = [];
  notifyFailed = false;

  constructor(
    private readonly io: Io,
    private readonly secrets: Set<string>,
    private readonly err: (text: string) => void,
  ) {}

  context(command: Command, values: Values, args: string[]): CommandContext {
    const { io } = this;
    const string = (name: string): string | undefined => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
    return {
      name: command.name,
      values,
      args,
      json: values.json === true,
      now: Date.now,
      out: (text) => void io.stdout.write(text),
      err: this.err,
      stdin: async () => {
        const chunks: Buffer[] = [];
        for await (const chunk of io.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
        return Buffer.concat(chunks).toString('utf8');
      },
      secret: (value) => void this.secrets.add(value),
      target: () => this.target(command, values),
      store: (create = false) => {
        this.store_ ??= this.open(command, values, create);
        return this.store_;
      },
      keys: () => {
        this.keys_ ??= this.manager(command, values, string);
        return this.keys_;
      },
    };
  }

  private target(command: Command, values: Values): StoreTarget {
    if (this.target_) return this.target_;
    const given = typeof values.store === 'string' ? values.store : undefined;
    const raw = given ?? this.io.env.KEYGATE_STORE_URL;
    if (raw === undefined || raw === '') {
      throw usageError(
        'no store given: pass --store <url> or set KEYGATE_STORE_URL (sqlite:./keys.db, postgres://…, mysql://…, redis://…)',
        command.name,
      );
    }
    const target = parseStoreUrl(raw, given === undefined ? 'KEYGATE_STORE_URL' : '--store', this.io.cwd);
    for (const secret of target.secrets) this.secrets.add(secret);
    if (target.kind === 'redis' && values.table !== undefined) {
      throw usageError('--table is for SQL stores; a Redis store takes --prefix', command.name);
    }
    if (target.kind !== 'redis' && values.prefix !== undefined) {
      throw usageError('--prefix is the key prefix of a Redis store; a SQL store takes --table (and tokens --token-prefix)', command.name);
    }
    if (this.notify(values) && target.kind !== 'postgres' && target.kind !== 'redis') {
      throw usageError(`--notify needs an invalidation bus, which PostgreSQL and Redis have and ${target.kind} has not`, command.name);
    }
    this.target_ = target;
    return target;
  }

  private notify(values: Values): boolean {
    return values.notify === true || typeof values.channel === 'string';
  }

  private timeoutMs(values: Values): number {
    return typeof values.timeout === 'string' ? parseDuration('--timeout', values.timeout, 1) : DEFAULT_TIMEOUT_MS;
  }

  private async open(command: Command, values: Values, create: boolean): Promise<OpenedStore> {
    const target = this.target(command, values);
    const options = {
      table: typeof values.table === 'string' ? values.table : undefined,
      prefix: typeof values.prefix === 'string' ? values.prefix : undefined,
      timeoutMs: this.timeoutMs(values),
      cwd: this.io.cwd,
      create,
    };
    try {
      return await openStore(target, options);
    } catch (error) {
      throw named(error, { prefix: '--prefix', table: '--table' });
    }
  }

  private async manager(command: Command, values: Values, string: (name: string) => string | undefined): Promise<KeyManager> {
    // Read and checked before connecting: a wrong pepper or prefix costs no connection.
    const variable = string('pepper-env') ?? DEFAULT_PEPPER_VARIABLE;
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(variable)) {
      throw new ValidationError('--pepper-env', 'must name an environment variable (letters, digits and _), not hold the pepper itself');
    }
    const raw = this.io.env[variable];
    const encoding = string('pepper-encoding');
    if (raw === undefined && (values['pepper-env'] !== undefined || encoding !== undefined)) {
      throw usageError(`the environment variable ${variable} is not set, so there is no pepper to read`, command.name);
    }
    if (raw !== undefined) this.secrets.add(raw);
    const pepper = raw === undefined ? undefined : decodePepper(raw, encoding ?? 'utf8', variable);
    const store = await (this.store_ ??= this.open(command, values, false));
    let invalidation: InvalidationBus | undefined;
    if (this.notify(values)) {
      const bus = store.notifier(string('channel'));
      invalidation = {
        publish: (keyId) =>
          bus.publish(keyId).catch((error: unknown) => {
            this.notifyFailed = true;
            throw error;
          }),
        subscribe: (subscriber) => bus.subscribe(subscriber),
      };
    }
    try {
      return createKeyManager({
        store: store.store,
        prefix: string('token-prefix'),
        pepper,
        storeTimeoutMs: this.timeoutMs(values),
        invalidation,
        onError: (error) => this.warnings.push(error instanceof Error ? error.message : String(error)),
      });
    } catch (error) {
      throw named(error, { prefix: '--token-prefix', pepper: `the environment variable ${variable}` });
    }
  }

  /** Closes the manager (writing pending last-used times) and the connection; resolves with warnings to print. */
  async close(): Promise<string[]> {
    const keys = this.keys_ ? await this.keys_.catch(() => null) : null;
    if (keys) await keys.close().catch((error: unknown) => this.warnings.push(String(error)));
    const store = this.store_ ? await this.store_.catch(() => null) : null;
    if (store) await store.close();
    return this.warnings;
  }
}

/** A ValidationError of a field set by an option, with the option named; anything else unchanged. */
function named(error: unknown, options: Readonly<Record<string, string>>): unknown {
  if (!(error instanceof ValidationError)) return error;
  const option = options[error.field];
  return option === undefined ? error : new Exit(EXIT.usage, `${error.message} (${option})`);
}

/** The version in the package.json beside dist/, or `null` when it is not keygate's. */
function version(script: string | undefined): string | null {
  if (script === undefined) return null;
  try {
    const manifest = JSON.parse(readFileSync(join(dirname(realpathSync(script)), '..', 'package.json'), 'utf8')) as {
      name?: unknown;
      version?: unknown;
    };
    return manifest.name === 'keygate' && typeof manifest.version === 'string' ? manifest.version : null;
  } catch {
    return null;
  }
}

// --- help ----------------------------------------------------------------------------------------

/** Wraps text at 100 columns, each line indented by `indent`. */
function wrap(text: string, indent = ''): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line !== '' && indent.length + line.length + 1 + word.length > 100) {
      lines.push(indent + line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(indent + line);
  return lines.join('\n');
}

function optionLines(options: Readonly<Record<string, OptionSpec>>): string {
  const rows = Object.entries(options).map(([name, spec]) => [
    `${spec.short ? `-${spec.short}, ` : ''}--${name}${spec.value ? ` ${spec.value}` : ''}`,
    spec.help,
  ]);
  const pad = Math.max(...rows.map(([left]) => (left as string).length));
  return rows.map(([left, help]) => `  ${(left as string).padEnd(pad)}  ${help}`).join('\n');
}

const EXIT_LINES = `Exit status:
  0  done; verify: the token is valid
  1  any other failure
  2  usage: unknown command or option, missing argument, or a value refused
  3  verify: invalid token (missing, malformed, unknown, deactivated, expired): a guard's 401
  4  verify: forbidden (scope not granted, address not allowed): a guard's 403
  5  store unavailable: cannot connect, failed, or no answer within --timeout: a guard's 503
  6  no key has this id
  7  the store's driver is not installed: the message names the package`;

function generalHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => `${c.name} ${c.args.join(' ')}`.length));
  const commands = COMMANDS.map((c) => `  ${`${c.name} ${c.args.join(' ')}`.padEnd(width)}  ${c.summary}`).join('\n');
  return `keygate: manage and check API keys in your key store, from the shell.

Usage: keygate <command> [arguments] [options]

Commands:
${commands}

Store options (every command):
${optionLines(STORE_OPTIONS)}

The pepper is read from $${DEFAULT_PEPPER_VARIABLE} (or --pepper-env <VAR>), never from the command line.

${EXIT_LINES}

Run keygate <command> --help for the options of a command.
`;
}

function commandHelp(command: Command): string {
  const usage = `keygate ${command.name}${command.args.length ? ` ${command.args.join(' ')}` : ''} [options]`;
  const own = Object.keys(command.options).length ? `Options:\n${optionLines(command.options)}\n\n` : '';
  return `Usage: ${usage}

${wrap(command.description)}

${own}Store options:
${optionLines(STORE_OPTIONS)}
`;
}
