// Acknowledged revocation across three processes on one bus (Redis pub/sub, PostgreSQL LISTEN/NOTIFY): once a write with { wait: true } returns, no instance accepts the key any more.
//
// Instance A runs in this process; B and C run test/e2e/fixtures/bus-instance.ts, bundled from
// source with esbuild into .keygate-tmp/ (inside the repository, so that the children resolve their
// drivers from node_modules). Every instance caches for two minutes: only an invalidation explains
// a refusal.

import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresInvalidation, postgresStore } from '../../adapters/postgres/index.js';
import { redisInvalidation, redisStore } from '../../adapters/redis/index.js';
import { createKeyManager, InvalidationUnconfirmedError, type KeyManager } from '../../src/index.js';
import { cacheServing } from '../support/bus.js';
import { serviceUrl } from '../support/services.js';
import type { BusInstanceConfig, BusInstanceReply, BusInstanceRequest } from './fixtures/bus-instance.js';

const TRIALS = 510;
const BASELINE_TRIALS = 100;
/** Long enough that only an invalidation, never the expiry of a cache entry, can explain a refusal. */
const TTL_MS = 120_000;
const HEARTBEAT_MS = 500;
/**
 * How long A waits for acknowledgements: well under the three heartbeats that pass at least between
 * a kill and the moment the killed instance, silent for four, is no longer waited for, so that it
 * shows as unanswered rather than forgotten; and far above the slowest acknowledged call measured.
 */
const ACK_TIMEOUT_MS = 1000;
const REPLY_TIMEOUT_MS = 15_000;

const suffix = randomBytes(5).toString('hex');
const workDir = fileURLToPath(new URL(`../../.keygate-tmp/acked-revocation-${suffix}/`, import.meta.url));
const script = `${workDir}bus-instance.mjs`;

type Reply<T extends BusInstanceReply['type']> = Extract<BusInstanceReply, { type: T }>;
type Request = BusInstanceRequest extends infer R ? (R extends unknown ? Omit<R, 'seq'> : never) : never;

/** A child instance, spoken to over IPC. */
class Instance {
  private seq = 0;
  private readonly pending = new Map<number, (reply: BusInstanceReply) => void>();
  private failure: Error | null = null;
  private readonly exited: Promise<void>;

  private constructor(readonly child: ChildProcess) {
    child.on('message', (reply: BusInstanceReply) => {
      if (reply.type === 'failed') {
        this.failure = new Error(`the child instance failed: ${reply.message}`);
        for (const [, wake] of this.pending) wake(reply);
        return;
      }
      if ('seq' in reply) this.pending.get(reply.seq)?.(reply);
    });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    void this.exited.then(() => {
      for (const [, wake] of this.pending) wake({ type: 'failed', message: 'exited' });
    });
  }

  static async start(config: BusInstanceConfig): Promise<Instance> {
    const child = fork(script, [], {
      env: { ...process.env, KEYGATE_BUS_INSTANCE: JSON.stringify(config) },
      execArgv: [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the child instance did not start in time')), 30_000);
      child.on('message', (reply: BusInstanceReply) => {
        if (reply.type === 'ready') resolve();
        else if (reply.type === 'failed') reject(new Error(reply.message));
        else return;
        clearTimeout(timer);
      });
      child.once('exit', () => reject(new Error('the child instance exited before it was ready')));
    });
    const instance = new Instance(child);
    await ready;
    return instance;
  }

  async ask<T extends BusInstanceReply['type']>(request: Request, type: T): Promise<Reply<T>> {
    if (this.failure) throw this.failure;
    const seq = ++this.seq;
    const reply = await new Promise<BusInstanceReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new Error(`no '${type}' reply from the child instance within ${REPLY_TIMEOUT_MS} ms`));
      }, REPLY_TIMEOUT_MS);
      this.pending.set(seq, (r) => {
        clearTimeout(timer);
        this.pending.delete(seq);
        resolve(r);
      });
      this.child.send({ ...request, seq });
    });
    if (reply.type === 'failed') throw this.failure ?? new Error(reply.message);
    if (reply.type !== type) throw new Error(`expected '${type}' from the child instance, got '${reply.type}'`);
    return reply as Reply<T>;
  }

  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await this.ask({ type: 'close' }, 'closed').catch(() => this.child.kill('SIGKILL'));
    await this.exited;
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** What one bus needs: A's store and bus, the children's config, and cleanup. */
interface BusSetup {
  label: string;
  url: string | undefined;
  open(url: string, name: string, channel: string): Promise<{ keys: KeyManager; cleanup: () => Promise<void> }>;
}

