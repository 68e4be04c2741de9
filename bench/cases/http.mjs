// Case: Fastify, Express and Koa, bare against guarded by keygate; autocannon here, each server in its own process.

import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { pairedRatio, summarize } from '../lib/harness.mjs';
import { skippedRow } from '../lib/report.mjs';
import { hasDist } from '../lib/keygate.mjs';

const FRAMEWORKS = [
  { id: 'fastify', label: 'Fastify 5', target: 0.85 },
  { id: 'express', label: 'Express 5', target: 0.9 },
  { id: 'koa', label: 'Koa 3', target: 0.9 },
];

function startServer(framework, mode) {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('http-server.mjs', import.meta.url)), [framework, mode], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: process.env,
    });
    child.once('message', ({ port, token }) => resolve({ child, port, token }));
    child.once('exit', (code) => reject(new Error(`${framework} ${mode} server ended with code ${code}`)));
  });
}

/** The server process's CPU time and requests served so far. */
function usage(server) {
  return new Promise((resolve) => {
    const onMessage = (message) => {
      if (!message?.usage) return;
      server.child.off('message', onMessage);
      resolve(message.usage);
    };
    server.child.on('message', onMessage);
    server.child.send('usage');
  });
}

/**
 * One autocannon run: requests/s, and the server's CPU µs per request over the run. Throws if any
 * request failed or was not a 200.
 */
async function load(server, duration) {
  const before = await usage(server);
  const result = await autocannon({
    url: `http://127.0.0.1:${server.port}/orders`,
    connections: 10,
    duration,
    headers: { authorization: `Bearer ${server.token}` },
  });
  if (result.errors > 0 || result.timeouts > 0 || result.non2xx > 0) {
    throw new Error(`load run had ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx answers`);
  }
  const after = await usage(server);
  const cpuPerRequest = (after.cpuMicros - before.cpuMicros) / Math.max(1, after.served - before.served);
  return { rps: result.requests.average, cpuPerRequest };
}

export async function run({ quick, log }) {
  const pairs = quick ? 2 : 5;
  const duration = quick ? 2 : 5;
  const rows = [];
  for (const fw of FRAMEWORKS) {
    const label = `${fw.label}, guarded ÷ bare`;
    if (!hasDist(fw.id)) {
      rows.push(skippedRow(`http-${fw.id}`, label, `dist/${fw.id}.js is not built (adapters/${fw.id} missing when the library was built)`));
      continue;
    }
    const bare = await startServer(fw.id, 'bare');
    const guarded = await startServer(fw.id, 'guarded');
    try {
      await load(bare, 1);
      await load(guarded, 1);
      const bareRuns = [];
      const guardedRuns = [];
      for (let p = 0; p < pairs; p++) {
        // Alternate which one goes first, so neither always gets the warmer (or quieter) slot.
        if (p % 2 === 0) {
          bareRuns.push(await load(bare, duration));
          guardedRuns.push(await load(guarded, duration));
        } else {
          guardedRuns.push(await load(guarded, duration));
          bareRuns.push(await load(bare, duration));
        }
      }
      const bareRps = bareRuns.map((r) => r.rps);
      const guardedRps = guardedRuns.map((r) => r.rps);
      const bareCpu = bareRuns.map((r) => r.cpuPerRequest);
      const guardedCpu = guardedRuns.map((r) => r.cpuPerRequest);
      log(`${fw.id}: bare ${bareRps.map(Math.round).join(', ')} req/s; guarded ${guardedRps.map(Math.round).join(', ')} req/s`);
      log(
        `${fw.id}: server CPU per request, bare ${bareCpu.map((c) => c.toFixed(1)).join(', ')} µs; guarded ${guardedCpu.map((c) => c.toFixed(1)).join(', ')} µs`,
      );
      const ratio = pairedRatio(guardedRps, bareRps);
      // The same comparison as capacity: how many requests one core serves, guarded ÷ bare.
      const capacity = pairedRatio(bareCpu, guardedCpu);
      rows.push(
        { id: `http-${fw.id}-bare`, label: `${fw.label}, bare, GET /orders`, unit: 'req/s', value: summarize(bareRps) },
        {
          id: `http-${fw.id}-guarded`,
          label: `${fw.label}, guarded (scope orders:list), GET /orders`,
          unit: 'req/s',
          value: summarize(guardedRps),
          ratio: { label: 'of bare', ...ratio },
          target: { text: `≥ ${fw.target} of bare`, met: ratio.median >= fw.target },
        },
        {
          id: `http-${fw.id}-cpu`,
          label: `${fw.label}, server CPU per request, guarded (bare: ${summarize(bareCpu).median.toFixed(1)} µs)`,
          unit: 'µs/request',
          value: summarize(guardedCpu),
          ratio: { label: 'requests per core, of bare', ...capacity },
        },
      );
    } finally {
      bare.child.disconnect();
      guarded.child.disconnect();
    }
  }
  return rows;
}
