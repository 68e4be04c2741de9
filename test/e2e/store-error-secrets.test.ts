// SECURITY 5: a store that fails for real, on every store and driver, throws an error that logs neither the token nor its digest, however it is logged.

import { randomBytes } from 'node:crypto';
import util from 'node:util';
import Database from 'better-sqlite3';
import Fastify from 'fastify';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mysqlStore } from '../../adapters/mysql/index.js';
import { postgresStore } from '../../adapters/postgres/index.js';
import { redisStore } from '../../adapters/redis/index.js';
import { sqliteStore } from '../../adapters/sqlite/index.js';
import {
  createGuardCore,
  createKeyManager,
  StoreUnavailableError,
  type KeyManager,
  type KeyManagerOptions,
  type KeyStore,
} from '../../src/index.js';
import { createDigester, generateId, generateToken, TOKEN_SOURCE, type TokenSource } from '../../src/token.js';
import { serviceUrl } from '../support/services.js';
import {
  closeRedis,
  connectRedis,
  deletePrefix,
  randomPrefix,
  rawCommand,
  REDIS_CLIENT_KINDS,
  type AnyRedisClient,
} from '../support/redis.js';
import { refusedPort } from '../support/tcp.js';
import { randomTable } from '../stores/sql-extras.js';

const urls = { postgres: serviceUrl('postgres'), mysql: serviceUrl('mysql'), redis: serviceUrl('redis') };

/** A store made to fail for real; `digest` is that of the token the test will use. */
interface FailingStore {
  store: KeyStore;
  cleanup?: () => Promise<unknown>;
}

interface Case {
  name: string;
  /** verify looks the token up; create inserts the record of a token the test chose. */
  call: 'verify' | 'create';
  /** What the error message still says about the failure. */
  message: RegExp;
  open: (digest: string) => Promise<FailingStore>;
}

/** pino, as Fastify sets it up: what an application's request logger writes for an error. */
const pinoLines: string[] = [];
const app = Fastify({ logger: { level: 'error', stream: { write: (line: string) => void pinoLines.push(line) } } });
afterAll(() => app.close());

/** Every string reachable from `value` through own properties, enumerable or not, getters included. */
function reachableStrings(value: unknown, out: string[] = [], seen = new Set<object>()): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Buffer.isBuffer(value)) out.push(value.toString('latin1'));
  else if (value !== null && typeof value === 'object' && !seen.has(value)) {
    seen.add(value);
    for (const key of Reflect.ownKeys(value)) {
      let child: unknown;
      try {
        child = (value as Record<PropertyKey, unknown>)[key];
      } catch {
        continue;
      }
      reachableStrings(child, out, seen);
    }
  }
  return out;
}

/** The error as every usual way of logging it prints it: inspect, console, JSON, pino, the stack and cause chain. */
function everythingLogged(error: unknown): string {
  const chain: unknown[] = [];
  for (let e = error; e !== null && typeof e === 'object' && chain.length < 10; e = (e as { cause?: unknown }).cause) chain.push(e);
  pinoLines.length = 0;
  app.log.error(error);
  app.log.error({ err: error }, 'key store down');
  return [
    util.inspect(error, { depth: Number.POSITIVE_INFINITY, showHidden: true, getters: true }),
    util.format(error), // console.error(error)
    util.format('%o', error),
    JSON.stringify(error),
    ...chain.flatMap((e) => [String((e as Error).stack), String((e as Error).message), JSON.stringify(e)]),
    ...pinoLines,
    ...reachableStrings(error),
  ].join('\n');
}

/** Which of the token, its secret part and its digest occur in `text` (by name, so a failure does not print them). */
function secretsIn(text: string, token: string, digest: string): string[] {
  const secrets = { token, 'secret part of the token': token.slice(token.indexOf('_') + 1), digest };
  return Object.entries(secrets)
    .filter(([, secret]) => text.includes(secret))
    .map(([name]) => name);
}

