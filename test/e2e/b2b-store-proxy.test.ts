// The B2B store example behind a TLS-terminating reverse proxy: admin writes from the page's own https origin work,
// through keygate's admin mount given the app's trustedProxies.

import { X509Certificate } from 'node:crypto';
import { type IncomingHttpHeaders, type IncomingMessage, request as httpRequest } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PATH, type RunningApp, startB2bStore } from './b2b-store-support.js';
import { type SelfSigned, selfSignedCertificate, withNodeCrypto } from './self-signed.js';

/** How the proxy tells the app which host the browser asked for. */
type HostMode = 'passes Host' | 'sets X-Forwarded-Host';

interface Proxy {
  /** The page's own origin, e.g. https://127.0.0.1:44321 */
  origin: string;
  port: number;
  close(): Promise<void>;
}

/**
 * A reverse proxy that terminates TLS and forwards to the app over plain HTTP, with
 * `X-Forwarded-Proto: https` and `X-Forwarded-For`, as nginx or a cloud load balancer does.
 */
async function startProxy(tls: SelfSigned, upstreamPort: number, mode: HostMode): Promise<Proxy> {
  const server: Server = createHttpsServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const headers: IncomingHttpHeaders = { ...req.headers, 'x-forwarded-proto': 'https', 'x-forwarded-for': req.socket.remoteAddress };
    if (mode === 'sets X-Forwarded-Host') {
      headers['x-forwarded-host'] = req.headers.host;
      headers.host = `127.0.0.1:${upstreamPort}`;
    }
    const upstream = httpRequest({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.writeHead(502).end());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `https://127.0.0.1:${port}`,
    port,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

interface Answer {
  status: number;
  body: { key?: { name: string }; error?: { code: string } };
}

interface Call {
  /** Where to send it: the proxy over TLS, or the app directly. */
  via: { tls: SelfSigned; port: number } | { port: number; localAddress: string };
  origin?: string;
  headers?: Record<string, string>;
  adminPassword: string;
}

/** An admin write as the page sends it: POST /admin/api-keys/api/keys, JSON, HTTP Basic, and an Origin. */
function createKey(call: Call, name: string): Promise<Answer> {
  const body = JSON.stringify({ name, scopes: ['orders:list'], allowedIps: '' });
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    authorization: `Basic ${Buffer.from(`admin:${call.adminPassword}`).toString('base64')}`,
    ...(call.origin === undefined ? {} : { origin: call.origin }),
    ...call.headers,
  };
  const options = { host: '127.0.0.1', port: call.via.port, method: 'POST', path: `${ADMIN_PATH}/api/keys`, headers, agent: false };
  return new Promise((resolve, reject) => {
    const onAnswer = (res: IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Answer['body'] }));
    };
    const req =
      'tls' in call.via
        ? httpsRequest({ ...options, ca: call.via.tls.cert }, onAnswer)
        : httpRequest({ ...options, localAddress: call.via.localAddress }, onAnswer);
    req.on('error', reject);
    req.end(body);
  });
}

/** GET /api/orders with a key, through the proxy from `localAddress`. */
function listOrders(tls: SelfSigned, port: number, token: string, localAddress: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const options = {
      host: '127.0.0.1',
      port,
      path: '/api/orders',
      headers: { authorization: `Bearer ${token}` },
      ca: tls.cert,
      localAddress,
    };
    httpsRequest({ ...options, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    })
      .on('error', reject)
      .end();
  });
}

let tls: SelfSigned;

beforeAll(() => {
  tls = selfSignedCertificate();
});

