/**
 * The actions the merge decides and the executor applies, and the bounded queue between
 * them. The queue keeps the merge at most QUEUE_LIMIT actions ahead, so memory stays
 * bounded however large the tree.
 */
import type { ListEntry__Output } from '../../proto';
import type { ResolvedRoot } from '../fs/paths';

/** The attributes an entry gets on the new host (owner ids already mapped from names). */
export interface Meta {
  uid: number;
  gid: number;
  mode: number;
  mtimeNs: bigint;
}

/** Which part of the journal a record goes to: in walk order, or settled at the root's end. */
export type Where = 'main' | 'extra';

/** One change to this host's tree, or a record to keep. */
export type Action =
  | { k: 'mkdir'; rel: string; abs: string; replace: boolean; meta: Meta; si: string }
  | { k: 'finishDir'; rel: string; abs: string; meta: Meta }
  | { k: 'fetch'; rel: string; abs: string; s: ListEntry__Output; root: ResolvedRoot; where: Where }
  | { k: 'link'; rel: string; abs: string; leaderAbs: string; s: ListEntry__Output; where: Where }
  | { k: 'symlink'; rel: string; abs: string; target: string; meta: Meta; s: ListEntry__Output }
  | { k: 'fifo'; rel: string; abs: string; meta: Meta; s: ListEntry__Output }
  | { k: 'attrs'; rel: string; abs: string; meta: Meta; s: ListEntry__Output; symlink: boolean }
  | { k: 'keep'; line: string }
  | { k: 'rename'; from: string; fromAbs: string; rel: string; abs: string; meta: Meta; s: ListEntry__Output; where: Where }
  | { k: 'rmtmp'; abs: string }
  | { k: 'delete'; rel: string; abs: string; dir: boolean }
  | { k: 'sync'; abs: string };

/** Actions queued ahead of the executor, at most. */
export const QUEUE_LIMIT = 4096;

/** A bounded queue between the merge (producer) and the executor (consumer). */
export class ActionQueue {
  private items: Action[] = [];
  private closed = false;

  /** An action was taken and is not applied yet (the executor clears it). */
  busy = false;

  /** Where the next action to take is: Array.shift() moves the whole array each time. */
  private head = 0;

  private get length(): number {
    return this.items.length - this.head;
  }

  /** Nothing queued and nothing being applied. */
  get empty(): boolean {
    return this.length === 0 && !this.busy;
  }

  private failed: unknown = null;
  private wakeConsumer: (() => void) | null = null;
  private wakeProducer: (() => void) | null = null;

  /** Queue an action; waits while the queue is full, throws once it failed. */
  async push(a: Action): Promise<void> {
    while (this.length >= QUEUE_LIMIT && !this.failed) await new Promise<void>((r) => (this.wakeProducer = r));
    if (this.failed) throw this.failed;
    this.items.push(a);
    this.wakeConsumer?.();
    this.wakeConsumer = null;
  }

  /** No more actions: shift() returns null once the queue is drained. */
  close(): void {
    this.closed = true;
    this.wakeConsumer?.();
  }

  /** Stop both sides: whoever waits or comes next gets `err`. */
  fail(err: unknown): void {
    this.failed = err;
    this.wakeProducer?.();
    this.wakeConsumer?.();
  }

  /** The next action, or null after close(); marks the queue busy until the executor clears it. */
  async shift(): Promise<Action | null> {
    while (!this.length && !this.closed && !this.failed) await new Promise<void>((r) => (this.wakeConsumer = r));
    if (this.failed) throw this.failed;
    let a: Action | null = null;
    if (this.length) {
      a = this.items[this.head];
      this.items[this.head++] = undefined as unknown as Action;
      if (this.head === this.items.length) {
        this.items = [];
        this.head = 0;
      } else if (this.head >= QUEUE_LIMIT) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
    }
    this.busy = a !== null;
    if (this.length < QUEUE_LIMIT / 2) {
      this.wakeProducer?.();
      this.wakeProducer = null;
    }
    return a;
  }
}
