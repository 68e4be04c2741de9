// The keygate command on SQLite: every command, run by the built binary on a file of its own.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'vitest';
import { cliStoreSuite } from './store-suite.js';

describe('keygate command on SQLite', () => {
  cliStoreSuite({ name: 'SQLite', bus: false }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keygate-cli-sqlite-'));
    return {
      url: `sqlite:${join(dir, 'keys.db')}`,
      args: ['--table', 'api_keys'],
      // A file that is not there is a store that is not there: nothing is created but by migrate.
      downUrl: `sqlite:${join(dir, 'missing', 'keys.db')}`,
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  });
});
