// The admin page in a real browser, mounted in Express 5, Koa 3 and Fastify 5: every step done through the page
// and checked on the key manager; tenants, cross-site requests, a phone-sized screen, keyboard use, accessibility.

import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it, test } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { pageAssets } from '../../src/admin/page.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import { defineScopes } from '../../src/scopes.js';
import { ADMIN_FRAMEWORKS, type AdminApp, type AdminFramework, MOUNT, PASSWORD, type SeenRequest } from './mounts.js';

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
const AXE_SOURCE = fileURLToPath(new URL('../../node_modules/axe-core/axe.min.js', import.meta.url));

/** The current major of each framework; api.test.ts covers every major on the API. */
const FRAMEWORKS: readonly AdminFramework[] = ADMIN_FRAMEWORKS.filter((f) => ['Express 5', 'Koa 3', 'Fastify 5'].includes(f.name));

if (!HAS_CHROMIUM && !IN_CI) {
  process.stdout.write(
    `\nAdmin page browser tests SKIPPED: no Chromium at ${CHROMIUM}. ` +
      'Install it with `apt-get install chromium` (Debian/Ubuntu), or set KEYGATE_CHROMIUM=/path/to/chrome.\n\n',
  );
}

/** What a key looks like to these tests, from the manager (never the page's own view of it). */
const stateOf = async (keys: KeyManager, id: string) => {
  const key = await keys.get(id);
  return key && { name: key.name, active: key.active, version: key.version, ownerId: key.ownerId, scopes: key.scopes };
};

/** Every key of every owner, as a comparable snapshot. */
const everyKey = async (keys: KeyManager) =>
  (await keys.list({ limit: 1000 })).keys.map((k) => ({
    id: k.id,
    name: k.name,
    active: k.active,
    version: k.version,
    ownerId: k.ownerId,
    scopes: k.scopes,
    allowedIps: k.allowedIps,
  }));

/** A serious or critical axe finding, short enough to read in a failure. */
interface Finding {
  id: string;
  impact: string | null;
  help: string;
  targets: string[];
}

/**
 * Polls `check` until it is true, as `expect.poll` does; the tests of this file run concurrently,
 * where `expect.poll` cannot tell which test it belongs to and throws.
 */
async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('the page files the tests serve', () => {
  it('are the files of src/admin/page, the styles included (Vitest reads CSS as empty unless told)', () => {
    const assets = pageAssets(undefined);
    for (const name of ['admin.js', 'admin.css']) {
      const source = readFileSync(fileURLToPath(new URL(`../../src/admin/page/${name}`, import.meta.url)), 'utf8');
      expect(source.length, name).toBeGreaterThan(1000);
      expect(assets.files.get(name)?.text, name).toBe(source);
    }
  });
});

