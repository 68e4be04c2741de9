// Opens the store a URL names (sqlite:, postgres://, mysql://, redis://) with the driver installed beside keygate or in the current project.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { type InvalidationBus, type KeyStore, StoreUnavailableError, ValidationError } from '../../src/index.js';
import { mysqlSchema, mysqlStore, type MysqlPool } from '../mysql/index.js';
import { postgresInvalidation, type PostgresPool, postgresSchema, postgresStore, type PostgresQueryable } from '../postgres/index.js';
import { type RedisClientLike, redisInvalidation, type RedisInvalidationOptions, redisStore } from '../redis/index.js';
import { type SqliteDatabase, sqliteSchema, sqliteStore } from '../sqlite/index.js';
import { EXIT, Exit } from './exit.js';

export type StoreKind = 'sqlite' | 'postgres' | 'mysql' | 'redis';

/** A store URL, parsed. */
export interface StoreTarget {
  readonly kind: StoreKind;
  /** The URL as given; it may hold a password, so it is never printed. */
  readonly url: string;
  /** The URL without user, password or query, for messages. */
  readonly display: string;
  /** The SQLite file, resolved against the current directory. */
  readonly file: string | null;
  /** Parts of the URL never to print (the password, raw and decoded). */
  readonly secrets: readonly string[];
}

/** The URL schemes understood, by kind. */
const SCHEMES: Readonly<Record<string, StoreKind>> = {
  sqlite: 'sqlite',
  postgres: 'postgres',
  postgresql: 'postgres',
  mysql: 'mysql',
  mariadb: 'mysql',
  redis: 'redis',
  rediss: 'redis',
};

const EXAMPLES = 'sqlite:./keys.db, postgres://user@host:5432/db, mysql://user@host:3306/db or redis://host:6379';

/** Parses a store URL; `source` names where it came from (`--store` or `KEYGATE_STORE_URL`) in messages. */
export function parseStoreUrl(raw: string, source: string, cwd: string): StoreTarget {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(raw)?.[1]?.toLowerCase();
  const kind = scheme === undefined ? undefined : SCHEMES[scheme];
  if (kind === undefined) {
    // The URL is not echoed: it may hold a password.
    const seen = scheme === undefined ? 'no scheme' : `the scheme '${scheme.slice(0, 20)}:'`;
    throw new ValidationError(source, `must be a store URL such as ${EXAMPLES}; got ${seen}`);
  }
  if (kind === 'sqlite') {
    let path = raw.slice(scheme!.length + 1);
    // sqlite:///abs/keys.db and sqlite://keys.db are read as sqlite:/abs/keys.db and sqlite:keys.db.
    if (path.startsWith('//')) path = path.slice(2);
    if (path === '' || path === ':memory:') {
      throw new ValidationError(source, 'must name a SQLite file, such as sqlite:./keys.db (an in-memory database would be lost at exit)');
    }
    const file = resolve(cwd, path);
    return { kind, url: raw, display: `sqlite:${path}`, file, secrets: [] };
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ValidationError(
      source,
      `is not a valid ${scheme}:// URL; write it as ${EXAMPLES} (percent-encode special characters in the password)`,
    );
  }
  const secrets = url.password === '' ? [] : [url.password, decodeURIComponent(url.password)];
  const display = `${url.protocol}//${url.host}${url.pathname === '/' ? '' : url.pathname}`;
  return { kind, url: raw, display, file: null, secrets };
}

/** What the command needs of an opened store. */
export interface OpenedStore {
  readonly store: KeyStore;
  /** Creates the table (SQL stores); `false` for Redis, which needs none. */
  migrate(): Promise<boolean>;
  /** An invalidation bus that only publishes, on the library's default channel or `channel`. */
  notifier(channel: string | undefined): InvalidationBus;
  /** Closes the connection. Never throws. */
  close(): Promise<void>;
}

export interface OpenOptions {
  /** SQL table name, as the store's `table` option. */
  table: string | undefined;
  /** Redis key prefix, as the store's `prefix` option. */
  prefix: string | undefined;
  /** Bounds connecting (and the store's calls, through the manager). */
  timeoutMs: number;
  /** Where the project's own node_modules are looked for when the driver is not beside keygate. */
  cwd: string;
  /** Whether a missing SQLite file may be created (only `migrate` does). */
  create: boolean;
}

