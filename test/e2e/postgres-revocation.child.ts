// The second instance of the Postgres revocation test: a manager with a long cache, told of changes only by LISTEN/NOTIFY.
import pg from 'pg';
import { postgresInvalidation, postgresStore } from '../../adapters/postgres/index.js';
import { createKeyManager, type KeyStore } from '../../src/index.js';

type Request = { type: 'watch'; token: string } | { type: 'exit' };

const url = process.env.KEYGATE_TEST_POSTGRES_URL as string;
const pool = new pg.Pool({ connectionString: url, max: 4 });
const sql = postgresStore(pool, { table: process.env.TABLE as string });
let lookups = 0;
// Counts store lookups, to tell a cached verify from one that asked the database.
const store: KeyStore = {
  insert: (r) => sql.insert(r),
  findById: (id) => sql.findById(id),
  findByDigest: (d) => (lookups++, sql.findByDigest(d)),
  list: (q) => sql.list(q),
  update: (n, v) => sql.update(n, v),
  delete: (id) => sql.delete(id),
  touch: (e) => sql.touch(e),
};
const keys = createKeyManager({
  store,
  cache: { ttlMs: 600_000 },
  invalidation: postgresInvalidation(pool, { channel: process.env.CHANNEL as string }),
});
const send = (message: unknown): void => void process.send?.(message);
const now = (): number => performance.timeOrigin + performance.now();

process.on('message', async (request: Request) => {
  if (request.type === 'exit') {
    await keys.close();
    await pool.end();
    process.exit(0);
  }
  // Valid, and served from the cache: the subscription is live and the database is no longer asked.
  for (;;) {
    const before = lookups;
    const result = await keys.verify(request.token);
    if (!result.valid) return send({ type: 'error', message: `token refused before the change: ${result.code}` });
    if (lookups === before) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  send({ type: 'ready' });
  for (;;) {
    const result = await keys.verify(request.token);
    if (!result.valid) return send({ type: 'refused', code: result.code, at: now() });
    await new Promise((r) => setImmediate(r));
  }
});
send({ type: 'started' });