const BUSES: BusSetup[] = [
  {
    label: 'Redis pub/sub',
    url: serviceUrl('redis'),
    async open(url, name, channel) {
      const client = new Redis(url, { maxRetriesPerRequest: 1 });
      const subscriber = client.duplicate();
      const keys = createKeyManager({
        store: redisStore(client, { prefix: name }),
        cache: { ttlMs: TTL_MS },
        invalidation: redisInvalidation({ publisher: client, subscriber, channel }),
        revocation: { heartbeatMs: HEARTBEAT_MS, timeoutMs: ACK_TIMEOUT_MS },
      });
      return {
        keys,
        cleanup: async () => {
          await keys.close();
          let cursor = '0';
          do {
            const [next, found] = await client.scan(cursor, 'MATCH', `${name.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`, 'COUNT', 1000);
            if (found.length > 0) await client.unlink(...found);
            cursor = next;
          } while (cursor !== '0');
          subscriber.disconnect();
          client.disconnect();
        },
      };
    },
  },
  {
    label: 'PostgreSQL LISTEN/NOTIFY',
    url: serviceUrl('postgres'),
    async open(url, name, channel) {
      const pool = new pg.Pool({ connectionString: url, max: 6 });
      const store = postgresStore(pool, { table: name });
      await store.migrate();
      const keys = createKeyManager({
        store,
        cache: { ttlMs: TTL_MS },
        invalidation: postgresInvalidation(pool, { channel }),
        revocation: { heartbeatMs: HEARTBEAT_MS, timeoutMs: ACK_TIMEOUT_MS },
      });
      return {
        keys,
        cleanup: async () => {
          await keys.close();
          await pool.query(`DROP TABLE IF EXISTS "${name}"`);
          await pool.end();
        },
      };
    },
  },
];

beforeAll(async () => {
  if (BUSES.every((b) => !b.url)) return;
  mkdirSync(workDir, { recursive: true });
  await build({
    entryPoints: [fileURLToPath(new URL('./fixtures/bus-instance.ts', import.meta.url))],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile: script,
    logLevel: 'warning',
  });
}, 60_000);

afterAll(() => {
  rmSync(workDir, { recursive: true, force: true });
});

