// Runs keygate's benchmarks: `npm run bench` (full, under 15 min) or `npm run bench -- --quick` (smoke, under 2 min).
// Installs bench/'s own dependencies and builds the library when missing, runs each case in its own process,
// prints a Markdown table and writes bench/results/latest.json (latest-quick.json, latest[-quick]-partial.json for the others).
// Options: --quick, --only=verify-memory,stores,rate-limits,failure-timing,propagation,peer,http,heap. KEYGATE_BENCH_DIST=<dir> measures another build than dist/.

import { execFileSync, fork } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { markdownTable } from './lib/report.mjs';

const BENCH = fileURLToPath(new URL('.', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const only = args
  .find((a) => a.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');

/** The cases, in the order of the table. `execArgv` are Node flags for the case's process. */
const CASES = [
  { name: 'verify-memory', title: 'Verify on MemoryStore against the limit', execArgv: ['--expose-gc'] },
  { name: 'stores', title: 'Verify on SQL and Redis stores, without and with the cache' },
  { name: 'rate-limits', title: 'Rate limits and quotas: what they add to a verify' },
  { name: 'failure-timing', title: 'Refusing unknown, inactive and rotated-out tokens: the time a client could compare' },
  { name: 'propagation', title: 'Revocation across two processes, without and with waiting' },
  { name: 'peer', title: "better-auth's api-key plugin" },
  { name: 'http', title: 'HTTP guards' },
  { name: 'heap', title: 'Heap per key', execArgv: ['--expose-gc', '--max-old-space-size=4096'] },
];

function ensureSetup() {
  if (!existsSync(new URL('node_modules/', import.meta.url))) {
    console.log('Installing bench dependencies (npm ci in bench/)…');
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: BENCH, stdio: 'inherit' });
  }
  if (!process.env.KEYGATE_BENCH_DIST && !existsSync(new URL('../dist/index.js', import.meta.url))) {
    console.log('Building the library (npx tsup)…');
    execFileSync('npx', ['tsup'], { cwd: ROOT, stdio: 'inherit' });
  }
}

function runCase(c) {
  return new Promise((resolve) => {
    const child = fork(fileURLToPath(new URL('lib/child.mjs', import.meta.url)), [c.name, ...(quick ? ['--quick'] : [])], {
      execArgv: c.execArgv ?? [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let rows = null;
    let failure = null;
    child.on('message', (m) => {
      if (m.type === 'log') console.log(`  ${m.message}`);
      else if (m.type === 'rows') rows = m.rows;
      else if (m.type === 'error') failure = m.message;
    });
    child.on('exit', (code, signal) => {
      if (rows) resolve(rows);
      else {
        const reason = failure ?? `process ended with ${signal ?? `code ${code}`}`;
        console.error(`  ${c.name} failed: ${reason}`);
        resolve([{ id: `${c.name}-failed`, label: c.title, skipped: `failed: ${reason.split('\n')[0]}` }]);
      }
    });
  });
}

ensureSetup();
const started = Date.now();
const rows = [];
for (const c of CASES) {
  if (only && !only.includes(c.name)) continue;
  console.log(`\n${c.title}…`);
  const caseStarted = Date.now();
  const caseRows = await runCase(c);
  console.log(`  (${Math.round((Date.now() - caseStarted) / 1000)} s)`);
  for (const row of caseRows) if (row.skipped) console.log(`  ${row.label}: skipped: ${row.skipped}`);
  rows.push(...caseRows);
}

const cpus = os.cpus();
const meta = {
  date: new Date().toISOString(),
  mode: quick ? 'quick' : 'full',
  node: process.version,
  platform: `${os.platform()} ${os.arch()}`,
  cpus: `${cpus.length} × ${cpus[0]?.model ?? 'unknown'}`,
  durationSeconds: Math.round((Date.now() - started) / 1000),
};
const table = markdownTable(rows);
console.log(`\n${meta.mode} run, ${meta.date}, Node ${meta.node}, ${meta.cpus}, ${meta.durationSeconds} s\n`);
console.log(table);
// Only a full run of every case replaces latest.json; quick and partial runs write beside it.
const file = `latest${quick ? '-quick' : ''}${only ? '-partial' : ''}.json`;
mkdirSync(new URL('results/', import.meta.url), { recursive: true });
writeFileSync(
  new URL(`results/${file}`, import.meta.url),
  `${JSON.stringify({ meta: { ...meta, only: only ?? null }, rows, markdown: table }, null, 2)}\n`,
);
console.log(`\nWritten to bench/results/${file}`);
// A case that crashed (not one skipped for a missing server) fails the run.
if (rows.some((row) => row.id.endsWith('-failed'))) process.exitCode = 1;
