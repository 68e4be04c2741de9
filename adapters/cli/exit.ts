// The exit codes of the keygate command, and the failure that ends a command with one of them.

/**
 * What the process exit status means. `verify` answers with 0, 3 or 4 as a guard answers with
 * 200, 401 or 403; 5 is the guard's 503. The numbers are part of the command's contract.
 */
export const EXIT = {
  /** Done; for `verify`, the token is valid. */
  ok: 0,
  /** Any other failure (a bug, a lost compare-and-set race, a `--notify` message not sent). */
  failure: 1,
  /** Unknown command or option, missing or extra argument, or a value refused (the message names it). */
  usage: 2,
  /** `verify`: the token is missing, malformed, unknown, deactivated or expired (a guard's 401). */
  invalid: 3,
  /** `verify`: the key does not grant the scope, or the address is not on its allow-list (a guard's 403). */
  forbidden: 4,
  /**
   * The store cannot be reached, failed, or did not answer within `--timeout` (a guard's 503). For
   * a change, the message says whether it may have been applied all the same (then run it again).
   */
  unavailable: 5,
  /** No key has this id. */
  notFound: 6,
  /** The store's driver is not installed (or does not load): the message says which package to install. */
  driverMissing: 7,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Ends the command with this exit code and message; `usage` names the command whose help to point at. */
export class Exit extends Error {
  constructor(
    readonly code: ExitCode,
    message: string,
    readonly usage: string | null = null,
  ) {
    super(message);
    this.name = 'Exit';
  }
}

/** A usage error of `command` (`null`: of keygate itself). */
export function usageError(message: string, command: string | null = null): Exit {
  return new Exit(EXIT.usage, message, command ?? '');
}
