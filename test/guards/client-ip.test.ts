// SECURITY 3: the client address comes from the socket unless a trusted proxy forwarded it, in every framework.

import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryStore } from '../../adapters/memory/index.js';
import { createKeyManager, type KeyManager } from '../../src/manager.js';
import { FRAMEWORKS, type AppSpec, type RunningApp } from './apps.js';

/** Whether this machine can listen on `host` (no IPv6 loopback, no dual-stack `::`). */
async function canListen(host: string): Promise<boolean> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port: 0 }, () => resolve());
    });
    return true;
  } catch {
    return false;
  } finally {
    server.close();
  }
}

const hasIpv6Loopback = await canListen('::1');
const hasDualStack = await canListen('::');
if (!hasIpv6Loopback) console.warn('client-ip tests: no IPv6 loopback (::1) on this machine; the ::1 cases are skipped.');
if (!hasDualStack) console.warn('client-ip tests: cannot listen on :: (dual-stack); the ::ffff:127.0.0.1 cases are skipped.');

describe.each(FRAMEWORKS)('$name client address', (framework) => {
  let keys: KeyManager;
  const token: Record<string, string> = {};
  const apps: RunningApp[] = [];
  const start = async (spec: Omit<AppSpec, 'keys'>): Promise<RunningApp> => {
    const app = await framework.start({ keys, ...spec });
    apps.push(app);
    return app;
  };
  const bearer = (name: string) => ({ authorization: `Bearer ${token[name]}` });

  beforeAll(async () => {
    keys = createKeyManager({ store: memoryStore() });
    const allowed = { public: '203.0.113.7', loopback4: '127.0.0.1', loopback6: '::1' };
    for (const [name, allowedIps] of Object.entries(allowed)) {
      token[name] = (await keys.create({ name, scopes: ['orders:list'], allowedIps })).token;
    }
  });
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
  });

  it('ignores X-Forwarded-For from a direct client: an allowed address in the header gets 403', async () => {
    const app = await start({});
    const forged = await app.send({ headers: { ...bearer('public'), 'x-forwarded-for': '203.0.113.7' } });
    expect(forged.status).toBe(403);
    expect(forged.json).toMatchObject({ error: { code: 'ip_not_allowed' } });
    // The peer address is what counts.
    const peer = await app.send({ headers: { ...bearer('loopback4'), 'x-forwarded-for': '203.0.113.7' } });
    expect(peer.status).toBe(200);
  });

  it("ignores the framework's own proxy trust setting", async () => {
    const app = await start({ frameworkTrustsProxies: true });
    const forged = await app.send({ headers: { ...bearer('public'), 'x-forwarded-for': '203.0.113.7' } });
    expect(forged.status).toBe(403);
  });

  it('reads X-Forwarded-For only from a trusted proxy', async () => {
    const app = await start({ guard: { trustedProxies: ['127.0.0.1'] } });
    const viaProxy = await app.send({ headers: { ...bearer('public'), 'x-forwarded-for': '203.0.113.7' } });
    expect(viaProxy.status).toBe(200);
    // 127.0.0.2 is a loopback address too, but not on the trusted list: it is a direct client.
    const direct = await app.send({ localAddress: '127.0.0.2', headers: { ...bearer('public'), 'x-forwarded-for': '203.0.113.7' } });
    expect(direct.status).toBe(403);
  });

  it('takes the right-most address that is not a trusted proxy', async () => {
    const app = await start({ guard: { trustedProxies: 'loopback' } });
    const chain = await app.send({ headers: { ...bearer('public'), 'x-forwarded-for': '198.51.100.1, 203.0.113.7, 127.0.0.5' } });
    expect(chain.status).toBe(200);
    const spoofedLeft = await app.send({ headers: { ...bearer('public'), 'x-forwarded-for': '203.0.113.7, 198.51.100.1' } });
    expect(spoofedLeft.status).toBe(403);
  });

  it('refuses a forwarded 0177.0.0.1 for a key allowed only 127.0.0.1, and never walks past it', async () => {
    const app = await start({ guard: { trustedProxies: 'loopback' } });
    const octal = await app.send({ headers: { ...bearer('loopback4'), 'x-forwarded-for': '0177.0.0.1' } });
    expect(octal.status).toBe(403);
    expect(octal.json).toMatchObject({ error: { code: 'ip_not_allowed' } });
    // Read leniently, 0177.0.0.1 is a loopback proxy and the walk would reach the client-written 203.0.113.7.
    const behind = await app.send({ headers: { ...bearer('public'), 'x-forwarded-for': '203.0.113.7, 0177.0.0.1' } });
    expect(behind.status).toBe(403);
    const exact = await app.send({ headers: { ...bearer('loopback4'), 'x-forwarded-for': '127.0.0.1' } });
    expect(exact.status).toBe(200);
  });

  it.skipIf(!hasDualStack)('matches a dual-stack peer ::ffff:127.0.0.1 against 127.0.0.1', async () => {
    const app = await start({ host: '::' });
    const open = await app.send({ path: '/open', host: '127.0.0.1' });
    expect(open.json).toEqual({ peer: '::ffff:127.0.0.1' });
    expect((await app.send({ host: '127.0.0.1', headers: bearer('loopback4') })).status).toBe(200);
    expect((await app.send({ host: '127.0.0.1', headers: bearer('loopback6') })).status).toBe(403);
  });

  it.skipIf(!hasIpv6Loopback)('matches an IPv6 peer ::1 against ::1', async () => {
    const app = await start({ host: '::1' });
    const open = await app.send({ path: '/open' });
    expect(open.json).toEqual({ peer: '::1' });
    expect((await app.send({ headers: bearer('loopback6') })).status).toBe(200);
    expect((await app.send({ headers: bearer('loopback4') })).status).toBe(403);
  });
});