/** The SQL that creates the table, for `migrate --print`; `null` for Redis. No driver is needed. */
export function schemaOf(kind: StoreKind, table: string | undefined): string | null {
  const options = { table };
  if (kind === 'postgres') return postgresSchema(options);
  if (kind === 'mysql') return mysqlSchema(options);
  if (kind === 'sqlite') return sqliteSchema(options);
  return null;
}

/** Opens the store of `target` with its driver. */
export async function openStore(target: StoreTarget, options: OpenOptions): Promise<OpenedStore> {
  if (target.kind === 'sqlite') return openSqlite(target, options);
  if (target.kind === 'postgres') return openPostgres(target, options);
  if (target.kind === 'mysql') return openMysql(target, options);
  return openRedis(target, options);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A failure to connect or to migrate: the store is unavailable, with the driver's reason and never the password. */
function unavailable(operation: string, target: StoreTarget, error: unknown): StoreUnavailableError {
  let text = messageOf(error);
  for (const secret of target.secrets) if (secret.length > 0) text = text.split(secret).join('***');
  return new StoreUnavailableError(operation, `${target.display}: ${text}`);
}

/** The clients' connect timeouts end at the TCP connection: a server that accepts and never answers needs this. */
class TimeoutError extends Error {}

function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// --- drivers ---------------------------------------------------------------------------------------

/** Whether an import failed because `pkg` itself is not installed (not one of its own dependencies). */
function isMissing(error: unknown, pkg: string): boolean {
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return false;
  return typeof message === 'string' && (message.includes(`'${pkg}'`) || message.includes(`'${pkg}/`));
}

/**
 * The driver module, loaded only now and only for the URL's scheme: first as keygate itself would
 * import it (beside keygate, in the project that installed it), then from the current directory's
 * project, for a keygate run from elsewhere (npx's cache, a global install). `null` when neither has it.
 */
async function loadDriver(
  pkg: string,
  load: () => Promise<unknown>,
  specifier: string,
  cwd: string,
): Promise<Record<string, unknown> | null> {
  try {
    return (await load()) as Record<string, unknown>;
  } catch (error) {
    if (!isMissing(error, pkg)) throw brokenDriver(pkg, error);
  }
  // Every supported driver ships CommonJS, so require() serves the ESM and the CommonJS build alike.
  try {
    return createRequire(join(cwd, 'package.json'))(specifier) as Record<string, unknown>;
  } catch (error) {
    if (isMissing(error, pkg)) return null;
    throw brokenDriver(pkg, error);
  }
}

function brokenDriver(pkg: string, error: unknown): Exit {
  return new Exit(
    EXIT.driverMissing,
    `the driver ${pkg} is installed but failed to load (${messageOf(error)}); reinstall it with npm install ${pkg} (npm rebuild ${pkg} for a native module)`,
  );
}

/** The driver is in neither place: say which package to install. */
function missingDriver(kind: StoreKind, pkg: string, alternative?: string): Exit {
  const either = alternative === undefined ? `the ${pkg} package` : `the ${pkg} or the ${alternative} package`;
  const install = alternative === undefined ? `npm install ${pkg}` : `npm install ${pkg} (or npm install ${alternative})`;
  return new Exit(EXIT.driverMissing, `the ${kind} store needs ${either}, which is not installed. Install it in your project: ${install}`);
}

/** An export of a module loaded by `import()`, ESM or CommonJS (then under `default`). */
function exported<T>(module: Record<string, unknown>, name: string): T | undefined {
  const direct = module[name];
  if (direct !== undefined) return direct as T;
  const fallback = module.default as Record<string, unknown> | undefined;
  return (fallback?.[name] as T | undefined) ?? undefined;
}

// --- SQLite ----------------------------------------------------------------------------------------

interface SqliteConnection extends SqliteDatabase {
  close(): unknown;
}
type SqliteConstructor = new (file: string, options: { fileMustExist: boolean; timeout: number }) => SqliteConnection;

async function openSqlite(target: StoreTarget, options: OpenOptions): Promise<OpenedStore> {
  const module = await loadDriver('better-sqlite3', () => import('better-sqlite3'), 'better-sqlite3', options.cwd);
  if (module === null) throw missingDriver('sqlite', 'better-sqlite3');
  const Database = (module.default ?? module) as SqliteConstructor;
  const file = target.file as string;
  if (!options.create && !existsSync(file)) {
    throw new StoreUnavailableError(
      'open',
      `${target.display}: the file ${file} does not exist; create it with keygate migrate, or check the path`,
    );
  }
  let db: SqliteConnection;
  try {
    db = new Database(file, { fileMustExist: !options.create, timeout: options.timeoutMs });
  } catch (error) {
    throw unavailable('open', target, error);
  }
  try {
    const store = sqliteStore(db, { table: options.table });
    return sqlStore('sqlite', store, target, async () => void db.close());
  } catch (error) {
    db.close();
    throw error;
  }
}

// --- PostgreSQL ------------------------------------------------------------------------------------

type PgPool = PostgresQueryable & PostgresPool & PgPoolEvents;
interface PgPoolEvents {
  on(event: 'error', listener: (error: Error) => void): unknown;
  end(): Promise<void>;
}
type PgPoolConstructor = new (config: {
  connectionString: string;
  max: number;
  connectionTimeoutMillis: number;
  application_name: string;
}) => PgPool;

async function openPostgres(target: StoreTarget, options: OpenOptions): Promise<OpenedStore> {
  const module = await loadDriver('pg', () => import('pg'), 'pg', options.cwd);
  const Pool = module && exported<PgPoolConstructor>(module, 'Pool');
  if (!Pool) throw missingDriver('postgres', 'pg');
  const pool = new Pool({
    connectionString: target.url,
    max: 2,
    connectionTimeoutMillis: options.timeoutMs,
    application_name: 'keygate-cli',
  });
  // An idle connection that drops emits 'error' on the pool; the next query reports it.
  pool.on('error', () => {});
  try {
    const store = postgresStore(pool, { table: options.table });
    const opened = sqlStore('postgres', store, target, () => pool.end());
    return { ...opened, notifier: (channel) => publishOnly(postgresInvalidation(pool, { channel })) };
  } catch (error) {
    await pool.end();
    throw error;
  }
}

// --- MySQL / MariaDB -------------------------------------------------------------------------------

interface MysqlConnectionPool extends MysqlPool {
  end(): Promise<void>;
}
type CreatePool = (config: { uri: string; connectionLimit: number; connectTimeout: number }) => MysqlConnectionPool;

async function openMysql(target: StoreTarget, options: OpenOptions): Promise<OpenedStore> {
  const module = await loadDriver('mysql2', () => import('mysql2/promise'), 'mysql2/promise', options.cwd);
  const createPool = module && exported<CreatePool>(module, 'createPool');
  if (!createPool) throw missingDriver('mysql', 'mysql2');
  const pool = createPool({ uri: target.url, connectionLimit: 2, connectTimeout: options.timeoutMs });
  try {
    return sqlStore('mysql', mysqlStore(pool, { table: options.table }), target, () => pool.end());
  } catch (error) {
    await pool.end();
    throw error;
  }
}

/** The parts every SQL store shares: `migrate()` runs the store's own, and there is no bus but PostgreSQL's. */
function sqlStore(
  kind: StoreKind,
  store: KeyStore & { migrate(): Promise<void> },
  target: StoreTarget,
  end: () => Promise<void>,
): OpenedStore {
  return {
    store,
    async migrate() {
      try {
        await store.migrate();
      } catch (error) {
        throw unavailable('migrate', target, error);
      }
      return true;
    },
    notifier() {
      throw new ValidationError('--notify', `needs an invalidation bus: PostgreSQL or Redis, not ${kind}`);
    },
    close: () => end().catch(() => {}),
  };
}

// --- Redis -----------------------------------------------------------------------------------------

interface IoRedisConnection {
  readonly status: string;
  call(command: string, args: string[]): Promise<unknown>;
  connect(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  duplicate(): IoRedisConnection;
  quit(): Promise<unknown>;
  disconnect(): void;
}
type IoRedisConstructor = new (
  url: string,
  options: {
    lazyConnect: boolean;
    connectTimeout: number;
    maxRetriesPerRequest: number;
    retryStrategy: () => null;
    enableOfflineQueue: boolean;
    disconnectTimeout: number;
  },
) => IoRedisConnection;

interface NodeRedisConnection {
  readonly isReady: boolean;
  readonly isOpen: boolean;
  sendCommand(args: string[]): Promise<unknown>;
  connect(): Promise<unknown>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  duplicate(): NodeRedisConnection;
  /** node-redis 5 and 6; 4 has `quit()` only. */
  close?(): Promise<unknown>;
  quit?(): Promise<unknown>;
  disconnect?(): Promise<unknown>;
}
type CreateClient = (options: { url: string; socket: { connectTimeout: number; reconnectStrategy: false } }) => NodeRedisConnection;

async function openRedis(target: StoreTarget, options: OpenOptions): Promise<OpenedStore> {
  const ioredis = await loadDriver('ioredis', () => import('ioredis'), 'ioredis', options.cwd);
  const IoRedis = ioredis && (exported<IoRedisConstructor>(ioredis, 'Redis') ?? (ioredis.default as IoRedisConstructor | undefined));
  if (IoRedis) {
    // No reconnection and no queue: a Redis that is down fails the command at once, as a 503.
    const client = new IoRedis(target.url, {
      lazyConnect: true,
      connectTimeout: options.timeoutMs,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      enableOfflineQueue: false,
      // ioredis 6 waits this long for a closed connection's socket to close (which a dead server never does).
      disconnectTimeout: 100,
    });
    // The connection's own error says more than connect()'s "Connection is closed.".
    let lastError: unknown = null;
    client.on('error', (error) => (lastError = error));
    try {
      await within(options.timeoutMs, client.connect());
    } catch (error) {
      // Without reconnection the client has ended; disconnect() now would wait for a close that already happened.
      if (client.status !== 'end') client.disconnect();
      throw unavailable('connect', target, error instanceof TimeoutError ? error : (lastError ?? error));
    }
    return redisOpened(client, options, async () => {
      if (client.status === 'end') return;
      await client.quit().catch(() => {
        if (client.status !== 'end') client.disconnect();
      });
    });
  }
  const redis = await loadDriver('redis', () => import('redis'), 'redis', options.cwd);
  const createClient = redis && exported<CreateClient>(redis, 'createClient');
  if (!createClient) throw missingDriver('redis', 'ioredis', 'redis');
  const client = createClient({ url: target.url, socket: { connectTimeout: options.timeoutMs, reconnectStrategy: false } });
  let lastError: unknown = null;
  client.on('error', (error) => (lastError = error));
  try {
    await within(options.timeoutMs, client.connect());
  } catch (error) {
    if (client.isOpen) await client.disconnect?.().catch(() => {});
    throw unavailable('connect', target, error instanceof TimeoutError ? error : (lastError ?? error));
  }
  return redisOpened(client, options, async () => {
    if (!client.isOpen) return;
    const close = client.close ?? client.quit;
    await close?.call(client).catch(() => client.disconnect?.());
  });
}

function redisOpened(client: IoRedisConnection | NodeRedisConnection, options: OpenOptions, end: () => Promise<void>): OpenedStore {
  let store: KeyStore;
  try {
    store = redisStore(client as RedisClientLike, { prefix: options.prefix });
  } catch (error) {
    void end();
    throw error;
  }
  return {
    store,
    migrate: async () => false,
    notifier(channel) {
      // The bus never subscribes here (see publishOnly), so this second connection is never opened.
      const subscriber = client.duplicate();
      return publishOnly(
        redisInvalidation({
          publisher: client as RedisClientLike,
          subscriber: subscriber as unknown as RedisInvalidationOptions['subscriber'],
          ...(channel === undefined ? {} : { channel }),
        }),
      );
    },
    close: () => end().catch(() => {}),
  };
}

/**
 * The bus as a short-lived command needs it: it tells the servers' caches which key changed, and
 * never listens (the command has no cache to keep fresh, and a listening connection would only
 * delay its exit).
 */
function publishOnly(bus: InvalidationBus): InvalidationBus {
  return {
    publish: (keyId) => bus.publish(keyId),
    subscribe: async () => async () => {},
  };
}
