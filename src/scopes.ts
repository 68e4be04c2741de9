// Scope catalogs: which scopes exist, their labels, and what each one implies (all > edit > list).

import { ValidationError } from './errors.js';

/** One scope of a catalog, as an admin UI lists it. */
export interface ScopeInfo {
  /** Machine name, e.g. `orders:edit`. */
  readonly name: string;
  /** Human label, e.g. `Order edit`. */
  readonly label: string;
  /** Every other scope this one grants, e.g. `['orders:list']`. */
  readonly implies: readonly string[];
}

/** A set of scopes and the rules between them. */
export interface ScopeCatalog {
  /** Every scope, in display order. */
  list(): readonly ScopeInfo[];
  /** Whether `name` is a scope of this catalog. */
  has(name: string): boolean;
  /**
   * Validates scopes for writing: at least one, every one known. Returns them de-duplicated in
   * catalog order. A comma-separated string is accepted too.
   * @throws ValidationError naming `field` and the unknown scope
   */
  parse(input: unknown, field?: string): string[];
  /** The granted scopes plus everything they imply, in catalog order. */
  expand(granted: readonly string[]): string[];
  /** Whether `granted` covers every scope in `required` (one name or several). */
  satisfies(granted: readonly string[], required: string | readonly string[]): boolean;
  /** Labels for display, e.g. `['Order edit', 'Product list']`. */
  describe(scopes: readonly string[]): string[];
}

/** An action of `defineScopes`: its label and the actions of the same resource it implies. */
export interface ScopeActionDefinition {
  /** Label shown after the resource label, e.g. `edit` in `Order edit`. */
  label: string;
  /** Actions of the same resource this one grants, e.g. `['list']` for `edit`. @default [] */
  implies?: readonly string[] | undefined;
}

export interface DefineScopesOptions {
  /** Resource names and their labels, e.g. `{ orders: 'Order' }`. */
  resources: Readonly<Record<string, string>>;
  /** Action names and their definitions, e.g. `{ list: 'list', edit: { label: 'edit', implies: ['list'] } }`. */
  actions: Readonly<Record<string, string | ScopeActionDefinition>>;
  /**
   * The scope that implies every other one: its name and label, or `false` for none.
   * @default { name: 'all', label: 'All' }
   */
  all?: { name: string; label: string } | false | undefined;
}

const NAME = /^[a-z][a-z0-9_-]{0,63}$/;
/** The most entries `parse` reads (duplicates included); a longer list is refused before it is split or walked. */
const MAX_SCOPE_ENTRIES = 1000;

/**
 * Builds a scope catalog of `resource:action` scopes. An action implies the actions it lists (for
 * the same resource), transitively; the `all` scope implies every scope.
 *
 * @example
 * const scopes = defineScopes({
 *   resources: { invoices: 'Invoice' },
 *   actions: { read: 'read', write: { label: 'write', implies: ['read'] } },
 * })
 * scopes.satisfies(['invoices:write'], 'invoices:read') // true
 */
export function defineScopes(options: DefineScopesOptions): ScopeCatalog {
  const resources = Object.entries(options.resources);
  const actions = Object.entries(options.actions).map(([name, def]) => {
    const d: ScopeActionDefinition = typeof def === 'string' ? { label: def } : def;
    return { name, label: d.label, implies: d.implies ?? [] };
  });
  if (resources.length === 0) throw new ValidationError('resources', 'needs at least one resource');
  if (actions.length === 0) throw new ValidationError('actions', 'needs at least one action');
  for (const [name] of resources) {
    if (!NAME.test(name)) throw new ValidationError('resources', `'${name}' must match ${NAME}`);
  }
  const actionNames = new Set(actions.map((a) => a.name));
  for (const action of actions) {
    if (!NAME.test(action.name)) throw new ValidationError('actions', `'${action.name}' must match ${NAME}`);
    for (const implied of action.implies) {
      if (!actionNames.has(implied)) {
        throw new ValidationError('actions', `'${action.name}' implies unknown action '${implied}'`);
      }
    }
  }

  // Transitive closure of action implication.
  const actionClosure = new Map<string, Set<string>>();
  for (const action of actions) {
    const seen = new Set<string>();
    const stack = [...action.implies];
    while (stack.length > 0) {
      const next = stack.pop() as string;
      if (next === action.name || seen.has(next)) continue;
      seen.add(next);
      stack.push(...(actions.find((a) => a.name === next)?.implies ?? []));
    }
    actionClosure.set(action.name, seen);
  }

  const infos: ScopeInfo[] = [];
  const allScope = options.all === false ? null : (options.all ?? { name: 'all', label: 'All' });
  const resourceScopes: string[] = [];
  for (const [resource] of resources) {
    for (const action of actions) resourceScopes.push(`${resource}:${action.name}`);
  }
  if (allScope) {
    if (!NAME.test(allScope.name)) throw new ValidationError('all', `'${allScope.name}' must match ${NAME}`);
    infos.push(Object.freeze({ name: allScope.name, label: allScope.label, implies: Object.freeze([...resourceScopes]) }));
  }
  for (const [resource, resourceLabel] of resources) {
    for (const action of actions) {
      const implies = actions.filter((a) => actionClosure.get(action.name)?.has(a.name)).map((a) => `${resource}:${a.name}`);
      infos.push(
        Object.freeze({ name: `${resource}:${action.name}`, label: `${resourceLabel} ${action.label}`, implies: Object.freeze(implies) }),
      );
    }
  }
  return createCatalog(infos);
}

