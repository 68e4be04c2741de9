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

/** The answer to a request sent as raw bytes. */
export interface RawReply {
  /** The status code, or 0 when the server closed without an answer. */
  status: number;
  /** Everything after the response head, as sent (the guards' JSON bodies are never chunked). */
  body: string;
}

/**
 * Sends one request written byte by byte, bypassing the checks Node's client makes on header
 * values and its merging of repeated headers, and returns the status code and body of the answer.
 */
export function sendRawReply(host: string, port: number, headerLines: Buffer[]): Promise<RawReply> {
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
      const text = Buffer.concat(chunks).toString('latin1');
      const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
      const end = text.indexOf('\r\n\r\n');
      resolve({ status: match ? Number(match[1]) : 0, body: end < 0 ? '' : text.slice(end + 4) });
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

/** Like `sendRawReply`, the status code only (0 when the server closed without an answer). */
export async function sendRaw(host: string, port: number, headerLines: Buffer[]): Promise<number> {
  return (await sendRawReply(host, port, headerLines)).status;
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1), the prefix's flag bits in `first`. */
function hpackInteger(value: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const bytes = [first | max];
  let rest = value - max;
  while (rest >= 128) {
    bytes.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return bytes;
}

/** A header field as "literal without indexing, new name", no Huffman (RFC 7541 §6.2.2). */
function hpackLiteral(name: string, value: string): Buffer {
  const n = Buffer.from(name, 'latin1');
  const v = Buffer.from(value, 'latin1');
  return Buffer.concat([Buffer.from([0, ...hpackInteger(n.length, 7, 0)]), n, Buffer.from(hpackInteger(v.length, 7, 0)), v]);
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head.writeUInt8(type, 3);
  head.writeUInt8(flags, 4);
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** The `:status` values of HPACK's static table, by index. */
const STATIC_STATUS: Readonly<Record<number, number>> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };
/** The Huffman codes of the ten digits (RFC 7541 Appendix B), enough to read any status code. */
const HUFFMAN_DIGITS = ['00000', '00001', '00010', '011001', '011010', '011011', '011100', '011101', '011110', '011111'];

function huffmanDigits(bytes: Buffer): string {
  const bits = [...bytes].map((b) => b.toString(2).padStart(8, '0')).join('');
  let out = '';
  let at = 0;
  for (;;) {
    const digit = HUFFMAN_DIGITS.findIndex((code) => bits.startsWith(code, at));
    const code = HUFFMAN_DIGITS[digit];
    if (code === undefined) return out;
    out += String(digit);
    at += code.length;
  }
}

/** The `:status` of a response header block: its first field, as servers send it. */
function statusOf(block: Buffer): number {
  let at = 0;
  // Skip dynamic table size updates.
  while (at < block.length && (block.readUInt8(at) & 0xe0) === 0x20) at++;
  const first = block.readUInt8(at);
  if (first & 0x80) return STATIC_STATUS[first & 0x7f] ?? 0;
  const nameIndex = (first & 0xc0) === 0x40 ? first & 0x3f : first & 0x0f;
  if (STATIC_STATUS[nameIndex] === undefined) return 0;
  const lengthByte = block.readUInt8(at + 1);
  const value = block.subarray(at + 2, at + 2 + (lengthByte & 0x7f));
  return Number(lengthByte & 0x80 ? huffmanDigits(value) : value.toString('latin1'));
}

/**
 * Sends one HTTP/2 `GET /orders` (prior knowledge, no TLS) whose header block is written by hand,
 * so repeated `authorization` fields reach the server as sent (Node's own HTTP/2 client refuses
 * them), and returns the status code and body of the answer.
 */
export function sendHttp2Raw(host: string, port: number, headers: ReadonlyArray<readonly [string, string]>): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let pending = Buffer.alloc(0);
    let status = 0;
    const body: Buffer[] = [];
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ status, body: Buffer.concat(body).toString('utf8') });
    };
    socket.on('error', reject);
    socket.on('close', finish);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 9) {
        const length = pending.readUIntBE(0, 3);
        if (pending.length < 9 + length) return;
        const type = pending.readUInt8(3);
        const flags = pending.readUInt8(4);
        const stream = pending.readUInt32BE(5) & 0x7fffffff;
        let payload = pending.subarray(9, 9 + length);
        pending = pending.subarray(9 + length);
        if (type === 4 && !(flags & 1)) socket.write(frame(4, 1, 0, Buffer.alloc(0)));
        if (type === 7) return finish();
        if (stream !== 1) continue;
        // Strip padding (PADDED) and priority fields (PRIORITY on HEADERS).
        if ((type === 0 || type === 1) && flags & 0x8) payload = payload.subarray(1, payload.length - payload.readUInt8(0));
        if (type === 1 && flags & 0x20) payload = payload.subarray(5);
        if (type === 1 && status === 0) status = statusOf(payload);
        if (type === 0) body.push(payload);
        if (type === 3 || ((type === 0 || type === 1) && flags & 1)) return finish();
      }
    });
    const block = Buffer.concat(
      [[':method', 'GET'], [':scheme', 'http'], [':path', '/orders'], [':authority', `${host}:${port}`], ...headers].map(([name, value]) =>
        hpackLiteral(name, value),
      ),
    );
    socket.write(
      Buffer.concat([
        Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
        frame(4, 0, 0, Buffer.alloc(0)),
        // END_STREAM | END_HEADERS
        frame(1, 0x5, 1, block),
      ]),
    );
  });
}
