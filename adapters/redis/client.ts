// The slice of an ioredis or node-redis client that keygate uses, and one way to send a command over either.

import { createHash } from 'node:crypto';
import { StoreUnavailableError, ValidationError } from '../../src/errors.js';

/**
 * The part of an ioredis client (`new Redis()` or `new Cluster()`) that keygate uses, alike in
 * the supported majors: ioredis 5 and 6 (6 speaks RESP3 by default; either protocol and either
 * `replyMapping` works). Declared here so that keygate does not depend on ioredis.
 */
export interface IoRedisClientLike {
  /**
   * `'ready'` once connected and set up; `'wait'` before a `lazyConnect` client's first command;
   * `'connecting'`, `'connect'` (ioredis 6: until its HELLO is answered), `'reconnecting'`,
   * `'end'`, … otherwise.
   */
  readonly status: string;
  /** Sends one command with its arguments. */
  call(command: string, args: string[]): Promise<unknown>;
}

/**
 * The part of a node-redis client (`createClient()`) that keygate uses, alike in the supported
 * majors: `redis` 4.6+, 5 and 6 (6 speaks RESP3 by default; `RESP: 2` or `3` both work). A
 * cluster (`createCluster()`) is a {@link NodeRedisClusterLike}. Declared here so that keygate
 * does not depend on redis.
 */
export interface NodeRedisClientLike {
  /** `true` while connected and ready for commands. */
  readonly isReady: boolean;
  /** Sends one command, name first (4.6+: `sendCommand(args, options?)`, the options unused). */
  sendCommand(args: string[]): Promise<unknown>;
}

/**
 * The part of a node-redis cluster client (`createCluster()`, `redis` 4.6+, 5 and 6) that keygate
 * uses. Told apart from a single client by `getSlotMaster`. Declared here so that keygate does
 * not depend on redis.
 */
export interface NodeRedisClusterLike {
  /** `true` from `connect()` until `disconnect()`/`close()`. */
  readonly isOpen: boolean;
  /** node-redis 6 only: `true` once the slots are known and the cluster is serving commands. */
  readonly isReady?: boolean;
  /**
   * Sends one command, name first, to the primary serving the slot of `firstKey` (a random node
   * when `undefined`); keygate always passes `isReadonly: false`, so nothing is read from a replica.
   */
  sendCommand(firstKey: string | undefined, isReadonly: boolean | undefined, args: string[]): Promise<unknown>;
  /** The primary of a slot (only used to recognise a cluster client). */
  getSlotMaster(slot: number): unknown;
}

/** An ioredis client or cluster, or a node-redis client or cluster, as created and connected by the application. */
export type RedisClientLike = IoRedisClientLike | NodeRedisClientLike | NodeRedisClusterLike;

/** Sends one command; rejects at once, without queueing, when the client is not ready. */
export type SendCommand = (operation: string, args: string[]) => Promise<unknown>;

function isIoRedis(client: object): client is IoRedisClientLike {
  const c = client as Partial<IoRedisClientLike>;
  return typeof c.call === 'function' && typeof c.status === 'string';
}

/** A node-redis cluster: `sendCommand` takes a routing key first, and it has slots. Checked before {@link isNodeRedis} (node-redis 6 clusters have `isReady` too). */
function isNodeRedisCluster(client: object): client is NodeRedisClusterLike {
  const c = client as Partial<NodeRedisClusterLike>;
  return typeof c.sendCommand === 'function' && typeof c.getSlotMaster === 'function' && typeof c.isOpen === 'boolean';
}

function isNodeRedis(client: object): client is NodeRedisClientLike {
  const c = client as Partial<NodeRedisClientLike>;
  return typeof c.sendCommand === 'function' && typeof c.isReady === 'boolean';
}

