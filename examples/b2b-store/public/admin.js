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
 * @property {number} version
 */

const FIELDS = ['name', 'active', 'scopes', 'allowedIps'];
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
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

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

    const activeCell = el('td');
    activeCell.append(el('span', key.active ? 'badge on' : 'badge off', key.active ? 'Active' : 'Inactive'));
    row.append(activeCell);

    row.append(el('td', 'date', dateFormat.format(new Date(key.createdAt))));
    row.append(el('td', 'date', key.lastUsedAt ? dateFormat.format(new Date(key.lastUsedAt)) : 'Never'));

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
  for (const field of FIELDS) {
    const message = $(`${field}-error`);
    message.hidden = true;
    message.textContent = '';
    document.querySelector(`[data-field="${field}"]`)?.classList.remove('invalid');
  }
  $('form-error').hidden = true;
}

/**
 * Shows a ValidationError next to the field it names (`allowedIps`, `scopes`, `name`, …).
 * @param {{ field?: string, reason?: string, message?: string }} error
 */
function showError(error) {
  const field = (error.field ?? '').replace(/[[.].*$/, '');
  if (FIELDS.includes(field)) {
    const message = $(`${field}-error`);
    message.textContent = error.reason ?? error.message ?? 'Invalid value.';
    message.hidden = false;
    document.querySelector(`[data-field="${field}"]`)?.classList.add('invalid');
    const input = document.querySelector(`[data-field="${field}"] input`);
    if (input instanceof HTMLInputElement) input.focus();
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
  for (const id of ['key-name', 'key-active', 'key-ips']) /** @type {HTMLInputElement} */ ($(id)).disabled = disabled;
  if (disabled) for (const box of scopeBoxes()) box.disabled = true;
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
  } else {
    $('form-title').textContent = 'Create API key';
    name.value = '';
    active.checked = true;
    ips.value = '';
    setScopes([]);
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
