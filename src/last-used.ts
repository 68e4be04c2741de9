// LastUsedBuffer: remembers when each key was last used, and from where, and writes those times in batches, off the request path.

import { settledBy } from './deadline.js';
import { canonicalIp } from './ip.js';
import type { TouchEntry } from './store.js';

/** The most entries one store call receives. */
const BATCH_MAX = 1000;
/** Pending times kept before a flush is forced, whatever the interval; past twice this, further keys' times are dropped. */
const PENDING_MAX = 50_000;
/** The longest text that can be an IP address (`canonicalIp` refuses longer): a longer one is kept as no address. */
const IP_MAX = 45;

/**
 * Collects last-used times per key (the latest wins), each with the client address of that use,
 * and hands them to `write` once per `flushMs`, in batches of at most 1000. One flush runs at a
 * time: times that arrive meanwhile wait for the next one, so an outage never piles flushes up. A
 * failed batch is reported and its times are kept for the next flush (a touch never moves a time
 * backwards, so writing one twice is harmless); `lastUsedAt` is best-effort, and a failure never
 * reaches a request.
 *
 * Addresses are kept as given, apart from the times, and only for the uses that had one: a verify
 * without an address allocates nothing here. They are made canonical (`canonicalIp`; `null` for
 * one that does not parse) once per key and flush, when the batch is built, not once per verify.
 */
export class LastUsedBuffer {
  private pending = new Map<string, number>();
  /** The address of a pending time, as given; absent when its use had none. */
  private ips = new Map<string, string>();
  private timer: NodeJS.Timeout | null = null;
  /** The flush in flight, or null. */
  private running: Promise<void> | null = null;
  /** Times handed to `write` that were neither written nor put back with the pending ones yet. */
  private unsettled = 0;
  /** Set when close() begins: no timer is armed any more. */
  private closing = false;
  /** Set when close() has counted what it gave up: nothing is written or kept after that. */
  private closed = false;
  /** Whether another flush was asked for while one ran. */
  private again = false;
  /** Times given up on: dropped over the bound, or not written when the manager closed. */
  private droppedCount = 0;

  constructor(
    private readonly write: (entries: TouchEntry[]) => Promise<void>,
    private readonly flushMs: number,
    private readonly report: (error: unknown) => void,
  ) {}

  /**
   * Records that key `id` was used at `at` (ms since 1970), from client address `ip` (as given to
   * verify; anything but a string counts as none).
   */
  touch(id: string, at: number, ip?: string | null): void {
    if (this.pending.size >= 2 * PENDING_MAX && !this.pending.has(id)) {
      this.droppedCount++;
      return;
    }
    this.pending.set(id, at);
    // The address goes with the latest use: one without an address clears an earlier one's.
    if (typeof ip === 'string' && ip.length <= IP_MAX) this.ips.set(id, ip);
    else if (this.ips.size > 0) this.ips.delete(id);
    if (this.pending.size >= PENDING_MAX && this.running === null) void this.flush();
    else this.arm();
  }

  /** Drops the pending time of a deleted key. */
  forget(id: string): void {
    this.pending.delete(id);
    this.ips.delete(id);
  }

  /** How many times were given up on so far. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Writes every pending time now; resolves when that is done (or failed, and was reported). */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.closed) return Promise.resolve();
    if (this.running) {
      // Times that came in after the running flush took its batch go in the next one.
      this.again = true;
      return this.running;
    }
    if (this.pending.size === 0) return Promise.resolve();
    const running = this.writeAll(this.take()).then(() => {
      this.running = null;
      if (this.again) {
        this.again = false;
        return this.flush();
      }
      if (this.pending.size > 0) this.arm();
    });
    this.running = running;
    return running;
  }

  /**
   * The last flush before the manager closes: waits for the flush in flight, then writes what is
   * left, giving up at `deadline` (ms on the `performance.now()` clock). Resolves with the number
   * of times that were not written, in this flush or before it.
   */
  async close(deadline: number): Promise<number> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.closing = true;
    if (this.running && !(await settledBy(this.running, deadline))) {
      // The store never answered the flush in flight: its batch and what waits are given up.
      return this.giveUp(this.unsettled + this.pending.size);
    }
    this.again = false;
    if (this.pending.size === 0) return this.giveUp(0);
    await settledBy(this.writeAll(this.take()), deadline);
    // Batches written before the deadline are not counted; failed ones are back among the pending.
    return this.giveUp(this.unsettled + this.pending.size);
  }

  private giveUp(count: number): number {
    this.closed = true;
    this.droppedCount += count;
    this.pending = new Map();
    this.ips = new Map();
    return this.droppedCount;
  }

  /** The pending times as entries to write, each with its canonical address; nothing is pending after. */
  private take(): TouchEntry[] {
    const ips = this.ips;
    const entries: TouchEntry[] = [];
    for (const [id, at] of this.pending) {
      const given = ips.size > 0 ? ips.get(id) : undefined;
      entries.push({ id, lastUsedAt: new Date(at), ip: given === undefined ? null : canonicalIp(given) });
    }
    this.pending = new Map();
    if (ips.size > 0) this.ips = new Map();
    return entries;
  }

  private arm(): void {
    if (this.timer !== null || this.closing) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, this.flushMs);
    this.timer.unref();
  }

  /** Writes `entries` batch by batch; a failed batch goes back to the pending times. */
  private async writeAll(entries: TouchEntry[]): Promise<void> {
    this.unsettled += entries.length;
    for (let i = 0; i < entries.length; i += BATCH_MAX) {
      // A flush that close() gave up on writes no further batch once it has answered.
      if (this.closed) {
        this.unsettled -= entries.length - i;
        return;
      }
      const batch = entries.slice(i, i + BATCH_MAX);
      try {
        await this.write(batch);
      } catch (error) {
        this.report(error);
        this.keep(batch);
      } finally {
        this.unsettled -= batch.length;
      }
    }
  }

  /** Puts failed times back, with their addresses, unless a later time came in meanwhile; over the bound, drops them. */
  private keep(batch: readonly TouchEntry[]): void {
    if (this.closed) return;
    for (const { id, lastUsedAt, ip } of batch) {
      if (this.pending.has(id)) continue;
      if (this.pending.size >= 2 * PENDING_MAX) {
        this.droppedCount++;
        continue;
      }
      this.pending.set(id, lastUsedAt.getTime());
      if (ip !== null) this.ips.set(id, ip);
    }
  }
}
