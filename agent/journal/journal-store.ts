/**
 * The changes the journal holds for one root: each path once, with the sequence number of
 * its last event and of its last foreign one, in memory bounded by the caller. What it
 * guarantees: a query for the changes after a sequence number names every path that had
 * a counted event after it, at a scope at least as wide as its events need, or a covering
 * ancestor; it may name more (a coalesced directory, a scope wider than needed), never
 * fewer. Memory: when a directory holds more than `maxPerDir` paths of plain entries they
 * are folded into one `children` record of the directory; the root as a whole is the
 * caller's to bound, by `size` and `bytes` (ChangeJournal drops a root's records, and the
 * root is walked in full).
 */
import { comparePaths } from '../../proto';

/** What the caller must look at for a changed path. */
export type ChangeScope = 'entry' | 'children' | 'subtree';

/**
 * A changed path, relative to its root ('' = the root itself). `entry`: look at this
 * entry (if a directory, not below it). `children`: this directory and its direct entries
 * (too many changed to name them): re-list it. `subtree`: walk the whole subtree (a
 * directory that came or went with its contents, which had no events of their own).
 * `foreign`: a process other than the agent caused a counted event of it.
 */
export interface JournalChange {
  path: string;
  scope: ChangeScope;
  foreign: boolean;
  /**
   * Its data may have been written (MODIFY or CLOSE_WRITE; for a `children` record, the
   * data of any plain entry of the directory): size and mtime cannot tell, so the caller
   * compares or fetches the content. Such a change is named even below a covering
   * `subtree` or `children` change, which would not say so.
   */
  content: boolean;
}

/** A root's changes since a position: a full walk with the reason, or the changed paths. */
export type SinceResult = { full: string } | { changes: JournalChange[] };

/** Scopes as numbers, widest last. */
export const ENTRY = 0;
export const CHILDREN = 1;
export const SUBTREE = 2;

/**
 * One path's record: the seq of its last event and of its last foreign event (0: none),
 * and the same for the events that made it a `children` (c) and a `subtree` (s) change,
 * so that a query after those sees it as narrow as its later events need.
 */
interface Rec {
  last: number;
  foreign: number;
  cLast: number;
  cForeign: number;
  sLast: number;
  sForeign: number;
  /** Data written: of this entry (w), of a plain entry folded into this directory (cw). */
  wLast: number;
  wForeign: number;
  cwLast: number;
  cwForeign: number;
}

const fresh = (): Rec => ({ last: 0, foreign: 0, cLast: 0, cForeign: 0, sLast: 0, sForeign: 0, wLast: 0, wForeign: 0, cwLast: 0, cwForeign: 0 });

/** A plain entry's event that wrote data: add() with `scope | CONTENT`. */
export const CONTENT = 8;

/**
 * What a held path costs on the heap, as bench/journal-cost.ts measures it: about 190 bytes
 * for the Map entry, the record and the counts, plus the path (counted as two bytes a
 * character, though V8 keeps ASCII paths in one).
 */
export function pathBytes(p: string): number {
  return 192 + 2 * p.length;
}

/** The parent of a root-relative path: '' for a top-level name. */
export function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i === -1 ? '' : p.slice(0, i);
}

function bump(r: Rec, seq: number, foreign: boolean, scope: number, content = false): void {
  r.last = seq;
  if (foreign) r.foreign = seq;
  if (content) {
    if (scope === CHILDREN) {
      r.cwLast = seq;
      if (foreign) r.cwForeign = seq;
    } else {
      r.wLast = seq;
      if (foreign) r.wForeign = seq;
    }
  }
  if (scope === SUBTREE) {
    r.sLast = seq;
    if (foreign) r.sForeign = seq;
  } else if (scope === CHILDREN) {
    r.cLast = seq;
    if (foreign) r.cForeign = seq;
  }
}

/** Whether an event of a record counts for a query after `since` that leaves out own events up to `ignoreOwnUpTo`. */
function counts(last: number, foreign: number, since: number, ignoreOwnUpTo: number): boolean {
  return foreign > since || (last > since && last > ignoreOwnUpTo);
}

/** The changed paths of one root. */
export class RootChanges {
  private readonly recs = new Map<string, Rec>();
  /** Records per directory, for the per-directory budget. */
  private readonly perDir = new Map<string, number>();
  /** Directories whose plain entries are folded into their own record. */
  private readonly coalesced = new Set<string>();

  private held = 0;

  constructor(private readonly maxPerDir: number) {}

  /** Records held. */
  get size(): number {
    return this.recs.size;
  }

  /** Their estimated heap bytes (pathBytes). */
  get bytes(): number {
    return this.held;
  }