/** Which kind of client this is, or a ValidationError naming `field`. */
export function clientKind(client: unknown, field: string): 'ioredis' | 'node-redis' | 'node-redis-cluster' {
  if (client !== null && typeof client === 'object') {
    if (isIoRedis(client)) return 'ioredis';
    if (isNodeRedisCluster(client)) return 'node-redis-cluster';
    if (isNodeRedis(client)) return 'node-redis';
  }
  throw new ValidationError(
    field,
    'must be an ioredis client (new Redis(url) or new Cluster(nodes)) or a node-redis client (createClient({ url }) or createCluster({ rootNodes }), connected with await client.connect())',
  );
}

/**
 * The key a node-redis cluster routes a command by: the first key of a script (EVAL, EVALSHA:
 * `[name, script, numkeys, key1, …]`), none for PUBLISH (any node relays it to the whole
 * cluster), else the first argument (HMGET). The store and limiter send nothing else.
 */
function firstKeyOf(args: readonly string[]): string | undefined {
  const name = (args[0] ?? '').toUpperCase();
  if (name === 'EVAL' || name === 'EVALSHA' || name === 'EVAL_RO' || name === 'EVALSHA_RO' || name === 'FCALL' || name === 'FCALL_RO') {
    return Number(args[2]) > 0 ? args[3] : undefined;
  }
  if (name === 'PUBLISH') return undefined;
  return args[1];
}

/** The key prefixes a client was created with: its own, and the per-node ones of a cluster. */
function keyPrefixesOf(client: RedisClientLike): unknown[] {
  const c = client as {
    options?: { keyPrefix?: unknown; redisOptions?: { keyPrefix?: unknown } | null } | null;
    _options?: { keyPrefix?: unknown; defaults?: { keyPrefix?: unknown } | null } | null;
  };
  const found: unknown[] = [];
  // ioredis Redis and Cluster, node-redis 6 client: options.keyPrefix; ioredis Cluster also
  // keeps the nodes' options (redisOptions); node-redis 5/6 clusters keep theirs in _options.
  if (c.options !== null && typeof c.options === 'object') {
    found.push(c.options.keyPrefix);
    if (c.options.redisOptions !== null && typeof c.options.redisOptions === 'object') found.push(c.options.redisOptions.keyPrefix);
  }
  if (isNodeRedisCluster(client) && c._options !== null && typeof c._options === 'object') {
    found.push(c._options.keyPrefix);
    if (c._options.defaults !== null && typeof c._options.defaults === 'object') found.push(c._options.defaults.keyPrefix);
  }
  return found;
}

/**
 * Throws a ValidationError when the client was created with a key prefix of its own (ioredis
 * `keyPrefix`, node-redis 6 `keyPrefix`). ioredis prefixes the KEYS of a script but not the key
 * names the store passes as arguments or builds inside its scripts, so `list()` and the previous
 * token of a rotation would find nothing; node-redis does not prefix `sendCommand` at all, so the
 * store (or limiter) would write outside the prefix and two applications told apart by it would
 * share keys. The store's (or limiter's) own `prefix` names every key, in one place; `factory`
 * and `ownPrefix` name it in the message.
 */
export function refuseKeyPrefix(client: RedisClientLike, factory: 'redisStore' | 'redisLimiter', ownPrefix: string): void {
  let text = '';
  for (const keyPrefix of keyPrefixesOf(client)) {
    text = typeof keyPrefix === 'string' ? keyPrefix : Buffer.isBuffer(keyPrefix) ? keyPrefix.toString() : '';
    if (text !== '') break;
  }
  if (text === '') return;
  const what = factory === 'redisStore' ? 'the Redis store' : 'the Redis rate limiter';
  const breaks =
    factory === 'redisStore'
      ? 'the client cannot prefix the key names its scripts build, so list() and rotated tokens would break'
      : 'ioredis prefixes the keys of the commands the limiter sends and node-redis does not, so instances on different clients would count in different keys';
  throw new ValidationError(
    'client',
    `was created with the keyPrefix option (${JSON.stringify(text)}), which ${what} does not support: ${breaks}. Pass a client without keyPrefix (such as client.duplicate({ keyPrefix: '' })) and give the ${factory === 'redisStore' ? 'store' : 'limiter'} its own prefix option instead: ${factory}(client, { prefix: ${JSON.stringify(text + ownPrefix)} })`,
  );
}