function defineCases(driver: string, cases: readonly Case[]): void {
  for (const c of cases) {
    it(`${driver}, ${c.name}: ${c.call} throws StoreUnavailableError without the token or its digest`, async () => {
      // A digest that starts with a letter: MariaDB quotes such a value in "Incorrect integer value",
      // where one that starts with digits would be cut short ("Data truncated") and quote nothing.
      let token = generateToken('kg');
      while (!/^[A-Za-z]/.test(createDigester()(token))) token = generateToken('kg');
      const digest = createDigester()(token);
      const { store, cleanup } = await c.open(digest);
      // The manager issues this very token on create, so the test knows what must not leak.
      const source: TokenSource = { token: () => token, id: generateId };
      const keys: KeyManager = createKeyManager({ store, storeTimeoutMs: 5000, [TOKEN_SOURCE]: source } as KeyManagerOptions);
      try {
        const error = await (c.call === 'verify' ? keys.verify(token) : keys.create({ name: 'leak check', scopes: ['all'] })).then(
          () => null,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(StoreUnavailableError);
        expect((error as Error).message).toMatch(c.message);
        expect(secretsIn(everythingLogged(error), token, digest)).toEqual([]);

        if (c.call === 'verify') {
          const guard = createGuardCore(keys);
          const outcome = await guard.authenticate({ headers: { authorization: `Bearer ${token}` }, remoteAddress: '127.0.0.1' });
          expect(outcome).toMatchObject({ ok: false, status: 503, reason: 'STORE_UNAVAILABLE' });
          const rejection = outcome.ok ? null : outcome.error;
          expect(rejection).toBeInstanceOf(StoreUnavailableError);
          expect(secretsIn(everythingLogged(rejection), token, digest)).toEqual([]);
          expect(secretsIn(reachableStrings(outcome).join('\n'), token, digest)).toEqual([]);
        }
      } finally {
        await keys.close();
        await cleanup?.();
      }
    });
  }
}

describe.skipIf(!urls.postgres)('PostgreSQL (pg) failing', () => {
  const pool = new pg.Pool({ connectionString: urls.postgres, max: 4 });
  afterAll(() => pool.end());
  /** A migrated table of its own, changed by `alter` as a hand-written migration might have. */
  const table = async (alter: (name: string) => string): Promise<FailingStore> => {
    const name = randomTable('kg_leak');
    const store = postgresStore(pool, { table: name });
    await store.migrate();
    await pool.query(alter(name));
    return { store, cleanup: () => pool.query(`DROP TABLE IF EXISTS "${name}"`) };
  };
  defineCases('PostgreSQL', [
    {
      name: 'a closed pool',
      call: 'verify',
      message: /Cannot use a pool after calling end/,
      async open() {
        const closed = new pg.Pool({ connectionString: urls.postgres });
        await closed.end();
        return { store: postgresStore(closed) };
      },
    },
    {
      name: 'a port that refuses',
      call: 'verify',
      message: /ECONNREFUSED/,
      async open() {
        const refused = new pg.Pool({ host: '127.0.0.1', port: await refusedPort(), user: 'postgres' });
        refused.on('error', () => {});
        return { store: postgresStore(refused), cleanup: () => refused.end() };
      },
    },
    {
      name: 'a table that does not exist',
      call: 'verify',
      message: /does not exist/,
      open: async () => ({ store: postgresStore(pool, { table: randomTable('kg_leak_missing') }) }),
    },
    {
      name: 'a digest column of type uuid, whose error message quotes the value',
      call: 'verify',
      message: /invalid input syntax for type uuid: "\[redacted\]"/,
      open: () =>
        table((t) => `ALTER TABLE "${t}" ALTER COLUMN digest TYPE uuid USING NULL, ALTER COLUMN previous_digest TYPE uuid USING NULL`),
    },
    {
      name: 'a NOT NULL column the store does not fill, whose error detail quotes the row',
      call: 'create',
      message: /violates not-null constraint/,
      open: () => table((t) => `ALTER TABLE "${t}" ADD COLUMN tenant text NOT NULL`),
    },
  ]);
});

describe.skipIf(!urls.mysql)('MySQL/MariaDB (mysql2) failing', () => {
  const pool = mysql.createPool({ uri: urls.mysql, connectionLimit: 4 });
  afterAll(() => pool.end());
  defineCases('MySQL', [
    {
      name: 'a closed pool',
      call: 'verify',
      message: /Pool is closed/,
      async open() {
        const closed = mysql.createPool({ uri: urls.mysql });
        await closed.end();
        return { store: mysqlStore(closed) };
      },
    },
    {
      name: 'a port that refuses',
      call: 'verify',
      message: /ECONNREFUSED/,
      async open() {
        const refused = mysql.createPool({ host: '127.0.0.1', port: await refusedPort(), user: 'root' });
        return { store: mysqlStore(refused), cleanup: () => refused.end() };
      },
    },
    {
      // The error carries the statement (`sql`), with placeholders for the values.
      name: 'a table that does not exist',
      call: 'verify',
      message: /doesn't exist/,
      open: async () => ({ store: mysqlStore(pool, { table: randomTable('kg_leak_missing') }) }),
    },
    {
      name: 'a digest column of an integer type, whose error message quotes the value',
      call: 'create',
      message: /Incorrect integer value: '\[redacted\]'/,
      async open() {
        const name = randomTable('kg_leak');
        const store = mysqlStore(pool, { table: name });
        await store.migrate();
        await pool.query(`ALTER TABLE \`${name}\` MODIFY digest BIGINT NOT NULL`);
        return { store, cleanup: () => pool.query(`DROP TABLE IF EXISTS \`${name}\``) };
      },
    },
  ]);
});

describe('SQLite (better-sqlite3) failing', () => {
  defineCases('SQLite', [
    {
      name: 'a closed database',
      call: 'verify',
      message: /not open/,
      async open() {
        const db = new Database(':memory:');
        const store = sqliteStore(db);
        await store.migrate();
        db.close();
        return { store };
      },
    },
    {
      name: 'a table that does not exist',
      call: 'verify',
      message: /no such table/,
      async open() {
        const db = new Database(':memory:');
        return { store: sqliteStore(db), cleanup: async () => db.close() };
      },
    },
    {
      name: 'a trigger of the database that refuses the row and quotes the digest',
      call: 'create',
      message: /refused digest \[redacted\]/,
      async open() {
        const db = new Database(':memory:');
        const store = sqliteStore(db);
        await store.migrate();
        db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON keygate_keys BEGIN SELECT RAISE(ABORT, 'refused digest ' || NEW.digest); END`);
        return { store, cleanup: async () => db.close() };
      },
    },
  ]);
});

describe.skipIf(!urls.redis)('Redis failing', () => {
  let admin: AnyRedisClient;
  /** A Redis user that may run everything but scripts: a misconfigured ACL. */
  const user = `kgt-leak-${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  const prefixes: string[] = [];

  beforeAll(async () => {
    admin = await connectRedis('ioredis@6', urls.redis as string);
    await rawCommand(admin, ['ACL', 'SETUSER', user, 'on', `>${password}`, '~*', '&*', '+@all', '-evalsha', '-eval']);
  });
  afterAll(async () => {
    await rawCommand(admin, ['ACL', 'DELUSER', user]);
    for (const prefix of prefixes) await deletePrefix(admin, prefix);
    await closeRedis(admin);
  });

  const prefixed = (): string => {
    const prefix = randomPrefix('leak');
    prefixes.push(prefix);
    return prefix;
  };

  for (const kind of REDIS_CLIENT_KINDS) {
    describe(kind, () => {
      defineCases(kind, [
        {
          name: 'a value of another type where the digest entry goes (WRONGTYPE)',
          call: 'verify',
          message: /WRONGTYPE/,
          async open(digest) {
            const client = await connectRedis(kind, urls.redis as string);
            const prefix = prefixed();
            await rawCommand(admin, ['HSET', `${prefix}d:${digest}`, 'x', '1']);
            return { store: redisStore(client, { prefix }), cleanup: () => closeRedis(client) };
          },
        },
        {
          name: 'a user without permission to run scripts (NOPERM)',
          call: 'verify',
          message: /NOPERM/,
          async open() {
            const url = new URL(urls.redis as string);
            url.username = user;
            url.password = password;
            const client = await connectRedis(kind, url.toString());
            return { store: redisStore(client, { prefix: prefixed() }), cleanup: () => closeRedis(client) };
          },
        },
        {
          name: 'a closed client',
          call: 'verify',
          message: /not connected|Connection is closed/,
          async open() {
            const client = await connectRedis(kind, urls.redis as string);
            await closeRedis(client);
            return { store: redisStore(client, { prefix: prefixed() }) };
          },
        },
      ]);
    });
  }
});
