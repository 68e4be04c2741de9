// Instances on an invalidation bus: which of them cache (their heartbeats), whether this instance's own subscription works (its heartbeats come back), and invalidations that wait until every caching instance has dropped the key.

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { InvalidationBus } from './cache.js';

/**
 * Besides plain key ids (which never hold a control character), the bus carries messages that
 * start with this mark: `h` a heartbeat of an instance with a cache, `j` one of an instance with a
 * cache that is joining (every other one answers with its own at once), `p` one of an instance
 * without a cache (only it reads its own, to know its subscription works), `b` an instance
 * leaving, `r` an invalidation to acknowledge, `a` an acknowledgement.
 */
const MARK = '\u0001';

/** Heartbeats without one's own coming back before the cache turns off (checked once a heartbeat). */
const LOST_AFTER = 2;
/** Heartbeats without a word from another instance before it is no longer waited for. */
const GONE_AFTER = 4;

/** How a write that asked for acknowledgements ended. */
export interface Acknowledged {
  /** Caching instances (this one left out) that had to drop the key. */
  readonly instances: number;
  /** How many of them did not say so in time. */
  readonly unanswered: number;
  /** Why not every one answered; `null` when all did. */
  readonly reason: string | null;
}

/** What the instance knows of the bus, for health checks. */
export interface BusStatus {
  /** Whether this instance's subscription works: its own heartbeats come back. */
  readonly subscribed: boolean;
  /** Whether its verify cache answers (with a bus, only while the subscription has worked for a heartbeat). */
  readonly cacheServing: boolean;
  /** Instances with a cache heard within four heartbeats, this one included when it has a cache. */
  readonly instances: number;
}

/** What the presence tells the verify lookup. */
export interface PresenceTarget {
  /** Drop this key from the cache. */
  invalidate(keyId: string): void;
  /** Drop everything from the cache. */
  clear(): void;
  /** The cache may answer (`true`) or must not (`false`). */
  serving(on: boolean): void;
  /** A failure of the bus, for `onError`. */
  report(error: unknown): void;
}

interface Member {
  /** When last heard from (performance.now()). */
  seen: number;
  /** The number of the message that first told of it: a wait counts only members known before its request. */
  since: number;
}

interface Wait {
  readonly keyId: string;
  /** Members that must answer; `null` until this instance's own request has come back. */
  expected: Set<string> | null;
  readonly answered: Set<string>;
  readonly done: (result: Acknowledged) => void;
  timer: NodeJS.Timeout | null;
}

/**
 * The heartbeats and acknowledgements of one instance. Every `heartbeatMs` it publishes a
 * heartbeat; one of its own coming back proves its subscription works. The cache serves only once
 * a heartbeat sent a full interval after the first one that came back has come back too: by then
 * every other instance has heard of this one (each answers a newcomer's first heartbeat with its
 * own), even on a bus whose messages from different senders are not in one order everywhere. When
 * its own heartbeats stop coming back for two intervals (noticed within three), or the bus reports the
 * subscription lost, the cache is emptied and bypassed until the same proof is made again.
 */
export class BusPresence {
  /** This instance's name on the bus, new for every manager. */
  readonly id = randomBytes(12).toString('base64url');
  private readonly members = new Map<string, Member>();
  /** Messages received so far: the order in which this instance heard things. */
  private received = 0;
  private subscribed = false;
  private ready = false;
  /** Send time of the first own heartbeat back since the last loss; -1 before that. */
  private joinSent = -1;
  /** The send time of the newest own heartbeat that came back; -1 none since the last loss. */
  private freshSent = -1;
  private beat = 0;
  private readonly sentAt = new Map<number, number>();
  private heartbeatPending = false;
  /** A heartbeat was asked for while one was on its way: send it once that one is. */
  private heartbeatAgain = false;
  private waitSeq = 0;
  private readonly waits = new Map<number, Wait>();
  private readonly readyWaiters = new Set<() => void>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** An instance without a cache sends heartbeats once it has asked for acknowledgements. */
  private probing = false;

  constructor(
    private readonly bus: InvalidationBus,
    /** Whether this instance caches, and so takes part (heartbeats `h`, acknowledgements). */
    private readonly member: boolean,
    private readonly heartbeatMs: number,
    private readonly target: PresenceTarget,
  ) {}

  /** The subscription is in place (or back after a loss): prove it works, then serve. */
  subscribedNow(): void {
    if (this.stopped) return;
    this.subscribed = true;
    this.notReady();
    this.beating();
  }

  /**
   * Starts the heartbeats: at once for an instance with a cache; for one without, only at its first
   * acknowledged write (until then it has nothing to prove, and sends nothing but invalidations).
   */
  private beating(): void {
    if (this.stopped || !this.subscribed || !(this.member || this.probing)) return;
    this.heartbeat();
    if (!this.timer) {
      this.timer = setInterval(() => this.tick(), this.heartbeatMs);
      this.timer.unref();
    }
  }

