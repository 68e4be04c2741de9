// The B2B store example end to end in a real browser: a key made on its API Keys page (keygate's admin mount) opens the
// shop API to what its scopes allow, and the list's Active switch shuts it. (The page's own UI is tested with the package.)

import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PATH, type AdminError, adminFetch, ROOT, type RunningApp, startB2bStore } from './b2b-store-support.js';

const CHROMIUM = process.env.KEYGATE_CHROMIUM || '/usr/bin/chromium';
const HAS_CHROMIUM = existsSync(CHROMIUM);
const IN_CI = process.env.CI === 'true';
const LAUNCH_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

if (!HAS_CHROMIUM && !IN_CI) {
  process.stdout.write(
    `\nB2B store browser test SKIPPED: no Chromium at ${CHROMIUM}. ` +
      'Install it with `apt-get install chromium` (Debian/Ubuntu), or set KEYGATE_CHROMIUM=/path/to/chrome.\n\n',
  );
}

interface StoredKey {
  id: string;
  name: string;
  active: boolean;
  scopes: string[];
}

describe.skipIf(!HAS_CHROMIUM && !IN_CI)('B2B store example: a key made on the API Keys page in Chromium', () => {
  let running: RunningApp;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let token = '';
  /** What went wrong in the page: script errors, failed loads, content security policy reports. */
  const pageProblems: string[] = [];

  const shop = (method: 'GET' | 'POST', path: string) =>
    fetch(`${running.baseUrl}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: method === 'POST' ? JSON.stringify({ customerId: 'cus_1001' }) : undefined,
    });
  const errorCode = async (response: Response) => ((await response.json()) as { error?: { code?: string } }).error?.code;

  /** The keys as the admin API has them, read past the page. */
  const storedKeys = async (): Promise<StoredKey[]> => {
    const answer = await adminFetch(running, 'GET', '/keys?limit=100');
    if (answer.status !== 200) throw new Error(`GET /keys answered ${answer.status}: ${(answer.body as AdminError).error.message}`);
    return (answer.body as { keys: StoredKey[] }).keys;
  };
  const stored = async (name: string) => (await storedKeys()).find((k) => k.name === name);

  const row = (name: string) => page.getByTestId('key-row').filter({ has: page.getByTestId('key-name').getByText(name, { exact: true }) });

  beforeAll(async () => {
    if (!HAS_CHROMIUM) {
      throw new Error(`CI=true but there is no Chromium at ${CHROMIUM}: run apt-get install chromium, or set KEYGATE_CHROMIUM.`);
    }
    running = await startB2bStore();
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS });
    context = await browser.newContext({
      baseURL: running.baseUrl,
      httpCredentials: { username: 'admin', password: running.adminPassword },
      viewport: { width: 1280, height: 800 },
    });
    // Copy writes the token to the clipboard, as for a user.
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: running.baseUrl });
    page = await context.newPage();
    page.setDefaultTimeout(10_000);
    page.on('pageerror', (error) => pageProblems.push(`script error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') pageProblems.push(`console: ${message.text()}`);
    });
    page.on('requestfailed', (request) => pageProblems.push(`failed: ${request.url()} ${request.failure()?.errorText ?? ''}`));
  });

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await running?.close();
  });

  it('the shop sends / to the API Keys page, which the admin sees after signing in, with no key yet', async () => {
    await page.goto('/');
    expect(new URL(page.url()).pathname).toBe(`${ADMIN_PATH}/`);
    expect(await page.title()).toBe('B2B Store API Keys');
    await expect.poll(() => page.getByTestId('create-key').isEnabled()).toBe(true);
    expect(await page.getByTestId('keys-empty').isVisible()).toBe(true);
    expect(pageProblems).toEqual([]);
  });

  it('creates a key with Order list and shows its token once, in the token dialog', async () => {
    await page.getByTestId('create-key').click();
    const form = page.getByTestId('key-dialog');
    await form.waitFor();
    await page.getByTestId('field-name').fill('ERP sync');
    await form.getByLabel('Order list', { exact: true }).check();
    expect(await form.getByLabel('Allowed IP addresses').inputValue()).toBe('');
    await page.getByTestId('key-save').click();

    const tokenDialog = page.getByTestId('token-dialog');
    // Either the token, or what the page says is wrong.
    const refused = page.locator('[data-testid="key-dialog"] .field-error:not([hidden]), [data-testid="form-error"]:not([hidden])').first();
    await Promise.race([tokenDialog.waitFor(), refused.waitFor()]);
    if (await refused.isVisible()) throw new Error(`The page refused the key: ${await refused.textContent()}`);

    token = await page.getByTestId('token-value').inputValue();
    expect(token).toMatch(/^kg_[0-9A-Za-z]{38}$/);
    await page.getByTestId('copy-token').click();
    await page.getByTestId('token-done').click();
    await tokenDialog.waitFor({ state: 'hidden' });

    await row('ERP sync').waitFor();
    expect(await row('ERP sync').locator('.label').allTextContents()).toEqual(['Order list']);
    expect(await row('ERP sync').getByTestId('active-toggle').isChecked()).toBe(true);
    // The list shows a hint of the token, never the token.
    expect(await page.content()).not.toContain(token);
    expect(await stored('ERP sync')).toMatchObject({ active: true, scopes: ['orders:list'] });

    const dir = join(ROOT, 'test-results');
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: join(dir, 'b2b-store-api-keys.png'), fullPage: true });
  });

  it('the token lists orders (200) but may not create one (403)', async () => {
    const list = await shop('GET', '/api/orders');
    expect(list.status).toBe(200);
    expect(((await list.json()) as { key: { name: string } }).key.name).toBe('ERP sync');
    const create = await shop('POST', '/api/orders');
    expect(create.status).toBe(403);
    expect(await errorCode(create)).toBe('insufficient_scope');
  });

  it("switching the key's Active off in the list refuses the token (401), also after a reload; on again lets it in (200)", async () => {
    const toggle = row('ERP sync').getByTestId('active-toggle');
    await toggle.uncheck();
    await expect.poll(async () => (await stored('ERP sync'))?.active).toBe(false);
    const off = await shop('GET', '/api/orders');
    expect(off.status).toBe(401);
    expect(await errorCode(off)).toBe('invalid_api_key');

    await page.reload();
    await row('ERP sync').waitFor();
    expect(await row('ERP sync').getByTestId('active-toggle').isChecked()).toBe(false);

    await row('ERP sync').getByTestId('active-toggle').check();
    await expect.poll(async () => (await stored('ERP sync'))?.active).toBe(true);
    expect((await shop('GET', '/api/orders')).status).toBe(200);
    expect(pageProblems).toEqual([]);
  });
});
