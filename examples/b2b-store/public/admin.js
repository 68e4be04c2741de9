// The API Keys admin page: lists keys, and creates, edits and deletes them through the admin JSON API.

/** @typedef {{ name: string, label: string, implies: string[] }} ScopeInfo */
/**
 * @typedef {object} KeyView
 * @property {string} id
 * @property {string} name
 * @property {boolean} active
 * @property {string[]} scopes
 * @property {string[]} scopeLabels
 * @property {string[]} allowedIps
 * @property {string} hint
 * @property {string} createdAt
 * @property {string|null} lastUsedAt
 * @property {{ limit: number, windowMs: number }|null} rateLimit
 * @property {number|null} remaining
 * @property {{ amount: number, intervalMs: number }|null} refill
 * @property {number} version
 */

/** The form's error lines, one per field (or group) the library may name. */
const ERROR_LINES = ['name', 'active', 'scopes', 'allowedIps', 'rateLimit', 'remaining', 'refill'];
/**
 * Where an error on a field the library names is shown: its error line, the control to focus and,
 * for a part of a group, the label to name it by.
 * @type {Record<string, { line: string, control: string|null, label?: string }>}
 */
const ERROR_PLACES = {
  name: { line: 'name', control: 'key-name' },
  active: { line: 'active', control: 'key-active' },
  scopes: { line: 'scopes', control: null },
  allowedIps: { line: 'allowedIps', control: 'key-ips' },
  rateLimit: { line: 'rateLimit', control: 'key-rate-limit' },
  'rateLimit.limit': { line: 'rateLimit', control: 'key-rate-limit', label: 'Requests' },
  'rateLimit.windowMs': { line: 'rateLimit', control: 'key-rate-window', label: 'Per' },
  remaining: { line: 'remaining', control: 'key-remaining' },
  refill: { line: 'refill', control: 'key-refill-amount' },
  'refill.amount': { line: 'refill', control: 'key-refill-amount', label: 'Refill to' },
  'refill.intervalMs': { line: 'refill', control: 'key-refill-interval', label: 'Every' },
};
/** The form's inputs and selects, locked once a key is created. */
const CONTROLS = [
  'key-name',
  'key-active',
  'key-ips',
  'key-rate-limit',
  'key-rate-window',
  'key-remaining',
  'key-refill-amount',
  'key-refill-interval',
];
const MINUTE = 60_000;
const DAY = 86_400_000;
const PENCIL =
  '<svg viewBox="0 0 20 20" width="16" height="16" aria-hidden="true"><path fill="currentColor" d="M14.7 2.3a1 1 0 0 1 1.4 0l1.6 1.6a1 1 0 0 1 0 1.4L7.4 15.6l-4 1 1-4L14.7 2.3zM5.9 13l-.4 1.5 1.5-.4 8.6-8.6-1.1-1.1L5.9 13z"/></svg>';
const CROSS =
  '<svg viewBox="0 0 20 20" width="16" height="16" aria-hidden="true"><path fill="currentColor" d="M5.3 4 10 8.6 14.7 4 16 5.3 11.4 10l4.6 4.7-1.3 1.3-4.7-4.6L5.3 16 4 14.7 8.6 10 4 5.3z"/></svg>';

/** @type {ScopeInfo[]} */
let scopes = [];
/** The token prefix, e.g. `kg`. */
let prefix = 'kg';
/** @type {ScopeInfo|undefined} the scope that implies every other one ("All") */
let allScope;
/** @type {KeyView[]} */
let currentKeys = [];
/** @typedef {{ mode: 'create' } | { mode: 'edit', key: KeyView } | { mode: 'created' }} FormState */

/** @type {FormState} */
let formState = { mode: 'create' };

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const timeFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });
const numberFormat = new Intl.NumberFormat('en-US');
/** @param {string} id */
const input = (id) => /** @type {HTMLInputElement} */ ($(id));
/** @param {string} id */
const select = (id) => /** @type {HTMLSelectElement} */ ($(id));

/**
 * Calls the admin JSON API.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<{ ok: boolean, status: number, data: any }>}
 */
