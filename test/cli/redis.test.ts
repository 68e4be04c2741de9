// The keygate command on Redis: every command, run by the built binary (with ioredis), and --notify over pub/sub.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { redisInvalidation, redisStore } from '../../adapters/redis/index.js';
import { createKeyManager } from '../../src/index.js';
import { deletePrefix, randomPrefix } from '../support/redis.js';
import { serviceUrl } from '../support/services.js';
import { cliStoreSuite, unreachable } from './store-suite.js';
import { cacheServing, observeSubscription } from '../support/bus.js';
import { parsed, runCli } from './support.js';

const url = serviceUrl('redis');

describe.skipIf(!url)('keygate command on Redis', () => {
  cliStoreSuite({ name: 'Redis', bus: true }, async () => {
    const prefix = randomPrefix('cli');
    const client = new Redis(url as string, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await client.connect();
    return {
      url: url as string,
      args: ['--prefix', prefix],
      ...(await unreachable(url as string)),
      cleanup: async () => {
        await deletePrefix(client, prefix);
        await client.quit();
      },
      server: async (channel) => {
        const subscriber = client.duplicate();
        const { bus, subscribed } = observeSubscription(redisInvalidation({ publisher: client, subscriber, channel }));
        const keys = createKeyManager({
          store: redisStore(client, { prefix }),
          cache: { ttlMs: 60_000 },
          invalidation: bus,
          revocation: { heartbeatMs: 100 },
        });
        await subscribed;
        await cacheServing(keys);
        return {
          verify: async (token) => (await keys.verify(token)).valid,
          stop: async () => {
            await keys.close();
            subscriber.disconnect();
          },
        };
      },
    };
  });
});

describe.skipIf(!url)('keygate --notify on Redis, when the message cannot be sent', () => {
  it('saves the change, says the caches were not told, and exits 1', async () => {
    // A user that may do everything but PUBLISH: the store works, the bus does not.
    const admin = new Redis(url as string, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await admin.connect();
    const user = `kg_cli_${randomBytes(4).toString('hex')}`;
    const password = `pw-${randomBytes(8).toString('hex')}`;
    const prefix = randomPrefix('cli-acl');
    await admin.call('ACL', ['SETUSER', user, 'on', `>${password}`, '~*', '&*', '+@all', '-publish']);
    try {
      const limited = new URL(url as string);
      limited.username = user;
      limited.password = password;
      const cli = (...args: string[]) => runCli([...args, '--store', limited.toString(), '--prefix', prefix]);
      const { id, token } = parsed<{ id: string; token: string }>(await cli('create', '--name', 'acl', '--scopes', 'all', '--json'));
      const run = await cli('deactivate', id, '--notify');
      expect(run.code, run.all).toBe(1);
      expect(run.stdout).toMatch(new RegExp(`^The key ${id} is now inactive\\.`));
      expect(run.stderr).toMatch(/NOPERM/);
      expect(run.stderr).toMatch(/the change is saved, but the servers' caches could not be told of it/);
      expect(run.all).not.toContain(password);
      expect((await cli('verify', token)).code).toBe(3);
    } finally {
      await admin.call('ACL', ['DELUSER', user]);
      await deletePrefix(admin, prefix);
      await admin.quit();
    }
  });
});
