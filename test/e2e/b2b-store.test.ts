// The B2B store's "Settings > API Keys" page in a real browser: every step done through the form, checked on the API.

import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ROOT, startB2bStore, type RunningApp } from './b2b-store-support.js';

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

describe.skipIf(!HAS_CHROMIUM && !IN_CI)('B2B store example: the API Keys page in Chromium', () => {
  let running: RunningApp;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let token = '';

  const call = (method: 'GET' | 'POST', path: string) =>
    fetch(`${running.baseUrl}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: method === 'POST' ? JSON.stringify({ customerId: 'cus_1001' }) : undefined,
    });
  const errorCode = async (response: Response) => ((await response.json()) as { error?: { code?: string } }).error?.code;

  /** The admin page's own list, through its JSON API. */
  const storedKeys = async () => {
    const auth = Buffer.from(`admin:${running.adminPassword}`).toString('base64');
    const res = await fetch(`${running.baseUrl}/admin/api/keys`, { headers: { Authorization: `Basic ${auth}` } });
    return ((await res.json()) as { keys: Array<{ name: string; active: boolean; allowedIps: string[] }> }).keys;
  };

  const dialog = () => page.locator('#key-dialog');
  const row = (name: string) => page.locator('#keys-body tr', { has: page.locator('td.name', { hasText: name }) });

  /** Opens the edit form of a key, applies `change`, saves, and waits for the form to close. */
  const editKey = async (name: string, change: () => Promise<void>) => {
    await page.getByRole('button', { name: `Edit ${name}` }).click();
    await expect.poll(() => dialog().isVisible()).toBe(true);
    expect(await page.locator('#form-title').textContent()).toBe('Edit API key');
    expect(await page.locator('#token-field').isVisible()).toBe(false);
    await change();
    await page.getByRole('button', { name: 'Save' }).click();
    await dialog().waitFor({ state: 'hidden' });
  };

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
    page = await context.newPage();
    page.setDefaultTimeout(10_000);
    await page.goto('/admin/api-keys');
    await page.locator('#scope-boxes input').first().waitFor({ state: 'attached' });
  });

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await running?.close();
  });

  it('shows the Settings > API Keys page with an empty list', async () => {
    expect(await page.locator('h1').textContent()).toBe('API Keys');
    expect(await page.locator('.breadcrumb').textContent()).toMatch(/Settings\s*›\s*API Keys/);
    expect(await page.locator('#keys-empty').isVisible()).toBe(true);
    expect(await page.locator('#curl-lines').textContent()).toContain(`${running.baseUrl}/api/orders`);
  });

  it('the Scope checkboxes: All checks and disables the rest; an edit scope checks its list scope', async () => {
    await page.getByRole('button', { name: '+ Create API key' }).click();
    expect(await page.getByLabel('Active').isChecked()).toBe(true);
    const labels = await page.locator('#scope-boxes label').allTextContents();
    expect(labels.map((l) => l.trim())).toEqual([
      'All',
      'Order list',
      'Order edit',
      'Product list',
      'Product edit',
      'Customer list',
      'Customer edit',
    ]);

    await page.getByLabel('Product edit').check();
    expect(await page.getByLabel('Product list').isChecked()).toBe(true);

    await page.getByLabel('All', { exact: true }).check();
    for (const label of labels.slice(1)) {
      const box = page.getByLabel(label.trim(), { exact: true });
      expect(await box.isChecked()).toBe(true);
      expect(await box.isDisabled()).toBe(true);
    }
    await page.getByLabel('All', { exact: true }).uncheck();
    expect(await page.getByLabel('Order list', { exact: true }).isDisabled()).toBe(false);
    await page.getByRole('button', { name: 'Cancel' }).click();
    await dialog().waitFor({ state: 'hidden' });
  });

  it('a wildcard IP shows the library error next to the field and creates nothing', async () => {
    await page.getByRole('button', { name: '+ Create API key' }).click();
    await page.getByLabel('Name').fill('Office');
    await page.getByLabel('Order list', { exact: true }).check();
    await page.getByLabel('Allow IP Addresses').fill('203.0.113.7,10.0.0.*');
    await page.getByRole('button', { name: 'Save' }).click();

    const error = page.locator('[data-field="allowedIps"] .field-error');
    await error.waitFor();
    expect(await error.textContent()).toBe("entry 2 '10.0.0.*': wildcard masks are not allowed; list each exact address");
    expect(await page.locator('#token-field').isVisible()).toBe(false);
    expect(await storedKeys()).toEqual([]);
    await page.getByRole('button', { name: 'Cancel' }).click();
    expect(await page.locator('#keys-body tr').count()).toBe(0);
  });

  it('creates a key with Order list only and shows its token once', async () => {
    await page.getByRole('button', { name: '+ Create API key' }).click();
    // The form starts clean after the earlier error.
    expect(await page.locator('[data-field="allowedIps"] .field-error').isVisible()).toBe(false);
    expect(await page.getByLabel('Allow IP Addresses').inputValue()).toBe('');
    await page.getByLabel('Name').fill('ERP sync');
    await page.getByLabel('Order list', { exact: true }).check();
    await page.getByRole('button', { name: 'Save' }).click();

    const tokenField = page.locator('#key-token');
    await tokenField.waitFor();
    token = await tokenField.inputValue();
    expect(token).toMatch(/^kg_[0-9A-Za-z]{38}$/);
    expect(await page.getByRole('button', { name: 'Copy' }).isVisible()).toBe(true);
    await page.getByRole('button', { name: 'Done' }).click();
    await dialog().waitFor({ state: 'hidden' });

    await row('ERP sync').waitFor();
    expect(await row('ERP sync').locator('.label').allTextContents()).toEqual(['Order list']);
    expect(await row('ERP sync').locator('.badge').textContent()).toBe('Active');
    // The list shows the hint, never the token.
    expect(await page.content()).not.toContain(token);
  });

  it('the token lists orders (200) but may not create one (403)', async () => {
    expect((await call('GET', '/api/orders')).status).toBe(200);
    const create = await call('POST', '/api/orders');
    expect(create.status).toBe(403);
    expect(await errorCode(create)).toBe('insufficient_scope');
  });

  it('unchecking Active in the edit form refuses the token (401); re-checking restores it (200)', async () => {
    await editKey('ERP sync', () => page.getByLabel('Active').uncheck());
    await expect.poll(() => row('ERP sync').locator('.badge').textContent()).toBe('Inactive');
    const off = await call('GET', '/api/orders');
    expect(off.status).toBe(401);
    expect(await errorCode(off)).toBe('invalid_api_key');

    await editKey('ERP sync', () => page.getByLabel('Active').check());
    await expect.poll(() => row('ERP sync').locator('.badge').textContent()).toBe('Active');
    expect((await call('GET', '/api/orders')).status).toBe(200);
  });

  it('restricting the key to another address refuses this client (403 ip_not_allowed)', async () => {
    await editKey('ERP sync', () => page.getByLabel('Allow IP Addresses').fill('203.0.113.9'));
    await expect.poll(() => row('ERP sync').locator('.ip').allTextContents()).toEqual(['203.0.113.9']);
    const blocked = await call('GET', '/api/orders');
    expect(blocked.status).toBe(403);
    expect(await errorCode(blocked)).toBe('ip_not_allowed');
  });

  it('saves a screenshot of the list', async () => {
    await page.getByRole('button', { name: '+ Create API key' }).click();
    await page.getByLabel('Name').fill('Accounting export');
    await page.getByLabel('All', { exact: true }).check();
    await page.getByRole('button', { name: 'Save' }).click();
    await page.locator('#key-token').waitFor();
    await page.getByRole('button', { name: 'Done' }).click();
    await row('Accounting export').waitFor();

    const dir = join(ROOT, 'test-results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'b2b-store-api-keys.png');
    await page.screenshot({ path: file, fullPage: true });
    expect(existsSync(file)).toBe(true);
  });

  it('deleting asks for confirmation; dismissing keeps the key, accepting refuses the token (401)', async () => {
    const dismissed = new Promise<string>((resolve) =>
      page.once('dialog', (d) => {
        resolve(d.type());
        void d.dismiss();
      }),
    );
    await page.getByRole('button', { name: 'Delete ERP sync' }).click();
    expect(await dismissed).toBe('confirm');
    expect((await storedKeys()).map((k) => k.name)).toContain('ERP sync');

    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Delete ERP sync' }).click();
    await row('ERP sync').waitFor({ state: 'detached' });
    expect((await storedKeys()).map((k) => k.name)).toEqual(['Accounting export']);
    const gone = await call('GET', '/api/orders');
    expect(gone.status).toBe(401);
    expect(await errorCode(gone)).toBe('invalid_api_key');
  });
});

describe.skipIf(!HAS_CHROMIUM && !IN_CI)('B2B store example: rate limits and usage quotas on the API Keys page', () => {
  let running: RunningApp;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let token = '';

  interface StoredKey {
    name: string;
    rateLimit: { limit: number; windowMs: number } | null;
    remaining: number | null;
    refill: { amount: number; intervalMs: number } | null;
  }

  const storedKeys = async () => {
    const auth = Buffer.from(`admin:${running.adminPassword}`).toString('base64');
    const res = await fetch(`${running.baseUrl}/admin/api/keys`, { headers: { Authorization: `Basic ${auth}` } });
    return ((await res.json()) as { keys: StoredKey[] }).keys;
  };
  const stored = async (name: string) => (await storedKeys()).find((k) => k.name === name);

  const dialog = () => page.locator('#key-dialog');
  const row = (name: string) => page.locator('#keys-body tr', { has: page.locator('td.name', { hasText: name }) });
  const field = (label: string) => page.getByLabel(label, { exact: true });

  /** Fills the create form with a name, Order list and `fill`, saves, keeps the token and closes the form. */
  const createKey = async (name: string, fill: () => Promise<void>) => {
    await page.getByRole('button', { name: '+ Create API key' }).click();
    await page.getByLabel('Name').fill(name);
    await field('Order list').check();
    await fill();
    await page.getByRole('button', { name: 'Save' }).click();
    // Either the token, or an error that says why not.
    const refused = page.locator('#key-form .field-error:not([hidden]), #form-error:not([hidden])').first();
    await Promise.race([page.locator('#key-token').waitFor(), refused.waitFor()]);
    if (await refused.isVisible()) throw new Error(`The form refused '${name}': ${await refused.textContent()}`);
    const created = await page.locator('#key-token').inputValue();
    await page.getByRole('button', { name: 'Done' }).click();
    await dialog().waitFor({ state: 'hidden' });
    await row(name).waitFor();
    return created;
  };

  /** Opens the edit form of a key, applies `change`, saves, and waits for the form to close. */
  const editKey = async (name: string, change: () => Promise<void>) => {
    await page.getByRole('button', { name: `Edit ${name}` }).click();
    await expect.poll(() => dialog().isVisible()).toBe(true);
    await change();
    await page.getByRole('button', { name: 'Save' }).click();
    await dialog().waitFor({ state: 'hidden' });
  };

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
    page = await context.newPage();
    page.setDefaultTimeout(10_000);
    await page.goto('/admin/api-keys');
    await page.locator('#scope-boxes input').first().waitFor({ state: 'attached' });
  });

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await running?.close();
  });

  // A step that failed with the form open leaves it open: close it, so the next step starts from the list.
  beforeEach(async () => {
    if (await dialog().isVisible()) {
      await page.locator('#form-close').click();
      await dialog().waitFor({ state: 'hidden' });
    }
  });

  it('the form has a labelled Rate limit group and a Usage quota group, blank for a new key', async () => {
    await page.getByRole('button', { name: '+ Create API key' }).click();
    expect(await page.locator('#key-form legend').allTextContents()).toEqual(expect.arrayContaining(['Rate limit', 'Usage quota']));
    expect(await field('Requests').inputValue()).toBe('');
    expect(await field('Per').locator('option').allTextContents()).toEqual(['minute', 'hour', 'day']);
    expect(await field('Per').inputValue()).toBe('60000');
    expect(await field('Uses left').inputValue()).toBe('');
    expect(await field('Refill to').inputValue()).toBe('');
    expect(await field('Every').locator('option').allTextContents()).toEqual(['hour', 'day', '30 days']);
    expect(await field('Every').inputValue()).toBe('86400000');
    await page.getByRole('button', { name: 'Cancel' }).click();
    await dialog().waitFor({ state: 'hidden' });
  });

  it('a rate limit of 0 or of "abc" shows the library error under Rate limit and creates nothing', async () => {
    await page.getByRole('button', { name: '+ Create API key' }).click();
    await page.getByLabel('Name').fill('Zero');
    await field('Order list').check();
    const error = page.locator('#rateLimit-error');
    for (const [typed, shown] of [
      ['0', 'got 0'],
      ['abc', 'got "abc"'],
    ] as const) {
      await field('Requests').fill(typed);
      await page.getByRole('button', { name: 'Save' }).click();
      await expect.poll(() => error.textContent()).toBe(`Requests: must be a whole number from 1 to 1000000000, ${shown}`);
      expect(await error.isVisible()).toBe(true);
      expect(await field('Requests').getAttribute('aria-invalid')).toBe('true');
    }
    expect(await page.locator('#token-field').isVisible()).toBe(false);
    expect(await storedKeys()).toEqual([]);
    await page.getByRole('button', { name: 'Cancel' }).click();
    await dialog().waitFor({ state: 'hidden' });
  });

  it('creates a key with 100 requests per hour; the list shows "100 / hour", and "—" for a key without', async () => {
    await createKey('Hourly feed', async () => {
      // The form starts clean after the earlier error.
      expect(await page.locator('#rateLimit-error').isVisible()).toBe(false);
      expect(await field('Requests').getAttribute('aria-invalid')).toBeNull();
      await field('Requests').fill('100');
      await field('Per').selectOption({ label: 'hour' });
    });
    await createKey('No limits', async () => {});
    expect(await row('Hourly feed').locator('td.rate').textContent()).toBe('100 / hour');
    expect(await row('Hourly feed').locator('td.uses').textContent()).toBe('Unlimited');
    expect(await row('No limits').locator('td.rate').textContent()).toBe('—');
    expect(await row('No limits').locator('td.uses').textContent()).toBe('Unlimited');
    expect(await stored('Hourly feed')).toMatchObject({ rateLimit: { limit: 100, windowMs: 3_600_000 }, remaining: null, refill: null });
    expect(await stored('No limits')).toMatchObject({ rateLimit: null, remaining: null, refill: null });
  });

  it('the edit form shows the rate limit and saves a new one, 2 per minute', async () => {
    await editKey('Hourly feed', async () => {
      expect(await field('Requests').inputValue()).toBe('100');
      expect(await field('Per').inputValue()).toBe('3600000');
      await field('Requests').fill('2');
      await field('Per').selectOption({ label: 'minute' });
    });
    await expect.poll(() => row('Hourly feed').locator('td.rate').textContent()).toBe('2 / min');
    expect((await stored('Hourly feed'))?.rateLimit).toEqual({ limit: 2, windowMs: 60_000 });

    await editKey('Hourly feed', () => field('Requests').fill(''));
    await expect.poll(() => row('Hourly feed').locator('td.rate').textContent()).toBe('—');
    expect((await stored('Hourly feed'))?.rateLimit).toBeNull();
  });

  it('a window the selects do not offer is shown as it is and kept by a save that leaves it', async () => {
    await running.keys.create({ name: 'Burst guard', scopes: ['orders:list'], rateLimit: { limit: 10, windowMs: 10_000 } });
    await page.reload();
    await row('Burst guard').waitFor();
    expect(await row('Burst guard').locator('td.rate').textContent()).toBe('10 / 10 s');
    await editKey('Burst guard', async () => {
      expect(await field('Per').locator('option:checked').textContent()).toBe('10 seconds');
      await page.getByLabel('Name').fill('Burst guard 2');
    });
    await row('Burst guard 2').waitFor();
    expect((await stored('Burst guard 2'))?.rateLimit).toEqual({ limit: 10, windowMs: 10_000 });
    // The extra choice belongs to that key only.
    await page.getByRole('button', { name: '+ Create API key' }).click();
    expect(await field('Per').locator('option').allTextContents()).toEqual(['minute', 'hour', 'day']);
    await page.getByRole('button', { name: 'Cancel' }).click();
  });

  it('a refill without uses left shows the library error under the quota', async () => {
    await page.getByRole('button', { name: '+ Create API key' }).click();
    await page.getByLabel('Name').fill('Refill only');
    await field('Order list').check();
    await field('Refill to').fill('50');
    await page.getByRole('button', { name: 'Save' }).click();
    const error = page.locator('#refill-error');
    await error.waitFor();
    expect(await error.textContent()).toMatch(/^needs a quota/);
    expect(await field('Refill to').getAttribute('aria-invalid')).toBe('true');
    expect(await stored('Refill only')).toBeUndefined();
    await page.getByRole('button', { name: 'Cancel' }).click();
  });

  it('creates a key with 1,000 uses and a daily refill; the list shows "1,000 left" and the refill', async () => {
    token = await createKey('Metered sync', async () => {
      await field('Uses left').fill('1,000');
      await field('Refill to').fill('1000');
      await field('Every').selectOption({ label: 'day' });
    });
    expect(await row('Metered sync').locator('td.uses .uses-left').textContent()).toBe('1,000 left');
    expect(await row('Metered sync').locator('td.uses .refill').textContent()).toBe('refills to 1,000 / day');
    expect(await stored('Metered sync')).toMatchObject({ remaining: 1000, refill: { amount: 1000, intervalMs: 86_400_000 } });
  });

  it('an edit that leaves Uses left alone keeps the count the key is at; one that changes it sets it', async () => {
    // One use since the page read the list: the form still shows 1000.
    const res = await fetch(`${running.baseUrl}/api/orders`, { headers: { Authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    await editKey('Metered sync', async () => {
      expect(await field('Uses left').inputValue()).toBe('1000');
      expect(await field('Refill to').inputValue()).toBe('1000');
      await page.getByLabel('Name').fill('Metered ERP sync');
    });
    await expect.poll(() => row('Metered ERP sync').locator('td.uses .uses-left').textContent()).toBe('999 left');
    expect((await stored('Metered ERP sync'))?.remaining).toBe(999);

    await editKey('Metered ERP sync', async () => {
      await field('Uses left').fill('0');
      await field('Refill to').fill('');
    });
    await expect.poll(() => row('Metered ERP sync').locator('td.uses').textContent()).toBe('0 left');
    expect(await stored('Metered ERP sync')).toMatchObject({ remaining: 0, refill: null });

    await editKey('Metered ERP sync', () => field('Uses left').fill(''));
    await expect.poll(() => row('Metered ERP sync').locator('td.uses').textContent()).toBe('Unlimited');
    expect(await stored('Metered ERP sync')).toMatchObject({ remaining: null, refill: null });
  });
});