async function api(method, path, body) {
  const response = await fetch(`/admin/api${path}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: { message: `Unexpected answer (HTTP ${response.status}).` } };
  }
  return { ok: response.ok, status: response.status, data };
}

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

/** @param {string} message */
function showPageError(message) {
  const box = $('page-error');
  box.textContent = message;
  box.hidden = !message;
}

// ---- limits and quotas as text ------------------------------------------------------------------

/** Units for durations, largest first: size in ms, short name, long name, long plural. */
const UNITS = /** @type {const} */ ([
  [86_400_000, 'day', 'day', 'days'],
  [3_600_000, 'hour', 'hour', 'hours'],
  [60_000, 'min', 'minute', 'minutes'],
  [1_000, 's', 'second', 'seconds'],
]);

/**
 * A window or interval after "/" in the list: `min`, `hour`, `day`, `30 days`, `10 s`, `1500 ms`.
 * @param {number} ms
 */
function shortDuration(ms) {
  for (const [size, short, , plural] of UNITS) {
    if (ms % size !== 0) continue;
    const n = ms / size;
    if (n === 1) return short;
    return `${numberFormat.format(n)} ${size === 60_000 || size === 1_000 ? short : plural}`;
  }
  return `${numberFormat.format(ms)} ms`;
}

/**
 * A window or interval as a choice of the form's selects: `minute`, `30 days`, `10 seconds`.
 * @param {number} ms
 */
function longDuration(ms) {
  for (const [size, , long, plural] of UNITS) {
    if (ms % size !== 0) continue;
    const n = ms / size;
    return n === 1 ? long : `${numberFormat.format(n)} ${plural}`;
  }
  return `${numberFormat.format(ms)} ms`;
}

/**
 * The rate limit as the list shows it: `100 / min`, or `—` without one.
 * @param {KeyView['rateLimit']} rateLimit
 */
function rateText(rateLimit) {
  return rateLimit === null ? '—' : `${numberFormat.format(rateLimit.limit)} / ${shortDuration(rateLimit.windowMs)}`;
}

/**
 * The uses left as the list shows them: `1,000 left`, or `Unlimited` without a quota.
 * @param {KeyView['remaining']} remaining
 */
function usesText(remaining) {
  return remaining === null ? 'Unlimited' : `${numberFormat.format(remaining)} left`;
}

/**
 * A number typed into the form: `null` when blank, a number for digits (`1000` or `1,000`), else
 * the text itself, which the library refuses with a message naming the field.
 * @param {string} text
 * @returns {number|string|null}
 */
function typedNumber(text) {
  const trimmed = text.trim();
  if (trimmed === '') return null;
  if (/^\d+$/.test(trimmed) || /^\d{1,3}(,\d{3})+$/.test(trimmed)) return Number(trimmed.replaceAll(',', ''));
  return trimmed;
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

// ---- the list ---------------------------------------------------------------------------------

async function loadKeys() {
  const { ok, data } = await api('GET', '/keys');
  if (!ok) {
    showPageError(data?.error?.message ?? 'Could not load the API keys.');
    return;
  }
  showPageError('');
  currentKeys = data.keys;
  renderKeys();
}

function renderKeys() {
  const body = $('keys-body');
  body.replaceChildren();
  $('keys-empty').hidden = currentKeys.length > 0;
  $('keys-table').hidden = currentKeys.length === 0;
  for (const key of currentKeys) {
    const row = el('tr');
    row.dataset.keyId = key.id;
    if (!key.active) row.className = 'inactive';

    row.append(el('td', 'name', key.name));

    const scopeCell = el('td');
    for (const label of key.scopeLabels) scopeCell.append(el('span', 'label', label));
    row.append(scopeCell);

    const ipCell = el('td', 'ips');
    if (key.allowedIps.length === 0) ipCell.append(el('span', 'muted', 'Any address'));
    else for (const ip of key.allowedIps) ipCell.append(el('code', 'ip', ip));
    row.append(ipCell);

    row.append(el('td', key.rateLimit === null ? 'rate muted' : 'rate', rateText(key.rateLimit)));

    const usesCell = el('td', 'uses');
    let usesClass = 'uses-left';
    if (key.remaining === null) usesClass = 'muted';
    else if (key.remaining === 0) usesClass = 'uses-left spent';
    usesCell.append(el('span', usesClass, usesText(key.remaining)));
    if (key.refill !== null) {
      usesCell.append(
        el('span', 'refill', `refills to ${numberFormat.format(key.refill.amount)} / ${shortDuration(key.refill.intervalMs)}`),
      );
    }
    row.append(usesCell);

    const activeCell = el('td');
    activeCell.append(el('span', key.active ? 'badge on' : 'badge off', key.active ? 'Active' : 'Inactive'));
    row.append(activeCell);

    row.append(dateCell(key.createdAt));
    row.append(key.lastUsedAt ? dateCell(key.lastUsedAt) : el('td', 'date', 'Never'));

    const hintCell = el('td');
    hintCell.append(el('code', 'hint-code', key.hint));
    row.append(hintCell);

    const actions = el('td', 'actions');
    const edit = el('button', 'icon-btn edit');
    edit.setAttribute('type', 'button');
    edit.setAttribute('aria-label', `Edit ${key.name}`);
    edit.title = 'Edit';
    edit.innerHTML = PENCIL;
    edit.addEventListener('click', () => openForm({ mode: 'edit', key }));
    const remove = el('button', 'icon-btn delete');
    remove.setAttribute('type', 'button');
    remove.setAttribute('aria-label', `Delete ${key.name}`);
    remove.title = 'Delete';
    remove.innerHTML = CROSS;
    remove.addEventListener('click', () => deleteKey(key));
    actions.append(edit, remove);
    row.append(actions);

    body.append(row);
  }
}

/**
 * A time in the list: the day, and the time of day under it.
 * @param {string} iso
 */
function dateCell(iso) {
  const at = new Date(iso);
  const cell = el('td', 'date', dayFormat.format(at));
  cell.append(el('span', 'time', timeFormat.format(at)));
  return cell;
}

/** @param {KeyView} key */
async function deleteKey(key) {
  const sure = window.confirm(`Delete the API key "${key.name}"?\n\nEvery system using it is refused at once. This cannot be undone.`);
  if (!sure) return;
  const { ok, status, data } = await api('DELETE', `/keys/${encodeURIComponent(key.id)}`);
  if (!ok && status !== 404) showPageError(data?.error?.message ?? 'Could not delete the key.');
  await loadKeys();
}

// ---- the form ---------------------------------------------------------------------------------

/** @returns {HTMLInputElement[]} */
function scopeBoxes() {
  return [...document.querySelectorAll('#scope-boxes input[type=checkbox]')].map((n) => /** @type {HTMLInputElement} */ (n));
}

/** @param {string} name */
function scopeBox(name) {
  return /** @type {HTMLInputElement|undefined} */ (scopeBoxes().find((box) => box.value === name));
}

function renderScopeBoxes() {
  const container = $('scope-boxes');
  container.replaceChildren();
  for (const scope of scopes) {
    const label = el('label', scope === allScope ? 'check all' : 'check');
    const box = /** @type {HTMLInputElement} */ (el('input'));
    box.type = 'checkbox';
    box.name = 'scopes';
    box.value = scope.name;
    box.addEventListener('change', () => onScopeChange(scope, box.checked));
    label.append(box, ` ${scope.label}`);
    container.append(label);
  }
}

/**
 * All checks and disables every other scope; an edit scope checks the list scope it implies;
 * unchecking a list scope unchecks the edit scopes that imply it.
 * @param {ScopeInfo} scope
 * @param {boolean} checked
 */
function onScopeChange(scope, checked) {
  if (scope === allScope) {
    for (const box of scopeBoxes()) {
      if (box.value === scope.name) continue;
      box.checked = checked;
      box.disabled = checked;
    }
    return;
  }
  if (checked) {
    for (const implied of scope.implies) {
      const box = scopeBox(implied);
      if (box) box.checked = true;
    }
  } else {
    for (const other of scopes) {
      if (other !== allScope && other.implies.includes(scope.name)) {
        const box = scopeBox(other.name);
        if (box) box.checked = false;
      }
    }
  }
}

/** @param {readonly string[]} granted */
function setScopes(granted) {
  for (const box of scopeBoxes()) {
    box.checked = false;
    box.disabled = false;
  }
  for (const name of granted) {
    const scope = scopes.find((s) => s.name === name);
    const box = scopeBox(name);
    if (scope && box) {
      box.checked = true;
      onScopeChange(scope, true);
    }
  }
}

function selectedScopes() {
  const allBox = allScope ? scopeBox(allScope.name) : undefined;
  if (allScope && allBox?.checked) return [allScope.name];
  return scopeBoxes()
    .filter((box) => box.checked)
    .map((box) => box.value);
}

function clearErrors() {
  for (const line of ERROR_LINES) {
    const message = $(`${line}-error`);
    message.hidden = true;
    message.textContent = '';
  }
  for (const node of document.querySelectorAll('#key-form .invalid')) node.classList.remove('invalid');
  for (const node of document.querySelectorAll('#key-form [aria-invalid]')) node.removeAttribute('aria-invalid');
  $('form-error').hidden = true;
}

/**
 * Shows a ValidationError next to the field it names (`allowedIps`, `scopes[2]`, `rateLimit.limit`, …).
 * @param {{ field?: string, reason?: string, message?: string }} error
 */
function showError(error) {
  const field = error.field ?? '';
  const place = ERROR_PLACES[field] ?? ERROR_PLACES[field.replace(/[[.].*$/, '')];
  if (place) {
    const message = $(`${place.line}-error`);
    const reason = error.reason ?? error.message ?? 'Invalid value.';
    message.textContent = place.label ? `${place.label}: ${reason}` : reason;
    message.hidden = false;
    for (const node of document.querySelectorAll(`#key-form [data-field="${place.line}"]`)) node.classList.add('invalid');
    const control = place.control ? $(place.control) : document.querySelector(`[data-field="${place.line}"] input`);
    if (control instanceof HTMLInputElement || control instanceof HTMLSelectElement) {
      control.setAttribute('aria-invalid', 'true');
      control.focus();
    }
  } else {
    const box = $('form-error');
    box.textContent = error.message ?? 'The key could not be saved.';
    box.hidden = false;
  }
}

