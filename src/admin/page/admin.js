// The API Keys admin page: lists keys and creates, edits, regenerates, deactivates, deletes and
// revokes them through the admin JSON API mounted beside it (`<base>/api/...`).

/**
 * A scope of the catalog, as `/api/config` sends it.
 * @typedef {{ name: string, label: string, implies: string[] }} ScopeInfo
 */
/**
 * A key as the admin API sends it. Times are ISO strings.
 * @typedef {object} AdminKey
 * @property {string} id
 * @property {string} name
 * @property {boolean} active
 * @property {string[]} scopes
 * @property {string[]} scopeLabels
 * @property {string[]} allowedIps
 * @property {string} hint
 * @property {string} createdAt
 * @property {string} updatedAt
 * @property {string|null} lastUsedAt
 * @property {string|null} lastUsedIp
 * @property {string|null} expiresAt
 * @property {{ limit: number, windowMs: number }|null} rateLimit
 * @property {number|null} remaining
 * @property {{ amount: number, intervalMs: number }|null} refill
 * @property {number} version
 */
/**
 * The form's inputs as text, the way they are compared to find what an edit changed.
 * @typedef {object} FormValues
 * @property {string} name
 * @property {boolean} active
 * @property {string[]} scopes the chosen scopes, without those another chosen one implies
 * @property {string} allowedIps
 * @property {string} expiresAt a `datetime-local` value, or '' for no expiry
 * @property {string} rateLimit
 * @property {string} rateWindow
 * @property {string} remaining
 * @property {string} refillAmount
 * @property {string} refillInterval
 */
/** @typedef {{ field: string, message: string }} FieldError */
/** @typedef {{ ok: boolean, status: number, data: any, etag: string|null }} ApiAnswer */

const QUOTA_MAX = 1_000_000_000;
const RATE_PRODUCT_MAX = 2 ** 51;
const PAGE_SIZE = 50;

/** The mount's path, e.g. `/admin/api-keys` (empty when mounted at the root). */
const BASE = (document.querySelector('meta[name="keygate-base"]')?.getAttribute('content') ?? '').replace(/\/+$/, '');

/** The page's names for the fields the API names. */
const FIELD_LABELS = /** @type {Record<string, string>} */ ({
  name: 'Name',
  active: 'Active',
  scopes: 'Scopes',
  allowedIps: 'Allowed IP addresses',
  expiresAt: 'Expires at',
  rateLimit: 'Rate limit',
  'rateLimit.limit': 'Requests',
  'rateLimit.windowMs': 'Per',
  remaining: 'Uses left',
  refill: 'Refill',
  'refill.amount': 'Refill to',
  'refill.intervalMs': 'Every',
});
/** Where an error on a field is shown: the error line and the control marked invalid. */
const ERROR_PLACES = /** @type {Record<string, { line: string, control: string|null }>} */ ({
  name: { line: 'name', control: 'key-name' },
  active: { line: 'active', control: 'key-active' },
  scopes: { line: 'scopes', control: null },
  allowedIps: { line: 'allowedIps', control: 'key-ips' },
  expiresAt: { line: 'expiresAt', control: 'key-expires' },
  rateLimit: { line: 'rateLimit', control: 'key-rate-limit' },
  'rateLimit.limit': { line: 'rateLimit', control: 'key-rate-limit' },
  'rateLimit.windowMs': { line: 'rateLimit', control: 'key-rate-window' },
  remaining: { line: 'remaining', control: 'key-remaining' },
  refill: { line: 'refill', control: 'key-refill-amount' },
  'refill.amount': { line: 'refill', control: 'key-refill-amount' },
  'refill.intervalMs': { line: 'refill', control: 'key-refill-interval' },
});
const ERROR_LINES = ['name', 'active', 'scopes', 'allowedIps', 'expiresAt', 'rateLimit', 'remaining', 'refill'];
/** Units for durations, largest first: size in ms, singular, plural, short. */
const UNITS = /** @type {const} */ ([
  [86_400_000, 'day', 'days', 'day'],
  [3_600_000, 'hour', 'hours', 'h'],
  [60_000, 'minute', 'minutes', 'min'],
  [1_000, 'second', 'seconds', 's'],
]);

const numberFormat = new Intl.NumberFormat('en-US');
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

// ---- state -------------------------------------------------------------------------------------

const config = {
  /** @type {ScopeInfo[]} */
  scopes: [],
  ipRule: '',
  nameMax: 100,
  rotateGraceMs: 86_400_000,
};
/** @type {AdminKey[]} the keys loaded so far, in the API's order */
let keys = [];
/** @type {string|null} */
let nextCursor = null;
/**
 * The key form: creating, or editing `key` (as last read; its version goes in If-Match) whose fields
 * were `baseline` when the form was filled (only fields that differ from it are sent).
 * @type {{ mode: 'create' } | { mode: 'edit', key: AdminKey, baseline: FormValues }}
 */
let form = { mode: 'create' };
/** Scopes the user ticked in the form (a scope another ticked one implies is shown ticked, not kept here). */
let chosenScopes = new Set();
/** Whether the token on show has been copied: closing without copying asks first. */
let tokenCopied = false;

// ---- small helpers -----------------------------------------------------------------------------

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
/** @param {string} id */
const input = (id) => /** @type {HTMLInputElement} */ (document.getElementById(id));
/** @param {string} id */
const select = (id) => /** @type {HTMLSelectElement} */ (document.getElementById(id));
/** @param {string} id */
const button = (id) => /** @type {HTMLButtonElement} */ (document.getElementById(id));
/** @param {string} id */
const dialogEl = (id) => /** @type {HTMLDialogElement} */ (document.getElementById(id));

/**
 * Creates an element with a class and text.
 * @param {string} tag
 * @param {string} [className]
 * @param {string} [text]
 */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * A button with visible text, an accessible name and a test id.
 * @param {string} text
 * @param {string} className
 * @param {string} [ariaLabel]
 */
function makeButton(text, className, ariaLabel) {
  const node = /** @type {HTMLButtonElement} */ (el('button', className, text));
  node.type = 'button';
  if (ariaLabel) node.setAttribute('aria-label', ariaLabel);
  return node;
}

/** @param {string} text */
function quote(text) {
  return `“${text}”`;
}

/** @param {number} n */
function formatNumber(n) {
  return numberFormat.format(n);
}

/** @param {string|number|Date} at */
function formatTime(at) {
  return dateTimeFormat.format(new Date(at));
}

/**
 * A duration in words: `24 hours`, `1 minute`, `30 days`.
 * @param {number} ms
 */
function longDuration(ms) {
  for (const [size, one, many] of UNITS) {
    if (ms % size !== 0) continue;
    const n = ms / size;
    return n === 1 ? `1 ${one}` : `${formatNumber(n)} ${many}`;
  }
  return `${formatNumber(ms)} ms`;
}

/**
 * An interval after "every": `day`, `hour`, `30 days`.
 * @param {number} ms
 */
function everyDuration(ms) {
  return longDuration(ms).replace(/^1 /, '');
}

/**
 * A window or interval after "/" in the list: `min`, `hour`, `30 days`.
 * @param {number} ms
 */
function shortDuration(ms) {
  for (const [size, one, many, short] of UNITS) {
    if (ms % size !== 0) continue;
    const n = ms / size;
    if (n === 1) return short === 'h' ? one : short;
    return `${formatNumber(n)} ${short === 'min' || short === 's' ? short : many}`;
  }
  return `${formatNumber(ms)} ms`;
}

/** Says something to screen readers (and tests) without moving focus. */
function announce(/** @type {string} */ message) {
  const box = $('status');
  box.textContent = '';
  // A new text node each time, so the same message twice is announced twice.
  window.setTimeout(() => {
    box.textContent = message;
  }, 30);
}

