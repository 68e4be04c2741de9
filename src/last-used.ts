// LastUsedBuffer: remembers when each key was last used and writes those times in batches, off the request path.

import type { TouchEntry } from './store.js';

/** The most entries one store call receives. */
const BATCH_MAX = 1000;
/** Pending times kept before a flush is forced, whatever the interval. */
const PENDING_MAX = 50_000;

/**
 * Collects last-used times per key (the latest wins) and hands them to `write` once per
 * `flushMs`, in batches of at most 1000. A failed write is reported, never retried and never
 * thrown: `lastUsedAt` is best-effort.
 */
export class LastUsedBuffer {
  private pending = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  /** The writes in flight, in order. */
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly write: (entries: TouchEntry[]) => Promise<void>,
    private readonly flushMs: number,
    private readonly report: (error: unknown) => void,
  ) {}

  /** Records that key `id` was used at `at` (ms since 1970). */
  touch(id: string, at: number): void {
    this.pending.set(id, at);
    if (this.pending.size >= PENDING_MAX) void this.flush();
    else if (this.timer === null) {
      this.timer = setTimeout(() => void this.flush(), this.flushMs);
      this.timer.unref();
    }
  }

  /** Drops the pending time of a deleted key. */
  forget(id: string): void {
    this.pending.delete(id);
  }

  /** Writes every pending time now; resolves when all writes so far are done (or failed). */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.pending.size === 0) return this.flushing;
    const entries: TouchEntry[] = [];
    for (const [id, at] of this.pending) entries.push({ id, lastUsedAt: new Date(at) });
    this.pending = new Map();
    this.flushing = this.flushing.then(async () => {
      for (let i = 0; i < entries.length; i += BATCH_MAX) {
        await this.write(entries.slice(i, i + BATCH_MAX)).catch(this.report);
      }
    });
    return this.flushing;
  }
}
