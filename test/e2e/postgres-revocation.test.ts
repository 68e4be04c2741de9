// Two processes on one PostgreSQL store with verify caches: a change on one reaches the other over LISTEN/NOTIFY.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresInvalidation, postgresStore } from '../../adapters/postgres/index.js';
import { createKeyManager, type KeyManager } from '../../src/index.js';
import { serviceUrl } from '../support/services.js';

const url = serviceUrl('postgres');
const suffix = Math.random().toString(36).slice(2, 10);
const table = `kg_e2e_${suffix}`;
const channel = `kg_e2e_${suffix}`;
// Inside the repository (git-ignored), so that the child resolves `pg` from node_modules.
const workDir = fileURLToPath(new URL(`../../.keygate-tmp/pg-revocation-${suffix}/`, import.meta.url));

type Reply = { type: 'started' } | { type: 'ready' } | { type: 'refused'; code: string; at: number } | { type: 'error'; message: string };

function next(child: ChildProcess, type: Reply['type'], timeoutMs: number): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${type}' from the second process within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (reply: Reply): void => {
      if (reply.type === 'error') reject(new Error(reply.message));
      else if (reply.type !== type) return;
      else resolve(reply);
      clearTimeout(timer);
      child.off('message', onMessage);
    };
    child.on('message', onMessage);
  });
}

describe.skipIf(!url)('PostgreSQL LISTEN/NOTIFY: revocation across two processes', () => {
  let pool: pg.Pool;
  let keys: KeyManager;
  let child: ChildProcess;

  beforeAll(async () => {
    mkdirSync(workDir, { recursive: true });
    const script = `${workDir}child.mjs`;
    await build({
      entryPoints: [fileURLToPath(new URL('./postgres-revocation.child.ts', import.meta.url))],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      external: ['pg'],
      outfile: script,
      logLevel: 'warning',
    });
    pool = new pg.Pool({ connectionString: url, max: 4 });
    const store = postgresStore(pool, { table });
    await store.migrate();
    keys = createKeyManager({ store, cache: { ttlMs: 600_000 }, invalidation: postgresInvalidation(pool, { channel }) });
    child = fork(script, { env: { ...process.env, TABLE: table, CHANNEL: channel }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await next(child, 'started', 10_000);
  }, 60_000);

  afterAll(async () => {
    if (child?.connected) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.send({ type: 'exit' });
      await exited;
    }
    await keys?.close();
    await pool?.query(`DROP TABLE IF EXISTS "${table}"`);
    await pool?.end();
    rmSync(workDir, { recursive: true, force: true });
  });

  const changes: Array<[string, string, (id: string) => Promise<unknown>]> = [
    ['deactivate', 'INACTIVE', (id) => keys.deactivate(id)],
    ['delete', 'NOT_FOUND', (id) => keys.delete(id)],
    ['rotate (no grace period)', 'NOT_FOUND', (id) => keys.rotate(id)],
  ];

  for (const [change, code, apply] of changes) {
    it(`${change} in one process makes the other, caching for 10 minutes, refuse the old token at once`, async () => {
      const { key, token } = await keys.create({ name: `e2e ${change}`, scopes: ['all'] });
      child.send({ type: 'watch', token });
      await next(child, 'ready', 10_000);
      const started = performance.timeOrigin + performance.now();
      await apply(key.id);
      const refused = (await next(child, 'refused', 5_000)) as Extract<Reply, { type: 'refused' }>;
      expect(refused.code).toBe(code);
      console.log(
        `postgresInvalidation ${change}: refused by the second process ${(refused.at - started).toFixed(1)} ms after the change began`,
      );
    });
  }
});