it('makes a certificate the client verifies for 127.0.0.1, with openssl or with node:crypto alone', async () => {
  for (const made of [tls, withNodeCrypto()]) {
    const x509 = new X509Certificate(made.cert);
    expect(x509.checkIP('127.0.0.1')).toBe('127.0.0.1');
    const server = createHttpsServer({ key: made.key, cert: made.cert }, (_req, res) => res.end(made.madeBy));
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
    const { port } = server.address() as AddressInfo;
    const text = await new Promise<string>((resolve, reject) => {
      httpsRequest({ host: '127.0.0.1', port, ca: made.cert, agent: false }, (res) => {
        let t = '';
        res.on('data', (chunk) => {
          t += chunk;
        });
        res.on('end', () => resolve(t));
      })
        .on('error', reject)
        .end();
    });
    expect(text).toBe(made.madeBy);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

describe.each<HostMode>(['passes Host', 'sets X-Forwarded-Host'])('B2B store example behind an HTTPS proxy that %s', (mode) => {
  let app: RunningApp;
  let proxy: Proxy;
  let appPort: number;

  beforeAll(async () => {
    app = await startB2bStore({ trustedProxies: '127.0.0.1' });
    appPort = Number(new URL(app.baseUrl).port);
    proxy = await startProxy(tls, appPort, mode);
  });
  afterAll(async () => {
    await proxy?.close();
    await app?.close();
  });

  const viaProxy = () => ({ tls, port: proxy.port });

  it("accepts an admin write from the page's own https origin", async () => {
    const answer = await createKey({ via: viaProxy(), origin: proxy.origin, adminPassword: app.adminPassword }, `ERP ${mode}`);
    expect(answer.status).toBe(201);
    expect(answer.body.key?.name).toBe(`ERP ${mode}`);
  });

  it('refuses admin writes from another origin, from plain http, with Origin: null and without Origin', async () => {
    for (const origin of ['https://attacker.example', `http://127.0.0.1:${proxy.port}`, 'https://127.0.0.1', 'null', undefined]) {
      const answer = await createKey({ via: viaProxy(), origin, adminPassword: app.adminPassword }, 'x');
      expect({ origin, status: answer.status, code: answer.body.error?.code }).toEqual({ origin, status: 403, code: 'ORIGIN_MISMATCH' });
    }
    expect(await app.keys.list({ limit: 100 })).toMatchObject({ keys: [expect.objectContaining({ name: `ERP ${mode}` })] });
  });

  it("checks a key's allowed addresses against the client behind the proxy, not the proxy", async () => {
    const { token } = await app.keys.create({ name: 'till', scopes: ['orders:list'], allowedIps: '127.0.0.2' });
    expect(await listOrders(tls, proxy.port, token, '127.0.0.2')).toBe(200);
    expect(await listOrders(tls, proxy.port, token, '127.0.0.3')).toBe(403);
  });

  it('does not believe X-Forwarded-Proto from a client that is not the trusted proxy', async () => {
    const direct = { port: appPort, localAddress: '127.0.0.2' };
    const forged = await createKey(
      { via: direct, origin: `https://127.0.0.1:${appPort}`, headers: { 'x-forwarded-proto': 'https' }, adminPassword: app.adminPassword },
      'x',
    );
    expect(forged.status).toBe(403);
    expect(forged.body.error?.code).toBe('ORIGIN_MISMATCH');
    // The same client writing from the app's own plain-http origin is fine.
    const plain = await createKey({ via: direct, origin: `http://127.0.0.1:${appPort}`, adminPassword: app.adminPassword }, 'direct');
    expect(plain.status).toBe(201);
  });
});

describe('B2B store example behind an HTTPS proxy it does not trust', () => {
  let app: RunningApp;
  let proxy: Proxy;

  beforeAll(async () => {
    app = await startB2bStore();
    proxy = await startProxy(tls, Number(new URL(app.baseUrl).port), 'passes Host');
  });
  afterAll(async () => {
    await proxy?.close();
    await app?.close();
  });

  it("refuses the page's https writes: without trustedProxies the app sees plain http", async () => {
    const answer = await createKey({ via: { tls, port: proxy.port }, origin: proxy.origin, adminPassword: app.adminPassword }, 'x');
    expect(answer.status).toBe(403);
    expect(answer.body.error?.code).toBe('ORIGIN_MISMATCH');
  });

  it("checks a key's allowed addresses against the proxy, the connection's own peer", async () => {
    const { token } = await app.keys.create({ name: 'till', scopes: ['orders:list'], allowedIps: '127.0.0.2' });
    expect(await listOrders(tls, proxy.port, token, '127.0.0.2')).toBe(403);
  });
});
