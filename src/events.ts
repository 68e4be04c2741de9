// What the manager tells the application: lifecycle and verify events, and failures of background work.

import type { VerifyFailureCode } from './types.js';

/** What changed, for audit logs. Events never carry a token or a digest. */
export type KeyEvent =
  | {
      readonly type: 'created' | 'updated' | 'activated' | 'deactivated' | 'deleted' | 'rotated';
      readonly keyId: string;
      readonly at: Date;
    }
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