  /** The bus lost the subscription: messages may be missed from now on. */
  lost(): void {
    this.subscribed = false;
    this.notReady();
  }

  /** One message from the bus. */
  receive(message: string): void {
    this.received++;
    if (message.charCodeAt(0) !== 1) {
      this.target.invalidate(message);
      return;
    }
    const [, kind, from = '', second = '', ...rest] = message.split(MARK);
    // Anything malformed is ignored: a message from nobody, or with no number, names no instance.
    if (from === '') return;
    const n = Number(second);
    switch (kind) {
      case 'h':
      case 'j':
      case 'p':
        if (Number.isSafeInteger(n)) this.heard(kind, from, n);
        break;
      case 'b':
        this.gone(from);
        break;
      case 'r':
        if (Number.isSafeInteger(n) && rest.length > 0) this.request(from, n, rest.join(MARK));
        break;
      case 'a':
        if (from === this.id && Number.isSafeInteger(n) && rest[0]) this.answer(n, rest[0]);
        break;
    }
  }

  /**
   * Whether one of this instance's own heartbeats, sent less than two intervals ago, has come back:
   * checked on every cached answer too, so that after a stalled event loop or a lagging
   * subscription the cache does not answer before the timer has noticed.
   */
  fresh(): boolean {
    return performance.now() - this.freshSent <= LOST_AFTER * this.heartbeatMs;
  }

  status(cacheServing: boolean): BusStatus {
    this.expire(performance.now());
    return { subscribed: this.ready, cacheServing, instances: this.members.size + (this.member ? 1 : 0) };
  }

  /**
   * Publishes the invalidation of `keyId` and waits until every caching instance known before the
   * request came back has dropped the key, for at most `timeoutMs`. Never throws: a failure is in
   * the result. The key must already be out of this instance's cache.
   */
  async confirm(keyId: string, timeoutMs: number): Promise<Acknowledged> {
    const closed: Acknowledged = { instances: this.members.size, unanswered: this.members.size, reason: 'the manager was closed' };
    if (this.stopped) return closed;
    if (!this.probing && !this.member) {
      this.probing = true;
      this.beating();
    }
    // Joining takes a heartbeat or two by design: right after start-up, that is not the others' delay.
    let deadline = performance.now() + timeoutMs;
    if (!this.ready) {
      deadline += 2 * this.heartbeatMs;
      if (!(await this.untilReady(deadline))) {
        if (this.stopped) return closed;
        return {
          instances: this.members.size,
          unanswered: this.members.size,
          reason: this.subscribed
            ? `this instance's own heartbeats did not come back over the bus, so it knows of no instance for sure`
            : `this instance's subscription to the invalidation bus is down, so it can hear no acknowledgement`,
        };
      }
    }
    const seq = ++this.waitSeq;
    const result = new Promise<Acknowledged>((resolve) => {
      const wait: Wait = { keyId, expected: null, answered: new Set(), done: resolve, timer: null };
      // Not unref'd: a script that awaits an acknowledged write must not exit in the middle of it.
      wait.timer = setTimeout(() => this.finish(seq, 'did not answer in time'), Math.max(0, deadline - performance.now()));
      this.waits.set(seq, wait);
    });
    // Not awaited: a publish that hangs (a client queueing while it reconnects) must not hold the
    // write past its deadline; the timer ends the wait. The plain id first, for instances that
    // know no acknowledgements.
    this.send(keyId)
      .then(() => this.send(`${MARK}r${MARK}${this.id}${MARK}${seq}${MARK}${keyId}`))
      .catch((error: unknown) => this.finish(seq, `publishing failed: ${error instanceof Error ? error.message : String(error)}`));
    return result;
  }

  /** Says goodbye on the bus (best effort, not awaited), stops the heartbeats and ends every wait. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const seq of [...this.waits.keys()]) this.finish(seq, 'the manager was closed');
    for (const wake of [...this.readyWaiters]) wake();
    if (this.member && this.subscribed) this.send(`${MARK}b${MARK}${this.id}`).catch(() => {});
    this.notReady();
  }

  /** Publishes, turning a bus that throws or returns no promise into a rejected promise. */
  private send(message: string): Promise<void> {
    return Promise.resolve().then(() => this.bus.publish(message));
  }

  private tick(): void {
    const now = performance.now();
    this.expire(now);
    if (this.ready && !this.fresh()) {
      this.notReady();
      this.target.report(
        new Error(
          `the invalidation bus delivers no message: none of this instance's own heartbeats sent in the last ${LOST_AFTER * this.heartbeatMs} ms has come back, so its verify cache is off until one does`,
        ),
      );
    }
    this.heartbeat();
  }

