// A Redis Cluster primary fails over under verify load and a stream of creates: no deactivated or unknown token is ever valid, no acknowledged create is lost, and 503s stop within a bound. A killed primary is measured too.
//
// The test runs a 6-node cluster of its own (ports 7311..7316, files in a temporary directory) through
// .ci/redis-cluster.sh, so that it never fails over the cluster other test files share.

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisStore } from '../../adapters/redis/index.js';
import { createKeyManager, type KeyManager, StoreUnavailableError } from '../../src/index.js';
import { randomPrefix } from '../support/redis.js';
import { serviceUrl } from '../support/services.js';

const run = promisify(execFile);
const enabled = serviceUrl('redisCluster') !== undefined;
const root = fileURLToPath(new URL('../..', import.meta.url));
const script = join(root, '.ci/redis-cluster.sh');
const FIRST_PORT = 7311;
const HOST = '127.0.0.1';
/** How long 503s may last after a manual failover before the test fails (measured: see docs/scale-out.md). */
const MANUAL_503_BOUND_MS = 10_000;

/**
 * The ioredis Cluster options that make failover recovery work: reads and scripts go to
 * primaries only; MOVED refreshes the slots; while the cluster says CLUSTERDOWN or a node is gone,
 * commands are retried every 100 ms, up to maxRedirections times.
 */
const CLUSTER_OPTIONS = {
  scaleReads: 'master' as const,
  maxRedirections: 16,
  retryDelayOnFailover: 100,
  retryDelayOnClusterDown: 100,
  retryDelayOnTryAgain: 100,
  slotsRefreshTimeout: 1000,
  enableOfflineQueue: true,
  redisOptions: { maxRetriesPerRequest: 1, connectTimeout: 1000 },
};

interface NodeInfo {
  id: string;
  port: number;
  role: 'master' | 'slave';
  primaryId: string | null;
  slots: Array<[number, number]>;
}

async function nodeCall(port: number, args: string[]): Promise<unknown> {
  const client = new Redis({
    host: HOST,
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    connectTimeout: 500,
    retryStrategy: () => null,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return await client.call(args[0] as string, args.slice(1));
  } finally {
    client.disconnect();
  }
}

async function clusterNodes(port: number): Promise<NodeInfo[]> {
  const text = String(await nodeCall(port, ['CLUSTER', 'NODES']));
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const parts = line.split(' ');
      const flags = parts[2] as string;
      const slots: Array<[number, number]> = [];
      for (const range of parts.slice(8)) {
        if (range.startsWith('[')) continue;
        const [from, to = from] = range.split('-');
        slots.push([Number(from), Number(to)]);
      }
      return {
        id: parts[0] as string,
        port: Number(((parts[1] as string).split('@')[0] as string).split(':')[1]),
        role: flags.includes('master') ? ('master' as const) : ('slave' as const),
        primaryId: parts[3] === '-' ? null : (parts[3] as string),
        slots,
      };
    });
}