/**
 * Locks the form once the key is created; unlocking leaves the scope boxes to setScopes().
 * @param {boolean} disabled
 */
function setInputsDisabled(disabled) {
  for (const id of CONTROLS) /** @type {HTMLInputElement|HTMLSelectElement} */ ($(id)).disabled = disabled;
  if (disabled) for (const box of scopeBoxes()) box.disabled = true;
}

/** The quota inputs as the form was opened: an edit sends `remaining` and `refill` only when they changed. */
let openedQuota = { remaining: '', refillAmount: '', refillInterval: '' };

/** @returns {typeof openedQuota} */
function quotaInputs() {
  return {
    remaining: input('key-remaining').value.trim(),
    refillAmount: input('key-refill-amount').value.trim(),
    refillInterval: select('key-refill-interval').value,
  };
}

/**
 * Fills the rate limit and quota inputs from a key, or empties them for a new one.
 * @param {KeyView|null} key
 */
function setLimits(key) {
  const rateLimit = key?.rateLimit ?? null;
  const refill = key?.refill ?? null;
  const remaining = key?.remaining ?? null;
  input('key-rate-limit').value = rateLimit === null ? '' : String(rateLimit.limit);
  selectDuration(select('key-rate-window'), rateLimit === null ? MINUTE : rateLimit.windowMs);
  input('key-remaining').value = remaining === null ? '' : String(remaining);
  input('key-refill-amount').value = refill === null ? '' : String(refill.amount);
  selectDuration(select('key-refill-interval'), refill === null ? DAY : refill.intervalMs);
  openedQuota = quotaInputs();
}

