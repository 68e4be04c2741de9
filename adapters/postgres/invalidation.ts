// postgresInvalidation(): the cross-instance invalidation bus over PostgreSQL LISTEN/NOTIFY.

import type { InvalidationBus, InvalidationSubscriber } from '../../src/cache.js';
import { ValidationError } from '../../src/errors.js';
import { checkWholeNumber } from '../../src/validate.js';
import { assertClient, isIdentifier } from '../sql/index.js';

/** A notification as node-postgres delivers it. */
export interface PostgresNotification {
  channel: string;
  payload?: string | undefined;
}

/**
 * The connection that LISTENs: a pg `PoolClient` (from `pool.connect()`) or a connected pg
 * `Client`. It is used for nothing else while subscribed.
 */
export interface PostgresListenClient {
  query(text: string): Promise<unknown>;
  on(event: 'notification', listener: (message: PostgresNotification) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  removeListener(event: 'notification', listener: (message: PostgresNotification) => void): unknown;
  removeListener(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'end', listener: () => void): unknown;
  /** For a PoolClient: hands the connection back; `true` closes it instead. */
  release?(destroy?: boolean): void;
  /** For a Client: closes the connection. */
  end?(): Promise<void>;
}

/** The part of a pg `Pool` the bus uses: `query` to publish, `connect` for the listening connection. */
export interface PostgresPool {
  query(text: string, values?: unknown[]): Promise<unknown>;
  connect?(): Promise<PostgresListenClient>;
}

/** Options of {@link postgresInvalidation}. */
export interface PostgresInvalidationOptions {
  /**
   * The NOTIFY channel. Every instance that shares the keys must use the same one; a plain
   * identifier (`/^[A-Za-z_][A-Za-z0-9_]{0,62}$/`).
   * @default 'keygate_invalidation'
   */
  channel?: string | undefined;
  /**
   * Opens the dedicated LISTEN connection, e.g. `async () => { const c = new pg.Client(url); await c.connect(); return c }`.
   * Needed when the first argument is a `Client` rather than a `Pool`.
   * @default () => pool.connect()
   */
  connect?: (() => Promise<PostgresListenClient>) | undefined;
  /** The first delay before reconnecting a lost LISTEN connection, in ms; doubled on each failure. @default 100 */
  reconnectDelayMs?: number | undefined;
  /** The longest delay between reconnection attempts, in ms. @default 10000 */
  maxReconnectDelayMs?: number | undefined;
  /** Receives lost connections and failed reconnection attempts (the bus keeps trying). @default none */
  onError?: ((error: unknown) => void) | undefined;
}

/** One subscription: a dedicated connection that LISTENs and comes back after it is lost. */
class Listener {
  private client: PostgresListenClient | null = null;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;

  constructor(
    private readonly open: () => Promise<PostgresListenClient>,
    private readonly channel: string,
    private readonly subscriber: InvalidationSubscriber,
    private readonly delays: { first: number; max: number },
    private readonly report: (error: unknown) => void,
  ) {}

  /** Connects and LISTENs; rejects if that fails. */
  async start(): Promise<void> {
    this.client = await this.listen();
  }

