// The better-sqlite3 majors the SQLite store is tested with, each loaded only where this Node.js can load it.

import type BetterSqlite3 from 'better-sqlite3';

export type DatabaseClass = typeof BetterSqlite3;

/** A major of better-sqlite3, loaded only when this Node.js can load it (a native addon built for another Node.js may crash the process). */
export interface SqliteDriver {
  major: number;
  /** The installed package (an npm alias for the majors beside the main one). */
  pkg: string;
  /** The oldest Node.js major the driver supports. */
  minNode?: number;
  load(): Promise<DatabaseClass>;
}

export const SQLITE_DRIVERS: readonly SqliteDriver[] = [
  { major: 11, pkg: 'better-sqlite3-11', load: async () => (await import('better-sqlite3-11')).default },
  { major: 12, pkg: 'better-sqlite3', load: async () => (await import('better-sqlite3')).default },
  { major: 13, pkg: 'better-sqlite3-13', minNode: 22, load: async () => (await import('better-sqlite3-13')).default },
];

const nodeMajor = Number(process.versions.node.split('.')[0]);

/** Whether this Node.js can load `driver`. */
export function runsHere(driver: SqliteDriver): boolean {
  return driver.minNode === undefined || nodeMajor >= driver.minNode;
}
