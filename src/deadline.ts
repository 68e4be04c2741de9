// Bounds every store call by one timeout, with one timer for all calls in flight.

import { KeygateError, StoreUnavailableError } from './errors.js';

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

function unavailable(operation: string, error: unknown): KeygateError {
  // Errors a store raises on purpose (a conflict, a validation) keep their meaning.
  if (error instanceof KeygateError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new StoreUnavailableError(operation, message, { cause: error });
}