/** The primary serving `slot` and its replica, as a live node (`via`) sees them. */
async function ownerAndReplica(via: number, slot: number): Promise<{ primary: NodeInfo; replica: NodeInfo }> {
  const nodes = await clusterNodes(via);
  const primary = nodes.find((n) => n.role === 'master' && n.slots.some(([a, b]) => slot >= a && slot <= b));
  const replica = primary && nodes.find((n) => n.primaryId === primary.id);
  if (!primary || !replica) throw new Error(`no primary with a replica for slot ${slot}`);
  return { primary, replica };
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Verify load on three tokens and a stream of creates, until stopped; what each saw, with times. */
function load(keys: KeyManager, tokens: { active: string; inactive: string; unknown: string }) {
  let stopped = false;
  const errors503: number[] = [];
  const otherErrors: unknown[] = [];
  const wronglyValid: string[] = [];
  let verifies = 0;
  let activeValid = 0;
  const acked: Array<{ id: string; at: number }> = [];
  let writeFailures = 0;
  const verifier = async (): Promise<void> => {
    while (!stopped) {
      for (const [name, token] of Object.entries(tokens)) {
        try {
          const result = await keys.verify(token);
          verifies++;
          if (result.valid && name !== 'active') wronglyValid.push(name);
          if (result.valid && name === 'active') activeValid++;
        } catch (error) {
          if (error instanceof StoreUnavailableError) errors503.push(Date.now());
          else otherErrors.push(error);
          // A refusal without I/O (the breaker open, the client not ready) must not starve the timers.
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      }
    }
  };
  const writer = async (): Promise<void> => {
    let n = 0;
    while (!stopped) {
      try {
        const { key } = await keys.create({ name: `w${n++}`, scopes: ['all'] });
        acked.push({ id: key.id, at: Date.now() });
      } catch (error) {
        if (error instanceof StoreUnavailableError) writeFailures++;
        else otherErrors.push(error);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
  };
  const running = Promise.all([verifier(), verifier(), verifier(), verifier(), writer(), writer()]);
  return {
    errors503,
    otherErrors,
    wronglyValid,
    acked,
    stats: () => ({ verifies, activeValid, writeFailures }),
    stop: async () => {
      stopped = true;
      await running;
    },
  };
}

function window503(times: number[]): string {
  if (times.length === 0) return 'no 503';
  return `${times.length} x 503 over ${(times[times.length - 1] as number) - (times[0] as number)} ms (first 503 -> last 503)`;
}

describe.skipIf(!enabled)('Redis Cluster failover under load (a cluster of its own on 7311..7316)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keygate-cluster-failover-'));
  const env = { ...process.env, REDIS_CLUSTER_DIR: dir };
  let cluster: Cluster;
  let keys: KeyManager;
  const prefix = randomPrefix('failover');
  let slot: number;

  beforeAll(async () => {
    await run('bash', [script, 'start', String(FIRST_PORT)], { env, timeout: 90_000 });
    cluster = new Cluster(
      [0, 1, 2].map((i) => ({ host: HOST, port: FIRST_PORT + i })),
      { ...CLUSTER_OPTIONS, lazyConnect: true },
    );
    cluster.on('error', () => {});
    await cluster.connect();
    keys = createKeyManager({ store: redisStore(cluster, { prefix }), storeTimeoutMs: 2000, lastUsedFlushMs: 60_000 });
    slot = Number(await cluster.call('CLUSTER', ['KEYSLOT', prefix]));
  }, 120_000);

  afterAll(async () => {
    await keys?.close().catch(() => {});
    cluster?.disconnect();
    await run('bash', [script, 'stop', String(FIRST_PORT)], { env, timeout: 60_000 }).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }, 90_000);

  const setUp = async (): Promise<{ active: string; inactive: string; unknown: string }> => {
    const active = await keys.create({ name: 'active', scopes: ['all'] });
    const inactive = await keys.create({ name: 'inactive', scopes: ['all'] });
    await keys.deactivate(inactive.key.id);
    const gone = await keys.create({ name: 'gone', scopes: ['all'] });
    await keys.delete(gone.key.id);
    expect((await keys.verify(active.token)).valid).toBe(true);
    expect((await keys.verify(inactive.token)).valid).toBe(false);
    expect((await keys.verify(gone.token)).valid).toBe(false);
    return { active: active.token, inactive: inactive.token, unknown: gone.token };
  };

  it('CLUSTER FAILOVER on the replica of the store primary: nothing wrongly valid, nothing acknowledged lost, 503s end', async () => {
    const tokens = await setUp();
    const { primary, replica } = await ownerAndReplica(FIRST_PORT, slot);
    const running = load(keys, tokens);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const startedAt = Date.now();
    await nodeCall(replica.port, ['CLUSTER', 'FAILOVER']);
    await waitFor('the replica to become primary', async () => {
      const nodes = await clusterNodes(replica.port);
      return nodes.find((n) => n.id === replica.id)?.role === 'master';
    });
    const promotedAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await running.stop();
    const { verifies, activeValid, writeFailures } = running.stats();
    console.log(
      `[keygate cluster failover] manual: ${primary.port} -> ${replica.port}, promoted after ${promotedAt - startedAt} ms; ` +
        `${verifies} verifies (${activeValid} valid on the active key), ${running.acked.length} creates acknowledged, ${writeFailures} failed with 503; ` +
        `${window503(running.errors503)}`,
    );
    expect(running.otherErrors).toEqual([]);
    expect(running.wronglyValid).toEqual([]);
    expect(running.acked.length).toBeGreaterThan(0);
    for (const { id } of running.acked) expect(await keys.get(id), `acknowledged create ${id}`).not.toBeNull();
    if (running.errors503.length > 0) {
      const span = (running.errors503[running.errors503.length - 1] as number) - (running.errors503[0] as number);
      expect(span).toBeLessThan(MANUAL_503_BOUND_MS);
    }
    // Serving again on the new primary.
    expect((await keys.verify(tokens.active)).valid).toBe(true);
  }, 90_000);

  it('SIGKILL of the store primary (measured and printed, not asserted)', async () => {
    const tokens = await setUp();
    const { primary, replica } = await ownerAndReplica(FIRST_PORT + 2, slot);
    const info = String(await nodeCall(primary.port, ['INFO', 'server']));
    const pid = Number(/process_id:(\d+)/.exec(info)?.[1]);
    const running = load(keys, tokens);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const killedAt = Date.now();
    const lastAckBeforeKill = running.acked.length;
    process.kill(pid, 'SIGKILL');
    await waitFor(
      'the replica to take over',
      async () => (await clusterNodes(replica.port)).find((n) => n.id === replica.id)?.role === 'master',
      30_000,
    );
    const promotedAt = Date.now();
    await waitFor('verify to succeed again', async () => (await keys.verify(tokens.active)).valid, 30_000);
    const servingAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await running.stop();
    const missing: string[] = [];
    for (const { id } of running.acked) if ((await keys.get(id)) === null) missing.push(id);
    const { verifies, activeValid, writeFailures } = running.stats();
    console.log(
      `[keygate cluster failover] SIGKILL of primary ${primary.port}: replica ${replica.port} promoted after ${promotedAt - killedAt} ms, ` +
        `verify served again after ${servingAt - killedAt} ms; ${verifies} verifies (${activeValid} valid on the active key), ` +
        `${running.acked.length} creates acknowledged (${lastAckBeforeKill} before the kill), ${writeFailures} failed with 503, ` +
        `${missing.length} acknowledged creates missing afterwards; wrongly valid: ${running.wronglyValid.length}; ` +
        `other errors: ${running.otherErrors.length}; ${window503(running.errors503)}`,
    );
  }, 120_000);
});
