/**
 * Each root as the journal watches it: its changes and losses in one epoch (WatchedRoot),
 * and what can change a root without a single fanotify event, and how the journal notices:
 * a filesystem mounted at, above or under the root (the helper watches the filesystems
 * the root was on when it started, and resolves paths through those mounts), a symlink
 * above it retargeted, or the root's directory replaced. The journal takes a RootWatch of
 * each root when it starts and compares a fresh one at every sync: a changed mount or real
 * path means the journal no longer sees the root (a full walk until it restarts); a
 * replaced directory means a full walk of the root for positions before that sync.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RootName } from '../../proto';
import { firstLoss, Losses, type Loss } from './journal-losses';
import { FAN, FAN_DIRENT } from './journal-source';
import { CONTENT, ENTRY, parentOf, RootChanges, SUBTREE, type SinceResult } from './journal-store';

/** A root as the journal watches it. */
export interface RootWatch {
  name: RootName;
  /** As the agent names it: <root>/var/lib/acme. */
  abs: string;
  /** Where it really is: the real path of its parent, and its name. */
  real: string;
  /** The directory's device and inode ('d:'), its parent's for a root that is not a directory ('f:'), or '-' when absent. */
  identity: string;
  /** The mounts at, above and under the root: what the helper's paths go through. */
  mounts: string;
  /** Mount points under the root: filesystems of their own, which the helper watches too. */
  marks: string[];
  /** Something is mounted on the root itself. */
  mountedOn: boolean;
}

/** A line of /proc/self/mountinfo: the mount's id and where it is mounted. */
export interface MountPoint {
  id: string;
  at: string;
}

/** The mounts this process sees, in mount order. */
export function readMounts(): MountPoint[] {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'latin1');
  } catch {
    return [];
  }
  const out: MountPoint[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    // Octal escapes (\040 for a space) of the bytes; the bytes as fs would name them.
    const at = f[4].replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.push({ id: f[0], at: /[^\x00-\x7f]/.test(at) ? Buffer.from(at, 'latin1').toString('utf8') : at });
  }
  return out;
}

/** The real path of `abs`: its parent's real path and its own name (the root itself may be a symlink or absent). */
export function realRootPath(abs: string): string {
  const norm = path.resolve(abs);
  if (norm === '/') return '/';
  let dir = path.dirname(norm);
  const tail: string[] = [path.basename(norm)];
  for (;;) {
    try {
      return path.join(fs.realpathSync(dir), ...tail);
    } catch {
      if (dir === '/') return norm;
      tail.unshift(path.basename(dir));
      dir = path.dirname(dir);
    }
  }
}

function identityOf(abs: string): string {
  let st: fs.BigIntStats;
  try {
    st = fs.lstatSync(abs, { bigint: true });
  } catch {
    return '-';
  }
  if (st.isDirectory()) return `d:${st.dev}:${st.ino}`;
  try {
    const p = fs.statSync(path.dirname(abs), { bigint: true });
    return `f:${p.dev}:${p.ino}`;
  } catch {
    return '-';
  }
}

const within = (p: string, dir: string): boolean => dir === '/' || p === dir || p.startsWith(dir + '/');

/** A RootWatch of one root, now. */
export function watchRoot(name: RootName, abs: string, mounts: readonly MountPoint[]): RootWatch {
  const real = realRootPath(abs);
  const relevant = mounts.filter((m) => within(real, m.at) || within(m.at, real));
  const marks = relevant.filter((m) => m.at !== real && within(m.at, real)).map((m) => m.at);
  return {
    name,
    abs,
    real,
    identity: identityOf(abs),
    mounts: relevant.map((m) => `${m.id} ${m.at}`).join('\n'),
    marks: [...new Set(marks)],
    mountedOn: relevant.some((m) => m.at === real),
  };
}

/** How a root changed between two watches: `lost` when the journal no longer sees it at all. */
export type RootChange = { lost: true; reason: string } | { lost: false; reason: string } | null;