/**
 * The rate limit and quota fields of a save. An edit leaves out `remaining` unless it was changed,
 * so saving a key's name does not give back the uses it spent since the form was opened; the same
 * for `refill`, whose change restarts the refill interval.
 * @param {boolean} editing
 */
function limitFields(editing) {
  const limit = typedNumber(input('key-rate-limit').value);
  const amount = typedNumber(input('key-refill-amount').value);
  /** @type {Record<string, unknown>} */
  const fields = {
    rateLimit: limit === null ? null : { limit, windowMs: Number(select('key-rate-window').value) },
  };
  const now = quotaInputs();
  if (!editing || now.remaining !== openedQuota.remaining) fields.remaining = typedNumber(now.remaining);
  const refillChanged =
    now.refillAmount !== openedQuota.refillAmount || (now.refillAmount !== '' && now.refillInterval !== openedQuota.refillInterval);
  if (!editing || refillChanged) {
    fields.refill = amount === null ? null : { amount, intervalMs: Number(now.refillInterval) };
  }
  return fields;
}

/** @param {FormState} state */
function openForm(state) {
  formState = state;
  clearErrors();
  const name = /** @type {HTMLInputElement} */ ($('key-name'));
  const active = /** @type {HTMLInputElement} */ ($('key-active'));
  const ips = /** @type {HTMLInputElement} */ ($('key-ips'));
  setInputsDisabled(false);
  $('token-field').hidden = true;
  /** @type {HTMLInputElement} */ ($('key-token')).value = '';
  $('form-save').hidden = false;
  $('form-cancel').textContent = 'Cancel';
  if (state.mode === 'edit') {
    $('form-title').textContent = 'Edit API key';
    name.value = state.key.name;
    active.checked = state.key.active;
    ips.value = state.key.allowedIps.join(',');
    setScopes(state.key.scopes);
    setLimits(state.key);
  } else {
    $('form-title').textContent = 'Create API key';
    name.value = '';
    active.checked = true;
    ips.value = '';
    setScopes([]);
    setLimits(null);
  }
  $('key-dialog').hidden = false;
  name.focus();
}

