// A small HTTP client for the guard tests: real sockets, repeated headers, a chosen local address, raw bytes.

import { request as httpRequest, type OutgoingHttpHeaders } from 'node:http';
import { connect } from 'node:net';

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The body parsed as JSON, or `undefined` when it is not JSON. */
  json: unknown;
}

export interface SendOptions {
  path?: string;
  headers?: OutgoingHttpHeaders;
  /** Bind the client socket to this address, e.g. 127.0.0.2, to be a different peer. */
  localAddress?: string;
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** One request on a fresh connection. `host` may be an IPv6 address. */
export function send(host: string, port: number, options: SendOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host,
        port,
        path: options.path ?? '/orders',
        method: 'GET',
        headers: options.headers,
        localAddress: options.localAddress,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: parse(text) });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/**
 * Sends one request written byte by byte, bypassing the checks Node's client makes on header
 * values, and returns the status code of the answer (0 when the server closed without one).
 */
export function sendRaw(host: string, port: number, headerLines: Buffer[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // The server may reset the connection after refusing a request it cannot parse.
      if (error.code === 'ECONNRESET' || error.code === 'EPIPE') return finish();
      reject(error);
    });
    socket.on('close', () => finish());
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      const head = Buffer.concat(chunks).toString('latin1');
      const match = /^HTTP\/1\.1 (\d{3})/.exec(head);
      resolve(match ? Number(match[1]) : 0);
    };
    socket.write(
      Buffer.concat([
        Buffer.from(`GET /orders HTTP/1.1\r\nHost: ${host}\r\n`, 'latin1'),
        ...headerLines.flatMap((line) => [line, Buffer.from('\r\n')]),
        Buffer.from('Connection: close\r\n\r\n'),
      ]),
    );
  });
}