function createCatalog(infos: readonly ScopeInfo[]): ScopeCatalog {
  const order = new Map<string, number>();
  const byName = new Map<string, ScopeInfo>();
  /** For each scope, the set of scopes it grants (itself included). */
  const grants = new Map<string, ReadonlySet<string>>();
  infos.forEach((info, index) => {
    order.set(info.name, index);
    byName.set(info.name, info);
    grants.set(info.name, new Set([info.name, ...info.implies]));
  });
  const frozenList = Object.freeze([...infos]);
  const known = infos.map((info) => info.name).join(', ');
  const longest = infos.reduce((max, info) => Math.max(max, info.name.length), 0);
  const maxLength = MAX_SCOPE_ENTRIES * (longest + 1) - 1;
  const tooMany = (field: string, what: string): ValidationError =>
    new ValidationError(field, `${what}; at most ${MAX_SCOPE_ENTRIES} scope names are allowed (known scopes: ${known})`);

  const grantsOne = (granted: readonly string[], required: string): boolean => {
    for (let i = 0; i < granted.length; i++) {
      if (grants.get(granted[i] as string)?.has(required)) return true;
    }
    return false;
  };

  return {
    list: () => frozenList,
    has: (name) => byName.has(name),
    parse(input, field = 'scopes') {
      let items: unknown[];
      if (typeof input === 'string') {
        // Refused before splitting: a 20 MB string would otherwise cost seconds and hundreds of MB.
        if (input.length > maxLength) throw tooMany(field, `is ${input.length} characters long`);
        items = input === '' ? [] : input.split(',');
      } else if (Array.isArray(input)) {
        if (input.length > MAX_SCOPE_ENTRIES) throw tooMany(field, `has ${input.length} entries`);
        items = input;
      } else throw new ValidationError(field, 'must be an array of scope names');
      if (items.length === 0) throw new ValidationError(field, `choose at least one scope (${known})`);
      const picked = new Set<string>();
      items.forEach((item, index) => {
        if (typeof item !== 'string') {
          throw new ValidationError(field, `entry ${index + 1} must be a string, got ${typeof item}`);
        }
        const info = byName.get(item);
        if (!info) throw new ValidationError(field, `unknown scope '${item.slice(0, 64)}'; known scopes: ${known}`);
        picked.add(info.name);
      });
      return [...picked].sort((a, b) => (order.get(a) as number) - (order.get(b) as number));
    },
    expand(granted) {
      const out = new Set<string>();
      for (const scope of granted) for (const g of grants.get(scope) ?? []) out.add(g);
      return [...out].sort((a, b) => (order.get(a) as number) - (order.get(b) as number));
    },
    satisfies(granted, required) {
      if (typeof required === 'string') return grantsOne(granted, required);
      for (let i = 0; i < required.length; i++) {
        if (!grantsOne(granted, required[i] as string)) return false;
      }
      return true;
    },
    describe: (scopes) => scopes.map((name) => byName.get(name)?.label ?? name),
  };
}

/**
 * The seven scopes of B2B Wave's API-keys page: `all`, `orders:list`, `orders:edit`,
 * `products:list`, `products:edit`, `customers:list`, `customers:edit`, labelled `All`,
 * `Order list`, `Order edit`, …. All implies everything; an edit scope implies its list scope.
 */
export const b2bWaveScopes: ScopeCatalog = defineScopes({
  resources: { orders: 'Order', products: 'Product', customers: 'Customer' },
  actions: { list: 'list', edit: { label: 'edit', implies: ['list'] } },
});
