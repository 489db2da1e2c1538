/**
 * Counts of one bridged port: connections and bytes, never contents. Byte counts of open
 * connections are read from their sockets when asked, so the data path carries no
 * per-chunk bookkeeping.
 */

const MINUTE = 60_000;
/** The per-minute history covers the last hour. */
export const MINUTES = 60;

/** Arrivals per wall-clock minute over the last hour, in a ring of 60 buckets. */
export class MinuteCounter {
  private readonly counts = new Array<number>(MINUTES).fill(0);
  private readonly stamps = new Array<number>(MINUTES).fill(-1);

  add(nowMs: number, n = 1): void {
    const m = Math.floor(nowMs / MINUTE);
    const i = m % MINUTES;
    if (this.stamps[i] !== m) {
      this.stamps[i] = m;
      this.counts[i] = 0;
    }
    this.counts[i] += n;
  }

  /** The last 60 minutes, oldest first; the last entry is the minute `nowMs` falls in. */
  snapshot(nowMs: number): PerMinute {
    const current = Math.floor(nowMs / MINUTE);
    const counts: number[] = [];
    for (let m = current - MINUTES + 1; m <= current; m++) {
      const i = m % MINUTES;
      counts.push(this.stamps[i] === m ? this.counts[i] : 0);
    }
    return { startMs: (current - MINUTES + 1) * MINUTE, counts };
  }

  /** Put back a snapshot (after a restart); minutes older than an hour fall out by themselves. */
  restore(saved: PerMinute): void {
    const first = Math.floor(saved.startMs / MINUTE);
    saved.counts.forEach((n, k) => {
      if (n > 0) this.add((first + k) * MINUTE, n);
    });
  }
}

/** A per-minute series: `counts[k]` is the minute starting at `startMs + k * 60 s`. */
export interface PerMinute {
  startMs: number;
  counts: number[];
}

/** What an open connection tells the counters when asked. */
export interface LiveConnection {
  /** Bytes read from the client so far (to go to the new host). */
  bytesToTarget(): number;
  /** Bytes read from the new host so far (to go to the client). */
  bytesFromTarget(): number;
  /** Bytes held in the bridge's own buffers now, both directions. */
  buffered(): number;
}

/** One port's figures, as `status()` returns them. */
export interface PortStatus {
  port: number;
  /** Bridged connections open now. */
  open: number;
  /** Every connection that arrived, refused ones included. */
  total: number;
  /** Closed at once because a limit was reached. */
  refused: number;
  /** Accepted, then closed because the new host refused, was unreachable or did not answer in time. */
  targetFailed: number;
  /** Closed after the idle timeout. */
  idleClosed: number;
  /** Bytes from clients to the new host, open connections included. */
  bytesToTarget: number;
  /** Bytes from the new host to clients, open connections included. */
  bytesFromTarget: number;
  /** When the last connection arrived (ms since the epoch), or null. */
  lastConnectionMs: number | null;
  /** Bytes the bridge holds in memory now for this port's connections. */
  buffered: number;
  /** Arrivals per minute over the last hour. */
  perMinute: PerMinute;
}

/** The counters that survive a restart (written into the state file): all but what is open now. */
export type SavedPortStats = Omit<PortStatus, 'open' | 'buffered'>;

/** The counters of one port. */
export class PortStats {
  readonly live = new Set<LiveConnection>();
  total = 0;
  refused = 0;
  targetFailed = 0;
  idleClosed = 0;
  lastConnectionMs: number | null = null;
  private closedToTarget = 0;
  private closedFromTarget = 0;
  private readonly minutes = new MinuteCounter();

  constructor(readonly port: number) {}

  /** A connection arrived (before the limits decide about it). */
  arrived(nowMs: number): void {
    this.total++;
    this.lastConnectionMs = nowMs;
    this.minutes.add(nowMs);
  }

  /** An open connection closed: its bytes move from live to closed counts. */
  closed(conn: LiveConnection): void {
    if (!this.live.delete(conn)) return;
    this.closedToTarget += conn.bytesToTarget();
    this.closedFromTarget += conn.bytesFromTarget();
  }

  status(nowMs: number): PortStatus {
    let toTarget = this.closedToTarget;
    let fromTarget = this.closedFromTarget;
    let buffered = 0;
    for (const c of this.live) {
      toTarget += c.bytesToTarget();
      fromTarget += c.bytesFromTarget();
      buffered += c.buffered();
    }
    return {
      port: this.port,
      open: this.live.size,
      total: this.total,
      refused: this.refused,
      targetFailed: this.targetFailed,
      idleClosed: this.idleClosed,
      bytesToTarget: toTarget,
      bytesFromTarget: fromTarget,
      lastConnectionMs: this.lastConnectionMs,
      buffered,
      perMinute: this.minutes.snapshot(nowMs),
    };
  }

  save(nowMs: number): SavedPortStats {
    const { open: _open, buffered: _buffered, ...saved } = this.status(nowMs);
    return saved;
  }

  restore(saved: SavedPortStats): void {
    this.total += saved.total;
    this.refused += saved.refused;
    this.targetFailed += saved.targetFailed;
    this.idleClosed += saved.idleClosed;
    this.closedToTarget += saved.bytesToTarget;
    this.closedFromTarget += saved.bytesFromTarget;
    if (saved.lastConnectionMs !== null && (this.lastConnectionMs ?? 0) < saved.lastConnectionMs) this.lastConnectionMs = saved.lastConnectionMs;
    this.minutes.restore(saved.perMinute);
  }
}
