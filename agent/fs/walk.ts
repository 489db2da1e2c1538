/**
 * The tree walk that sender, verifier and later passes share: one lstat per entry
 * (fast-lstat.ts: nanosecond times without Node's Dates per call), never following
 * symlinks, in walk order (proto/order.ts), holding at most one directory's names and a
 * small batch of stats at a time.
 */
import type { BigIntStats } from 'node:fs';
import * as fsSync from 'node:fs';
import { compareNames, comparePaths } from '../../proto';
import { lstatBig } from './fast-lstat';
import type { ResolvedRoot } from './paths';
import type { DirScope, WalkScope } from './walk-scope';

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
  /**
   * Walk only what the change journals name (walk-scope.ts): the directories on the way
   * are looked at but not read, and a scoped path that is not there is no vanished entry,
   * only one that is gone.
   */
  scope?: WalkScope;
}

/** Entries between two turns of the event loop. */
const YIELD_EVERY = 256;

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** A directory being walked: its sorted names and the next one to look at. */
interface DirFrame {
  rel: string;
  abs: string;
  names: string[];
  i: number;
  /** With a scope: how this directory was entered, and whether its names came from the scope. */
  ds?: DirScope;
  explicit?: boolean;
}

/**
 * One root, in walk order, taken in batches by plain synchronous calls: an lstat from the
 * dentry cache takes microseconds, a trip through the thread pool with a promise several
 * times that, and a chain of async generators (one per directory level) costs a promise
 * per level for every entry. The caller gives the event loop a turn between batches.
 */
export class TreeWalk {
  private readonly stack: DirFrame[] = [];
  private started = false;
  /** A vanished entry met after the batch had entries: reported when the next batch is taken. */
  private pendingVanished: string | null = null;

  constructor(
    private readonly root: ResolvedRoot,
    private readonly opts: WalkOptions = {},
  ) {}

  /**
   * Up to `max` entries in walk order; an empty array once the walk is done. A vanished
   * entry is reported (opts.onVanished) when every entry before it was taken, as the
   * entry-by-entry walk did.
   */
  take(max: number): WalkEntry[] {
    const out: WalkEntry[] = [];
    if (this.pendingVanished !== null) {
      const rel = this.pendingVanished;
      this.pendingVanished = null;
      this.opts.onVanished?.(rel);
    }
    if (!this.started) {
      this.started = true;
      const { root, opts } = this;
      let st: BigIntStats | undefined;
      try {
        st = lstatBig(root.abs);
      } catch (err) {
        if (isGone(err)) return out;
        throw err;
      }
      if (st === undefined) return out;
      const entry: WalkEntry = { rel: root.rel, abs: root.abs, st, type: typeOf(st) };
      if (opts.after === undefined || comparePaths(root.rel, opts.after) > 0) out.push(entry);
      if (entry.type === 'dir' && !this.enter(root.rel, root.abs, out, opts.scope?.rootDir())) return out;
    }
    const { stack, opts } = this;
    const skip = this.root.skip;
    const after = opts.after;
    while (out.length < max && stack.length > 0) {
      const top = stack[stack.length - 1];
      if (top.i >= top.names.length) {
        stack.pop();
        continue;
      }
      const name = top.names[top.i++];
      const childRel = `${top.rel}/${name}`;
      // The host's runtime state (proto/roots.ts RootSpec.runtime): not part of the relay.
      if (skip && (skip.has(childRel) || skip.has(`${top.rel}/*`))) continue;
      // Resuming: what sorts before `after` went out already, except the way down to it; `after`
      // itself went out too, but a directory's contents come after it.
      const c = after === undefined ? 1 : comparePaths(childRel, after);
      if (c < 0 && !after!.startsWith(childRel + '/')) continue;
      const childAbs = `${top.abs}/${name}`;
      let cst: BigIntStats | undefined;
      try {
        cst = lstatBig(childAbs);
      } catch (err) {
        if (!isGone(err)) throw err;
      }
      if (cst === undefined) {
        // A path the scope named that is not here: gone, which the merge sees for itself.
        if (top.explicit) continue;
        if (!this.vanished(childRel, out)) return out;
        continue;
      }
      const child: WalkEntry = { rel: childRel, abs: childAbs, st: cst, type: typeOf(cst) };
      if (c > 0) out.push(child);
      if (child.type === 'dir') {
        let ds: DirScope | undefined;
        if (top.ds) {
          const d = this.opts.scope!.childDir(top.ds, name);
          if (!d) continue;
          ds = d;
        }
        if (!this.enter(childRel, childAbs, out, ds)) return out;
      }
    }
    return out;
  }

  /** Read a directory onto the stack; false when it vanished and the batch must end there. */
  private enter(rel: string, abs: string, out: WalkEntry[], ds?: DirScope): boolean {
    if (ds) {
      const scoped = this.opts.scope!.names(ds);
      if (scoped) {
        this.stack.push({ rel, abs, names: scoped, i: 0, ds, explicit: true });
        return true;
      }
    }
    let names: string[];
    try {
      names = fsSync.readdirSync(abs);
    } catch (err) {
      if (isGone(err)) return this.vanished(rel, out);
      throw err;
    }
    names.sort(compareNames);
    this.stack.push({ rel, abs, names, i: 0, ds });
    return true;
  }

  /** Report now if nothing is waiting before it in this batch, else end the batch (false). */
  private vanished(rel: string, out: WalkEntry[]): boolean {
    if (out.length === 0) {
      this.opts.onVanished?.(rel);
      return true;
    }
    this.pendingVanished = rel;
    return false;
  }
}

/** A turn of the event loop, so that streams, timers and keepalives run during a long walk. */
export const nextTurn = (): Promise<void> => new Promise<void>((r) => setImmediate(r));

/** One root in walk order, in batches, with a turn of the event loop between batches. */
export async function* walkBatches(root: ResolvedRoot, opts: WalkOptions = {}, size = YIELD_EVERY): AsyncGenerator<WalkEntry[]> {
  const w = new TreeWalk(root, opts);
  let first = true;
  for (;;) {
    if (!first) await nextTurn();
    first = false;
    const batch = w.take(size);
    if (batch.length === 0) return;
    yield batch;
  }
}

/**
 * One root, in walk order; nothing when the root is absent. The walk gives the event loop a
 * turn every few hundred entries so that streams keep flowing.
 */
export async function* walkRoot(root: ResolvedRoot, opts: WalkOptions = {}): AsyncGenerator<WalkEntry> {
  for await (const batch of walkBatches(root, opts)) yield* batch;
}

/**
 * This host's walk of a root, taken one entry at a time without a promise: the merge asks
 * for the next entry as it goes; a batch is read whenever the last one is used up.
 */
export class LocalWalk {
  private readonly w: TreeWalk;
  private batch: WalkEntry[] = [];
  private i = 0;
  private done = false;

  constructor(root: ResolvedRoot, opts: WalkOptions = {}) {
    this.w = new TreeWalk(root, opts);
  }

  /** The next entry, or undefined at the end. */
  next(): WalkEntry | undefined {
    if (this.i >= this.batch.length) {
      if (this.done) return undefined;
      this.batch = this.w.take(YIELD_EVERY);
      this.i = 0;
      if (this.batch.length === 0) {
        this.done = true;
        return undefined;
      }
    }
    const e = this.batch[this.i];
    this.batch[this.i++] = undefined as unknown as WalkEntry;
    return e;
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