  /** Record an event of `path` with sequence number `seq`; `parent`: parentOf(path), if the caller has it. */
  add(path: string, seq: number, foreign: boolean, scope: number, parent?: string): void {
    const content = (scope & CONTENT) !== 0;
    scope &= ~CONTENT;
    if (scope === ENTRY && path !== '' && this.coalesced.size !== 0) {
      parent ??= parentOf(path);
      if (this.coalesced.has(parent)) {
        const own = this.recs.get(path);
        if (own) bump(own, seq, foreign, ENTRY, content);
        else bump(this.recs.get(parent)!, seq, foreign, CHILDREN, content);
        return;
      }
    }
    let r = this.recs.get(path);
    if (r === undefined) {
      r = fresh();
      this.recs.set(path, r);
      this.held += pathBytes(path);
      bump(r, seq, foreign, scope, content);
      if (path !== '') {
        parent ??= parentOf(path);
        const n = (this.perDir.get(parent) ?? 0) + 1;
        this.perDir.set(parent, n);
        if (n > this.maxPerDir) this.coalesce(parent, seq);
      }
      return;
    }
    bump(r, seq, foreign, scope, content);
  }

  /** Fold the plain entries of `dir` into a `children` record of it. */
  private coalesce(dir: string, seq: number): void {
    let d = this.recs.get(dir);
    const created = d === undefined;
    if (d === undefined) {
      d = fresh();
      d.last = seq;
      this.recs.set(dir, d);
      this.held += pathBytes(dir);
    }
    let left = 0;
    for (const [p, r] of this.recs) {
      if (p === dir || p === '' || parentOf(p) !== dir) continue;
      if (r.cLast !== 0 || r.sLast !== 0) {
        left++;
        continue;
      }
      if (r.last > d.last) d.last = r.last;
      if (r.foreign > d.foreign) d.foreign = r.foreign;
      if (r.last > d.cLast) d.cLast = r.last;
      if (r.foreign > d.cForeign) d.cForeign = r.foreign;
      if (r.wLast > d.cwLast) d.cwLast = r.wLast;
      if (r.wForeign > d.cwForeign) d.cwForeign = r.wForeign;
      this.recs.delete(p);
      this.held -= pathBytes(p);
    }
    this.perDir.set(dir, left);
    this.coalesced.add(dir);
    // A record made here counts in its parent like any other.
    if (created && dir !== '') {
      const parent = parentOf(dir);
      const n = (this.perDir.get(parent) ?? 0) + 1;
      this.perDir.set(parent, n);
      if (n > this.maxPerDir) this.coalesce(parent, seq);
    }
  }

  /**
   * Drop what no later query needs: a pass committed everything at or before `upTo`, and its
   * own events up to `ownUpTo` (default `upTo`) are left out of every query after it.
   */
  forget(upTo: number, ownUpTo = upTo): void {
    for (const [p, r] of this.recs) {
      if (counts(r.last, r.foreign, upTo, ownUpTo)) continue;
      this.recs.delete(p);
      this.held -= pathBytes(p);
      this.coalesced.delete(p);
      if (p === '') continue;
      const parent = parentOf(p);
      const n = (this.perDir.get(parent) ?? 1) - 1;
      if (n <= 0) this.perDir.delete(parent);
      else this.perDir.set(parent, n);
    }
  }

  /** Drop everything (the root is walked in full instead). */
  clear(): void {
    this.recs.clear();
    this.held = 0;
    this.perDir.clear();
    this.coalesced.clear();
  }

  /**
   * The changes after `since`, leaving out own events at or before `ignoreOwnUpTo`, in
   * walk order (proto/order.ts), without paths that a listed ancestor covers (a `subtree`,
   * or a `children` directory for its plain entries).
   */
  query(since: number, ignoreOwnUpTo: number): JournalChange[] {
    const all: JournalChange[] = [];
    for (const [p, r] of this.recs) {
      if (!counts(r.last, r.foreign, since, ignoreOwnUpTo)) continue;
      const scope = r.sLast !== 0 && counts(r.sLast, r.sForeign, since, ignoreOwnUpTo) ? 'subtree' : r.cLast !== 0 && counts(r.cLast, r.cForeign, since, ignoreOwnUpTo) ? 'children' : 'entry';
      const content = (r.wLast !== 0 && counts(r.wLast, r.wForeign, since, ignoreOwnUpTo)) || (scope === 'children' && r.cwLast !== 0 && counts(r.cwLast, r.cwForeign, since, ignoreOwnUpTo));
      all.push({ path: p, scope, foreign: r.foreign > since, content });
    }
    all.sort((a, b) => comparePaths(a.path, b.path));
    const covering = new Map<string, JournalChange>();
    const out: JournalChange[] = [];
    for (const c of all) {
      const cover = covering.size ? coverOf(c, covering) : undefined;
      if (cover) {
        if (c.foreign) cover.foreign = true;
        // A covering change does not say that data was written: this one still does.
        if (c.content) out.push({ path: c.path, scope: 'entry', foreign: c.foreign, content: true });
        continue;
      }
      if (c.scope !== 'entry') covering.set(c.path, c);
      out.push(c);
    }
    return out;
  }
}

/** The listed change that covers `c`: an ancestor's subtree, or its parent's children for a plain entry. */
function coverOf(c: JournalChange, covering: Map<string, JournalChange>): JournalChange | undefined {
  if (c.path === '') return undefined;
  let p = parentOf(c.path);
  const parent = covering.get(p);
  if (parent && (parent.scope === 'subtree' || c.scope === 'entry')) return parent;
  while (p !== '') {
    p = parentOf(p);
    const a = covering.get(p);
    if (a && a.scope === 'subtree') return a;
  }
  return undefined;
}