/** @param {string} message */
function showPageError(message) {
  const box = $('page-error');
  box.textContent = message;
  box.hidden = !message;
}

// ---- the API -----------------------------------------------------------------------------------

/**
 * Calls the admin JSON API. Writes send JSON (the browser adds the page's Origin itself).
 * @param {string} method
 * @param {string} path relative to `<base>/api`
 * @param {{ body?: unknown, headers?: Record<string, string> }} [options]
 * @returns {Promise<ApiAnswer>}
 */
async function api(method, path, options = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json', ...options.headers };
  if (method !== 'GET') headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(`${BASE}/api${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    return { ok: false, status: 0, data: null, etag: null };
  }
  let data = null;
  const text = await response.text().catch(() => '');
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  return { ok: response.ok, status: response.status, data, etag: response.headers.get('ETag') };
}

/**
 * What went wrong, in the page's words, for an answer that is not a field error.
 * @param {ApiAnswer} answer
 * @param {string} fallback
 */
function problem(answer, fallback) {
  const code = answer.data?.error?.code;
  if (answer.status === 0) return 'The server could not be reached. Check your connection and try again.';
  if (code === 'ORIGIN_MISMATCH')
    return 'The server refused the change because it did not come from this page. Reload the page and try again.';
  if (answer.status === 403) return 'You are not allowed to do this.';
  if (answer.status === 404 && code === 'KEY_NOT_FOUND') return 'This API key no longer exists; it may have been deleted.';
  if (answer.status === 412 || answer.status === 409) return 'Someone else changed this key meanwhile.';
  if (answer.status === 413) return 'That is too much text to send.';
  if (answer.status === 503) return 'The key store is not answering. Try again in a moment.';
  const message = answer.data?.error?.message;
  if (typeof message === 'string' && message) return pageWords(message);
  return `${fallback} (The server answered ${answer.status}.)`;
}

/**
 * A message of the API in the page's words: field paths (`allowedIps`, `rateLimit.limit`) become
 * the form's labels, scope names the catalog's labels, milliseconds a duration.
 * @param {string} message
 * @param {string} [field] the field it is about, dropped from the front of the message
 */
function pageWords(message, field) {
  let text = message.trim();
  if (field && text.startsWith(`${field}: `)) text = text.slice(field.length + 2);
  // Only names that are not plain words: `name` or `scopes` in a sentence stay as they are.
  const fieldNames = Object.keys(FIELD_LABELS)
    .filter((name) => /[A-Z.]/.test(name))
    .sort((a, b) => b.length - a.length);
  for (const name of fieldNames) {
    text = text.replace(
      new RegExp(`(^|[^\\w.])${name.replace('.', '\\.')}(?![\\w.])`, 'g'),
      (_, before) => `${before}${FIELD_LABELS[name]}`,
    );
  }
  const scopes = [...config.scopes].sort((a, b) => b.name.length - a.name.length);
  for (const scope of scopes) {
    const name = scope.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    text = text.replace(new RegExp(`(^|[^\\w:-])${name}(?![\\w:-])`, 'g'), (_, before) => `${before}${scope.label}`);
  }
  text = text.replace(/\b(\d{4,}) ms\b/g, (whole, ms) => (Number(ms) % 1000 === 0 ? longDuration(Number(ms)) : whole));
  if (field) {
    const label = FIELD_LABELS[field] ?? FIELD_LABELS[field.replace(/\[.*$/, '')] ?? FIELD_LABELS[field.replace(/[[.].*$/, '')];
    if (!label) text = `${field}: ${text}`;
    else if (/^(must|is|has|needs|contains|cannot)\b/.test(text)) text = `${label} ${text}`;
  }
  text = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

// ---- dialogs -----------------------------------------------------------------------------------

/**
 * The open dialogs, the topmost last, each with the element to give focus back to and what a
 * request to close it (Escape, ×, backdrop) does.
 * @type {{ dialog: HTMLDialogElement, opener: Element|null, requestClose: (how: string) => void, backdrop: boolean }[]}
 */
const openDialogs = [];

const FOCUSABLE = 'a[href], button, input:not([type="hidden"]), select, textarea, [tabindex]:not([tabindex="-1"])';

/** @param {HTMLElement} root */
function focusables(root) {
  return /** @type {HTMLElement[]} */ ([...root.querySelectorAll(FOCUSABLE)]).filter(
    (node) => !(/** @type {HTMLButtonElement} */ (node).disabled) && node.getClientRects().length > 0 && !node.closest('[hidden]'),
  );
}

/**
 * Opens a modal dialog over the page (and over any dialog already open).
 * @param {HTMLDialogElement} dialog
 * @param {{ requestClose: (how: string) => void, focus?: HTMLElement|null, backdrop?: boolean, opener?: Element|null }} options
 */
function openDialog(dialog, options) {
  openDialogs.push({
    dialog,
    opener: options.opener ?? document.activeElement,
    requestClose: options.requestClose,
    backdrop: options.backdrop ?? true,
  });
  dialog.showModal();
  const target = options.focus ?? focusables(dialog)[0];
  target?.focus();
}

/**
 * Closes a dialog and gives focus back to what opened it (or, if that is gone, to its stand-in).
 * @param {HTMLDialogElement} dialog
 * @param {Element|null} [focus] where focus goes instead of the opener
 */
function closeDialog(dialog, focus) {
  const index = openDialogs.findIndex((entry) => entry.dialog === dialog);
  const entry = index === -1 ? null : openDialogs.splice(index, 1)[0];
  if (dialog.open) dialog.close();
  refocus(focus ?? entry?.opener ?? null);
}

/**
 * Focuses an element; if it left the page (its row was drawn anew), the same control of the same
 * key, else the Create button.
 * @param {Element|null} target
 */
function refocus(target) {
  let node = target instanceof HTMLElement ? target : null;
  if (node && !node.isConnected) {
    const { keyId, action } = node.dataset;
    node = keyId && action ? findControl(keyId, action) : null;
  }
  if (!node || /** @type {HTMLButtonElement} */ (node).disabled || node.getClientRects().length === 0) {
    node = button('create-key');
  }
  node.focus();
}

/**
 * A control of a key's row.
 * @param {string} keyId
 * @param {string} action `edit`, `delete` or `toggle`
 */
function findControl(keyId, action) {
  return /** @type {HTMLElement|null} */ (
    document.querySelector(`#keys-body [data-key-id="${CSS.escape(keyId)}"][data-action="${CSS.escape(action)}"]`)
  );
}

function topDialog() {
  return openDialogs.at(-1) ?? null;
}

/** Keeps Tab inside the topmost dialog and turns Escape into a request to close it. */
function onDocumentKeydown(/** @type {KeyboardEvent} */ event) {
  const top = topDialog();
  if (!top) return;
  if (event.key === 'Escape') {
    event.preventDefault();
    event.stopPropagation();
    top.requestClose('escape');
    return;
  }
  if (event.key !== 'Tab') return;
  const items = focusables(top.dialog);
  if (items.length === 0) {
    event.preventDefault();
    return;
  }
  const first = items[0];
  const last = /** @type {HTMLElement} */ (items.at(-1));
  const active = document.activeElement;
  const inside = active instanceof HTMLElement && top.dialog.contains(active) && items.includes(active);
  if (event.shiftKey && (!inside || active === first)) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && (!inside || active === last)) {
    event.preventDefault();
    first.focus();
  }
}

