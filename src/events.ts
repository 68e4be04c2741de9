// What the manager tells the application: lifecycle and verify events, and failures of background work.

import type { VerifyFailureCode } from './types.js';

/**
 * A change of a key, for audit logs: who made it, whose key it is, and the names of the fields it
 * changed (never their values).
 */
export interface KeyChangeEvent {
  readonly type: 'created' | 'updated' | 'activated' | 'deactivated' | 'deleted' | 'rotated';
  readonly keyId: string;
  readonly at: Date;
  /** Who made the change, as given in the call's `actor` option; `null` when not given. */
  readonly actor: string | null;
  /** The key's owner (`null`: a key without one). */
  readonly ownerId: string | null;
  /**
   * The names of the `ApiKey` fields the write changed, in `ApiKey` order; never their values.
   * `created`: the fields the input gave (always `name` and `scopes`). `updated`: the fields whose
   * value differs from before (an edit that sets every field to its current value gives `[]`).
   * `activated` / `deactivated`: `['active']`, or `[]` when the key already was in that state.
   * `rotated`: `['token']`. `deleted`: `[]`. What every write changes (`updatedAt`, `version`,
   * and `hint` with the token) is not listed.
   */
  readonly changed: readonly string[];
}

/** What changed, for audit logs. Events never carry a token, a digest or a field's value. */
export type KeyEvent =
  | KeyChangeEvent
  | { readonly type: 'verified'; readonly keyId: string; readonly at: Date; readonly ip: string | null }
  | {
      readonly type: 'rejected';
      readonly code: VerifyFailureCode;
      /** The key the token belongs to, when it was found. */
      readonly keyId: string | null;
      readonly at: Date;
      readonly ip: string | null;
    };

/** Calls the application's listeners; a throwing listener never breaks the manager. */
export class Listeners {
  /** Whether anyone listens to events: verify builds none otherwise. */
  readonly wantsEvents: boolean;

  constructor(
    private readonly onEvent: ((event: KeyEvent) => void) | undefined,
    private readonly onError: ((error: unknown) => void) | undefined,
  ) {
    this.wantsEvents = onEvent !== undefined;
  }

  emit(event: KeyEvent): void {
    if (!this.onEvent) return;
    try {
      this.onEvent(event);
    } catch (error) {
      this.report(error);
    }
  }

  /** Hands a failure of background work to `onError`. */
  readonly report = (error: unknown): void => {
    if (!this.onError) return;
    try {
      this.onError(error);
    } catch {
      // A failing error listener must not break the manager.
    }
  };
}
