/**
 * The tree walk that sender, verifier and later passes share: one lstat per entry, never
 * following symlinks, in walk order (proto/order.ts), holding at most one directory's
 * names and a small batch of stats at a time.
 */
import type { BigIntStats } from 'node:fs';
import * as fsSync from 'node:fs';
import { compareNames, comparePaths } from '../proto';
import type { ResolvedRoot } from './paths';

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'device';

export interface WalkEntry {
  /** Host path without the leading slash: 'home/vmail/mail/x/cur/1'. */
  rel: string;
  abs: string;
  st: BigIntStats;
  type: EntryType;
}

export function typeOf(st: BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return 'device';
}

export interface WalkOptions {
  /** Called for an entry that vanished between readdir and lstat (a live relay). */
  onVanished?: (rel: string) => void;
  /**
   * Resume a walk: yield only the entries after this path in walk order. What sorts
   * before it is skipped without an lstat, except the directories on its way.
   */
  after?: string;
}

/** Entries between two turns of the event loop. */
const YIELD_EVERY = 256;

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * One root, in walk order; nothing when the root is absent. The calls are synchronous:
 * an lstat from the dentry cache takes microseconds, a trip through the thread pool with
 * a promise several times that; the walk gives the event loop a turn every few hundred
 * entries so that streams keep flowing.
 */
export async function* walkRoot(root: ResolvedRoot, opts: WalkOptions = {}): AsyncGenerator<WalkEntry> {
  let st: BigIntStats;
  try {
    st = fsSync.lstatSync(root.abs, { bigint: true });
  } catch (err) {
    if (isGone(err)) return;
    throw err;
  }
  const entry: WalkEntry = { rel: root.rel, abs: root.abs, st, type: typeOf(st) };
  if (opts.after === undefined || comparePaths(root.rel, opts.after) > 0) yield entry;
  if (entry.type === 'dir') yield* walkDir(root.rel, root.abs, opts, { n: 0 }, root.skip);
}

async function* walkDir(rel: string, abs: string, opts: WalkOptions, count: { n: number }, skip?: ReadonlySet<string>): AsyncGenerator<WalkEntry> {
  let names: string[];
  try {
    names = fsSync.readdirSync(abs);
  } catch (err) {
    if (isGone(err)) {
      opts.onVanished?.(rel);
      return;
    }
    throw err;
  }
  names.sort(compareNames);
  for (const name of names) {
    if (++count.n % YIELD_EVERY === 0) await new Promise<void>((r) => setImmediate(r));
    const childRel = `${rel}/${name}`;
    const childAbs = `${abs}/${name}`;
    // The host's runtime state (proto/roots.ts RootSpec.runtime): not part of the relay.
    if (skip && (skip.has(childRel) || skip.has(`${rel}/*`))) continue;
    // Resuming: what sorts before `after` went out already, except the way down to it; `after`
    // itself went out too, but a directory's contents come after it.
    const c = opts.after === undefined ? 1 : comparePaths(childRel, opts.after);
    const before = c <= 0;
    if (c < 0 && !opts.after!.startsWith(childRel + '/')) continue;
    let cst: BigIntStats;
    try {
      cst = fsSync.lstatSync(childAbs, { bigint: true });
    } catch (err) {
      if (isGone(err)) {
        opts.onVanished?.(childRel);
        continue;
      }
      throw err;
    }
    const child: WalkEntry = { rel: childRel, abs: childAbs, st: cst, type: typeOf(cst) };
    if (!before) yield child;
    if (child.type === 'dir') yield* walkDir(childRel, childAbs, opts, count, skip);
  }
}

/** Nanoseconds to whole microseconds: the precision that times are compared and recorded at. */
export const us = (ns: bigint): bigint => ns / 1000n;

/**
 * The float seconds to pass to fs.utimes so that the file gets exactly the microsecond of
 * `ns`: libuv truncates to microseconds, and float error could land one below.
 */
export function utimesSeconds(ns: bigint): number {
  const us = ns / 1000n;
  const sec = us / 1_000_000n;
  const rest = us % 1_000_000n;
  return Number(sec) + (Number(rest) + 0.5) / 1e6;
}

/**
 * An iterator that pulls up to `cap` items ahead of its consumer, so that a walk of this
 * host's tree goes on while the consumer waits for the network. It only ever runs ahead:
 * what it yields is what the plain walk would have yielded, at most `cap` items earlier.
 * A failure of the source is thrown where its item would have been.
 */
export class ReadAhead<T> implements AsyncIterator<T> {
  private buf: (T | undefined)[] = [];
  private head = 0;
  private done = false;
  private err: unknown = null;
  private pumping: Promise<void> | null = null;

  constructor(
    private readonly src: AsyncIterator<T>,
    private readonly cap: number,
  ) {
    void this.pump();
  }

  private pump(): Promise<void> {
    if (!this.pumping && !this.done) {
      this.pumping = (async () => {
        try {
          while (!this.done && this.buf.length - this.head < this.cap) {
            const n = await this.src.next();
            if (n.done) this.done = true;
            else this.buf.push(n.value);
          }
        } catch (err) {
          this.err = err;
          this.done = true;
        }
        this.pumping = null;
      })();
    }
    return this.pumping ?? Promise.resolve();
  }

  async next(): Promise<IteratorResult<T>> {
    for (;;) {
      if (this.head < this.buf.length) {
        const value = this.buf[this.head] as T;
        this.buf[this.head++] = undefined;
        if (this.head >= 1024 && this.head * 2 >= this.buf.length) {
          this.buf = this.buf.slice(this.head);
          this.head = 0;
        }
        if (!this.pumping && !this.done) void this.pump();
        return { value, done: false };
      }
      if (this.err) throw this.err;
      if (this.done) return { value: undefined, done: true };
      await this.pump();
    }
  }
}