/** @param {HTMLDialogElement} dialog */
function wireDialog(dialog) {
  // Escape is handled on keydown; this catches the browser's own close requests.
  dialog.addEventListener('cancel', (event) => {
    event.preventDefault();
    const entry = openDialogs.find((item) => item.dialog === dialog);
    if (entry && entry === topDialog()) entry.requestClose('escape');
  });
  // A click on the backdrop lands on the dialog element itself (its content fills the box).
  let pressedOnBackdrop = false;
  dialog.addEventListener('pointerdown', (event) => {
    pressedOnBackdrop = event.target === dialog;
  });
  dialog.addEventListener('click', (event) => {
    const entry = openDialogs.find((item) => item.dialog === dialog);
    if (event.target === dialog && pressedOnBackdrop && entry?.backdrop && entry === topDialog()) entry.requestClose('backdrop');
    pressedOnBackdrop = false;
  });
  // Closed some other way (the browser): forget it.
  dialog.addEventListener('close', () => {
    const index = openDialogs.findIndex((item) => item.dialog === dialog);
    if (index !== -1) openDialogs.splice(index, 1);
  });
}

/** @type {((answer: boolean) => void)|null} */
let confirmResolve = null;

/**
 * Asks before an action, in a dialog over whatever is open.
 * @param {{ title: string, text: string, ok: string, cancel?: string, danger?: boolean }} question
 * @returns {Promise<boolean>}
 */
function confirmAction(question) {
  const dialog = dialogEl('confirm-dialog');
  if (dialog.open) return Promise.resolve(false);
  $('confirm-title').textContent = question.title;
  $('confirm-text').textContent = question.text;
  const ok = button('confirm-ok');
  ok.textContent = question.ok;
  ok.className = question.danger ? 'btn btn-danger' : 'btn btn-primary';
  button('confirm-cancel').textContent = question.cancel ?? 'Cancel';
  return new Promise((resolve) => {
    confirmResolve = resolve;
    openDialog(dialog, { requestClose: () => answerConfirm(false), focus: button('confirm-cancel') });
  });
}

/** @param {boolean} yes */
function answerConfirm(yes) {
  const resolve = confirmResolve;
  confirmResolve = null;
  closeDialog(dialogEl('confirm-dialog'));
  resolve?.(yes);
}

// ---- the list ----------------------------------------------------------------------------------

/**
 * Reads a page of keys.
 * @param {string|null} cursor
 * @returns {Promise<{ keys: AdminKey[], nextCursor: string|null }|null>} null after showing why not
 */
async function fetchPage(cursor) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (cursor) query.set('cursor', cursor);
  const answer = await api('GET', `/keys?${query}`);
  if (!answer.ok || !Array.isArray(answer.data?.keys)) {
    showPageError(problem(answer, 'The API keys could not be loaded.'));
    return null;
  }
  return { keys: answer.data.keys, nextCursor: answer.data.nextCursor ?? null };
}

/**
 * Loads the list anew, as many keys as were on show (at least one page), in the API's order.
 * @param {number} [atLeast]
 */
async function reloadList(atLeast = 0) {
  /** @type {AdminKey[]} */
  const loaded = [];
  let cursor = null;
  do {
    const page = await fetchPage(cursor);
    if (!page) return false;
    loaded.push(...page.keys);
    cursor = page.nextCursor;
  } while (cursor !== null && loaded.length < atLeast);
  showPageError('');
  keys = loaded;
  nextCursor = cursor;
  renderList();
  return true;
}

async function loadMore() {
  if (nextCursor === null) return;
  const more = button('load-more');
  more.disabled = true;
  const page = await fetchPage(nextCursor);
  more.disabled = false;
  if (!page) return;
  showPageError('');
  const firstNew = page.keys[0];
  const known = new Set(keys.map((key) => key.id));
  keys.push(...page.keys.filter((key) => !known.has(key.id)));
  nextCursor = page.nextCursor;
  renderList();
  announce(`Loaded ${page.keys.length} more ${page.keys.length === 1 ? 'key' : 'keys'}.`);
  if (nextCursor === null && firstNew) findControl(firstNew.id, 'edit')?.focus();
}

function renderList() {
  $('keys-loading').hidden = true;
  const body = $('keys-body');
  body.replaceChildren(...keys.map(renderRow));
  $('keys-box').hidden = keys.length === 0;
  $('keys-empty').hidden = keys.length > 0;
  $('more-box').hidden = nextCursor === null;
}

/**
 * Draws one key's row again in place, keeping focus on the same control.
 * @param {AdminKey} key
 */
function updateRow(key) {
  const index = keys.findIndex((item) => item.id === key.id);
  if (index === -1) return;
  keys[index] = key;
  const old = document.querySelector(`#keys-body tr[data-key-id="${CSS.escape(key.id)}"]`);
  if (!old) return;
  const focused = document.activeElement instanceof HTMLElement && old.contains(document.activeElement) ? document.activeElement : null;
  const row = renderRow(key);
  old.replaceWith(row);
  if (focused) refocus(focused);
}

/** @param {string} id */
function removeRow(id) {
  keys = keys.filter((key) => key.id !== id);
  document.querySelector(`#keys-body tr[data-key-id="${CSS.escape(id)}"]`)?.remove();
  $('keys-box').hidden = keys.length === 0;
  $('keys-empty').hidden = keys.length > 0 || nextCursor !== null;
}

/**
 * A table cell with the column name the card layout shows before it. Its content goes in one
 * wrapper, the second column of a card's line.
 * @param {string} label
 * @param {string} className
 * @param {...(Node|string)} content
 */
function cell(label, className, ...content) {
  const node = el('td', className);
  node.dataset.label = label;
  const wrapper = el('div', 'cell-body');
  wrapper.append(...content);
  node.append(wrapper);
  return node;
}

/** @param {AdminKey} key */
function renderRow(key) {
  const row = el('tr', key.active ? '' : 'inactive');
  row.dataset.keyId = key.id;
  row.setAttribute('data-testid', 'key-row');

  const name = el('span', 'key-name', key.name);
  name.setAttribute('data-testid', 'key-name');
  row.append(
    cell('Name', 'col-name', name, el('code', 'key-hint', key.hint), el('span', 'sub-line', `Created ${formatTime(key.createdAt)}`)),
  );

  const labels = key.scopeLabels?.length ? key.scopeLabels : key.scopes.map(scopeLabel);
  row.append(cell('Scopes', 'col-scopes', ...labels.map((label) => el('span', 'label', label))));

  const ips = key.allowedIps.length === 0 ? [el('span', 'muted', 'Any address')] : key.allowedIps.map((ip) => el('code', 'ip', ip));
  row.append(cell('Allowed IP addresses', 'col-ips', ...ips));

  const rate =
    key.rateLimit === null
      ? el('span', 'line muted', 'No rate limit')
      : el('span', 'line', `${formatNumber(key.rateLimit.limit)} / ${shortDuration(key.rateLimit.windowMs)}`);
  const uses = el('span', key.remaining === 0 ? 'line spent' : key.remaining === null ? 'line muted' : 'line', usesText(key.remaining));
  uses.setAttribute('data-testid', 'key-remaining');
  const refill =
    key.refill === null
      ? []
      : [el('span', 'sub-line', `refills to ${formatNumber(key.refill.amount)} every ${everyDuration(key.refill.intervalMs)}`)];
  row.append(cell('Limits', 'col-limits', rate, uses, ...refill));

  let expires;
  if (key.expiresAt === null) expires = el('span', 'muted', 'Never');
  else if (new Date(key.expiresAt).getTime() <= Date.now()) expires = el('span', 'expired', `Expired ${formatTime(key.expiresAt)}`);
  else expires = el('span', '', formatTime(key.expiresAt));
  const expiresCell = cell('Expires', 'col-expires', expires);
  expiresCell.setAttribute('data-testid', 'key-expires');
  row.append(expiresCell);

  /** @type {Node[]} */
  const used = [];
  if (key.lastUsedAt === null) used.push(el('span', 'muted', 'Never used'));
  else {
    used.push(el('span', 'line', formatTime(key.lastUsedAt)));
    if (key.lastUsedIp) {
      const from = el('span', 'sub-line', 'from ');
      from.append(el('code', '', key.lastUsedIp));
      used.push(from);
    }
  }
  const usedCell = cell('Last used', 'col-used', ...used);
  usedCell.setAttribute('data-testid', 'key-last-used');
  row.append(usedCell);

  const toggleLabel = el('label', 'switch');
  const toggle = /** @type {HTMLInputElement} */ (el('input'));
  toggle.type = 'checkbox';
  toggle.setAttribute('role', 'switch');
  toggle.checked = key.active;
  toggle.setAttribute('aria-label', `Active: ${key.name}`);
  toggle.dataset.keyId = key.id;
  toggle.dataset.action = 'toggle';
  toggle.setAttribute('data-testid', 'active-toggle');
  toggle.addEventListener('change', () => void toggleActive(key.id, toggle));
  const track = el('span', 'switch-track');
  track.setAttribute('aria-hidden', 'true');
  const state = el('span', 'switch-text', key.active ? 'Active' : 'Inactive');
  state.setAttribute('aria-hidden', 'true');
  toggleLabel.append(toggle, track, state);
  row.append(cell('Active', 'col-active', toggleLabel));

  const edit = makeButton('Edit', 'btn btn-small', `Edit ${key.name}`);
  edit.dataset.keyId = key.id;
  edit.dataset.action = 'edit';
  edit.setAttribute('data-testid', 'edit-key');
  edit.addEventListener('click', () => void openEdit(key.id, edit));
  const remove = makeButton('Delete', 'btn btn-small', `Delete ${key.name}`);
  remove.dataset.keyId = key.id;
  remove.dataset.action = 'delete';
  remove.setAttribute('data-testid', 'delete-key');
  remove.addEventListener('click', () => void deleteKey(key.id, remove));
  const actions = el('div', 'row-actions');
  actions.append(edit, remove);
  row.append(cell('Actions', 'col-actions', actions));
  return row;
}

