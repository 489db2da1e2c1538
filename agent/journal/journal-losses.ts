/**
 * What the change journal may have missed, and from which position on it matters. A loss
 * at seq S makes every position before S a full walk; an open loss (a kernel queue
 * overflow, a sync that timed out) has no S yet: the kernel may drop events without a new
 * overflow event while the first is still queued, so the loss covers every position until
 * a sync cookie made after the journal took the loss in has come through. That cookie's
 * seq becomes S. What it guarantees: `after(since)` finds a loss whenever one happened
 * after `since`, in bounded memory (the oldest closed loss goes first, and a later loss
 * answers for it).
 */

/** One loss: full walks for positions before `seq` (Infinity while open). */
export interface Loss {
  seq: number;
  reason: string;
  /** While open: the cookies numbered above this close it. */
  afterCookie: number;
}

const MAX_LOSSES = 32;

/** The losses of one root, or of all. */
export class Losses {
  private list: Loss[] = [];

  /** A loss for the positions before `seq`. */
  at(seq: number, reason: string): void {
    this.push({ seq, reason, afterCookie: 0 });
  }

  /** A loss for every position until a cookie numbered above `afterCookie` arrives. */
  open(reason: string, afterCookie: number): void {
    this.push({ seq: Infinity, reason, afterCookie });
  }

  private push(loss: Loss): void {
    this.list.push(loss);
    if (this.list.length > MAX_LOSSES) {
      const oldest = this.list.findIndex((l) => l.seq !== Infinity);
      this.list.splice(oldest === -1 ? 0 : oldest, 1);
    }
  }

  /** Cookie `index` came through at `seq`: the open losses it was made after close there. */
  cookie(index: number, seq: number): void {
    for (const l of this.list) if (l.seq === Infinity && index > l.afterCookie) l.seq = seq;
  }

  /** The first loss after position `since`, if any. */
  after(since: number): Loss | undefined {
    let first: Loss | undefined;
    for (const l of this.list) if (l.seq > since && (!first || l.seq < first.seq)) first = l;
    return first;
  }

  /** Drop the losses that only positions at or before `upTo` would see. */
  forget(upTo: number): void {
    this.list = this.list.filter((l) => l.seq > upTo);
  }

  /** All of them, oldest first. */
  get all(): readonly Loss[] {
    return this.list;
  }
}

/** The first of two possible losses (by seq). */
export function firstLoss(a: Loss | undefined, b: Loss | undefined): Loss | undefined {
  if (!a) return b;
  if (!b) return a;
  return a.seq <= b.seq ? a : b;
}