describe.skipIf(!HAS_CHROMIUM && !IN_CI)('the admin page in Chromium', () => {
  let browser: Browser;
  /** A server of another origin: the pages of a site that tries to change keys from the outside. */
  let other: Server;
  let otherOrigin = '';

  beforeAll(async () => {
    if (!HAS_CHROMIUM) {
      throw new Error(`CI=true but there is no Chromium at ${CHROMIUM}: run apt-get install chromium, or set KEYGATE_CHROMIUM.`);
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS });
    other = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://other.invalid');
      const target = url.searchParams.get('target') ?? '';
      const keyId = url.searchParams.get('key') ?? '';
      res.setHeader('content-type', 'text/html; charset=utf-8');
      if (url.pathname === '/form') {
        // The classic trick: a text/plain form whose one field makes the body valid JSON,
        // {"scopes":["all"],"name":"Planted by another site="}.
        const field = '{"scopes":["all"],"name":"Planted by another site';
        res.end(`<!doctype html><title>Win a prize</title>
<form id="f" method="POST" enctype="text/plain" action="${target}">
<input type="hidden" name='${field}' value='"}'></form>
<script>document.getElementById('f').submit()</script>`);
        return;
      }
      if (url.pathname === '/fetch') {
        res.end(`<!doctype html><title>Win a prize</title><script>
const api = ${JSON.stringify(`${target}/api`)};
const key = ${JSON.stringify(keyId)};
const body = JSON.stringify({ name: 'Planted by another site', scopes: ['all'] });
const attempts = {
  createJson: () => fetch(api + '/keys', { method: 'POST', credentials: 'include', headers: { 'Content-Type': 'application/json' }, body }),
  createNoCors: () => fetch(api + '/keys', { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'Content-Type': 'application/json' }, body }),
  deactivateNoCors: () => fetch(api + '/keys/' + key + '/deactivate', { method: 'POST', mode: 'no-cors', credentials: 'include' }),
  renameJson: () => fetch(api + '/keys/' + key, { method: 'PATCH', credentials: 'include', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'Taken over' }) }),
  deleteCors: () => fetch(api + '/keys/' + key, { method: 'DELETE', credentials: 'include' }),
  readList: () => fetch(api + '/keys', { credentials: 'include' }).then((r) => r.text()),
};
window.outcomes = (async () => {
  const seen = {};
  for (const [name, attempt] of Object.entries(attempts)) {
    try {
      const result = await attempt();
      seen[name] = typeof result === 'string' ? 'read: ' + result.slice(0, 40) : result.type === 'opaque' ? 'opaque' : 'status ' + result.status;
    } catch (error) {
      seen[name] = 'blocked';
    }
  }
  return seen;
})();
</script>`);
        return;
      }
      res.statusCode = 404;
      res.end('not here');
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    otherOrigin = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await browser?.close();
    if (other) {
      other.closeAllConnections();
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });

  /** The browser's clipboard is one for all its pages: one Copy (and its read-back) at a time. */
  let clipboardQueue: Promise<unknown> = Promise.resolve();
  function withClipboard<T>(work: () => Promise<T>): Promise<T> {
    const turn = clipboardQueue.then(work, work);
    clipboardQueue = turn.catch(() => undefined);
    return turn;
  }

  // The frameworks side by side (each on its own server and key manager), the steps of each in order.
  describe.each(FRAMEWORKS)('mounted in $name', { concurrent: true, timeout: 60_000 }, (framework) => {
    const it = test.sequential;

    let keys: KeyManager;
    let app: AdminApp;
    /** Every request the app answered. */
    const seen: SeenRequest[] = [];
    let contexts: BrowserContext[] = [];
    /** Uncaught errors and CSP refusals on the admin pages of the current test. */
    let problems: string[] = [];

    beforeAll(async () => {
      keys = createKeyManager({ store: memoryStore() });
      app = await framework.start({ keys, observe: (request) => seen.push(request) });
    });
    afterAll(async () => {
      await app?.close();
      await keys?.close();
    });
    afterEach(async () => {
      await Promise.all(contexts.map((context) => context.close()));
      contexts = [];
      const found = problems;
      problems = [];
      expect(found).toEqual([]);
    });

    interface OpenOptions {
      width?: number;
      height?: number;
      clipboard?: boolean;
      /** Only for the axe run, which injects its script past the page's content security policy. */
      bypassCSP?: boolean;
      /** Another app than this framework's own. */
      on?: AdminApp;
    }

    /** Opens the admin page signed in as `user`, in a context of its own, and waits for the list. */
    async function openPage(user: string, options: OpenOptions = {}): Promise<Page> {
      const target = options.on ?? app;
      const context = await browser.newContext({
        baseURL: target.origin,
        httpCredentials: { username: user, password: PASSWORD },
        viewport: { width: options.width ?? 1280, height: options.height ?? 800 },
        bypassCSP: options.bypassCSP ?? false,
        reducedMotion: 'reduce',
      });
      contexts.push(context);
      if (options.clipboard) await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: target.origin });
      const page = await context.newPage();
      page.setDefaultTimeout(10_000);
      page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
      page.on('console', (message) => {
        if (/Content.Security.Policy/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
      });
      await page.goto(`${MOUNT}/`);
      await ready(page);
      return page;
    }

    async function ready(page: Page): Promise<void> {
      await page.getByTestId('keys-loading').waitFor({ state: 'hidden' });
      await until(() => page.getByTestId('create-key').isEnabled(), 'the Create button to be enabled');
    }

    const rowOf = (page: Page, id: string) => page.locator(`[data-testid="key-row"][data-key-id="${id}"]`);
    const keyDialog = (page: Page) => page.getByTestId('key-dialog');
    const tokenDialog = (page: Page) => page.getByTestId('token-dialog');
    const confirmDialog = (page: Page) => page.getByTestId('confirm-dialog');
    /** The test id (or else the id) of the focused element. */
    const focused = (page: Page) =>
      page.evaluate<string | null>(`(() => {
        const node = document.activeElement;
        return node ? node.getAttribute('data-testid') || node.id || node.tagName : null;
      })()`);

    /** The id of the one key of `owner` with this name. */
    async function idOf(owner: string, name: string): Promise<string> {
      const found = (await keys.list({ ownerId: owner, limit: 1000 })).keys.filter((k) => k.name === name);
      expect(found.map((k) => k.name)).toEqual([name]);
      return (found[0] as { id: string }).id;
    }

    /** Creates a key through the form and returns the token its dialog shows. */
    async function createThroughForm(page: Page, name: string, scopes: readonly string[] = ['Order list']): Promise<string> {
      await page.getByRole('button', { name: 'Create API key' }).click();
      const dialog = keyDialog(page);
      await dialog.waitFor();
      await dialog.getByLabel('Name', { exact: true }).fill(name);
      for (const scope of scopes) await dialog.getByLabel(scope, { exact: true }).check();
      await dialog.getByTestId('key-save').click();
      await tokenDialog(page).waitFor();
      await dialog.waitFor({ state: 'hidden' });
      return page.getByTestId('token-value').inputValue();
    }

    /** Clicks Copy in the open token dialog and waits for "Copied"; the clipboard's text after it. */
    function copyToken(page: Page, read = false): Promise<string | null> {
      return withClipboard(async () => {
        await page.getByTestId('copy-token').click();
        await page.getByTestId('token-dialog').getByRole('button', { name: 'Copied' }).waitFor();
        return read ? page.evaluate<string>('navigator.clipboard.readText()') : null;
      });
    }

    /** Waits for the row's Active switch to settle (the request behind it done). */
    async function switchSettles(page: Page, id: string, checked: boolean): Promise<void> {
      const toggle = rowOf(page, id).getByTestId('active-toggle');
      await until(
        async () => (await toggle.isChecked()) === checked && (await toggle.isEnabled()),
        `the Active switch to be ${checked ? 'on' : 'off'}`,
      );
    }

    it('runs the whole flow through the page: create, copy, edit, toggle, regenerate, revoke, delete', async () => {
      const page = await openPage('alice', { clipboard: true });
      const name = 'ERP sync';

      // Create, with every kind of field.
      await page.getByRole('button', { name: 'Create API key' }).click();
      const dialog = page.getByRole('dialog', { name: 'Create API key' });
      await dialog.waitFor();
      await dialog.getByLabel('Name', { exact: true }).fill(name);
      expect(await dialog.getByLabel('Active', { exact: true }).isChecked()).toBe(true);
      await dialog.getByLabel('Order edit', { exact: true }).check();
      // Order edit includes Order list: shown ticked and locked.
      const included = dialog.getByRole('checkbox', { name: 'Order list (included in Order edit)' });
      expect(await included.isChecked()).toBe(true);
      expect(await included.isDisabled()).toBe(true);
      await dialog.getByLabel('Allowed IP addresses').fill('203.0.113.7,2001:db8::1');
      await dialog.getByLabel('Requests', { exact: true }).fill('100');
      await dialog.getByLabel('Per', { exact: true }).selectOption({ label: 'minute' });
      await dialog.getByLabel('Uses left').fill('500');
      await dialog.getByRole('button', { name: 'Create key' }).click();

      // The token, once.
      const shown = page.getByRole('dialog', { name: 'Your new API key' });
      await shown.waitFor();
      const token = await shown.getByLabel('API key token').inputValue();
      expect(token.startsWith(`${keys.prefix}_`)).toBe(true);
      const id = await idOf('shop-a', name);
      expect(await keys.get(id)).toMatchObject({
        ownerId: 'shop-a',
        active: true,
        scopes: ['orders:edit'],
        allowedIps: ['203.0.113.7', '2001:db8::1'],
        rateLimit: { limit: 100, windowMs: 60_000 },
        remaining: 500,
      });
      expect(await shown.getByRole('button', { name: 'Copy' }).isVisible()).toBe(true);
      expect(await copyToken(page, true)).toBe(token);
      await shown.getByRole('button', { name: 'Done' }).click();
      await shown.waitFor({ state: 'hidden' });
      expect(await confirmDialog(page).isVisible()).toBe(false);
      // The token left the page with its dialog.
      expect(await page.getByTestId('token-value').inputValue()).toBe('');
      expect(await rowOf(page, id).getByTestId('key-name').textContent()).toBe(name);

      // The key works, from its addresses only, and spends one of its uses.
      expect(await keys.verify(token, { ip: '203.0.113.7', scope: 'orders:list' })).toMatchObject({ valid: true });
      expect(await keys.verify(token, { ip: '198.51.100.9', cost: 0 })).toMatchObject({ valid: false, code: 'IP_NOT_ALLOWED' });

      // Edit: the form is read fresh (499 uses left), and the save carries the version it was read at.
      await page.getByRole('button', { name: `Edit ${name}` }).click();
      const edit = page.getByRole('dialog', { name: 'Edit API key' });
      await edit.waitFor();
      expect(await edit.getByLabel('Name', { exact: true }).inputValue()).toBe(name);
      expect(await edit.getByLabel('Uses left').inputValue()).toBe('499');
      expect(await edit.getByTestId('key-facts').textContent()).toContain(token.slice(-4));
      const readVersion = (await keys.get(id))?.version as number;
      await edit.getByLabel('Name', { exact: true }).fill('ERP sync (nightly)');
      await edit.getByLabel('Requests', { exact: true }).fill('200');
      // Meanwhile someone else changes the key: the save must not overwrite it.
      await keys.update(id, { remaining: 42 });
      const stale = page.waitForRequest((request) => request.method() === 'PATCH');
      await edit.getByRole('button', { name: 'Save changes' }).click();
      expect((await stale).headers()['if-match']).toBe(`"${readVersion}"`);
      await edit.getByTestId('conflict-reload').waitFor();
      expect(await edit.getByTestId('form-error').textContent()).toContain('Someone else changed this key meanwhile');
      expect(await keys.get(id)).toMatchObject({ name, remaining: 42 });
      await edit.getByRole('button', { name: 'Reload the key' }).click();
      await edit.getByTestId('form-info').waitFor();
      expect(await edit.getByTestId('form-info').textContent()).toContain('Uses left');
      expect(await edit.getByLabel('Name', { exact: true }).inputValue()).toBe('ERP sync (nightly)');
      expect(await edit.getByLabel('Uses left').inputValue()).toBe('42');
      const fresh = page.waitForRequest((request) => request.method() === 'PATCH');
      await edit.getByRole('button', { name: 'Save changes' }).click();
      expect((await fresh).headers()['if-match']).toBe(`"${readVersion + 1}"`);
      await edit.waitFor({ state: 'hidden' });
      const renamed = 'ERP sync (nightly)';
      expect(await keys.get(id)).toMatchObject({ name: renamed, remaining: 42, rateLimit: { limit: 200, windowMs: 60_000 } });
      expect(await rowOf(page, id).getByTestId('key-name').textContent()).toBe(renamed);
      expect(await rowOf(page, id).getByTestId('key-remaining').textContent()).toBe('42 uses left');
      // Focus went back to the Edit button it came from.
      expect(await focused(page)).toBe('edit-key');

      // The Active switch in the list.
      await page.getByRole('switch', { name: `Active: ${renamed}` }).click();
      await switchSettles(page, id, false);
      expect(await keys.verify(token, { ip: '203.0.113.7', cost: 0 })).toMatchObject({ valid: false, code: 'INACTIVE' });
      await page.getByRole('switch', { name: `Active: ${renamed}` }).click();
      await switchSettles(page, id, true);
      expect(await keys.verify(token, { ip: '203.0.113.7', cost: 0 })).toMatchObject({ valid: true });

      // Regenerate, from the edit view: the old token keeps working for the grace period.
      await page.getByRole('button', { name: `Edit ${renamed}` }).click();
      await edit.waitFor();
      await edit.getByRole('button', { name: 'Regenerate token' }).click();
      const ask = page.getByRole('alertdialog', { name: 'Regenerate the token?' });
      await ask.waitFor();
      expect(await ask.getByTestId('confirm-text').textContent()).toContain('24 hours');
      await ask.getByRole('button', { name: 'Regenerate token' }).click();
      const again = page.getByRole('dialog', { name: 'Your new token' });
      await again.waitFor();
      const next = await again.getByLabel('API key token').inputValue();
      expect(next).not.toBe(token);
      expect(await again.getByTestId('token-grace').textContent()).toContain('keeps working until');
      expect(await keys.verify(token, { ip: '203.0.113.7', cost: 0 })).toMatchObject({ valid: true });
      expect(await keys.verify(next, { ip: '203.0.113.7', cost: 0 })).toMatchObject({ valid: true });
      expect(await again.getByRole('button', { name: 'Copy' }).isVisible()).toBe(true);
      expect(await copyToken(page, true)).toBe(next);
      await again.getByRole('button', { name: 'Done' }).click();
      await again.waitFor({ state: 'hidden' });
      // Back in the edit view, on the button that opened the token.
      expect(await edit.isVisible()).toBe(true);
      expect(await focused(page)).toBe('regenerate-token');
      await edit.getByTestId('key-cancel').click();
      await edit.waitFor({ state: 'hidden' });

      // The old token leaked: paste it, its key is deactivated, both tokens refused.
      await page.getByRole('button', { name: 'Revoke a leaked token' }).click();
      const revoke = page.getByTestId('revoke-dialog');
      await revoke.waitFor();
      await revoke.getByLabel('Token to revoke').fill(token);
      await revoke.getByRole('button', { name: 'Deactivate its key' }).click();
      await revoke.getByTestId('revoke-result').waitFor();
      expect(await revoke.getByTestId('revoke-result').textContent()).toContain(`Deactivated “${renamed}”`);
      expect(await keys.verify(token, { ip: '203.0.113.7', cost: 0 })).toMatchObject({ valid: false, code: 'INACTIVE' });
      expect(await keys.verify(next, { ip: '203.0.113.7', cost: 0 })).toMatchObject({ valid: false, code: 'INACTIVE' });
      expect(await rowOf(page, id).getByTestId('active-toggle').isChecked()).toBe(false);
      await revoke.getByRole('button', { name: 'Close' }).first().click();
      await revoke.waitFor({ state: 'hidden' });

      // Delete, from the edit view, after asking.
      await page.getByRole('button', { name: `Edit ${renamed}` }).click();
      await edit.waitFor();
      await edit.getByRole('button', { name: 'Delete key' }).click();
      const sure = page.getByRole('alertdialog', { name: 'Delete this API key?' });
      await sure.waitFor();
      expect(await sure.getByTestId('confirm-text').textContent()).toContain(renamed);
      await sure.getByRole('button', { name: 'Delete key' }).click();
      await edit.waitFor({ state: 'hidden' });
      await rowOf(page, id).waitFor({ state: 'detached' });
      expect(await keys.get(id)).toBeNull();
      expect((await keys.verify(next, { ip: '203.0.113.7', cost: 0 })).valid).toBe(false);
    });

    it('asks before the token dialog closes, however it is closed, unless the token was copied', async () => {
      const page = await openPage('alice');
      const token = await createThroughForm(page, 'Guarded');
      const shown = tokenDialog(page);
      const ask = confirmDialog(page);
      const ways: Array<[string, () => Promise<void>]> = [
        ['Escape', () => page.keyboard.press('Escape')],
        ['×', () => shown.getByRole('button', { name: 'Close' }).click()],
        ['Done', () => shown.getByRole('button', { name: 'Done' }).click()],
        // The backdrop: a point of the page outside the dialog's box.
        ['backdrop', () => page.mouse.click(8, 8)],
      ];
      for (const [way, close] of ways) {
        await close();
        await ask.waitFor();
        expect(await ask.getByTestId('confirm-text').textContent(), way).toContain('You will not see this token again');
        expect(await ask.getByTestId('confirm-ok').textContent(), way).toBe('Close anyway');
        await ask.getByRole('button', { name: 'Go back' }).click();
        await ask.waitFor({ state: 'hidden' });
        expect(await shown.isVisible(), way).toBe(true);
        expect(await page.getByTestId('token-value').inputValue(), way).toBe(token);
      }
      // Escape on the question is "Go back" too.
      await page.keyboard.press('Escape');
      await ask.waitFor();
      await page.keyboard.press('Escape');
      await ask.waitFor({ state: 'hidden' });
      expect(await shown.isVisible()).toBe(true);

      // After Copy, Done closes at once.
      await copyToken(page);
      await shown.getByRole('button', { name: 'Done' }).click();
      await shown.waitFor({ state: 'hidden' });
      expect(await ask.isVisible()).toBe(false);

      // "Close anyway" closes without the copy, and the token is gone from the page.
      const id = await idOf('shop-a', 'Guarded');
      await page.getByRole('button', { name: 'Edit Guarded' }).click();
      await keyDialog(page).waitFor();
      await page.getByTestId('regenerate-token').click();
      await page.getByTestId('confirm-ok').click();
      await page.getByRole('dialog', { name: 'Your new token' }).waitFor();
      await page.keyboard.press('Escape');
      await ask.waitFor();
      await ask.getByRole('button', { name: 'Close anyway' }).click();
      await shown.waitFor({ state: 'hidden' });
      expect(await page.getByTestId('token-value').inputValue()).toBe('');
      expect(await keyDialog(page).isVisible()).toBe(true);
      expect((await keys.get(id))?.version).toBeGreaterThan(1);
    });

    it("keeps tenants apart: Bob's page neither lists nor reaches Alice's keys", async () => {
      const { key: alices, token: alicesToken } = await keys.create({ name: 'Alice payroll', scopes: ['orders:list'], ownerId: 'shop-a' });
      const { key: bobs } = await keys.create({ name: 'Bob inventory', scopes: ['products:list'], ownerId: 'shop-b' });
      const before = await stateOf(keys, alices.id);

      const page = await openPage('bob');
      expect(await rowOf(page, bobs.id).getByTestId('key-name').textContent()).toBe('Bob inventory');
      const names = await page.getByTestId('key-name').allTextContents();
      expect(names).toContain('Bob inventory');
      expect(names.filter((n) => n.startsWith('Alice') || n === 'ERP sync' || n === 'Guarded')).toEqual([]);
      expect(await page.locator(`[data-key-id="${alices.id}"]`).count()).toBe(0);

      // Bob's page, with his sign-in and the page's own origin, asks for Alice's key by id.
      const attempts = await page.evaluate(
        async ([base, id, leaked]) => {
          const write = (method: string, path: string, body?: unknown) =>
            fetch(`${base}/api${path}`, {
              method,
              headers: { 'Content-Type': 'application/json', 'If-Match': '"1"' },
              body: body === undefined ? undefined : JSON.stringify(body),
            });
          const answers: Record<string, [number, string]> = {};
          const tries: Record<string, () => Promise<Response>> = {
            read: () => fetch(`${base}/api/keys/${id}`),
            rename: () => write('PATCH', `/keys/${id}`, { name: 'Bob was here' }),
            deactivate: () => write('POST', `/keys/${id}/deactivate`, {}),
            rotate: () => write('POST', `/keys/${id}/rotate`, {}),
            remove: () => write('DELETE', `/keys/${id}`),
            revoke: () => write('POST', '/revoke', { token: leaked }),
          };
          for (const [name, attempt] of Object.entries(tries)) {
            const response = await attempt();
            const body = (await response.json()) as { error?: { code?: string } };
            answers[name] = [response.status, body.error?.code ?? ''];
          }
          return answers;
        },
        [MOUNT, alices.id, alicesToken] as const,
      );
      for (const [attempt, answer] of Object.entries(attempts)) expect(answer, attempt).toEqual([404, 'KEY_NOT_FOUND']);

      // The page's own Revoke says no key of Bob's has that token.
      await page.getByRole('button', { name: 'Revoke a leaked token' }).click();
      await page.getByLabel('Token to revoke').fill(alicesToken);
      await page.getByRole('button', { name: 'Deactivate its key' }).click();
      await page.getByTestId('error-revoke').waitFor();
      expect(await page.getByTestId('error-revoke').textContent()).toContain('No key of yours has this token');

      // Nothing of Alice's key changed.
      expect(await stateOf(keys, alices.id)).toEqual(before);
      expect(await keys.verify(alicesToken, { cost: 0 })).toMatchObject({ valid: true });
    });

    it('refuses changes that another site makes from the browser of a signed-in user', async () => {
      const { key: target } = await keys.create({ name: 'Target of another site', scopes: ['orders:list'], ownerId: 'shop-a' });
      const before = await everyKey(keys);
      const from = seen.length;
      const context = await browser.newContext({ httpCredentials: { username: 'alice', password: PASSWORD } });
      contexts.push(context);
      const page = await context.newPage();
      page.setDefaultTimeout(10_000);

      // (a) Form posts (text/plain), which need no preflight: a create, and a deactivate.
      for (const action of [`${app.url}/api/keys`, `${app.url}/api/keys/${target.id}/deactivate`]) {
        const answer = page.waitForResponse((response) => response.url() === action && response.status() !== 401);
        await page.goto(`${otherOrigin}/form?target=${encodeURIComponent(action)}`);
        const response = await answer;
        expect(response.status(), action).toBe(403);
        expect(((await response.json()) as { error: { code: string } }).error.code).toBe('ORIGIN_MISMATCH');
      }

      // (b) Scripts: JSON with credentials (needs a preflight), no-cors (sent as text/plain), a read.
      await page.goto(`${otherOrigin}/fetch?target=${encodeURIComponent(app.url)}&key=${target.id}`);
      const outcomes = await page.evaluate<Record<string, string>>('window.outcomes');
      expect(outcomes).toEqual({
        createJson: 'blocked',
        createNoCors: 'opaque',
        deactivateNoCors: 'opaque',
        renameJson: 'blocked',
        deleteCors: 'blocked',
        readList: 'blocked',
      });

      // What reached the server from the other origin: every write refused, none answered 2xx.
      const foreign = seen.slice(from).filter((request) => request.origin === otherOrigin);
      const writes = foreign.filter((request) => ['POST', 'PATCH', 'DELETE', 'PUT'].includes(request.method));
      expect(writes.length).toBeGreaterThan(0);
      for (const write of writes) expect([401, 403, 415], `${write.method} ${write.url}`).toContain(write.status);
      // Signed in (the browser answered the sign-in challenge), the admin itself refused them.
      expect(writes.filter((write) => write.authorized && write.status === 403).length).toBeGreaterThanOrEqual(4);
      // The JSON, PATCH and DELETE requests never left the browser: their preflight failed.
      expect(writes.filter((write) => write.method === 'PATCH' || write.method === 'DELETE')).toEqual([]);
      expect(writes.filter((write) => write.contentType?.startsWith('application/json'))).toEqual([]);
      for (const preflight of foreign.filter((request) => request.method === 'OPTIONS')) {
        expect(preflight.status, preflight.url).toBeGreaterThanOrEqual(400);
      }

      expect(await everyKey(keys)).toEqual(before);
      expect((await keys.list({ limit: 1000 })).keys.filter((k) => k.name.startsWith('Planted'))).toEqual([]);
    });

    it('fits a 390 px screen: no sideways scrolling, a long unbroken name keeps Edit and Delete in view', async () => {
      const long = `Warehouse${'W'.repeat(91)}`;
      expect(long).toHaveLength(100);
      const { key } = await keys.create({
        name: long,
        scopes: ['all'],
        ownerId: 'shop-a',
        allowedIps: '2001:db8:1234:5678:9abc:def0:1234:5678',
      });
      const page = await openPage('alice', { width: 390, height: 844 });
      const overflow = () =>
        page.evaluate<{ scroll: number; client: number; body: number }>(
          '({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth, body: document.body.scrollWidth })',
        );
      let sizes = await overflow();
      expect(sizes.scroll).toBeLessThanOrEqual(sizes.client);
      expect(sizes.body).toBeLessThanOrEqual(sizes.client);

      const row = rowOf(page, key.id);
      for (const control of [
        row.getByRole('button', { name: `Edit ${long}` }),
        row.getByRole('button', { name: `Delete ${long}` }),
        row.getByRole('switch', { name: `Active: ${long}` }),
        row.getByTestId('key-name'),
      ]) {
        await control.scrollIntoViewIfNeeded();
        expect(await control.isVisible()).toBe(true);
        const box = await control.boundingBox();
        expect(box).not.toBeNull();
        expect(box?.x).toBeGreaterThanOrEqual(0);
        expect((box?.x ?? 0) + (box?.width ?? 0)).toBeLessThanOrEqual(sizes.client);
      }
      // The buttons are not covered by the name: a click reaches them.
      await row.getByRole('button', { name: `Edit ${long}` }).click({ trial: true });
      await row.getByRole('button', { name: `Delete ${long}` }).click({ trial: true });

      // The edit form of that key fits too.
      await row.getByRole('button', { name: `Edit ${long}` }).click();
      const dialog = keyDialog(page);
      await dialog.waitFor();
      const inDialog = await page.evaluate<{ scroll: number; client: number; right: number }>(`(() => {
        const dialog = document.getElementById('key-dialog');
        return { scroll: dialog.scrollWidth, client: dialog.clientWidth, right: dialog.getBoundingClientRect().right };
      })()`);
      expect(inDialog.scroll).toBeLessThanOrEqual(inDialog.client);
      expect(inDialog.right).toBeLessThanOrEqual(390);
      for (const control of [dialog.getByTestId('key-save'), dialog.getByTestId('edit-delete'), dialog.getByTestId('regenerate-token')]) {
        await control.scrollIntoViewIfNeeded();
        const box = await control.boundingBox();
        expect((box?.x ?? -1) >= 0 && (box?.x ?? 0) + (box?.width ?? 0) <= 390).toBe(true);
      }
      sizes = await overflow();
      expect(sizes.scroll).toBeLessThanOrEqual(sizes.client);
    });

    it('shows every field error at once, in the words of the page, and never cuts a long name', async () => {
      const page = await openPage('alice');
      const from = seen.length;
      await page.getByRole('button', { name: 'Create API key' }).click();
      const dialog = keyDialog(page);
      await dialog.waitFor();
      const name = 'n'.repeat(101);
      await dialog.getByLabel('Name', { exact: true }).fill(name);
      await dialog.getByLabel('Allowed IP addresses').fill('203.0.113.7,10.0.0.*');
      await dialog.getByTestId('key-save').click();
      await dialog.getByTestId('error-allowedIps').waitFor();

      const errors = {
        name: await dialog.getByTestId('error-name').textContent(),
        scopes: await dialog.getByTestId('error-scopes').textContent(),
        allowedIps: await dialog.getByTestId('error-allowedIps').textContent(),
      };
      for (const field of ['name', 'scopes', 'allowedIps'])
        expect(await dialog.getByTestId(`error-${field}`).isVisible(), field).toBe(true);
      expect(errors.name).toBe('The name is 101 characters long; use at most 100.');
      expect(errors.scopes).toBe('Choose at least one scope.');
      expect(errors.allowedIps).toBe('Entry 2 “10.0.0.*” is a wildcard; wildcards are not allowed, list each exact address.');
      expect(await dialog.getByTestId('form-error').textContent()).toContain('Please fix the 3 problems below.');
      // The name stays as typed, and focus is on the first field at fault.
      expect(await dialog.getByLabel('Name', { exact: true }).inputValue()).toBe(name);
      expect(await focused(page)).toBe('field-name');
      expect(await dialog.getByLabel('Name', { exact: true }).getAttribute('aria-invalid')).toBe('true');
      expect(await dialog.getByLabel('Allowed IP addresses').getAttribute('aria-invalid')).toBe('true');
      const internal = keys.scopes.list().map((scope) => scope.name);
      for (const text of Object.values(errors)) {
        for (const scope of internal.filter((s) => s.includes(':'))) expect(text).not.toContain(scope);
        expect(text).not.toMatch(/allowedIps|rateLimit|\bms\b/);
      }
      // Nothing was sent, nothing created.
      expect(seen.slice(from).filter((request) => request.method === 'POST')).toEqual([]);

      // What the server refuses is shown the same way: here a request the page did not check, as another client might send it.
      await page.route(`**${MOUNT}/api/keys`, (route) =>
        route.request().method() === 'POST'
          ? route.continue({
              postData: JSON.stringify({
                name,
                scopes: ['orders:lst'],
                allowedIps: '10.0.0.*',
                rateLimit: { limit: 0, windowMs: 60_000 },
              }),
            })
          : route.continue(),
      );
      await dialog.getByLabel('Name', { exact: true }).fill('Checked by the server');
      await dialog.getByLabel('Order list', { exact: true }).check();
      await dialog.getByLabel('Allowed IP addresses').fill('');
      const answer = page.waitForResponse((response) => response.request().method() === 'POST');
      await dialog.getByTestId('key-save').click();
      expect((await answer).status()).toBe(400);
      await until(() => dialog.getByTestId('error-rateLimit').isVisible(), 'the rate limit error');
      const server = {
        name: await dialog.getByTestId('error-name').textContent(),
        scopes: await dialog.getByTestId('error-scopes').textContent(),
        allowedIps: await dialog.getByTestId('error-allowedIps').textContent(),
        rateLimit: await dialog.getByTestId('error-rateLimit').textContent(),
      };
      for (const field of Object.keys(server)) expect(await dialog.getByTestId(`error-${field}`).isVisible(), field).toBe(true);
      expect(await dialog.getByTestId('form-error').textContent()).toContain('Please fix the 4 problems below.');
      expect(server.name).toMatch(/^Name must be at most 100 characters/);
      expect(server.scopes).toContain('Order list');
      for (const text of Object.values(server)) {
        for (const scope of internal.filter((s) => s.includes(':'))) expect(text).not.toContain(scope);
        expect(text).not.toMatch(/allowedIps|rateLimit/);
      }
      expect((await keys.list({ ownerId: 'shop-a', limit: 1000 })).keys.map((k) => k.name)).not.toContain('Checked by the server');
      await page.unroute(`**${MOUNT}/api/keys`);
    });

    it('keeps focus inside an open dialog and gives it back to the control that opened it', async () => {
      const { key } = await keys.create({ name: 'Focus target', scopes: ['orders:list'], ownerId: 'shop-a' });
      const page = await openPage('alice');

      /** A control's name in these checks: its test id (with the scope, for a scope's box), else its id or tag. */
      const NAME_OF = `(n) => (n.getAttribute('data-testid') || n.id || n.tagName) + (n.name === 'scopes' ? ':' + n.value : '')`;
      /** Where focus is, and whether inside the dialog with this id. */
      const where = (dialogId: string) =>
        page.evaluate<{ at: string | null; inside: boolean }>(`(() => {
          const node = document.activeElement;
          return {
            at: node && (${NAME_OF})(node),
            inside: !!node && document.getElementById(${JSON.stringify(dialogId)}).contains(node),
          };
        })()`);
      /**
       * Presses Tab (or Shift+Tab) until focus is back where it started (at most 60 times): where focus was after each
       * press, as the page saw it on the key's release (a press whose release the page never saw, focus having left it,
       * shows as a missing stop).
       */
      const cycle = async (dialogId: string, key: 'Tab' | 'Shift+Tab') => {
        const start = await where(dialogId);
        await page.evaluate(`(() => {
          const dialog = document.getElementById(${JSON.stringify(dialogId)});
          window.kgStops = [];
          window.kgRecord = (event) => {
            if (event.key !== 'Tab') return;
            const node = document.activeElement;
            window.kgStops.push({ at: node && (${NAME_OF})(node), inside: !!node && dialog.contains(node) });
          };
          document.addEventListener('keyup', window.kgRecord, true);
        })()`);
        let presses = 0;
        let stops: Array<{ at: string | null; inside: boolean }> = [];
        while (presses < 60) {
          // (A date field takes several presses, one per part, without focus leaving it.)
          for (let i = 0; i < 8; i++, presses++) await page.keyboard.press(key);
          stops = await page.evaluate<typeof stops>('window.kgStops');
          const back = stops.findIndex((stop) => stop.at === start.at);
          if (back !== -1 || stops.length !== presses) {
            stops = stops.slice(0, back === -1 ? undefined : back + 1);
            break;
          }
        }
        const seen = await page.evaluate<number>(`(() => {
          document.removeEventListener('keyup', window.kgRecord, true);
          return window.kgStops.length;
        })()`);
        expect(seen, 'every press seen by the page').toBe(presses);
        return { start, stops };
      };
      /** The controls Tab should reach in the dialog with this id. */
      const reachable = (dialogId: string) =>
        page.evaluate<
          string[]
        >(`[...document.querySelectorAll('#${dialogId} button, #${dialogId} input, #${dialogId} select, #${dialogId} textarea')]
          .filter((n) => !n.disabled && n.getClientRects().length > 0 && !n.closest('[hidden]'))
          .map(${NAME_OF})`);

      await page.getByTestId('create-key').focus();
      await page.keyboard.press('Enter');
      await keyDialog(page).waitFor();
      expect(await focused(page)).toBe('field-name');
      const controls = await reachable('key-dialog');
      expect(controls.length).toBeGreaterThan(10);
      for (const direction of ['Tab', 'Shift+Tab'] as const) {
        const { start, stops } = await cycle('key-dialog', direction);
        expect(
          stops.every((stop) => stop.inside),
          direction,
        ).toBe(true);
        // Round the whole dialog, back to the start: every control on the way.
        expect(stops.at(-1)?.at, direction).toBe(start.at);
        expect(new Set(stops.map((stop) => stop.at)), direction).toEqual(new Set(controls));
      }
      await page.keyboard.press('Escape');
      await keyDialog(page).waitFor({ state: 'hidden' });
      expect(await focused(page)).toBe('create-key');

      // From a row's Edit button, and back to it.
      await rowOf(page, key.id).getByRole('button', { name: 'Edit Focus target' }).click();
      await keyDialog(page).waitFor();
      const { stops: editStops } = await cycle('key-dialog', 'Shift+Tab');
      expect(editStops.every((stop) => stop.inside)).toBe(true);
      expect(editStops.map((stop) => stop.at)).toContain('edit-delete');
      await page.getByTestId('key-close').click();
      await keyDialog(page).waitFor({ state: 'hidden' });
      expect(await focused(page)).toBe('edit-key');
      expect(await page.evaluate<string | null>('document.activeElement.getAttribute("data-key-id")')).toBe(key.id);

      // The question over the token dialog keeps focus to itself; the token dialog gets it back.
      await createThroughForm(page, 'Focus token');
      expect(await focused(page)).toBe('copy-token');
      const onToken = await cycle('token-dialog', 'Tab');
      expect(onToken.stops.every((stop) => stop.inside)).toBe(true);
      expect(new Set(onToken.stops.map((stop) => stop.at))).toEqual(new Set(await reachable('token-dialog')));
      await page.getByTestId('token-done').click();
      await confirmDialog(page).waitFor();
      const onQuestion = await cycle('confirm-dialog', 'Shift+Tab');
      expect(onQuestion.stops.every((stop) => stop.inside)).toBe(true);
      expect(new Set(onQuestion.stops.map((stop) => stop.at))).toEqual(new Set(['confirm-cancel', 'confirm-ok']));
      await page.getByTestId('confirm-cancel').click();
      await confirmDialog(page).waitFor({ state: 'hidden' });
      expect(await focused(page)).toBe('token-done');
      await page.getByTestId('token-close').click();
      await page.getByTestId('confirm-ok').click();
      await tokenDialog(page).waitFor({ state: 'hidden' });
      expect(await focused(page)).toBe('create-key');
    });

    it('has no serious or critical axe findings on the list, the form with errors and the token, at 1280 and 390 px', async () => {
      await keys.create({
        name: 'Axe: inactive',
        scopes: ['orders:list'],
        ownerId: 'shop-a',
        active: false,
        rateLimit: { limit: 10, windowMs: 1000 },
      });
      await keys.create({
        name: 'Axe: limited',
        scopes: ['all'],
        ownerId: 'shop-a',
        remaining: 3,
        refill: { amount: 10, intervalMs: 86_400_000 },
      });
      const axe = readFileSync(AXE_SOURCE, 'utf8');
      const page = await openPage('alice', { bypassCSP: true });
      await page.evaluate(axe);
      /** Runs axe on the whole document: its serious and critical findings, after checking that it looked at what matters. */
      const audit = async (what: string): Promise<Array<Finding & { what: string }>> => {
        const result = await page.evaluate<{ passed: string[]; found: Finding[] }>(`axe
          .run(document, { resultTypes: ['violations'] })
          .then((result) => ({
            passed: result.passes.map((rule) => rule.id),
            found: result.violations
              .filter((v) => v.impact === 'serious' || v.impact === 'critical')
              .map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(' ')) })),
          }))`);
        // Labels, button names and contrast were checked, and held, somewhere on the page.
        for (const rule of ['label', 'button-name', 'color-contrast']) expect(result.passed, `${what}: ${rule}`).toContain(rule);
        return result.found.map((finding) => ({ what, ...finding }));
      };
      const findings: Array<Finding & { what: string }> = [];
      for (const width of [1280, 390]) {
        await page.setViewportSize({ width, height: 800 });
        findings.push(...(await audit(`list at ${width}`)));

        await page.getByTestId('create-key').click();
        const dialog = keyDialog(page);
        await dialog.waitFor();
        await dialog.getByTestId('field-name').fill('x'.repeat(101));
        await dialog.getByTestId('field-allowedIps').fill('10.0.0.*');
        await dialog.getByTestId('field-rateLimit').fill('0');
        await dialog.getByTestId('key-save').click();
        await dialog.getByTestId('error-allowedIps').waitFor();
        findings.push(...(await audit(`form with errors at ${width}`)));

        await dialog.getByTestId('field-name').fill(`Axe token ${width}`);
        await dialog.getByTestId('field-allowedIps').fill('');
        await dialog.getByTestId('field-rateLimit').fill('');
        await dialog.getByLabel('Order list', { exact: true }).check();
        await dialog.getByTestId('key-save').click();
        await tokenDialog(page).waitFor();
        findings.push(...(await audit(`token at ${width}`)));
        await copyToken(page);
        await page.getByTestId('token-done').click();
        await tokenDialog(page).waitFor({ state: 'hidden' });
      }
      expect(findings).toEqual([]);
    });

    it('shows a custom scope catalog and the brand name and colours', async () => {
      const custom = createKeyManager({
        store: memoryStore(),
        scopes: defineScopes({
          resources: { invoices: 'Invoice', payouts: 'Payout' },
          actions: { read: 'read', write: { label: 'write', implies: ['read'] } },
          all: { name: 'everything', label: 'Everything' },
        }),
      });
      const branded = await framework.start({
        keys: custom,
        brand: { name: 'Müller & Söhne <Shop>', primary: '#0b7a53', accent: '#123524' },
      });
      try {
        const page = await openPage('alice', { on: branded });
        expect(await page.title()).toBe('Müller & Söhne <Shop> API Keys');
        expect(await page.locator('.brand').textContent()).toBe('Müller & Söhne <Shop>');
        const theme = await page.evaluate<string>(`fetch(${JSON.stringify(`${MOUNT}/assets/theme.css`)}).then((r) => r.text())`);
        expect(theme).toContain('--kg-primary: #0b7a53;');
        expect(theme).toContain('--kg-accent: #123524;');
        // The colours are in use: the primary button and the top bar.
        const colour = (selector: string) =>
          page.evaluate<string>(`getComputedStyle(document.querySelector(${JSON.stringify(selector)})).backgroundColor`);
        expect(await colour('#create-key')).toBe('rgb(11, 122, 83)');
        expect(await colour('.topbar')).toBe('rgb(18, 53, 36)');

        await page.getByTestId('create-key').click();
        const dialog = keyDialog(page);
        await dialog.waitFor();
        const labels = (await dialog.getByTestId('scope-boxes').locator('label').allTextContents()).map((l) => l.trim());
        expect(labels).toEqual(['Everything', 'Invoice read', 'Invoice write', 'Payout read', 'Payout write']);
        await dialog.getByTestId('field-name').fill('Accounting export');
        await dialog.getByLabel('Invoice write', { exact: true }).check();
        expect(await dialog.getByRole('checkbox', { name: 'Invoice read (included in Invoice write)' }).isDisabled()).toBe(true);
        await dialog.getByTestId('key-save').click();
        await tokenDialog(page).waitFor();
        const token = await page.getByTestId('token-value').inputValue();
        await copyToken(page);
        await page.getByTestId('token-done').click();
        await tokenDialog(page).waitFor({ state: 'hidden' });
        const [created] = (await custom.list({ ownerId: 'shop-a' })).keys;
        expect(created).toMatchObject({ name: 'Accounting export', scopes: ['invoices:write'] });
        expect(
          await rowOf(page, created?.id as string)
            .locator('.col-scopes')
            .textContent(),
        ).toBe('Invoice write');
        expect(await custom.verify(token, { scope: 'invoices:read', cost: 0 })).toMatchObject({ valid: true });
        expect(await custom.verify(token, { scope: 'payouts:read', cost: 0 })).toMatchObject({ valid: false, code: 'INSUFFICIENT_SCOPE' });
      } finally {
        await branded.close();
        await custom.close();
      }
    });
  });
});
