// Bounds every store call by one timeout, with one timer for all calls in flight.

import { isKeygateError, type KeygateError, StoreUnavailableError } from './errors.js';

interface Pending {
  readonly deadline: number;
  readonly operation: string;
  reject: ((error: unknown) => void) | null;
}

/**
 * Runs store calls with a deadline. Every call has the same timeout, so deadlines arrive in call
 * order: a FIFO queue and a single timer replace a timer per call on the verify path.
 */
export class Deadlines {
  private queue: Pending[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly timeoutMs: number) {}

  /** Runs `call`; rejects with StoreUnavailableError when it fails or outlives the timeout. */
  run<T>(operation: string, call: () => Promise<T>): Promise<T> {
    let promise: Promise<T>;
    try {
      promise = call();
    } catch (error) {
      return Promise.reject(unavailable(operation, error));
    }
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { deadline: Date.now() + this.timeoutMs, operation, reject };
      this.queue.push(pending);
      if (this.timer === null) this.arm(this.timeoutMs);
      promise.then(
        (value) => {
          if (pending.reject === null) return;
          pending.reject = null;
          this.settleHead();
          resolve(value);
        },
        (error: unknown) => {
          if (pending.reject === null) return;
          pending.reject = null;
          this.settleHead();
          reject(unavailable(operation, error));
        },
      );
    });
  }

  private arm(delay: number): void {
    this.timer = setTimeout(() => this.expire(), Math.max(0, delay));
    this.timer.unref();
  }

  /** Drops settled calls from the front so the queue stays as long as what is in flight. */
  private settleHead(): void {
    while (this.head < this.queue.length && (this.queue[this.head] as Pending).reject === null) this.head++;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  private expire(): void {
    this.timer = null;
    const now = Date.now();
    while (this.head < this.queue.length) {
      const pending = this.queue[this.head] as Pending;
      if (pending.reject !== null) {
        if (pending.deadline > now) break;
        const reject = pending.reject;
        pending.reject = null;
        reject(new StoreUnavailableError(pending.operation, `no answer within ${this.timeoutMs} ms`));
      }
      this.head++;
    }
    this.settleHead();
    if (this.head < this.queue.length) this.arm((this.queue[this.head] as Pending).deadline - now);
  }
}

/**
 * The errors a store may raise on purpose, by the call that raised them; their meaning is kept.
 * A conflict can only come from a write. A store may refuse as invalid what a caller passed on
 * (a record, a list query, an id) when only the store can check it, but never a digest: keygate
 * computes those, so verify never answers 400, and a refusal there is a store failure.
 */
const ON_PURPOSE: Readonly<Record<string, ReadonlySet<string>>> = {
  STORE_CONFLICT: new Set(['insert', 'update']),
  VALIDATION_FAILED: new Set(['insert', 'update', 'list', 'findById', 'delete']),
};

/** How StoreUnavailableError starts its message, stripped when a store's own one is wrapped again. */
const UNAVAILABLE_PREFIX = /^Key store unavailable during [^:]*: /;

/**
 * Runs of 40 or more token characters: a digest (43 base64url characters, 64 in hex), a token
 * (`{prefix}_` and 38 base62 characters) or a Redis key name made of one. Drivers quote bound
 * values in some messages (PostgreSQL `invalid input syntax for type uuid: "<digest>"`, MySQL
 * `Incorrect integer value: '<digest>'`), so such runs never leave a store error.
 */
const SECRET_LIKE = /[A-Za-z0-9_-]{40,}/g;

function scrub(text: string): string {
  return text.replace(SECRET_LIKE, '[redacted]');
}

/**
 * What the manager throws for a store call that failed: the error itself if the store raised it on
 * purpose, otherwise a StoreUnavailableError (503) whose cause is a copy of the store's error with
 * only its name, code and message, and no digest or token in any of them. Drivers attach what they
 * sent (ioredis `command.args` holds `{prefix}d:<digest>`, pg `detail` the failing row), so the
 * original never travels on: logging the error logs nothing secret.
 */
function unavailable(operation: string, error: unknown): KeygateError {
  if (isKeygateError(error) && ON_PURPOSE[error.code]?.has(operation)) return error;
  // A store's own StoreUnavailableError is rebuilt too, so that its cause is made safe as well.
  const ownError = isKeygateError(error) && error.code === 'STORE_UNAVAILABLE';
  const source = ownError ? (error as Error).cause : error;
  const message = ownError ? (error as Error).message.replace(UNAVAILABLE_PREFIX, '') : messageOf(error);
  const cause = safeCopy(source);
  return new StoreUnavailableError(operation, scrub(message), cause ? { cause } : undefined);
}

/** The message of a thrown value; an error without one is named by its code or class. */
function messageOf(error: unknown): string {
  if (error === null || typeof error !== 'object') return String(error);
  const { message, code, name } = error as { message?: unknown; code?: unknown; name?: unknown };
  if (typeof message === 'string' && message !== '') return message;
  if (typeof code === 'string' || typeof code === 'number') return String(code);
  return typeof name === 'string' ? name : 'unknown error';
}

/**
 * A plain Error with the store error's name, code and message (scrubbed), and its stack frames:
 * the frames name functions and files, never values. `undefined` for a thrown non-object.
 */
function safeCopy(error: unknown): Error | undefined {
  if (error === null || typeof error !== 'object') return undefined;
  const { name, code, stack } = error as { name?: unknown; code?: unknown; stack?: unknown };
  const copy = new Error(scrub(messageOf(error)));
  copy.name = typeof name === 'string' && name !== '' ? scrub(name) : 'Error';
  if (typeof code === 'string' || typeof code === 'number') Object.assign(copy, { code: typeof code === 'string' ? scrub(code) : code });
  const frames = typeof stack === 'string' ? stack.split('\n').filter((line) => /^\s+at /.test(line)) : [];
  copy.stack = [`${copy.name}: ${copy.message}`, ...frames.map(scrub)].join('\n');
  return copy;
}
