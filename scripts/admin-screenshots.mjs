// Takes the screenshots of the keygate/admin page in docs/: the list at 1280 px (admin-page.png), the
// edit form with every field error shown (admin-form.png) and the list on a 390 px phone screen (admin-mobile.png).
// The page is the built package's, mounted in Express 5 with adminRouter on a memory store of sample keys.
//
// Usage: node scripts/build.mjs --quiet && node scripts/admin-screenshots.mjs [output directory]
// The browser is /usr/bin/chromium unless KEYGATE_CHROMIUM points to another one.

import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { chromium } from 'playwright-core';
import { adminRouter } from '../dist/express.js';
import { createKeyManager } from '../dist/index.js';
import { memoryStore } from '../dist/memory.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const outputDir = resolve(process.argv[2] ?? join(ROOT, 'docs'));
const executablePath = process.env.KEYGATE_CHROMIUM || '/usr/bin/chromium';
const MOUNT = '/admin/api-keys';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
// A fixed clock, for the keys and the browser alike, so dates and times stay the same from run to run.
const NOW = Date.parse('2026-03-02T09:30:00Z');
let clock = NOW - 45 * DAY;

const keys = createKeyManager({ store: memoryStore(), now: () => clock, lastUsedFlushMs: 60_000 });
const owner = 'shop-42';

// Sample keys, as a shop would have them, created over the last weeks.
const erp = await keys.create({
  name: 'ERP sync',
  ownerId: owner,
  scopes: ['orders:edit', 'products:edit'],
  allowedIps: '203.0.113.7,2001:db8::1',
  rateLimit: { limit: 600, windowMs: MINUTE },
});
clock += 9 * DAY;
await keys.create({
  name: 'Warehouse scanners',
  ownerId: owner,
  scopes: ['products:edit'],
  rateLimit: { limit: 10, windowMs: 1000 },
  remaining: 4250,
  refill: { amount: 5000, intervalMs: DAY },
});
clock += 6 * DAY;
await keys.create({
  name: 'Marketplace feed (Müller & Söhne Handelsgesellschaft mbH, nightly catalogue export)',
  ownerId: owner,
  scopes: ['orders:list', 'products:list'],
  allowedIps: '198.51.100.24',
  expiresAt: NOW + 30 * DAY,
});
clock += 11 * DAY;
const old = await keys.create({ name: 'Old shipping app', ownerId: owner, scopes: ['orders:list', 'customers:list'] });
clock += 2 * DAY;
await keys.deactivate(old.key.id);
clock += 12 * DAY;
await keys.create({ name: 'Accounting export', ownerId: owner, scopes: ['customers:list'], remaining: 0 });
// The ERP key was used this morning, from its first address.
clock = NOW - 2 * HOUR - 14 * MINUTE;
await keys.verify(erp.token, { scope: 'orders:list', ip: '203.0.113.7' });
await keys.flush();
clock = NOW;

const app = express();
// The host's sign-in: here everyone is a user of shop 42.
app.use(MOUNT, (req, _res, next) => {
  req.user = { id: 'u_7', shopId: owner };
  next();
});
app.use(MOUNT, adminRouter({ keys, owner: (req) => req.user.shopId, actor: (req) => req.user.id, brand: { name: 'Demo Wholesale' } }));
const server = createServer(app);
await new Promise((done) => server.listen(0, '127.0.0.1', done));
const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
const url = `http://127.0.0.1:${port}${MOUNT}/`;

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
    '--hide-scrollbars',
  ],
});

/** A page at this width, its clock at NOW, with the list loaded. */
async function open(width, height) {
  const context = await browser.newContext({
    viewport: { width, height },
    deviceScaleFactor: 1,
    locale: 'en-US',
    timezoneId: 'UTC',
    reducedMotion: 'reduce',
  });
  const page = await context.newPage();
  await page.clock.setFixedTime(NOW);
  await page.goto(url);
  await page.getByTestId('key-row').first().waitFor();
  return page;
}

try {
  mkdirSync(outputDir, { recursive: true });
  const saved = [];

  const wide = await open(1280, 720);
  await wide.screenshot({ path: join(outputDir, 'admin-page.png'), fullPage: true });
  saved.push('admin-page.png');

  // The edit form of the ERP key with a mistake in every field, saved: every message at once.
  await wide.setViewportSize({ width: 1280, height: 1700 });
  await wide.getByRole('button', { name: 'Edit ERP sync' }).click();
  const dialog = wide.getByTestId('key-dialog');
  await dialog.waitFor();
  await dialog
    .getByTestId('field-name')
    .fill('ERP sync for the central warehouse in Leipzig, the three branch offices and the new online shop, nightly');
  await dialog.getByLabel('Order edit', { exact: true }).uncheck();
  await dialog.getByLabel('Product edit', { exact: true }).uncheck();
  await dialog.getByTestId('field-allowedIps').fill('203.0.113.7,10.0.0.*');
  await dialog.getByTestId('field-expiresAt').fill('2026-01-31T17:00');
  await dialog.getByTestId('field-rateLimit').fill('0');
  await dialog.getByTestId('field-remaining').fill('lots');
  await dialog.getByTestId('field-refill').fill('0');
  await dialog.getByTestId('key-save').click();
  await dialog.getByTestId('error-refill').waitFor();
  await dialog.screenshot({ path: join(outputDir, 'admin-form.png') });
  saved.push('admin-form.png');

  // One phone screen: the cards of the first keys.
  const phone = await open(390, 844);
  await phone.screenshot({ path: join(outputDir, 'admin-mobile.png') });
  saved.push('admin-mobile.png');

  process.stdout.write(`Saved ${saved.map((name) => join(outputDir, name)).join(', ')}\n`);
} finally {
  await browser.close();
  server.closeAllConnections();
  server.close();
  await keys.close();
}