  /** Stops listening and closes the connection (it is never handed back to the pool while LISTENing). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const client = this.client;
    this.client = null;
    if (client) await this.close(client);
  }

  private readonly onNotification = (message: PostgresNotification): void => {
    if (message.channel !== this.channel || !message.payload) return;
    this.subscriber.invalidate(message.payload);
  };

  private readonly onError = (error: Error): void => this.lost(error);
  private readonly onEnd = (): void => this.lost(new Error(`the LISTEN connection for '${this.channel}' ended`));

  private async listen(): Promise<PostgresListenClient> {
    const client = await this.open();
    if (!client || typeof client.query !== 'function' || typeof client.on !== 'function') {
      throw new ValidationError(
        'connect',
        'must resolve to a connected pg client; when the first argument is a pg Client, pass a connect option that returns a new one',
      );
    }
    client.on('notification', this.onNotification);
    client.on('error', this.onError);
    client.on('end', this.onEnd);
    try {
      await client.query(`LISTEN "${this.channel}"`);
    } catch (error) {
      await this.close(client);
      throw error;
    }
    return client;
  }

  private lost(error: Error): void {
    const client = this.client;
    if (client === null) return;
    this.client = null;
    // Notifications sent from now on are missed: the cache stops answering until LISTEN is back.
    if (this.subscriber.lost) this.subscriber.lost();
    else this.subscriber.reset();
    void this.close(client);
    this.report(error);
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    const delay = Math.min(this.delays.max, this.delays.first * 2 ** Math.min(this.failures, 20));
    // Jitter spreads the reconnections of many instances after a database restart.
    this.timer = setTimeout(() => void this.reconnect(), delay / 2 + Math.random() * (delay / 2));
    this.timer.unref();
  }

  private async reconnect(): Promise<void> {
    this.timer = null;
    if (this.stopped) return;
    let client: PostgresListenClient;
    try {
      client = await this.listen();
    } catch (error) {
      this.failures++;
      this.report(error);
      this.schedule();
      return;
    }
    if (this.stopped) {
      await this.close(client);
      return;
    }
    this.failures = 0;
    this.client = client;
    // Messages sent while away are lost: everything cached may be stale.
    this.subscriber.reset();
  }

  /** Detaches and closes a connection; a late error on it is swallowed, not thrown. */
  private async close(client: PostgresListenClient): Promise<void> {
    client.removeListener('notification', this.onNotification);
    client.removeListener('error', this.onError);
    client.removeListener('end', this.onEnd);
    client.on('error', ignore);
    try {
      if (typeof client.release === 'function') client.release(true);
      else if (typeof client.end === 'function') await client.end();
    } catch (error) {
      this.report(error);
    }
  }
}

function ignore(): void {}

/**
 * An invalidation bus over PostgreSQL LISTEN/NOTIFY, so that every instance's verify cache drops
 * a key as soon as any instance changes it. `publish` runs `SELECT pg_notify(channel, keyId)`
 * through the pool; each subscription holds one dedicated connection for LISTEN (from
 * `pool.connect()`, or from the `connect` option), reconnects with backoff when it is lost, and
 * then clears the cache (notifications sent meanwhile are lost). Stopping the subscription closes
 * that connection.
 *
 * @example
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL })
 * const keys = createKeyManager({
 *   store: postgresStore(pool),
 *   cache: { ttlMs: 30_000 },
 *   invalidation: postgresInvalidation(pool),
 * })
 */
export function postgresInvalidation(pool: PostgresPool, options: PostgresInvalidationOptions = {}): InvalidationBus {
  assertClient(
    pool,
    ['query'],
    'a pg Pool',
    "Install the driver with `npm install pg` and pass `new Pool({ connectionString })` from 'pg'.",
  );
  const channel = options.channel ?? 'keygate_invalidation';
  if (typeof channel !== 'string' || !isIdentifier(channel)) {
    throw new ValidationError(
      'channel',
      `must be a plain identifier matching /^[A-Za-z_][A-Za-z0-9_]{0,62}$/; got ${JSON.stringify(channel)}`,
    );
  }
  const first = checkWholeNumber('reconnectDelayMs', options.reconnectDelayMs ?? 100, { unit: 'ms' });
  const max = checkWholeNumber('maxReconnectDelayMs', options.maxReconnectDelayMs ?? 10_000, {
    min: first,
    unit: 'ms',
    minName: 'reconnectDelayMs',
  });
  const open =
    options.connect ?? (typeof pool.connect === 'function' ? () => (pool.connect as () => Promise<PostgresListenClient>).call(pool) : null);
  if (open === null) {
    throw new ValidationError(
      'connect',
      'is required when the first argument has no connect(): pass a pg Pool, or a function that returns a new connected Client',
    );
  }
  const onError = options.onError;
  const report = (error: unknown): void => {
    try {
      onError?.(error);
    } catch {
      // A failing error listener must not stop the bus.
    }
  };

  return {
    async publish(keyId) {
      await pool.query('SELECT pg_notify($1, $2)', [channel, keyId]);
    },
    async subscribe(subscriber) {
      const listener = new Listener(open, channel, subscriber, { first, max }, report);
      await listener.start();
      return () => listener.stop();
    },
  };
}
