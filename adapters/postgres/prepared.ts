// Names for PostgreSQL prepared statements, shared by the key store and the limiter.

import { createHash } from 'node:crypto';

/**
 * A function giving each statement text a stable name, `keygate_<hash>`: with a name, `pg` prepares
 * the statement once per connection and reuses it. Callers send a small, fixed set of texts, so the
 * map stays small.
 */
export function statementNamer(): (text: string) => string {
  const names = new Map<string, string>();
  return (text) => {
    let name = names.get(text);
    if (name === undefined) {
      name = `keygate_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
      names.set(text, name);
    }
    return name;
  };
}
