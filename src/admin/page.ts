// The admin page's files: the HTML (filled in per mount), its script and styles, and the host's colours.

import { createHash } from 'node:crypto';
import { ValidationError } from '../errors.js';
import html from './page/index.html?raw';
import script from './page/admin.js?raw';
import style from './page/admin.css?raw';
import type { AdminBrand } from './types.js';

/** A static file of the page. */
export interface PageFile {
  readonly type: string;
  readonly text: string;
  readonly etag: string;
}

export interface PageAssets {
  /** The page for a mount at `base` (its path as the browser sees it, no trailing `/`). */
  html(base: string): string;
  /** The files under `assets/`, by name. */
  readonly files: ReadonlyMap<string, PageFile>;
}

const COLOUR = /^#(?:[0-9a-fA-F]{3}){1,2}$/;
const BRAND_NAME_MAX = 60;
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;

function file(type: string, text: string): PageFile {
  return { type, text, etag: `"${createHash('sha256').update(text).digest('base64url').slice(0, 22)}"` };
}

/** The relative luminance of a `#rgb` / `#rrggbb` colour (WCAG 2). */
function luminance(colour: string): number {
  const hex = colour.length === 4 ? [...colour.slice(1)].map((c) => c + c).join('') : colour.slice(1);
  const [r, g, b] = [0, 2, 4].map((i) => {
    const c = Number.parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  }) as [number, number, number];
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** Black or white, whichever contrasts more with the colour: the text on a brand-coloured button or bar. */
function readableOn(colour: string): string {
  const l = luminance(colour);
  return 1.05 / (l + 0.05) >= (l + 0.05) / 0.05 ? '#ffffff' : '#000000';
}

/** Text for an HTML element or a double-quoted attribute. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Checks the brand options (at startup) and builds the page's files. */
export function pageAssets(brand: AdminBrand | undefined): PageAssets {
  if (brand !== undefined && (brand === null || typeof brand !== 'object')) {
    throw new ValidationError('brand', 'must be an object { name?, primary?, accent? } or left out');
  }
  const name = brand?.name;
  if (name !== undefined && (typeof name !== 'string' || name.trim() === '' || name.length > BRAND_NAME_MAX || CONTROL_CHARS.test(name))) {
    throw new ValidationError('brand.name', `must be a text of 1 to ${BRAND_NAME_MAX} characters without line breaks, e.g. 'Acme Shop'`);
  }
  const colours: string[] = [];
  for (const part of ['primary', 'accent'] as const) {
    const colour = brand?.[part];
    if (colour === undefined) continue;
    if (typeof colour !== 'string' || !COLOUR.test(colour)) {
      throw new ValidationError(`brand.${part}`, `must be a colour written #rgb or #rrggbb, e.g. '#1f5fbf'; got ${JSON.stringify(colour)}`);
    }
    colours.push(`  --kg-${part}: ${colour};`, `  --kg-on-${part}: ${readableOn(colour)};`);
  }
  const theme = colours.length > 0 ? `:root {\n${colours.join('\n')}\n}\n` : '/* the default colours */\n';
  const title = escapeHtml(name === undefined ? 'API Keys' : `${name.trim()} API Keys`);
  const brandText = escapeHtml(name?.trim() ?? '');
  const filled = html.replaceAll('{{title}}', title).replaceAll('{{brand}}', brandText);
  return {
    html: (base) => filled.replaceAll('{{base}}', escapeHtml(base)),
    files: new Map([
      ['admin.js', file('text/javascript; charset=utf-8', script)],
      ['admin.css', file('text/css; charset=utf-8', style)],
      ['theme.css', file('text/css; charset=utf-8', theme)],
    ]),
  };
}
