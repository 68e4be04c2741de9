// Case: keygate against better-auth's api-key plugin, both verifying existing keys on SQLite and in memory (10k keys).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compare } from '../lib/harness.mjs';
import { skippedRow, timeRow } from '../lib/report.mjs';
import { assertValid, createKeys, fillStore, hasDist, loadDist } from '../lib/keygate.mjs';
import { uniqueName } from '../lib/services.mjs';

/** Verified tokens: the same number on both sides, cycled through in the same order. */
const REAL_KEYS = 1000;

/** A better-auth instance with only the api-key plugin, rate limiting off, and one user owning the keys. */
async function betterAuthSetup(database, count, log, label) {
  const { betterAuth } = await import('better-auth');
  const { apiKey } = await import('@better-auth/api-key');
  const { getMigrations } = await import('better-auth/db/migration');
  const options = {
    database,
    secret: 'keygate-bench-secret-keygate-bench-secret',
    baseURL: 'http://127.0.0.1',
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
    logger: { disabled: true },
    plugins: [apiKey({ rateLimit: { enabled: false } })],
  };
  const auth = betterAuth(options);
  // The memory adapter needs no schema (and getMigrations does not handle it).
  if (typeof database !== 'function') {
    const { runMigrations } = await getMigrations(auth.options);
    await runMigrations();
  }
  const context = await auth.$context;
  const user = await context.internalAdapter.createUser({ email: 'bench@example.com', name: 'Bench', emailVerified: true });
  const started = Date.now();
  const tokens = [];
  for (let i = 0; i < count; i++) {
    const created = await auth.api.createApiKey({ body: { userId: user.id, name: `Bench key ${i}` } });
    if (i < REAL_KEYS) tokens.push(created.key);
  }
  log(`better-auth ${label}: ${count} keys created in ${Date.now() - started} ms`);
  const verify = (key) => auth.api.verifyApiKey({ body: { key } });
  const first = await verify(tokens[0]);
  if (first.valid !== true) throw new Error(`better-auth ${label}: verify did not accept a real key (${JSON.stringify(first.error)})`);
  return { verify, tokens };
}

export async function run({ quick, log }) {
  const count = quick ? 2_000 : 10_000;
  const size = `${count / 1000}k`;
  if (!hasDist('sqlite')) {
    return [skippedRow('peer', `better-auth api-key comparison, ${size} keys`, 'dist/sqlite.js is not built')];
  }
  const { default: Database } = await import('better-sqlite3');
  const { memoryAdapter } = await import('better-auth/adapters/memory');
  const { createKeyManager } = await loadDist('index');
  const { memoryStore } = await loadDist('memory');
  const { sqliteStore } = await loadDist('sqlite');

  // Both SQLite databases: a file each, WAL, in a temporary directory.
  const dir = mkdtempSync(join(tmpdir(), 'keygate-bench-peer-'));
  const open = (name) => {
    const db = new Database(join(dir, name));
    db.pragma('journal_mode = WAL');
    return db;
  };
  const kgDb = open('keygate.db');
  const baDb = open('better-auth.db');
  try {
    const kgSqliteStore = sqliteStore(kgDb, { table: uniqueName('kg_bench') });
    await kgSqliteStore.migrate();
    await fillStore(kgSqliteStore, count - REAL_KEYS);
    const kgSqlite = createKeyManager({ store: kgSqliteStore });
    const kgSqliteTokens = await createKeys(kgSqlite, REAL_KEYS);
    const kgMemoryStore = memoryStore();
    await fillStore(kgMemoryStore, count - REAL_KEYS);
    const kgMemory = createKeyManager({ store: kgMemoryStore });
    const kgMemoryTokens = await createKeys(kgMemory, REAL_KEYS);
    assertValid(await kgSqlite.verify(kgSqliteTokens[0]), 'keygate SQLite');

    const baSqlite = await betterAuthSetup(baDb, count, log, 'SQLite');
    const memoryDb = { user: [], session: [], account: [], verification: [], apikey: [] };
    const baMemory = await betterAuthSetup(memoryAdapter(memoryDb), count, log, 'memory adapter');

    const n = REAL_KEYS;
    const results = await compare(
      [
        { id: 'kgSqlite', fn: (i) => kgSqlite.verify(kgSqliteTokens[i % n]) },
        { id: 'baSqlite', fn: (i) => baSqlite.verify(baSqlite.tokens[i % n]) },
        { id: 'kgMemory', fn: (i) => kgMemory.verify(kgMemoryTokens[i % n]) },
        { id: 'baMemory', fn: (i) => baMemory.verify(baMemory.tokens[i % n]) },
      ],
      { rounds: quick ? 4 : 12, batchMs: quick ? 50 : 100, warmupMs: quick ? 300 : 800 },
    );
    await kgSqlite.close();
    await kgMemory.close();
    return [
      timeRow({ id: 'peer-kg-sqlite', label: `keygate keys.verify, SQLite, ${size} keys`, samples: results.kgSqlite }),
      timeRow({
        id: 'peer-ba-sqlite',
        label: `better-auth verifyApiKey, SQLite, ${size} keys`,
        samples: results.baSqlite,
        against: results.kgSqlite,
        ratioLabel: 'keygate is faster',
        target: { text: 'keygate ≥ 50× faster', check: (r) => r >= 50 },
      }),
      timeRow({ id: 'peer-kg-memory', label: `keygate keys.verify, MemoryStore, ${size} keys`, samples: results.kgMemory }),
      timeRow({
        id: 'peer-ba-memory',
        label: `better-auth verifyApiKey, memory adapter, ${size} keys`,
        samples: results.baMemory,
        against: results.kgMemory,
        ratioLabel: 'keygate is faster',
      }),
    ];
  } finally {
    kgDb.close();
    baDb.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
