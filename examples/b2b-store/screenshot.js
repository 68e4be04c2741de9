// Takes a screenshot (default: examples/b2b-store/screenshot.png) of the example's API Keys page (keygate's admin mount) with a few sample keys, in headless
// Chromium (playwright-core).
//
// Usage: npm run build && node examples/b2b-store/screenshot.js [output.png]
// The browser is /usr/bin/chromium unless KEYGATE_CHROMIUM points to another one.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { sqliteStore } from 'keygate/sqlite';
import { chromium } from 'playwright-core';
import { ADMIN_PATH, createApp } from './app.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const output = resolve(process.argv[2] ?? join(ROOT, 'examples/b2b-store/screenshot.png'));
const executablePath = process.env.KEYGATE_CHROMIUM || '/usr/bin/chromium';
const adminPassword = 'screenshot-password';

const dir = mkdtempSync(join(tmpdir(), 'keygate-shot-'));
const db = new Database(join(dir, 'keygate.db'));
const store = sqliteStore(db);
await store.migrate();
const { app, keys, close } = createApp({ store, adminPassword });

// Sample keys, as a shop would have them.
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const erp = await keys.create({
  name: 'ERP sync',
  scopes: ['orders:edit', 'products:edit'],
  allowedIps: '203.0.113.7,2001:db8::1',
  rateLimit: { limit: 100, windowMs: 60_000 },
});
await keys.create({
  name: 'Accounting export',
  scopes: ['orders:list', 'customers:list'],
  remaining: 1000,
  refill: { amount: 1000, intervalMs: DAY },
});
await keys.create({
  name: 'Shipping labels',
  scopes: ['orders:list'],
  allowedIps: '198.51.100.24',
  rateLimit: { limit: 5000, windowMs: DAY },
});
await keys.create({
  name: 'Marketplace feed',
  scopes: ['all'],
  rateLimit: { limit: 600, windowMs: HOUR },
  remaining: 250_000,
  refill: { amount: 250_000, intervalMs: 30 * DAY },
});
const old = await keys.create({ name: 'Old warehouse app', scopes: ['products:list'] });
await keys.deactivate(old.key.id);
// A few uses, so "Last used" shows a time.
await keys.verify(erp.token, { scope: 'orders:list', ip: '203.0.113.7' });
await keys.flush();

const server = app.listen(0, '127.0.0.1');
await new Promise((done) => server.once('listening', done));
const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
});
try {
  const context = await browser.newContext({
    httpCredentials: { username: 'admin', password: adminPassword },
    viewport: { width: 1280, height: 860 },
    deviceScaleFactor: 1,
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${port}${ADMIN_PATH}/`);
  await page.getByTestId('key-row').first().waitFor();
  mkdirSync(dirname(output), { recursive: true });
  await page.screenshot({ path: output, fullPage: true });
  process.stdout.write(`Saved ${output}\n`);
} finally {
  await browser.close();
  server.close();
  await close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
}
