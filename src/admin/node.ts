// What the Node mounts (Express, Koa, Fastify) share: reading a request body, sending an answer.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { ADMIN_BODY_MAX } from './core.js';
import type { AdminBody, AdminResponse } from './types.js';

/**
 * The body of a request: read from the stream, or, when the host's body parser read it first
 * (`express.json()`, `koa-bodyparser`), the value it parsed.
 */
export async function readNodeBody(req: IncomingMessage, parsed: unknown): Promise<AdminBody> {
  if (req.method === 'GET' || req.method === 'HEAD') return { kind: 'none' };
  const declared = Number(req.headers['content-length']);
  if (req.readableEnded || (req as { _body?: unknown })._body === true) {
    // The host's parser read it, maybe with a larger limit: the admin's still holds.
    if (declared > ADMIN_BODY_MAX || (parsed !== undefined && Buffer.byteLength(JSON.stringify(parsed) ?? '') > ADMIN_BODY_MAX)) {
      return { kind: 'too-large' };
    }
    return parsed === undefined ? { kind: 'none' } : { kind: 'parsed', value: parsed };
  }
  if (declared > ADMIN_BODY_MAX) {
    req.resume();
    return { kind: 'too-large' };
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > ADMIN_BODY_MAX) {
      req.resume();
      return { kind: 'too-large' };
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  return text === '' ? { kind: 'none' } : { kind: 'text', text };
}

/** Sends an answer on a Node response. */
export function sendNode(res: ServerResponse, answer: AdminResponse, head: boolean): void {
  res.statusCode = answer.status;
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
  if (answer.body === null || head) {
    res.end();
    return;
  }
  res.setHeader('content-length', Buffer.byteLength(answer.body));
  res.end(answer.body);
}

/** Path and query of a request target (`/api/keys?active=true`). */
export function splitTarget(target: string): { path: string; query: string } {
  const mark = target.indexOf('?');
  return mark < 0 ? { path: target, query: '' } : { path: target.slice(0, mark), query: target.slice(mark + 1) };
}
