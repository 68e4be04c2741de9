// Starts the B2B store example on a temporary SQLite file, through the package's own name (so dist/ must exist).

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, rmdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Express } from 'express';
import type { KeyManager, KeyManagerOptions, KeyStore } from '../../src/index.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const APP_MODULE = pathToFileURL(join(ROOT, 'examples/b2b-store/app.js')).href;

/** What examples/b2b-store/app.js exports (it is plain JavaScript, so its types are restated here). */
interface AppModule {
  createApp(options: {
    store: KeyStore;
    adminPassword: string;
    keyManager?: Omit<KeyManagerOptions, 'store'>;
    trustedProxies?: string | readonly string[];
  }): {
    app: Express;
    keys: KeyManager;
    close(): Promise<void>;
  };
}

interface SqliteModule {
  sqliteStore(db: unknown, options?: { table?: string }): KeyStore & { migrate(): Promise<void> };
}

/**
 * Builds dist/ with tsup when the entries the example imports are missing. A directory lock keeps
 * two test files from building at once.
 */
export async function ensureBuilt(): Promise<void> {
  const built = () =>
    existsSync(join(ROOT, 'dist/index.js')) && existsSync(join(ROOT, 'dist/sqlite.js')) && existsSync(join(ROOT, 'dist/express.js'));
  if (built()) return;
  const lock = join(tmpdir(), 'keygate-e2e-build.lock');
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`Timed out waiting for ${lock}; remove it if no build is running.`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  try {
    if (!built()) execFileSync('npx', ['tsup'], { cwd: ROOT, stdio: 'inherit' });
  } finally {
    rmdirSync(lock);
  }
  if (!built()) throw new Error('dist/ still lacks index.js, sqlite.js or express.js after `npx tsup`.');
}

export interface RunningApp {
  /** e.g. http://127.0.0.1:43121 */
  baseUrl: string;
  app: Express;
  keys: KeyManager;
  adminPassword: string;
  /** Stops the server and the manager, closes the database and removes its folder. */
  close(): Promise<void>;
}

/** Options of `startB2bStore`, passed on to the example's `createApp`. */
export interface StartOptions {
  /** The proxies whose forwarded headers the app believes. @default none */
  trustedProxies?: string | readonly string[];
  /** Further options of the app's key manager (e.g. `onEvent`). @default none */
  keyManager?: Omit<KeyManagerOptions, 'store'>;
}

/** Where the example mounts keygate's admin page; its JSON API is under `${ADMIN_PATH}/api`. */
export const ADMIN_PATH = '/admin/api-keys';

/** An error answer of the admin API. */
export interface AdminError {
  error: { code: string; message: string; fields?: Array<{ field: string; message: string }> };
}

/**
 * A call of the example's admin API as the page makes it: signed in as admin with HTTP Basic, the
 * app's own `Origin`, the body as JSON.
 */
export async function adminFetch(
  running: RunningApp,
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  path: string,
  body?: unknown,
): Promise<{ status: number; body: unknown }> {
  const auth = Buffer.from(`admin:${running.adminPassword}`).toString('base64');
  const res = await fetch(`${running.baseUrl}${ADMIN_PATH}/api${path}`, {
    method,
    headers: {
      Authorization: `Basic ${auth}`,
      ...(method === 'GET' ? {} : { Origin: running.baseUrl }),
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? null : (JSON.parse(text) as unknown) };
}

/** The B2B store app on a fresh SQLite file, listening on 127.0.0.1 at a free port. */
export async function startB2bStore(options: StartOptions = {}): Promise<RunningApp> {
  await ensureBuilt();
  const [{ createApp }, { sqliteStore }, { default: Database }] = await Promise.all([
    import(APP_MODULE) as Promise<AppModule>,
    import('keygate/sqlite' as string) as Promise<SqliteModule>,
    import('better-sqlite3'),
  ]);
  const dir = mkdtempSync(join(tmpdir(), 'keygate-b2b-'));
  const db = new Database(join(dir, 'keygate.db'));
  const store = sqliteStore(db);
  await store.migrate();
  const adminPassword = `test-${Math.random().toString(36).slice(2)}-password`;
  const { app, keys, close } = createApp({ store, adminPassword, ...options });
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    app,
    keys,
    adminPassword,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
