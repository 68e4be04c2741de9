// Bounds every store call by one timeout, with one timer for all calls in flight, and sheds calls while the store fails.

import { Breaker, type BreakerOptions } from './breaker.js';
import { isKeygateError, type KeygateError, StoreOutcomeUnknownError, StoreUnavailableError } from './errors.js';

/** How one store call is run. */
export interface CallOptions {
  /**
   * The call writes: when it fails without a clear "not applied" (no answer in time, a broken
   * connection), it rejects with StoreOutcomeUnknownError instead of StoreUnavailableError.
   */
  write?: boolean;
  /**
   * Called once when a call the manager stopped waiting for (its deadline passed, or it failed
   * with an unknown outcome) finally settles: `true` when the store answered, `false` when it
   * failed. Never called for a call that settled in time.
   */
  late?: (answered: boolean) => void;
  /** Whether the breaker may refuse the call and counts its outcome. @default true */
  shed?: boolean;
}

interface Pending {
  readonly deadline: number;
  readonly operation: string;
  readonly write: boolean;
  readonly trial: boolean;
  /** The breaker that counts this call; `null` for a call that bypasses it. */
  readonly breaker: Breaker | null;
  reject: ((error: unknown) => void) | null;
}

/**
 * Runs store calls with a deadline. Every call has the same timeout, so deadlines arrive in call
 * order: a FIFO queue and a single timer replace a timer per call on the verify path. A breaker
 * decides which calls may reach the store at all.
 */
export class Deadlines {
  private queue: Pending[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly breaker: Breaker | null;

  constructor(
    private readonly timeoutMs: number,
    breaker: BreakerOptions | false | undefined = undefined,
    now: () => number = Date.now,
  ) {
    this.breaker = breaker === false ? null : new Breaker(breaker, now);
  }

  /** Runs `call`; rejects with StoreUnavailableError when it fails, outlives the timeout or is not sent. */
  run<T>(operation: string, call: () => Promise<T>, options: CallOptions = {}): Promise<T> {
    const breaker = options.shed === false ? null : this.breaker;
    const admitted = breaker ? breaker.admit() : { trial: false };
    if (typeof admitted === 'string') return Promise.reject(new StoreUnavailableError(operation, admitted));
    const { trial } = admitted;
    let promise: Promise<T>;
    try {
      // A store written in plain JavaScript may answer with a value instead of a promise.
      promise = Promise.resolve(call());
    } catch (error) {
      // Thrown before anything was sent: a plain failure, even for a write.
      breaker?.settled(trial, !isOnPurpose(operation, error), false);
      return Promise.reject(unavailable(operation, error, false));
    }
    const write = options.write === true;
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { deadline: Date.now() + this.timeoutMs, operation, write, trial, breaker, reject };
      this.queue.push(pending);
      if (this.timer === null) this.arm(this.timeoutMs);
      promise.then(
        (value) => {
          breaker?.settled(trial, false, pending.reject === null);
          if (pending.reject === null) {
            options.late?.(true);
            return;
          }
          pending.reject = null;
          this.settleHead();
          resolve(value);
        },
        (error: unknown) => {
          const failure = !isOnPurpose(operation, error);
          breaker?.settled(trial, failure, pending.reject === null);
          if (pending.reject === null) {
            options.late?.(!failure);
            return;
          }
          pending.reject = null;
          this.settleHead();
          reject(unavailable(operation, error, write));
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
        pending.breaker?.expired(pending.trial);
        const reason = `no answer within ${this.timeoutMs} ms`;
        reject(
          pending.write ? new StoreOutcomeUnknownError(pending.operation, reason) : new StoreUnavailableError(pending.operation, reason),
        );
      }
      this.head++;
    }
    this.settleHead();
    if (this.head < this.queue.length) this.arm((this.queue[this.head] as Pending).deadline - now);
  }
}

/**
 * Waits for `work` (its failure included), but not past `deadline` on the `performance.now()`
 * clock. Resolves `true` when `work` settled in time.
 */
export async function settledBy(work: Promise<unknown>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, deadline - performance.now()));
  });
  const settled = work.then(
    () => true as const,
    () => true as const,
  );
  const done = await Promise.race([settled, late]);
  clearTimeout(timer);
  return done;
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

/** Whether `error` is one the store raised on purpose for this call, which keeps its meaning. */
function isOnPurpose(operation: string, error: unknown): boolean {
  return isKeygateError(error) && ON_PURPOSE[error.code]?.has(operation) === true;
}

/**
 * Socket errors that mean no connection was made, so nothing was sent: a write that failed with
 * one of them (or a StoreUnavailableError caused by one) was not applied.
 */
const NOT_CONNECTED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ENOTCONN']);

function notSent(error: unknown, depth = 0): boolean {
  if (error === null || typeof error !== 'object') return false;
  const { code, cause } = error as { code?: unknown; cause?: unknown };
  if (typeof code === 'string' && NOT_CONNECTED.has(code)) return true;
  return depth < 2 && notSent(cause, depth + 1);
}

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
function unavailable(operation: string, error: unknown, write: boolean): KeygateError {
  if (isOnPurpose(operation, error)) return error as KeygateError;
  // A store's own StoreUnavailableError is rebuilt too, so that its cause is made safe as well.
  const ownError = isKeygateError(error) && error.code === 'STORE_UNAVAILABLE';
  const source = ownError ? (error as Error).cause : error;
  const message = ownError ? (error as Error).message.replace(UNAVAILABLE_PREFIX, '') : messageOf(error);
  const cause = safeCopy(source);
  const options = cause ? { cause } : undefined;
  // A write that failed on its way may still be applied, unless it never left this process.
  if (write && !notSent(source)) return new StoreOutcomeUnknownError(operation, scrub(message), options);
  return new StoreUnavailableError(operation, scrub(message), options);
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