  private heartbeat(): void {
    if (this.stopped || !this.subscribed) return;
    if (this.heartbeatPending) {
      this.heartbeatAgain = true;
      return;
    }
    const n = ++this.beat;
    this.sentAt.set(n, performance.now());
    // Keep only the send times a late heartbeat could still need.
    this.sentAt.delete(n - 8);
    this.heartbeatPending = true;
    // `j`: joining, so every member answers with its own at once, whether it knew this one or not.
    const kind = this.member ? (this.ready ? 'h' : 'j') : 'p';
    const sent = (): void => {
      this.heartbeatPending = false;
      if (!this.heartbeatAgain) return;
      this.heartbeatAgain = false;
      this.heartbeat();
    };
    // A failure shows as the heartbeat not coming back; reported then, once, not every interval.
    this.send(`${MARK}${kind}${MARK}${this.id}${MARK}${n}`).then(sent, sent);
  }

  private heard(kind: string, from: string, n: number): void {
    const now = performance.now();
    if (from === this.id) {
      // Only a heartbeat sent since the last loss counts (its send time is forgotten at a loss).
      const sent = this.sentAt.get(n);
      if (sent === undefined || !this.subscribed) return;
      if (sent > this.freshSent) this.freshSent = sent;
      if (this.joinSent < 0) this.joinSent = sent;
      // A full interval apart, but for the slack of the interval timer (libuv counts whole ms).
      else if (!this.ready && sent - this.joinSent >= this.heartbeatMs * 0.9) this.becomeReady();
      return;
    }
    if (kind === 'p') return;
    const known = this.members.get(from);
    if (known) known.seen = now;
    else {
      // Instances that crashed said no goodbye: forget them before counting a new one, even on an
      // instance without a cache, whose timer does not run.
      this.expire(now);
      this.members.set(from, { seen: now, since: this.received });
    }
    // A newcomer (or an instance back after a loss) learns of this one at once, not a heartbeat later.
    if ((kind === 'j' || !known) && this.member) this.heartbeat();
  }

  private gone(from: string): void {
    if (!this.members.delete(from)) return;
    for (const [seq, wait] of this.waits) {
      wait.expected?.delete(from);
      this.settle(seq, wait);
    }
  }

  /** Another instance's (or this one's own) invalidation to acknowledge. */
  private request(from: string, seq: number, keyId: string): void {
    if (from === this.id) {
      const wait = this.waits.get(seq);
      if (!wait || wait.expected) return;
      // Every member heard of before this message could have cached the key: all must answer.
      const index = this.received;
      wait.expected = new Set([...this.members].filter(([, m]) => m.since < index).map(([id]) => id));
      this.settle(seq, wait);
      return;
    }
    this.target.invalidate(keyId);
    if (!this.member) return;
    this.send(`${MARK}a${MARK}${from}${MARK}${seq}${MARK}${this.id}`).catch(this.target.report);
  }

  private answer(seq: number, from: string): void {
    const wait = this.waits.get(seq);
    if (!wait) return;
    wait.answered.add(from);
    this.settle(seq, wait);
  }

  private settle(seq: number, wait: Wait): void {
    if (!wait.expected) return;
    for (const id of wait.expected) if (!wait.answered.has(id)) return;
    this.finish(seq, null);
  }

  private finish(seq: number, reason: string | null): void {
    const wait = this.waits.get(seq);
    if (!wait) return;
    this.waits.delete(seq);
    if (wait.timer) clearTimeout(wait.timer);
    if (!wait.expected) {
      // Its own request never came back: no instance can be known to have heard it.
      wait.done({
        instances: this.members.size,
        unanswered: this.members.size,
        reason: reason ?? 'the request did not come back over the bus',
      });
      return;
    }
    let unanswered = 0;
    for (const id of wait.expected) if (!wait.answered.has(id)) unanswered++;
    wait.done({ instances: wait.expected.size, unanswered, reason: unanswered === 0 ? null : reason });
  }

  /**
   * Forgets members not heard from for four heartbeats; waits stop counting on them. A member that
   * is alive but cut off has turned its cache off by then: it checks its own heartbeats every
   * interval and gives up after two, so within three.
   */
  private expire(now: number): void {
    for (const [id, m] of this.members) if (now - m.seen > GONE_AFTER * this.heartbeatMs) this.gone(id);
  }

  private becomeReady(): void {
    this.ready = true;
    this.target.clear();
    if (this.member) this.target.serving(true);
    for (const wake of [...this.readyWaiters]) wake();
  }

  private notReady(): void {
    const was = this.ready;
    this.ready = false;
    this.joinSent = -1;
    this.freshSent = -1;
    // A heartbeat on its way now proves nothing about the subscription to come.
    this.sentAt.clear();
    if (was || this.member) {
      this.target.serving(false);
      this.target.clear();
    }
  }

  private untilReady(deadline: number): Promise<boolean> {
    if (this.ready) return Promise.resolve(true);
    return new Promise((resolve) => {
      // Keeps the process alive while a write waits to join, as the wait for answers does.
      const timer = setTimeout(() => wake(), Math.max(0, deadline - performance.now()));
      const wake = (): void => {
        clearTimeout(timer);
        this.readyWaiters.delete(wake);
        resolve(this.ready);
      };
      this.readyWaiters.add(wake);
    });
  }
}