/** Compare a root's watch from the journal's start with one taken now. */
export function compareWatch(then: RootWatch, now: RootWatch): RootChange {
  if (then.real !== now.real) {
    return { lost: true, reason: `journal: ${then.abs} now leads to ${now.real}, not ${then.real} (a symlink above it changed); the journal no longer watches it` };
  }
  if (then.mounts !== now.mounts) {
    return { lost: true, reason: `journal: the mounts at, above or under ${then.abs} changed since the journal started; it watches only what was mounted then` };
  }
  if (then.identity !== now.identity) {
    const what = now.identity === '-' ? 'was removed' : then.identity === '-' ? 'appeared' : 'was replaced';
    return { lost: false, reason: `journal: ${then.abs} ${what} since the last sync` };
  }
  return null;
}

/** One root in one epoch of the journal: what changed under it, and what it may have missed. */
export class WatchedRoot {
  /** Roots inside this one and their path from it: the helper reports their events here. */
  readonly nested: { inner: WatchedRoot; prefix: string }[] = [];
  readonly changes: RootChanges;
  readonly losses = new Losses();
  /** Set when the journal cannot see the root for the rest of the epoch. */
  unwatched: string | null = null;
  private forgotten = 0;

  constructor(
    readonly name: RootName,
    readonly abs: string,
    public watch: RootWatch,
    maxPerDir: number,
  ) {
    this.changes = new RootChanges(maxPerDir);
    // A file mounted on a file (a bind mount of one file): its changes happen in a directory
    // outside every mount the helper resolves paths through.
    if (watch.mountedOn && !watch.identity.startsWith('d:')) this.unwatched = `journal: ${abs} is a file mounted on its own; the journal cannot follow it`;
  }

  /**
   * An event at `rel`. An entry that came or went (a directory with its whole subtree,
   * which had no events of its own) changed the directory holding it too (its mtime).
   */
  record(foreign: boolean, mask: number, rel: string, seq: number): void {
    if (!(mask & FAN_DIRENT)) {
      this.changes.add(rel, seq, foreign, mask & (FAN.MODIFY | FAN.CLOSE_WRITE) && !(mask & FAN.ONDIR) ? ENTRY | CONTENT : ENTRY);
    } else if (rel === '') {
      this.changes.add(rel, seq, foreign, mask & FAN.ONDIR ? SUBTREE : ENTRY);
    } else {
      const parent = parentOf(rel);
      this.changes.add(rel, seq, foreign, mask & FAN.ONDIR ? SUBTREE : ENTRY, parent);
      this.changes.add(parent, seq, foreign, ENTRY);
    }
  }

  /** Compare with the root as it is now (at a sync whose cookie had `seq`); the change, if any, is taken in. */
  recheck(mounts: readonly MountPoint[], seq: number): RootChange {
    if (this.unwatched) return null;
    const now = watchRoot(this.name, this.abs, mounts);
    const change = compareWatch(this.watch, now);
    if (change?.lost) this.unwatched = change.reason;
    else if (change) {
      this.watch = now;
      this.losses.at(seq, change.reason);
    }
    return change;
  }

  /** The changes after `since`, or full: unwatched, forgotten, or a loss of its own or `global`. */
  since(since: number, ignoreOwnUpTo: number, global: Loss | undefined): SinceResult {
    if (this.unwatched) return { full: this.unwatched };
    if (since < this.forgotten) return { full: `journal: changes up to ${this.forgotten} were forgotten, and the position is before that` };
    const loss = firstLoss(global, this.losses.after(since));
    if (loss) return { full: loss.reason };
    return { changes: this.changes.query(since, ignoreOwnUpTo) };
  }

  /** Drop what was recorded at or before `upTo`; positions before it get full from now on. */
  forget(upTo: number, ownUpTo = upTo): void {
    this.changes.forget(upTo, ownUpTo);
    this.losses.forget(upTo);
    if (upTo > this.forgotten) this.forgotten = upTo;
  }
}
