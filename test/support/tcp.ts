// Local TCP stand-ins for a failing server: a port that refuses, a listener that never answers, a proxy that can freeze or drop.

import { createConnection, createServer, type Server, type Socket } from 'node:net';

function listen(server: Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as { port: number }).port);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A port on 127.0.0.1 where nothing listens: connections are refused. */
export async function refusedPort(): Promise<number> {
  const server = createServer();
  const port = await listen(server);
  await closeServer(server);
  return port;
}

/** A server on 127.0.0.1 that accepts connections and never sends a byte. */
export async function silentServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  const port = await listen(server);
  return {
    port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await closeServer(server);
    },
  };
}

/**
 * A TCP proxy on 127.0.0.1 to a real server, which a test can make stop answering (`freeze`: a
 * blackhole, the bytes held until `thaw`), cut off and refuse (`down`, until `up`), or reset
 * (`reset`: every open connection gets a TCP RST; with `resetNew`, so does every new one until
 * `pass`).
 */
export class TcpProxy {
  private server: Server;
  private readonly pairs = new Set<[Socket, Socket]>();
  private frozen = false;
  private resetting = false;
  /** Connections accepted during a blackhole, each with the function that lets it through. */
  private readonly held = new Map<Socket, () => void>();
  /** Connections accepted so far, for tests that check a client reconnected. */
  accepted = 0;

  private constructor(
    private readonly target: { host: string; port: number },
    readonly port: number,
    server: Server,
  ) {
    this.server = server;
  }

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    let proxy: TcpProxy | null = null;
    const server = createServer((socket) => proxy?.accept(socket));
    const port = await listen(server);
    proxy = new TcpProxy(target, port, server);
    return proxy;
  }

  private accept(client: Socket): void {
    this.accepted++;
    if (this.resetting) {
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    if (this.frozen) {
      this.hold(client);
      return;
    }
    this.connect(client, []);
  }

  /**
   * A connection made during a blackhole never reaches the server while it lasts, as its SYN would
   * not: its bytes are kept, and if the client gives up on it before `thaw()`, it never does.
   */
  private hold(client: Socket): void {
    const chunks: Buffer[] = [];
    const keep = (chunk: Buffer): void => void chunks.push(chunk);
    const gone = (): void => {
      this.held.delete(client);
      client.destroy();
    };
    const release = (): void => {
      client.off('data', keep).off('end', gone).off('close', gone).off('error', gone);
      client.pause();
      this.connect(client, chunks);
    };
    client.on('data', keep).on('end', gone).on('close', gone).on('error', gone);
    this.held.set(client, release);
  }

  private connect(client: Socket, chunks: readonly Buffer[]): void {
    const upstream = createConnection(this.target);
    for (const chunk of chunks) upstream.write(chunk);
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  }

  /** Connections stay open but nothing passes either way: the server seems to hang. */
  freeze(): void {
    if (this.frozen) return;
    this.frozen = true;
    for (const [a, b] of this.pairs) {
      a.unpipe(b);
      b.unpipe(a);
      a.pause();
      b.pause();
    }
  }

  /** Lets the held bytes through and forwards again. */
  thaw(): void {
    if (!this.frozen) return;
    this.frozen = false;
    for (const [a, b] of this.pairs) {
      a.pipe(b);
      b.pipe(a);
      a.resume();
      b.resume();
    }
    const held = [...this.held.values()];
    this.held.clear();
    for (const release of held) release();
  }

  /** Destroys the connections held since a blackhole began. */
  private dropHeld(reset: boolean): void {
    for (const client of this.held.keys()) {
      if (reset) client.resetAndDestroy();
      else client.destroy();
    }
    this.held.clear();
  }

  /** Every open connection gets a TCP RST; with `resetNew`, new ones too, until `pass()`. */
  reset(resetNew = false): void {
    this.resetting = resetNew;
    for (const [a, b] of [...this.pairs]) {
      a.resetAndDestroy();
      b.destroy();
    }
    this.pairs.clear();
    this.dropHeld(true);
  }

  /** New connections are forwarded again after `reset(true)`. */
  pass(): void {
    this.resetting = false;
  }

  /** How many connections are open through the proxy. */
  get connections(): number {
    return this.pairs.size;
  }

  /** Drops every connection and stops listening: reconnects are refused. */
  async down(): Promise<void> {
    const closed = closeServer(this.server);
    for (const [a, b] of [...this.pairs]) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
    this.dropHeld(false);
    await closed;
  }

  /** Listens again on the same port. */
  async up(): Promise<void> {
    this.server = createServer((socket) => this.accept(socket));
    await listen(this.server, this.port);
  }

  async close(): Promise<void> {
    if (this.server.listening) {
      await this.down();
      return;
    }
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.dropHeld(false);
  }
}