/** @param {string} name */
function scopeLabel(name) {
  return config.scopes.find((scope) => scope.name === name)?.label ?? name;
}

/** @param {number|null} remaining */
function usesText(remaining) {
  if (remaining === null) return 'Unlimited uses';
  return `${formatNumber(remaining)} ${remaining === 1 ? 'use' : 'uses'} left`;
}

/**
 * The Active switch of a row: activates or deactivates the key.
 * @param {string} id
 * @param {HTMLInputElement} toggle
 */
async function toggleActive(id, toggle) {
  const key = keys.find((item) => item.id === id);
  if (!key) return;
  const activate = toggle.checked;
  toggle.disabled = true;
  const answer = await api('POST', `/keys/${encodeURIComponent(id)}/${activate ? 'activate' : 'deactivate'}`, { body: {} });
  toggle.disabled = false;
  if (!answer.ok || !answer.data?.key) {
    toggle.checked = !activate;
    showPageError(`${quote(key.name)} could not be ${activate ? 'activated' : 'deactivated'}: ${problem(answer, 'Please try again.')}`);
    if (answer.status === 404) removeRow(id);
    toggle.focus();
    return;
  }
  showPageError('');
  updateRow(answer.data.key);
  findControl(id, 'toggle')?.focus();
  announce(`${quote(key.name)} is now ${activate ? 'active' : 'inactive'}.`);
}

/**
 * Deletes a key after asking; from its row or from the edit view.
 * @param {string} id
 * @param {HTMLElement} opener
 * @returns {Promise<boolean>} whether it is gone
 */
async function deleteKey(id, opener) {
  const key = keys.find((item) => item.id === id) ?? (form.mode === 'edit' && form.key.id === id ? form.key : null);
  if (!key) return false;
  const sure = await confirmAction({
    title: 'Delete this API key?',
    text: `${quote(key.name)} will be deleted. Every system using it is refused at once. This cannot be undone.`,
    ok: 'Delete key',
    danger: true,
  });
  if (!sure) return false;
  const answer = await api('DELETE', `/keys/${encodeURIComponent(id)}`);
  if (!answer.ok && answer.status !== 404) {
    const message = problem(answer, 'The key could not be deleted.');
    if (dialogEl('key-dialog').open) showFormError(message);
    else showPageError(message);
    opener.focus();
    return false;
  }
  showPageError('');
  const index = keys.findIndex((item) => item.id === id);
  const neighbour = keys[index + 1] ?? keys[index - 1];
  removeRow(id);
  if (dialogEl('key-dialog').open) closeDialog(dialogEl('key-dialog'), neighbour ? findControl(neighbour.id, 'edit') : null);
  else refocus(neighbour ? findControl(neighbour.id, 'delete') : null);
  announce(`Deleted ${quote(key.name)}.`);
  return true;
}

// ---- the key form ------------------------------------------------------------------------------

/** @returns {HTMLInputElement[]} */
function scopeBoxes() {
  return /** @type {HTMLInputElement[]} */ ([...document.querySelectorAll('#scope-boxes input[type="checkbox"]')]);
}

function renderScopeBoxes() {
  const container = $('scope-boxes');
  container.replaceChildren();
  const others = config.scopes.length - 1;
  for (const scope of config.scopes) {
    const impliesAll =
      others > 0 && scope.implies.length >= others && config.scopes.every((s) => s === scope || scope.implies.includes(s.name));
    const label = el('label', impliesAll ? 'check all' : 'check');
    const box = /** @type {HTMLInputElement} */ (el('input'));
    box.type = 'checkbox';
    box.name = 'scopes';
    box.value = scope.name;
    box.setAttribute('data-testid', 'scope-option');
    box.addEventListener('change', () => {
      if (box.checked) chosenScopes.add(scope.name);
      else chosenScopes.delete(scope.name);
      showScopes();
    });
    const text = el('span', 'scope-text', scope.label);
    text.append(el('span', 'included'));
    label.append(box, text);
    container.append(label);
  }
}

/** Ticks the chosen scopes, and ticks and locks the scopes they imply. */
function showScopes() {
  for (const box of scopeBoxes()) {
    const impliedBy = config.scopes.find(
      (scope) => chosenScopes.has(scope.name) && scope.name !== box.value && scope.implies.includes(box.value),
    );
    box.checked = chosenScopes.has(box.value) || impliedBy !== undefined;
    box.disabled = impliedBy !== undefined;
    const note = /** @type {HTMLElement} */ (box.parentElement?.querySelector('.included'));
    note.textContent = impliedBy ? ` (included in ${impliedBy.label})` : '';
  }
}

/**
 * The chosen scopes without those another chosen scope implies, in catalog order.
 * @param {Iterable<string>} names
 */
function minimalScopes(names) {
  const set = new Set(names);
  return config.scopes
    .filter((scope) => set.has(scope.name))
    .filter((scope) => !config.scopes.some((other) => other !== scope && set.has(other.name) && other.implies.includes(scope.name)))
    .map((scope) => scope.name);
}

/**
 * `datetime-local` text for an instant, in local time.
 * @param {string|null} iso
 */