for (const setup of BUSES) {
  describe.skipIf(!setup.url)(`acknowledged revocation across three processes over ${setup.label}`, () => {
    const name = setup.label.startsWith('Redis') ? `{kgt-acked-${suffix}}:` : `kg_acked_${suffix}`;
    const channel = `kg_acked_${suffix}`;
    let a: KeyManager;
    let cleanup: (() => Promise<void>) | null = null;
    let b: Instance;
    let c: Instance;

    beforeAll(async () => {
      const opened = await setup.open(setup.url as string, name, channel);
      a = opened.keys;
      cleanup = opened.cleanup;
      await cacheServing(a);
      const config: BusInstanceConfig = {
        bus: setup.label.startsWith('Redis') ? 'redis' : 'postgres',
        url: setup.url as string,
        name,
        channel,
        ttlMs: TTL_MS,
        heartbeatMs: HEARTBEAT_MS,
      };
      [b, c] = await Promise.all([Instance.start(config), Instance.start(config)]);
      // A counts itself, B and C once it has heard their heartbeats.
      const end = Date.now() + 10_000;
      while (a.busStatus().instances < 3) {
        if (Date.now() > end) throw new Error(`A knows ${a.busStatus().instances} instances, not 3`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }, 60_000);

    afterAll(async () => {
      await Promise.all([b?.close(), c?.close()]);
      await cleanup?.();
    }, 30_000);

    const changes = [
      { change: 'deactivate', code: 'INACTIVE', run: (id: string, wait: boolean) => a.deactivate(id, { wait }) },
      { change: 'delete', code: 'NOT_FOUND', run: (id: string, wait: boolean) => a.delete(id, { wait }) },
      { change: 'rotate', code: 'NOT_FOUND', run: (id: string, wait: boolean) => a.rotate(id, { gracePeriodMs: 0, wait }) },
    ] as const;

    /**
     * One trial: B and C serve the key from their caches and keep verifying it in a loop; A changes
     * it; the moment the call returns, B and C each verify once. Returns how long the call took and
     * which of the two accepted the key.
     */
    const trial = async (t: number, wait: boolean): Promise<{ call: number; accepted: string[]; change: string }> => {
      const { change, code, run } = changes[t % changes.length] as (typeof changes)[number];
      const { key, token } = await a.create({ name: `acked ${t}`, scopes: ['all'] });
      const warmed = await Promise.all([b.ask({ type: 'warm', token }, 'warm'), c.ask({ type: 'warm', token }, 'warm')]);
      expect(warmed.map((w) => w.cached)).toEqual([true, true]);
      await Promise.all([b.ask({ type: 'loop', token }, 'looping'), c.ask({ type: 'loop', token }, 'looping')]);
      const started = performance.now();
      await run(key.id, wait);
      const call = performance.now() - started;
      // Sent after the call returned: each check is a verify that starts after it.
      const checks = await Promise.all([b.ask({ type: 'check', token }, 'checked'), c.ask({ type: 'check', token }, 'checked')]);
      await Promise.all([b.ask({ type: 'stop' }, 'stopped'), c.ask({ type: 'stop' }, 'stopped')]);
      const accepted: string[] = [];
      checks.forEach((check, i) => {
        if (check.valid) accepted.push(`${change} trial ${t} accepted by ${i === 0 ? 'B' : 'C'}`);
        else if (wait) expect(check.code).toBe(code);
      });
      return { call, accepted, change };
    };

    it(`after deactivate, delete or rotate with { wait: true } returns, B and C refuse the key (${TRIALS} trials)`, async () => {
      const calls: number[] = [];
      const accepted: string[] = [];
      for (let t = 0; t < TRIALS; t++) {
        const result = await trial(t, true);
        calls.push(result.call);
        accepted.push(...result.accepted);
      }
      const sorted = [...calls].sort((x, y) => x - y);
      console.log(
        `[keygate e2e] ${setup.label}, acknowledged writes (deactivate/delete/rotate), ${TRIALS} trials, 2 other instances: ` +
          `${accepted.length} acceptances after the call returned; the call took p50 ${percentile(sorted, 50).toFixed(2)} ms, ` +
          `p99 ${percentile(sorted, 99).toFixed(2)} ms, max ${(sorted[sorted.length - 1] as number).toFixed(2)} ms`,
      );
      expect(accepted).toEqual([]);
    }, 90_000);

    it(`baseline: without waiting, how many checks right after the call still accept the key (${BASELINE_TRIALS} trials, printed)`, async () => {
      let accepted = 0;
      const calls: number[] = [];
      for (let t = 0; t < BASELINE_TRIALS; t++) {
        const result = await trial(t, false);
        calls.push(result.call);
        accepted += result.accepted.length;
      }
      const sorted = [...calls].sort((x, y) => x - y);
      console.log(
        `[keygate e2e] ${setup.label}, writes without waiting, ${BASELINE_TRIALS} trials: ${accepted} of ${2 * BASELINE_TRIALS} ` +
          `checks right after the call returned still accepted the key; the call took p50 ${percentile(sorted, 50).toFixed(2)} ms, ` +
          `p99 ${percentile(sorted, 99).toFixed(2)} ms`,
      );
    }, 60_000);

    it('with C killed, an acknowledged deactivate reports one unanswered instance; after four heartbeats C is forgotten and acknowledged writes succeed again', async () => {
      expect(a.busStatus().instances).toBe(3);
      const { key, token } = await a.create({ name: 'acked kill', scopes: ['all'] });
      await Promise.all([b.ask({ type: 'warm', token }, 'warm'), c.ask({ type: 'warm', token }, 'warm')]);
      await c.kill();
      const killed = performance.now();
      const error = await a.deactivate(key.id, { wait: true }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(InvalidationUnconfirmedError);
      const unconfirmed = error as InvalidationUnconfirmedError<{ active: boolean }>;
      expect(unconfirmed.code).toBe('INVALIDATION_UNCONFIRMED');
      expect(unconfirmed.unanswered).toBe(1);
      expect(unconfirmed.instances).toBe(2);
      expect(unconfirmed.result.active).toBe(false);
      // The write is done, and B dropped the key.
      expect(await b.ask({ type: 'check', token }, 'checked')).toMatchObject({ valid: false, code: 'INACTIVE' });

      // Not heard from for four heartbeats: C is no longer counted.
      while (a.busStatus().instances !== 2) {
        expect(performance.now() - killed).toBeLessThan(5 * HEARTBEAT_MS + 1000);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const forgotten = performance.now() - killed;
      const next = await a.create({ name: 'acked after kill', scopes: ['all'] });
      expect((await b.ask({ type: 'warm', token: next.token }, 'warm')).cached).toBe(true);
      const started = performance.now();
      expect((await a.deactivate(next.key.id, { wait: true })).active).toBe(false);
      const call = performance.now() - started;
      expect(await b.ask({ type: 'check', token: next.token }, 'checked')).toMatchObject({ valid: false, code: 'INACTIVE' });
      console.log(
        `[keygate e2e] ${setup.label}: C killed; A stopped counting it ${forgotten.toFixed(0)} ms later ` +
          `(heartbeat ${HEARTBEAT_MS} ms); the next acknowledged deactivate took ${call.toFixed(2)} ms`,
      );
    }, 30_000);
  });
}
