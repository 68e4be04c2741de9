// Starts the B2B store example: picks the key store from the environment, prints the admin URL and password.

import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createApp } from './app.js';

const HOST = '127.0.0.1';
const DEFAULT_SQLITE_FILE = fileURLToPath(new URL('./data/keygate.db', import.meta.url));

/**
 * @typedef {object} OpenedStore
 * @property {import('keygate').KeyStore} store
 * @property {string} description what to print, without secrets
 * @property {() => Promise<void>} close closes the driver's connection
 */

/**
 * Hides the password of a connection URL for printing.
 * @param {string} url
 */
function redact(url) {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/**
 * The key store the environment asks for: PostgreSQL (DATABASE_URL), Redis (REDIS_URL) or,
 * by default, an SQLite file. Each driver is loaded only when it is used.
 * @returns {Promise<OpenedStore>}
 */
async function openStore() {
  const databaseUrl = process.env.DATABASE_URL;
  const redisUrl = process.env.REDIS_URL;
  if (databaseUrl && redisUrl) {
    throw new Error('Set DATABASE_URL or REDIS_URL, not both: the keys live in one store.');
  }
  if (databaseUrl) {
    if (!/^postgres(ql)?:\/\//.test(databaseUrl)) {
      throw new Error('DATABASE_URL must be a PostgreSQL URL such as postgres://user@127.0.0.1:5432/shop');
    }
    const { default: pg } = await import('pg');
    const { postgresStore } = await import('keygate/postgres');
    const pool = new pg.Pool({ connectionString: databaseUrl });
    const store = postgresStore(pool);
    await store.migrate();
    return { store, description: `PostgreSQL ${redact(databaseUrl)}`, close: () => pool.end() };
  }
  if (redisUrl) {
    const { Redis } = await import('ioredis');
    const { redisStore } = await import('keygate/redis');
    const client = new Redis(redisUrl);
    client.on('error', (error) => console.error(`redis: ${error.message}`));
    // The store refuses commands until the client is ready: wait, so the first requests get answers.
    await new Promise((resolve) => client.once('ready', resolve));
    const store = redisStore(client);
    return {
      store,
      description: `Redis ${redact(redisUrl)}`,
      close: async () => {
        await client.quit();
      },
    };
  }
  const { default: Database } = await import('better-sqlite3');
  const { sqliteStore } = await import('keygate/sqlite');
  mkdirSync(new URL('./data/', import.meta.url), { recursive: true });
  const db = new Database(DEFAULT_SQLITE_FILE);
  db.pragma('journal_mode = WAL');
  const store = sqliteStore(db);
  await store.migrate();
  return {
    store,
    description: `SQLite file ${DEFAULT_SQLITE_FILE}`,
    close: async () => {
      db.close();
    },
  };
}

async function main() {
  const port = Number(process.env.PORT ?? 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT must be a port number, got '${process.env.PORT}'`);
  const givenPassword = process.env.ADMIN_PASSWORD;
  if (givenPassword !== undefined && givenPassword.length < 8) throw new Error('ADMIN_PASSWORD must be at least 8 characters');
  const adminPassword = givenPassword || randomBytes(18).toString('base64url');

  // e.g. 'loopback' behind nginx or Caddy on this host; checked by createApp, which names a bad entry.
  const trustedProxies = process.env.TRUSTED_PROXIES || undefined;

  const opened = await openStore();
  /** @type {ReturnType<typeof createApp>} */
  let created;
  try {
    created = createApp({ store: opened.store, adminPassword, trustedProxies });
  } catch (error) {
    await opened.close();
    throw error;
  }
  const { app, close } = created;
  const server = app.listen(port, HOST);
  try {
    await new Promise((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
  } catch (error) {
    await close();
    await opened.close();
    throw error;
  }
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  const base = `http://${HOST}:${address.port}`;
  const passwordLine = givenPassword ? '(the ADMIN_PASSWORD you set)' : `${adminPassword}   (generated; set ADMIN_PASSWORD to choose one)`;
  process.stdout.write(
    [
      '',
      'keygate B2B store example',
      `  Admin page:  ${base}/admin/api-keys/`,
      `  Sign in as:  admin`,
      `  Password:    ${passwordLine}`,
      `  Key store:   ${opened.description}`,
      `  Proxies:     ${trustedProxies ? `${trustedProxies} (X-Forwarded-* believed from these only)` : 'none trusted (set TRUSTED_PROXIES behind a reverse proxy)'}`,
      `  Store API:   ${base}/api/orders, /api/products, /api/customers`,
      '',
      'Press Ctrl+C to stop.',
      '',
    ].join('\n'),
  );

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    server.close();
    server.closeAllConnections();
    await close();
    await opened.close();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((error) => {
  console.error(`Could not start the B2B store example: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