/**
 * One function that sends a command over any client. A client that is not ready (connecting,
 * setting up, reconnecting, closed) makes the call reject at once: commands never pile up in the
 * client's offline queue while Redis is away. An ioredis client created with `lazyConnect` and
 * not yet connected (`status: 'wait'`) is let through: its first command opens the connection.
 *
 * A cluster counts as a whole: an ioredis `Cluster` by its `status` (`'ready'` once it knows the
 * slots), a node-redis cluster by `isReady` (node-redis 6) or `isOpen` (4, 5, which have no
 * `isReady`). A command to a primary that fails while the cluster as a whole is ready is the
 * cluster client's to retry or reject (ioredis `retryDelayOnFailover`, node-redis redirections). A
 * node-redis cluster gets the routing key from {@link firstKeyOf} and never reads from a replica.
 *
 * The replies are the same whichever protocol the client negotiated: the store sends only
 * EVALSHA/EVAL (of scripts that never call `redis.setresp(3)`, so Redis converts their results
 * as for RESP2: Lua `false` and `nil` become null), HMGET and PUBLISH, whose RESP3 replies are the
 * RESP2 ones (arrays, integers, bulk strings, nulls). A command with a map, set, double or
 * boolean reply (HGETALL, ZRANGE … WITHSCORES, …) would come back in another shape from each
 * client and protocol.
 */
export function commandSender(client: RedisClientLike, field: string): SendCommand {
  const kind = clientKind(client, field);
  if (kind === 'ioredis') {
    const io = client as IoRedisClientLike;
    return (operation, args) => {
      const status = io.status;
      if (status !== 'ready' && status !== 'wait') return Promise.reject(notReady(operation, status));
      return io.call(args[0] as string, args.slice(1));
    };
  }
  if (kind === 'node-redis-cluster') {
    const cluster = client as NodeRedisClusterLike;
    return (operation, args) => {
      const ready = typeof cluster.isReady === 'boolean' ? cluster.isReady : cluster.isOpen;
      if (!ready) return Promise.reject(notReady(operation, 'not ready'));
      return cluster.sendCommand(firstKeyOf(args), false, args);
    };
  }
  const node = client as NodeRedisClientLike;
  return (operation, args) => {
    if (!node.isReady) return Promise.reject(notReady(operation, 'not ready'));
    return node.sendCommand(args);
  };
}

function notReady(operation: string, status: string): StoreUnavailableError {
  // ENOTCONN tells the manager that nothing was sent, so a write that fails here was not applied.
  const cause = Object.assign(new Error(`Redis client ${status}`), { code: 'ENOTCONN' });
  return new StoreUnavailableError(
    operation,
    `the Redis client is not connected (${status}), so the command was not sent. At start-up, wait until the client is ready (ioredis: its 'ready' event; node-redis: await client.connect()) before serving requests`,
    { cause },
  );
}

/** A Lua script run with EVALSHA, falling back to EVAL when Redis does not know it (NOSCRIPT). */
export class LuaScript {
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(send: SendCommand, operation: string, keys: readonly string[], args: readonly string[]): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await send(operation, ['EVALSHA', this.sha, ...tail]);
    } catch (error) {
      // After a restart or SCRIPT FLUSH the script is loaded again by EVAL, which caches it. The
      // error class differs (ioredis 5 ReplyError, 6 SimpleError; node-redis 4 ErrorReply, 5 and
      // 6 SimpleError); its message is Redis's own in all of them.
      if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
        return send(operation, ['EVAL', this.source, ...tail]);
      }
      throw error;
    }
  }
}
