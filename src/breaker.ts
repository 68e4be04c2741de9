// Breaker: stops sending calls to a store that keeps failing, and bounds the calls a driver holds.

import { ValidationError } from './errors.js';
import { checkWholeNumber } from './validate.js';

/** How the manager sheds load while its store fails (docs/faults.md). */
export interface BreakerOptions {
  /**
   * Store calls that fail in a row (an error or no answer within `storeTimeoutMs`) before the
   * breaker opens. While it is open, store calls fail at once with `StoreUnavailableError`,
   * without reaching the driver, except one trial call every `retryMs`.
   * @default 5
   */
  failures?: number | undefined;
  /**
   * While the breaker is open, one trial call is let through this often. Its success closes the
   * breaker, and so does any answer that arrives late for an earlier call: service resumes as soon
   * as the store answers again.
   * @default 250
   */
  retryMs?: number | undefined;
  /**
   * The most store calls that may be waiting for the store at once, counting those the manager
   * stopped waiting for after `storeTimeoutMs` but the driver still holds. Beyond it, calls fail
   * at once: a driver's queue never grows past this, however long an outage lasts.
   * @default 10000
   */
  maxPending?: number | undefined;
}

/** What admit() answers for a call that may go: shared, so admitting allocates nothing. */
const SEND: { readonly trial: boolean } = Object.freeze({ trial: false });
const TRIAL: { readonly trial: boolean } = Object.freeze({ trial: true });

/** Why a call was not sent, in words for `StoreUnavailableError`. */
export type Refusal = string;

/**
 * Decides, per store call, whether it may reach the store. Closed: every call goes, up to
 * `maxPending` at once. Open (after `failures` failures in a row): one trial call per `retryMs`,
 * the rest fail at once. Any success, early or late, closes it.
 */
export class Breaker {
  private readonly threshold: number;
  private readonly retryMs: number;
  private readonly maxPending: number;
  /** Calls handed to the store that have not settled (answered, failed or thrown). */
  private pending = 0;
  private failuresInRow = 0;
  /** When the open breaker lets the next trial call through; 0 while closed. */
  private nextTrialAt = 0;
  /** Whether a trial call is still within its deadline. */
  private trialInFlight = false;

  constructor(
    options: BreakerOptions | undefined,
    private readonly now: () => number,
  ) {
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      throw new ValidationError('breaker', 'must be an object such as { failures: 5, retryMs: 250, maxPending: 10000 }, or false');
    }
    this.threshold = checkWholeNumber('breaker.failures', options?.failures ?? 5, { min: 1 });
    this.retryMs = checkWholeNumber('breaker.retryMs', options?.retryMs ?? 250, { min: 1, unit: 'ms' });
    this.maxPending = checkWholeNumber('breaker.maxPending', options?.maxPending ?? 10_000, { min: 1 });
  }

  /** Whether the breaker is open (the store failed `failures` calls in a row and has not answered since). */
  get open(): boolean {
    return this.failuresInRow >= this.threshold;
  }

  /**
   * Asks to send one call. An object: send it, and report how it ends with `settled` (and
   * `expired` if its deadline passes first); `trial` says whether it is the open breaker's trial.
   * A string: the reason it must not be sent.
   */
  admit(): { readonly trial: boolean } | Refusal {
    // The open breaker's trial goes even past maxPending: calls the driver never gives back must
    // not stop the store from being tried again.
    if (this.pending >= this.maxPending && !this.open) {
      return `not sent: ${this.pending} earlier calls are still waiting for the store (breaker.maxPending)`;
    }
    if (this.open) {
      const at = this.now();
      if (this.trialInFlight || at < this.nextTrialAt) {
        return `not sent: the store failed ${this.failuresInRow} calls in a row; one trial call goes every ${this.retryMs} ms`;
      }
      this.trialInFlight = true;
      this.pending++;
      return TRIAL;
    }
    this.pending++;
    return SEND;
  }

  /**
   * The call's deadline passed before it settled: a failure now, though the driver still holds
   * it (it stays pending until it settles).
   */
  expired(trial: boolean): void {
    this.failed(trial);
  }

  /**
   * The store answered the call or failed it. `late`: its deadline had passed already, so its
   * failure was counted then; a late success still proves the store answers again.
   * `failure`: whether it failed as a store failure (a refusal the store made on purpose, such
   * as a version conflict, is an answer).
   */
  settled(trial: boolean, failure: boolean, late: boolean): void {
    this.pending--;
    if (!failure) {
      this.failuresInRow = 0;
      this.nextTrialAt = 0;
      if (trial) this.trialInFlight = false;
    } else if (!late) this.failed(trial);
  }

  private failed(trial: boolean): void {
    this.failuresInRow++;
    if (trial) this.trialInFlight = false;
    if (this.open) this.nextTrialAt = this.now() + this.retryMs;
  }
}