function toLocalInput(iso) {
  if (!iso) return '';
  const at = new Date(iso);
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0');
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T${pad(at.getHours())}:${pad(at.getMinutes())}`;
}

/**
 * Selects `ms` in a duration select, adding it as a choice when it is not one of the usual ones
 * (a key given another window through the API keeps it when saved unchanged).
 * @param {HTMLSelectElement} box
 * @param {number} ms
 */
function selectDuration(box, ms) {
  for (const option of [...box.options]) if (option.dataset.extra !== undefined) option.remove();
  const value = String(ms);
  if (![...box.options].some((option) => option.value === value)) {
    const option = /** @type {HTMLOptionElement} */ (el('option', undefined, longDuration(ms)));
    option.value = value;
    option.dataset.extra = '';
    box.append(option);
  }
  box.value = value;
}

/**
 * The form's values for a key (or a new one).
 * @param {AdminKey|null} key
 * @returns {FormValues}
 */
function valuesOf(key) {
  return {
    name: key?.name ?? '',
    active: key?.active ?? true,
    scopes: minimalScopes(key?.scopes ?? []),
    allowedIps: key?.allowedIps.join(',') ?? '',
    expiresAt: toLocalInput(key?.expiresAt ?? null),
    rateLimit: key?.rateLimit ? String(key.rateLimit.limit) : '',
    rateWindow: String(key?.rateLimit?.windowMs ?? 60_000),
    remaining: key?.remaining === null || key?.remaining === undefined ? '' : String(key.remaining),
    refillAmount: key?.refill ? String(key.refill.amount) : '',
    refillInterval: String(key?.refill?.intervalMs ?? 86_400_000),
  };
}

/** @param {FormValues} values */
function fillForm(values) {
  input('key-name').value = values.name;
  input('key-active').checked = values.active;
  chosenScopes = new Set(values.scopes);
  showScopes();
  input('key-ips').value = values.allowedIps;
  input('key-expires').value = values.expiresAt;
  input('key-rate-limit').value = values.rateLimit;
  selectDuration(select('key-rate-window'), Number(values.rateWindow));
  input('key-remaining').value = values.remaining;
  input('key-refill-amount').value = values.refillAmount;
  selectDuration(select('key-refill-interval'), Number(values.refillInterval));
}

/** @returns {FormValues} */
function readForm() {
  return {
    name: input('key-name').value,
    active: input('key-active').checked,
    scopes: minimalScopes(chosenScopes),
    allowedIps: input('key-ips').value.trim(),
    expiresAt: input('key-expires').value,
    rateLimit: input('key-rate-limit').value.trim(),
    rateWindow: select('key-rate-window').value,
    remaining: input('key-remaining').value.trim(),
    refillAmount: input('key-refill-amount').value.trim(),
    refillInterval: select('key-refill-interval').value,
  };
}

/**
 * A whole number as typed (`1000` or `1,000`), or null when it is not one.
 * @param {string} text
 */
function wholeNumber(text) {
  if (/^\d+$/.test(text) || /^\d{1,3}(,\d{3})+$/.test(text)) return Number(text.replaceAll(',', ''));
  return null;
}

/** @param {string} text */
function isIpv4(text) {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((part) => /^(0|[1-9]\d{0,2})$/.test(part) && Number(part) <= 255);
}

/** @param {string} text */
function isIpv6(text) {
  if (!/^[0-9a-f:.]+$/i.test(text) || !text.includes(':')) return false;
  let groups = text.split(':');
  const last = groups.at(-1) ?? '';
  let size = 8;
  if (last.includes('.')) {
    if (!isIpv4(last)) return false;
    groups = groups.slice(0, -1);
    size = 6;
  }
  const double = text.indexOf('::');
  if (double !== -1 && text.indexOf('::', double + 1) !== -1) return false;
  const filled = groups.filter((group) => group !== '');
  if (!filled.every((group) => /^[0-9a-f]{1,4}$/i.test(group))) return false;
  if (double === -1) return groups.length === size && filled.length === size;
  if (text.startsWith(':') && !text.startsWith('::')) return false;
  if (text.endsWith(':') && !text.endsWith('::')) return false;
  return filled.length < size;
}

/**
 * What is wrong with one entry of the address list, in the page's words, or null.
 * @param {string} entry
 */
function ipProblem(entry) {
  if (entry === '') return 'is empty; remove the extra comma';
  if (/\s/.test(entry)) return 'contains a space; separate addresses with commas only, no spaces';
  if (entry.includes('*')) return 'is a wildcard; wildcards are not allowed, list each exact address';
  if (entry.includes('/')) return 'is a range; ranges are not allowed, list each exact address';
  if (/^[\d.]+-[\d.]+$/.test(entry) || /^[\da-f:]+-[\da-f:]+$/i.test(entry))
    return 'is a range; ranges are not allowed, list each exact address';
  if (entry.includes('%')) return 'has a zone (%…); give the address alone';
  if (entry.startsWith('[') || /^\d+\.\d+\.\d+\.\d+:\d+$/.test(entry)) return 'has a port or brackets; give the address alone';
  if (entry === '0.0.0.0' || /^[0:]+$/.test(entry)) return 'means “any address”; leave the field empty to allow any address';
  if (isIpv4(entry) || isIpv6(entry)) return null;
  if (/^[\d.]+$/.test(entry)) return 'is not an IPv4 address; use four numbers 0–255, like 203.0.113.7';
  return 'is not an IPv4 or IPv6 address';
}

/**
 * Checks the form before sending, and says everything that is wrong at once.
 * @param {FormValues} values
 * @param {FormValues|null} baseline the values as opened (an edit checks only what it changes)
 * @returns {FieldError[]}
 */
function validate(values, baseline) {
  /** @type {FieldError[]} */
  const errors = [];
  const changed = (/** @type {keyof FormValues} */ field) => baseline === null || !same(values, baseline, field);
  const name = values.name.trim();
  if (name === '') errors.push({ field: 'name', message: 'Enter a name, for example “ERP sync”.' });
  else if (name.length > config.nameMax) {
    errors.push({ field: 'name', message: `The name is ${formatNumber(name.length)} characters long; use at most ${config.nameMax}.` });
  } else if (/[\u0000-\u001f\u007f]/.test(name)) errors.push({ field: 'name', message: 'The name cannot contain tabs or line breaks.' });

  if (values.scopes.length === 0) errors.push({ field: 'scopes', message: 'Choose at least one scope.' });

  if (values.allowedIps !== '') {
    const entries = values.allowedIps.split(',');
    const faults = entries
      .map((entry, index) => ({ entry, index, reason: ipProblem(entry) }))
      .filter((fault) => fault.reason !== null)
      .map((fault) =>
        entries.length === 1 ? `${quote(fault.entry)} ${fault.reason}.` : `Entry ${fault.index + 1} ${quote(fault.entry)} ${fault.reason}.`,
      );
    if (faults.length > 0) {
      const shown = faults.slice(0, 3);
      if (faults.length > 3) shown.push(`…and ${faults.length - 3} more.`);
      errors.push({ field: 'allowedIps', message: shown.join('\n') });
    }
  }

  const expires = input('key-expires');
  if (expires.validity.badInput) {
    errors.push({ field: 'expiresAt', message: 'Enter a complete date and time, or leave it empty so the key never expires.' });
  } else if (values.expiresAt !== '' && changed('expiresAt')) {
    const at = new Date(values.expiresAt);
    if (Number.isNaN(at.getTime())) errors.push({ field: 'expiresAt', message: 'Enter a valid date and time.' });
    else if (at.getTime() <= Date.now())
      errors.push({ field: 'expiresAt', message: 'Choose a time in the future, or leave it empty so the key never expires.' });
    else if (at.getFullYear() > 9999) errors.push({ field: 'expiresAt', message: 'Choose a year up to 9999.' });
  }

  if (values.rateLimit !== '') {
    const limit = wholeNumber(values.rateLimit);
    const windowMs = Number(values.rateWindow);
    if (limit === null || limit < 1 || limit > QUOTA_MAX) {
      errors.push({
        field: 'rateLimit',
        message: `Requests must be a whole number from 1 to ${formatNumber(QUOTA_MAX)}, or empty for no limit.`,
      });
    } else if (limit * windowMs > RATE_PRODUCT_MAX) {
      const most = Math.floor(RATE_PRODUCT_MAX / windowMs);
      errors.push({
        field: 'rateLimit',
        message: `At most ${formatNumber(most)} requests per ${everyDuration(windowMs)} are possible. For a larger budget, use Uses left with a refill.`,
      });
    }
  }

  if (values.remaining !== '') {
    const remaining = wholeNumber(values.remaining);
    if (remaining === null || remaining > QUOTA_MAX) {
      errors.push({
        field: 'remaining',
        message: `Uses left must be a whole number from 0 to ${formatNumber(QUOTA_MAX)}, or empty for unlimited.`,
      });
    }
  }
  if (values.refillAmount !== '') {
    const amount = wholeNumber(values.refillAmount);
    if (amount === null || amount < 1 || amount > QUOTA_MAX) {
      errors.push({
        field: 'refill',
        message: `Refill to must be a whole number from 1 to ${formatNumber(QUOTA_MAX)}, or empty for no refill.`,
      });
    } else if (values.remaining === '') {
      errors.push({ field: 'refill', message: 'A refill needs Uses left too: set how many uses the key starts with.' });
    }
  }
  return errors;
}

/**
 * Whether a field has the same value in both.
 * @param {FormValues} a
 * @param {FormValues} b
 * @param {keyof FormValues} field
 */
function same(a, b, field) {
  switch (field) {
    case 'name':
      return a.name.trim() === b.name.trim();
    case 'scopes':
      return a.scopes.join(',') === b.scopes.join(',');
    case 'rateLimit':
    case 'rateWindow':
      return a.rateLimit === b.rateLimit && (a.rateLimit === '' || a.rateWindow === b.rateWindow);
    case 'refillAmount':
    case 'refillInterval':
      return a.refillAmount === b.refillAmount && (a.refillAmount === '' || a.refillInterval === b.refillInterval);
    default:
      return a[field] === b[field];
  }
}

/**
 * The JSON body of a save: every field for a new key, only the changed ones for an edit.
 * @param {FormValues} values
 * @param {FormValues|null} baseline
 */
function bodyOf(values, baseline) {
  const include = (/** @type {keyof FormValues} */ field) => baseline === null || !same(values, baseline, field);
  /** @type {Record<string, unknown>} */
  const body = {};
  if (include('name')) body.name = values.name.trim();
  if (include('active')) body.active = values.active;
  if (include('scopes')) body.scopes = values.scopes;
  if (include('allowedIps')) body.allowedIps = values.allowedIps === '' ? [] : values.allowedIps.split(',');
  if (include('expiresAt')) body.expiresAt = values.expiresAt === '' ? null : new Date(values.expiresAt).toISOString();
  if (include('rateLimit')) {
    body.rateLimit = values.rateLimit === '' ? null : { limit: wholeNumber(values.rateLimit), windowMs: Number(values.rateWindow) };
  }
  if (include('remaining')) body.remaining = values.remaining === '' ? null : wholeNumber(values.remaining);
  if (include('refillAmount')) {
    body.refill =
      values.refillAmount === '' ? null : { amount: wholeNumber(values.refillAmount), intervalMs: Number(values.refillInterval) };
  }
  return body;
}

function clearErrors() {
  for (const line of ERROR_LINES) {
    const message = $(`error-${line}`);
    message.hidden = true;
    message.textContent = '';
  }
  for (const node of document.querySelectorAll('#key-form [aria-invalid]')) node.removeAttribute('aria-invalid');
  $('form-error').hidden = true;
  $('form-error-text').textContent = '';
  button('conflict-reload').hidden = true;
  $('form-info').hidden = true;
}

/**
 * Shows every field error next to its field and moves focus to the first one.
 * @param {FieldError[]} errors
 * @param {boolean} fromServer whether the messages are the API's (put in the page's words first)
 */
function showFieldErrors(errors, fromServer) {
  /** @type {Map<string, string[]>} */
  const lines = new Map();
  /** @type {string[]} */
  const unplaced = [];
  /** @type {HTMLElement|null} */
  let first = null;
  for (const error of errors) {
    const field = String(error.field ?? '');
    const place = ERROR_PLACES[field] ?? ERROR_PLACES[field.replace(/\[.*$/, '')] ?? ERROR_PLACES[field.replace(/[[.].*$/, '')];
    const message = fromServer ? pageWords(String(error.message ?? 'is not valid'), field) : error.message;
    if (!place) {
      unplaced.push(message);
      continue;
    }
    const list = lines.get(place.line) ?? [];
    if (!list.includes(message)) list.push(message);
    lines.set(place.line, list);
    const control = place.control ? $(place.control) : (scopeBoxes().find((box) => !box.disabled) ?? null);
    if (place.control && control) control.setAttribute('aria-invalid', 'true');
    if (control && (!first || (first.compareDocumentPosition(control) & Node.DOCUMENT_POSITION_PRECEDING) !== 0)) first = control;
  }
  for (const [line, messages] of lines) {
    const box = $(`error-${line}`);
    box.textContent = messages.join('\n');
    box.hidden = false;
  }
  const count = lines.size + unplaced.length;
  const summary = count === 1 ? 'Please fix the problem below.' : `Please fix the ${count} problems below.`;
  showFormError(unplaced.length > 0 ? `${summary}\n${unplaced.join('\n')}` : summary, false);
  (first ?? $('form-error')).focus();
}

/**
 * A message for the whole form, above the fields.
 * @param {string} message
 * @param {boolean} [focus]
 */
function showFormError(message, focus = true) {
  $('form-error-text').textContent = message;
  $('form-error').hidden = false;
  if (focus) $('form-error').focus();
}

/** Opens the form for a new key. */
function openCreate() {
  form = { mode: 'create' };
  clearErrors();
  $('key-title').textContent = 'Create API key';
  button('key-save').textContent = 'Create key';
  $('edit-actions').hidden = true;
  fillForm(valuesOf(null));
  openDialog(dialogEl('key-dialog'), {
    requestClose: () => closeDialog(dialogEl('key-dialog')),
    backdrop: false,
    focus: input('key-name'),
  });
}

let editLoading = false;

/**
 * Opens the edit view of a key, read fresh so its version is the one the form starts from.
 * @param {string} id
 * @param {HTMLElement} opener
 */
async function openEdit(id, opener) {
  // One edit at a time: a second click while the key is read does nothing.
  if (editLoading || dialogEl('key-dialog').open) return;
  editLoading = true;
  const answer = await api('GET', `/keys/${encodeURIComponent(id)}`).finally(() => {
    editLoading = false;
  });
  if (!answer.ok || !answer.data?.key) {
    showPageError(problem(answer, 'The key could not be read.'));
    if (answer.status === 404) removeRow(id);
    refocus(opener);
    return;
  }
  showPageError('');
  /** @type {AdminKey} */
  const key = answer.data.key;
  updateRow(key);
  const baseline = valuesOf(key);
  form = { mode: 'edit', key, baseline };
  clearErrors();
  $('key-title').textContent = 'Edit API key';
  button('key-save').textContent = 'Save changes';
  $('edit-actions').hidden = false;
  showKeyFacts(key);
  fillForm(baseline);
  openDialog(dialogEl('key-dialog'), {
    requestClose: () => closeDialog(dialogEl('key-dialog')),
    backdrop: false,
    focus: input('key-name'),
    opener: opener.isConnected ? opener : findControl(id, 'edit'),
  });
}

/** @param {AdminKey} key */
function showKeyFacts(key) {
  const used =
    key.lastUsedAt === null ? 'Never used' : `Last used ${formatTime(key.lastUsedAt)}${key.lastUsedIp ? ` from ${key.lastUsedIp}` : ''}`;
  $('key-facts').textContent = `Token ${key.hint} · created ${formatTime(key.createdAt)} · ${used}.`;
}

/** @param {SubmitEvent} event */
async function onSubmit(event) {
  event.preventDefault();
  clearErrors();
  const values = readForm();
  const baseline = form.mode === 'edit' ? form.baseline : null;
  const errors = validate(values, baseline);
  if (errors.length > 0) {
    showFieldErrors(errors, false);
    return;
  }
  const save = button('key-save');
  save.disabled = true;
  try {
    if (form.mode === 'edit') await saveEdit(values, form);
    else await saveNew(values);
  } finally {
    save.disabled = false;
  }
}

/** @param {FormValues} values */
async function saveNew(values) {
  const answer = await api('POST', '/keys', { body: bodyOf(values, null) });
  if (answer.status === 400 && Array.isArray(answer.data?.error?.fields)) {
    showFieldErrors(answer.data.error.fields, true);
    return;
  }
  if (!answer.ok || !answer.data?.key || typeof answer.data.token !== 'string') {
    showFormError(problem(answer, 'The key could not be created.'));
    return;
  }
  /** @type {AdminKey} */
  const key = answer.data.key;
  const entry = openDialogs.find((item) => item.dialog === dialogEl('key-dialog'));
  const opener = entry?.opener ?? button('create-key');
  closeDialog(dialogEl('key-dialog'), null);
  showToken({ token: answer.data.token, key, rotated: false, opener });
  announce(`Created ${quote(key.name)}.`);
  // The list is read again behind the token dialog, in the API's order, as far as it was loaded.
  await reloadList(keys.length + 1);
}

/**
 * @param {FormValues} values
 * @param {{ mode: 'edit', key: AdminKey, baseline: FormValues }} editing
 */
async function saveEdit(values, editing) {
  const body = bodyOf(values, editing.baseline);
  if (Object.keys(body).length === 0) {
    closeDialog(dialogEl('key-dialog'));
    announce('Nothing was changed.');
    return;
  }
  const answer = await api('PATCH', `/keys/${encodeURIComponent(editing.key.id)}`, {
    body,
    headers: { 'If-Match': `"${editing.key.version}"` },
  });
  if (answer.status === 400 && Array.isArray(answer.data?.error?.fields)) {
    showFieldErrors(answer.data.error.fields, true);
    return;
  }
  if (answer.status === 412 || answer.status === 409) {
    showFormError('Someone else changed this key meanwhile. Reload it to see their version; what you typed stays in the form.');
    button('conflict-reload').hidden = false;
    return;
  }
  if (!answer.ok || !answer.data?.key) {
    showFormError(problem(answer, 'The key could not be saved.'));
    return;
  }
  updateRow(answer.data.key);
  closeDialog(dialogEl('key-dialog'));
  announce(`Saved ${quote(answer.data.key.name)}.`);
}

/** The form's fields as the conflict message names them, with the values that make up each. */
const FIELD_GROUPS = /** @type {[string, (keyof FormValues)[]][]} */ ([
  ['Name', ['name']],
  ['Active', ['active']],
  ['Scopes', ['scopes']],
  ['Allowed IP addresses', ['allowedIps']],
  ['Expires at', ['expiresAt']],
  ['Rate limit', ['rateLimit', 'rateWindow']],
  ['Uses left', ['remaining']],
  ['Refill', ['refillAmount', 'refillInterval']],
]);

/**
 * After a conflict: reads the key again. A field the user changed keeps what they typed; every
 * other field takes the latest value, so saving does not undo the other change. Says which
 * fields the other change touched.
 */
async function reloadConflicted() {
  if (form.mode !== 'edit') return;
  const editing = form;
  const answer = await api('GET', `/keys/${encodeURIComponent(editing.key.id)}`);
  if (!answer.ok || !answer.data?.key) {
    showFormError(problem(answer, 'The key could not be read.'));
    return;
  }
  /** @type {AdminKey} */
  const fresh = answer.data.key;
  const latest = valuesOf(fresh);
  const typed = readForm();
  const merged = { ...latest };
  /** @type {string[]} */
  const theirs = [];
  /** @type {string[]} */
  const both = [];
  for (const [label, fields] of FIELD_GROUPS) {
    const mine = !same(typed, editing.baseline, fields[0]);
    const other = !same(latest, editing.baseline, fields[0]);
    if (other) theirs.push(label);
    if (mine && other) both.push(label);
    if (mine) for (const field of fields) Object.assign(merged, { [field]: typed[field] });
  }
  form = { mode: 'edit', key: fresh, baseline: latest };
  updateRow(fresh);
  showKeyFacts(fresh);
  clearErrors();
  fillForm(merged);
  let what =
    theirs.length > 0
      ? `The other change touched: ${theirs.join(', ')}.`
      : 'The other change touched none of these fields (only the token or its use).';
  if (both.length > 0) what += ` You changed ${both.join(', ')} too: the form shows your version.`;
  const info = $('form-info');
  info.textContent = `Loaded the latest version of this key. ${what} Your changes are kept; Save changes to apply them.`;
  info.hidden = false;
  button('key-save').focus();
}

/** Regenerate, from the edit view: asks, then shows the new token. */
async function regenerate() {
  if (form.mode !== 'edit') return;
  const editing = form;
  const grace = config.rotateGraceMs;
  const until = new Date(Date.now() + grace);
  // Up to two days in hours ("24 hours"), longer ones in days.
  const graceText =
    grace % 3_600_000 === 0 && grace > 3_600_000 && grace < 2 * 86_400_000
      ? `${formatNumber(grace / 3_600_000)} hours`
      : longDuration(grace);
  const keep =
    grace > 0
      ? `The current token keeps working for ${graceText}, until ${formatTime(until)} (or until the key expires, if that is sooner), so you have time to update the systems that use it.`
      : 'The current token stops working at once.';
  const sure = await confirmAction({
    title: 'Regenerate the token?',
    text: `A new token is issued for ${quote(editing.key.name)}. ${keep} The new token is shown once.`,
    ok: 'Regenerate token',
  });
  if (!sure) return;
  const regenerateButton = button('regenerate');
  regenerateButton.disabled = true;
  const answer = await api('POST', `/keys/${encodeURIComponent(editing.key.id)}/rotate`, { body: { gracePeriodMs: grace } });
  regenerateButton.disabled = false;
  if (!answer.ok || !answer.data?.key || typeof answer.data.token !== 'string') {
    showFormError(problem(answer, 'The token could not be regenerated.'));
    return;
  }
  /** @type {AdminKey} */
  const key = answer.data.key;
  updateRow(key);
  // The rotation is ours: if nothing else changed the fields meanwhile, the form goes on from the new version.
  const rotatedValues = valuesOf(key);
  const fields = /** @type {(keyof FormValues)[]} */ (Object.keys(rotatedValues)).filter((field) => field !== 'remaining');
  if (form === editing && fields.every((field) => same(rotatedValues, editing.baseline, field))) {
    form = { mode: 'edit', key, baseline: editing.baseline };
  }
  showKeyFacts(key);
  announce(`Regenerated the token of ${quote(key.name)}.`);
  showToken({ token: answer.data.token, key, rotated: true, opener: regenerateButton, graceUntil: grace > 0 ? until : null });
}

// ---- the token dialog --------------------------------------------------------------------------

/**
 * Shows a token once. Closing it without Copy asks first.
 * @param {{ token: string, key: AdminKey, rotated: boolean, opener: Element|null, graceUntil?: Date|null }} shown
 */
function showToken(shown) {
  tokenCopied = false;
  $('token-title').textContent = shown.rotated ? 'Your new token' : 'Your new API key';
  $('token-intro').textContent = shown.rotated
    ? `The token of ${quote(shown.key.name)} was regenerated.`
    : `The key ${quote(shown.key.name)} was created. Give this token to the system that will use it.`;
  input('token-value').value = shown.token;
  const copy = button('token-copy');
  copy.textContent = 'Copy';
  const grace = $('token-grace');
  if (shown.rotated) {
    grace.textContent = shown.graceUntil
      ? `The old token keeps working until ${formatTime(shown.graceUntil)} (or until the key expires, if sooner).`
      : 'The old token no longer works.';
    grace.hidden = false;
  } else grace.hidden = true;
  openDialog(dialogEl('token-dialog'), { requestClose: () => void requestTokenClose(), focus: copy, opener: shown.opener });
}

let tokenClosing = false;

/** Done, ×, Escape or the backdrop: closes at once after Copy, else asks first. */
async function requestTokenClose() {
  if (tokenClosing) return;
  if (!tokenCopied) {
    tokenClosing = true;
    const sure = await confirmAction({
      title: 'Close without copying?',
      text: 'You will not see this token again. If a system needs it, go back and copy it now; otherwise you will have to regenerate the token.',
      ok: 'Close anyway',
      cancel: 'Go back',
      danger: true,
    });
    tokenClosing = false;
    if (!sure) return;
  }
  input('token-value').value = '';
  closeDialog(dialogEl('token-dialog'));
}

async function copyToken() {
  const field = input('token-value');
  let copied = false;
  try {
    await navigator.clipboard.writeText(field.value);
    copied = true;
  } catch {
    field.focus();
    field.select();
    try {
      copied = document.execCommand('copy');
    } catch {
      copied = false;
    }
  }
  const copy = button('token-copy');
  if (copied) {
    tokenCopied = true;
    copy.textContent = 'Copied';
    copy.focus();
    announce('The token is copied to the clipboard.');
  } else {
    field.focus();
    field.select();
    announce('Copying failed. The token is selected: copy it with your keyboard.');
  }
}

// ---- revoke a leaked token ---------------------------------------------------------------------

function openRevoke() {
  const area = /** @type {HTMLTextAreaElement} */ ($('revoke-token'));
  area.value = '';
  area.removeAttribute('aria-invalid');
  $('error-revoke').hidden = true;
  $('revoke-result').hidden = true;
  $('revoke-result').textContent = '';
  button('revoke-cancel').textContent = 'Cancel';
  openDialog(dialogEl('revoke-dialog'), { requestClose: () => closeDialog(dialogEl('revoke-dialog')), focus: area });
}

/** @param {SubmitEvent} event */
async function onRevoke(event) {
  event.preventDefault();
  const area = /** @type {HTMLTextAreaElement} */ ($('revoke-token'));
  const error = $('error-revoke');
  const result = $('revoke-result');
  error.hidden = true;
  result.hidden = true;
  area.removeAttribute('aria-invalid');
  const token = area.value.trim();
  /** @param {string} message */
  const fail = (message) => {
    error.textContent = message;
    error.hidden = false;
    area.setAttribute('aria-invalid', 'true');
    area.focus();
  };
  if (token === '') {
    fail('Paste the token to revoke.');
    return;
  }
  const submit = button('revoke-submit');
  submit.disabled = true;
  const answer = await api('POST', '/revoke', { body: { token } });
  submit.disabled = false;
  if (answer.status === 404) {
    fail('No key of yours has this token. It may have been deleted already, or the token is incomplete.');
    return;
  }
  if (answer.status === 400) {
    const fields = answer.data?.error?.fields;
    fail(Array.isArray(fields) && fields[0] ? pageWords(String(fields[0].message), 'token') : 'This is not a token of this service.');
    return;
  }
  if (!answer.ok || !answer.data?.key) {
    fail(problem(answer, 'The token could not be revoked.'));
    return;
  }
  /** @type {AdminKey} */
  const key = answer.data.key;
  const before = keys.find((item) => item.id === key.id);
  area.value = '';
  result.textContent =
    before && !before.active
      ? `The token belongs to ${quote(key.name)} (${key.hint}), which was already inactive. It stays inactive.`
      : `Deactivated ${quote(key.name)} (${key.hint}). Every request with its token is now refused. Regenerate its token before you activate it again.`;
  result.hidden = false;
  button('revoke-cancel').textContent = 'Close';
  if (before) updateRow(key);
  else await reloadList(keys.length);
  button('revoke-cancel').focus();
}

// ---- start -------------------------------------------------------------------------------------

/**
 * The catalog as `/api/config` sends it (`name` or `id`, a label, the scopes it implies).
 * @param {unknown} list
 * @returns {ScopeInfo[]}
 */
function normaliseScopes(list) {
  if (!Array.isArray(list)) return [];
  return list
    .map((item) => {
      const name = String(item?.name ?? item?.id ?? '');
      return {
        name,
        label: typeof item?.label === 'string' && item.label ? item.label : name,
        implies: Array.isArray(item?.implies) ? item.implies.map(String) : [],
      };
    })
    .filter((scope) => scope.name !== '');
}

function wire() {
  for (const id of ['key-dialog', 'token-dialog', 'revoke-dialog', 'confirm-dialog']) wireDialog(dialogEl(id));
  document.addEventListener('keydown', onDocumentKeydown, true);
  button('create-key').addEventListener('click', openCreate);
  button('revoke-open').addEventListener('click', openRevoke);
  button('load-more').addEventListener('click', () => void loadMore());
  $('key-form').addEventListener('submit', (event) => void onSubmit(/** @type {SubmitEvent} */ (event)));
  button('key-close').addEventListener('click', () => closeDialog(dialogEl('key-dialog')));
  button('key-cancel').addEventListener('click', () => closeDialog(dialogEl('key-dialog')));
  button('expires-clear').addEventListener('click', () => {
    input('key-expires').value = '';
    input('key-expires').focus();
  });
  button('conflict-reload').addEventListener('click', () => void reloadConflicted());
  button('regenerate').addEventListener('click', () => void regenerate());
  button('edit-delete').addEventListener('click', () => {
    if (form.mode === 'edit') void deleteKey(form.key.id, button('edit-delete'));
  });
  button('token-copy').addEventListener('click', () => void copyToken());
  button('token-done').addEventListener('click', () => void requestTokenClose());
  button('token-close').addEventListener('click', () => void requestTokenClose());
  $('revoke-form').addEventListener('submit', (event) => void onRevoke(/** @type {SubmitEvent} */ (event)));
  button('revoke-close').addEventListener('click', () => closeDialog(dialogEl('revoke-dialog')));
  button('revoke-cancel').addEventListener('click', () => closeDialog(dialogEl('revoke-dialog')));
  button('confirm-ok').addEventListener('click', () => answerConfirm(true));
  button('confirm-cancel').addEventListener('click', () => answerConfirm(false));
}

async function start() {
  wire();
  const answer = await api('GET', '/config');
  if (!answer.ok || !answer.data) {
    $('keys-loading').hidden = true;
    showPageError(problem(answer, 'The page settings could not be loaded.'));
    return;
  }
  const data = answer.data;
  config.scopes = normaliseScopes(data.scopes);
  config.ipRule = typeof data.ipRule === 'string' ? data.ipRule : '';
  if (Number.isInteger(data.nameMax) && data.nameMax > 0) config.nameMax = data.nameMax;
  if (Number.isInteger(data.rotateGraceMs) && data.rotateGraceMs >= 0) config.rotateGraceMs = data.rotateGraceMs;
  $('ip-rule').textContent = config.ipRule || 'Exact addresses separated by commas, no spaces. Leave empty to allow any address.';
  $('name-max').textContent = String(config.nameMax);
  renderScopeBoxes();
  button('create-key').disabled = false;
  if (!(await reloadList())) $('keys-loading').hidden = true;
}

void start();