function closeForm() {
  $('key-dialog').hidden = true;
  /** @type {HTMLInputElement} */ ($('key-token')).value = '';
  $('token-curl').textContent = '';
}

/** @param {SubmitEvent} event */
async function onSubmit(event) {
  event.preventDefault();
  if (formState.mode === 'created') return;
  clearErrors();
  const body = {
    name: /** @type {HTMLInputElement} */ ($('key-name')).value,
    active: /** @type {HTMLInputElement} */ ($('key-active')).checked,
    scopes: selectedScopes(),
    allowedIps: /** @type {HTMLInputElement} */ ($('key-ips')).value,
    ...limitFields(formState.mode === 'edit'),
  };
  const save = /** @type {HTMLButtonElement} */ ($('form-save'));
  save.disabled = true;
  try {
    const result =
      formState.mode === 'edit'
        ? await api('PATCH', `/keys/${encodeURIComponent(formState.key.id)}`, { ...body, expectedVersion: formState.key.version })
        : await api('POST', '/keys', body);
    if (!result.ok) {
      showError(result.data?.error ?? {});
      return;
    }
    if (formState.mode === 'edit') {
      closeForm();
    } else {
      showToken(result.data.token, result.data.key);
    }
    await loadKeys();
  } finally {
    save.disabled = false;
  }
}

/**
 * After Save: the generated token, shown this once.
 * @param {string} token
 * @param {KeyView} key
 */
function showToken(token, key) {
  formState = { mode: 'created' };
  setInputsDisabled(true);
  /** @type {HTMLInputElement} */ ($('key-token')).value = token;
  // A resource this key may list, for a first curl line that answers 200.
  const granted = (/** @type {string} */ name) =>
    key.scopes.some((g) => g === name || scopes.find((s) => s.name === g)?.implies.includes(name));
  const listScope = scopes.find((s) => s !== allScope && s.implies.length === 0 && granted(s.name));
  const resource = (listScope?.name ?? 'orders:list').split(':')[0];
  $('token-curl').textContent = `curl -H "Authorization: Bearer ${token}" ${location.origin}/api/${resource}`;
  $('token-field').hidden = false;
  $('form-save').hidden = true;
  $('form-cancel').textContent = 'Done';
  $('copy-token').textContent = 'Copy';
}

async function copyToken() {
  const input = /** @type {HTMLInputElement} */ ($('key-token'));
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select();
    document.execCommand('copy');
  }
  $('copy-token').textContent = 'Copied';
}

function renderCurlLines() {
  const origin = location.origin;
  $('curl-lines').textContent = [
    '# the key you copied after Save',
    `export KEYGATE_TOKEN='${prefix}_…'`,
    '',
    '# 200: the key has Order list',
    `curl -H "Authorization: Bearer $KEYGATE_TOKEN" ${origin}/api/orders`,
    '',
    '# 401: no key, or a wrong, inactive or deleted one',
    `curl -i ${origin}/api/orders`,
    '',
    '# 403: the key lacks Order edit (or the request comes from an address not on its list)',
    `curl -i -X POST -H "Authorization: Bearer $KEYGATE_TOKEN" -H "Content-Type: application/json" \\`,
    `     -d '{"customerId":"cus_1001"}' ${origin}/api/orders`,
    '',
    "# 429: over the key's rate limit, or no uses left (Retry-After says when to try again)",
    `curl -i -H "Authorization: Bearer $KEYGATE_TOKEN" ${origin}/api/orders`,
  ].join('\n');
}

async function start() {
  const { ok, data } = await api('GET', '/config');
  if (!ok) {
    showPageError(data?.error?.message ?? 'Could not load the page settings.');
    return;
  }
  scopes = data.scopes;
  prefix = data.prefix;
  allScope = scopes.find((s) => scopes.every((other) => other === s || s.implies.includes(other.name)));
  $('ip-rule').textContent = data.ipRule;
  renderScopeBoxes();
  renderCurlLines();

  $('create-key').addEventListener('click', () => openForm({ mode: 'create' }));
  $('key-form').addEventListener('submit', (event) => void onSubmit(/** @type {SubmitEvent} */ (event)));
  $('form-cancel').addEventListener('click', closeForm);
  $('form-close').addEventListener('click', closeForm);
  $('copy-token').addEventListener('click', () => void copyToken());
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !$('key-dialog').hidden) closeForm();
  });
  await loadKeys();
}

void start();
