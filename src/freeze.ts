// deepFreeze: makes a value and everything it holds unchangeable, for records shared between callers.

/** Freezes `value` and, recursively, every object it holds; returns it. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as object)) deepFreeze(child);
  }
  return value;
}
