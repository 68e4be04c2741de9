// The keygate command on PostgreSQL: every command, run by the built binary, and --notify over LISTEN/NOTIFY.
import pg from 'pg';
import { describe } from 'vitest';
import { postgresInvalidation, postgresStore } from '../../adapters/postgres/index.js';
import { createKeyManager } from '../../src/index.js';
import { serviceUrl } from '../support/services.js';
import { randomTable } from '../stores/sql-extras.js';
import { cliStoreSuite, unreachable } from './store-suite.js';
import { cacheServing, observeSubscription } from '../support/bus.js';

const url = serviceUrl('postgres');

describe.skipIf(!url)('keygate command on PostgreSQL', () => {
  cliStoreSuite({ name: 'PostgreSQL', bus: true }, async () => {
    const table = randomTable('kg_cli');
    const pool = new pg.Pool({ connectionString: url, max: 4 });
    return {
      url: url as string,
      args: ['--table', table],
      ...(await unreachable(url as string)),
      cleanup: async () => {
        await pool.query(`DROP TABLE IF EXISTS "${table}"`);
        await pool.end();
      },
      server: async (channel) => {
        const { bus, subscribed } = observeSubscription(postgresInvalidation(pool, { channel }));
        const keys = createKeyManager({
          store: postgresStore(pool, { table }),
          cache: { ttlMs: 60_000 },
          invalidation: bus,
          revocation: { heartbeatMs: 100 },
        });
        await subscribed;
        await cacheServing(keys);
        return { verify: async (token) => (await keys.verify(token)).valid, stop: () => keys.close() };
      },
    };
  });
});
