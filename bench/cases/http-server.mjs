// A server for the HTTP case: Fastify, Express or Koa, bare or guarded by keygate, on 127.0.0.1; reports its port and a token.

import { loadDist } from '../lib/keygate.mjs';

const [framework, mode] = process.argv.slice(2);
const guarded = mode === 'guarded';

const { createKeyManager } = await loadDist('index');
const { memoryStore } = await loadDist('memory');
const keys = createKeyManager({ store: memoryStore() });
const { token } = await keys.create({ name: 'Load test', scopes: ['orders:list'] });
/** What every server answers on GET /orders, guarded or not. */
const body = { orders: [{ id: 1, total: '12.50' }] };

async function fastifyServer() {
  const { default: Fastify } = await import('fastify');
  const app = Fastify({ logger: false });
  if (guarded) {
    const { keygatePlugin } = await loadDist('fastify');
    await app.register(keygatePlugin, { keys });
    app.get('/orders', { onRequest: app.keygate.guard({ scope: 'orders:list' }) }, async () => body);
  } else {
    app.get('/orders', async () => body);
  }
  await app.listen({ host: '127.0.0.1', port: 0 });
  count(app.server);
  return app.server.address().port;
}

async function expressServer() {
  const { default: express } = await import('express');
  const app = express();
  const handler = (req, res) => res.json(body);
  if (guarded) {
    const { apiKeyGuard } = await loadDist('express');
    app.get('/orders', apiKeyGuard(keys, { scope: 'orders:list' }), handler);
  } else {
    app.get('/orders', handler);
  }
  return listen(app);
}

async function koaServer() {
  const { default: Koa } = await import('koa');
  const app = new Koa();
  const handler = async (ctx) => {
    if (ctx.method === 'GET' && ctx.path === '/orders') ctx.body = body;
  };
  if (guarded) {
    const { apiKeyGuard } = await loadDist('koa');
    const guard = apiKeyGuard(keys, { scope: 'orders:list' });
    app.use((ctx, next) => guard(ctx, () => handler(ctx, next)));
  } else {
    app.use(handler);
  }
  return listen(app.callback());
}

async function listen(handler) {
  const { createServer } = await import('node:http');
  const server = createServer(handler);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  count(server);
  return server.address().port;
}

/** Requests served so far, for the CPU time per request. */
let served = 0;
function count(server) {
  server.on('request', () => served++);
}

const servers = { fastify: fastifyServer, express: expressServer, koa: koaServer };
const port = await servers[framework]();
process.send({ port, token });
// The parent asks for this process's CPU time (µs, user + system) and requests served around each load run.
process.on('message', (message) => {
  if (message !== 'usage') return;
  const { user, system } = process.cpuUsage();
  process.send({ usage: { cpuMicros: user + system, served } });
});
process.on('disconnect', () => process.exit(0));
