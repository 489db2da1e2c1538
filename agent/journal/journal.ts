/**
 * Folder agent/journal/: the change journal of the carried roots (issue 25). It may import
 * only this folder, agent/fs/, the log and proto/.
 *
 * What it guarantees: from the moment it starts, every change under a root is recorded
 * (fanotify events for the whole filesystems the roots are on, from fanotify-helper.py),
 * or the journal knows it may have missed one, and then `changesSince` answers `full`
 * with the reason: a full walk, never a skipped change. Positions come from `sync()`:
 * every change that completed before sync() was called has a sequence number at or below
 * the position it returns (a change recorded at or below it may also have happened while
 * sync() ran, before it returned; the kernel merges a later event of the same entry into
 * one still queued). A position holds only within one epoch: each start or restart of the
 * helper begins a new one, and a position of another epoch gets `full`.
 *
 * What it cannot see, and the caller must: a change written through a shared mmap (no
 * event; Dovecot and SQLite write with write(2)); and a hard-linked file changed through
 * one name is reported under that name only (the name the writer opened, which may be
 * gone): for a changed path whose inode has other links, the caller looks at every name
 * of that inode it knows (its manifest keeps them).
 */
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { RootName } from '../../proto';
import type { Logger } from '../log';
import { Losses } from './journal-losses';
import { readMounts, realRootPath, watchRoot, WatchedRoot } from './journal-roots';
import { clock, FAN, FAN_DIRENT, JournalSource } from './journal-source';
import type { SinceResult } from './journal-store';

export type { ChangeScope, JournalChange, SinceResult } from './journal-store';

/** A point in the journal: `seq` within `epoch`. Committed with a pass, handed back to changesSince. */
export interface JournalPosition {
  epoch: string;
  seq: number;
}

/** Options of ChangeJournal.start. */
export interface JournalOptions {
  roots: readonly { name: RootName; abs: string }[];
  /** A directory on a filesystem the helper can watch (the agent's state dir); cookies of sync() go here. */
  cookieDir: string;
  log: Logger;
  /** The python executable; default `python3` from PATH. */
  python?: string;
  /** Paths held for all roots together before the largest root is dropped to a full walk; default 1,000,000. */
  maxEntries?: number;
  /** The same bound in estimated heap bytes (journal-store.ts pathBytes); default 64 MiB, some 250,000 maildir paths. */
  maxBytes?: number;
  /** Plain entries held per directory before they fold into a `children` record; default 8,192. */
  maxPerDir?: number;
  /** The process whose events are own (left out up to ignoreOwnUpTo); default this one. */
  ownPid?: number;
  /** How long sync() waits for its cookie; default 30 s. */
  syncTimeoutMs?: number;
  /**
   * Own events (of ownPid) of a root: recorded only while a reader holds a position in that
   * root (`when-held`, the default), or always (`keep`). A pass accounts for its own writes
   * by its manifest and asks without them; only a reader such as a digest cache counts them.
   * Without a hold an initial copy's million writes are not held in memory.
   */
  ownEvents?: 'keep' | 'when-held';
}

/** For logs and Info. */
export interface JournalStatus {
  epoch: string;
  seq: number;
  /** The helper's pid while it runs. */
  pid?: number;
  /** Why this epoch's helper is gone, if it is. */
  ended?: string;
  /** The latest losses, oldest first. */
  losses: string[];
  entries: number;
  roots: { name: RootName; entries: number; unwatched?: string }[];
}

interface Pending {
  index: number;
  resolve: (seq: number) => void;
  /** A reader to hold every root for at the cookie's position (sync's `hold`). */
  hold?: string;
}

const MAX_PAST_EPOCHS = 16;
const COOKIE_PREFIX = '.cmm-journal-';

/** The change journal of the agent's carried roots. */
export class ChangeJournal {
  private epochId = '';
  private seq = 0;
  private source: JournalSource | null = null;
  private ended: string | null = null;
  private ready = false;
  private roots: WatchedRoot[] = [];
  private losses = new Losses();
  private readonly pastEpochs = new Map<string, string>();
  private readonly pending = new Map<string, Pending>();
  private cookies = 0;
  private readonly ownPid: number;
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly maxPerDir: number;
  private readonly log: Logger;

  private constructor(private readonly opts: JournalOptions) {
    this.ownPid = opts.ownPid ?? process.pid;
    this.maxEntries = opts.maxEntries ?? 1_000_000;
    this.maxBytes = opts.maxBytes ?? 64 * 2 ** 20;
    this.maxPerDir = opts.maxPerDir ?? 8192;
    this.log = opts.log;
  }

  /**
   * Start the helper and journal from now. Resolves once the helper watches every root, or
   * has failed (no python3, no fanotify): then every changesSince is `full` with the reason,
   * and each sync() tries again in a new epoch. Throws only on bad options.
   */
  static async start(opts: JournalOptions): Promise<ChangeJournal> {
    if (!path.isAbsolute(opts.cookieDir)) throw new Error(`journal: cookie dir ${opts.cookieDir} is not absolute`);
    const names = new Set<string>();
    for (const r of opts.roots) {
      if (names.has(r.name)) throw new Error(`journal: root ${r.name} given twice`);
      names.add(r.name);
      if (!path.isAbsolute(r.abs)) throw new Error(`journal: root ${r.name} at ${r.abs} is not absolute`);
    }
    // Made at the first sync(): an agent that only serves leaves no trace on its host. The
    // helper watches the filesystem of its nearest existing directory meanwhile.
    const cookieReal = realRootPath(opts.cookieDir);
    for (const r of opts.roots) {
      const w = realRootPath(r.abs);
      if (cookieReal === w || cookieReal.startsWith(w + '/') || w.startsWith(cookieReal + '/')) {
        throw new Error(`journal: cookie dir ${opts.cookieDir} and root ${r.name} (${r.abs}) overlap`);
      }
    }
    const j = new ChangeJournal(opts);
    await j.begin();
    return j;
  }

  /** The current epoch: new at every start of the helper. */
  get epoch(): string {
    return this.epochId;
  }

  private async begin(): Promise<void> {
    const epoch = randomBytes(6).toString('hex');
    this.epochId = epoch;
    this.seq = 0;
    this.ended = null;
    this.ready = false;
    this.losses = new Losses();
    const mounts = readMounts();
    this.roots = this.opts.roots.map((r) => new WatchedRoot(r.name, r.abs, watchRoot(r.name, r.abs, mounts), this.maxPerDir));
    for (const outer of this.roots) {
      for (const inner of this.roots) {
        const o = outer.watch.real;
        if (inner !== outer && inner.watch.real.startsWith(o + '/')) outer.nested.push({ inner, prefix: inner.watch.real.slice(o.length + 1) });
      }
    }
    const cookieReal = realRootPath(this.opts.cookieDir);
    const live = (): boolean => this.epochId === epoch;
    const source = await JournalSource.start({
      python: this.opts.python ?? 'python3',
      slots: [...this.roots.map((r) => r.watch.real), cookieReal],
      marks: this.roots.flatMap((r, slot) => r.watch.marks.map((p) => ({ slot, path: p }))),
      onStderr: (line) => this.log.warn({ epoch, helper: line }, 'journal helper says'),
      handlers: {
        onReady: () => {
          if (live()) this.ready = true;
        },
        onEvent: (pid, mask, slot, rel) => live() && this.event(pid, mask, slot, rel),
        onOverflow: (at) => live() && this.overflow(at),
        onSlotLoss: (slot, reason) => live() && this.slotLoss(slot, reason),
        onLoss: (reason) => live() && this.lose(null, reason, false),
        onEnd: (reason) => live() && this.end(reason),
      },
    });
    if (!live()) return;
    this.source = source;
    if (source.ended) this.log.warn({ epoch, reason: source.ended }, 'change journal not running; passes walk every root');
    else this.log.info({ epoch, helperPid: source.pid, roots: this.roots.map((r) => r.name) }, 'change journal started');
  }

  private event(pid: number, mask: number, slot: number, rel: string): void {
    const seq = ++this.seq;
    const r = this.roots[slot];
    if (r === undefined) {
      if (slot === this.roots.length && mask & FAN.CREATE && rel.startsWith(`${COOKIE_PREFIX}${this.epochId}-`)) this.cookie(rel, seq);
      return;
    }
    const foreign = pid !== this.ownPid;
    if (foreign || this.keepsOwn(r.name)) r.record(foreign, mask, rel, seq);
    for (const { inner, prefix } of r.nested) {
      if (!foreign && !this.keepsOwn(inner.name)) continue;
      if (rel === prefix) {
        // The inner root itself: a directory root that came or went is the helper's L line
        // for a root outside every other; here it is ours to say.
        if (mask & FAN_DIRENT && mask & FAN.ONDIR) this.lose(inner, `journal: ${inner.abs} itself changed (mask ${mask.toString(16)}) at ${clock()}`, false);
        inner.record(foreign, mask, '', seq);
      } else if (rel.startsWith(prefix + '/')) {
        inner.record(foreign, mask, rel.slice(prefix.length + 1), seq);
      }
    }
    this.bound();
  }

  /** Hold at most maxEntries paths and maxBytes: drop the largest root's, which is then walked in full. */
  private bound(): void {
    let total = 0;
    let bytes = 0;
    for (const r of this.roots) {
      total += r.changes.size;
      bytes += r.changes.bytes;
    }
    while (total > this.maxEntries || bytes > this.maxBytes) {
      const what = total > this.maxEntries ? `more than ${this.maxEntries} changed paths` : `more than ${Math.round(this.maxBytes / 2 ** 20)} MiB of changed paths`;
      let big = this.roots[0];
      for (const r of this.roots) if (r.changes.bytes > big.changes.bytes) big = r;
      total -= big.changes.size;
      bytes -= big.changes.bytes;
      big.changes.clear();
      const reason = `journal: ${what} held (the memory bound); ${big.name} is walked in full`;
      big.losses.at(this.seq, reason);
      this.log.warn({ epoch: this.epochId, root: big.name, reason }, 'change journal dropped a root to a full walk');
    }
  }

  /** Whether own events of `root` are recorded now (ownEvents). */
  private keepsOwn(root: RootName): boolean {
    if (this.opts.ownEvents === 'keep') return true;
    for (const h of this.holds.values()) if (h.epoch === this.epochId && h.seqs.has(root)) return true;
    return false;
  }

  private cookie(name: string, seq: number): void {
    const p = this.pending.get(name);
    // Before any later event is recorded: own events after this position count for the reader.
    if (p?.hold) for (const r of this.roots) this.hold(p.hold, r.name, { epoch: this.epochId, seq });
    const index = p ? p.index : Number(name.slice(name.lastIndexOf('-') + 1)) || 0;
    // Open losses close at the first cookie made after they were taken in: every drop the
    // kernel did not mark was before that cookie was queued.
    this.losses.cookie(index, seq);
    for (const r of this.roots) r.losses.cookie(index, seq);
    if (p) {
      this.pending.delete(name);
      p.resolve(seq);
    }
  }

  /** A loss for one root (`r`) or all (null); `open`: until the next cookie, else at the next seq. */
  private lose(r: WatchedRoot | null, reason: string, open: boolean): void {
    const losses = r ? r.losses : this.losses;
    if (open) losses.open(reason, this.cookies);
    else losses.at(++this.seq, reason);
    this.log.warn({ epoch: this.epochId, root: r?.name, reason }, 'change journal lost events; the next pass walks in full');
  }

  private overflow(at: Date): void {
    this.lose(null, `journal: the kernel's event queue overflowed at ${clock(at)}`, true);
    // A pending sync's cookie may have been dropped with the rest: answer it now. Its
    // position gets full until a later cookie closes the loss.
    for (const [name, p] of this.pending) {
      this.pending.delete(name);
      p.resolve(this.seq);
    }
  }

  private slotLoss(slot: number, reason: string): void {
    const r = this.roots[slot];
    if (r === undefined) return this.lose(null, `journal: ${reason}`, false);
    // Before the helper is ready, a loss is a mark that failed: the root is not watched at all.
    if (!this.ready) {
      r.unwatched = `journal: ${reason}`;
      this.log.warn({ epoch: this.epochId, root: r.name, reason }, 'change journal cannot watch this root; passes walk it in full');
    } else {
      this.lose(r, `journal: ${reason} at ${clock()}`, false);
    }
  }

  private end(reason: string): void {
    this.ended = reason;
    this.ready = true;
    for (const [name, p] of this.pending) {
      this.pending.delete(name);
      p.resolve(this.seq);
    }
    if (reason !== 'journal: closed') this.log.warn({ epoch: this.epochId, reason }, 'change journal stopped; the next sync starts a new epoch');
  }

  /**
   * Bring the journal up to now and return the position: a cookie file is made in the
   * cookie dir and its event awaited (the kernel queues events in the syscall, in order).
   * Checks every root's mounts and directory then. If the helper is gone, starts a new
   * epoch first. A timeout is a loss, not an error; only `signal` rejects. With `hold`,
   * that reader holds every root at the returned position from the moment the cookie came
   * through (hold()), so that none of its own events after it is left out.
   */
  async sync(signal?: AbortSignal, opts: { hold?: string } = {}): Promise<JournalPosition> {
    signal?.throwIfAborted();
    if (this.ended !== null && this.ended !== 'journal: closed') await this.restart();
    const epoch = this.epochId;
    if (this.ended !== null) return { epoch, seq: this.seq };
    const index = ++this.cookies;
    const name = `${COOKIE_PREFIX}${epoch}-${index}`;
    const file = path.join(this.opts.cookieDir, name);
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const timeoutMs = this.opts.syncTimeoutMs ?? 30_000;
    try {
      const seq = await new Promise<number>((resolve, reject) => {
        this.pending.set(name, { index, resolve, hold: opts.hold });
        timer = setTimeout(() => {
          this.pending.delete(name);
          this.lose(null, `journal: sync timed out after ${timeoutMs / 1000} s at ${clock()} (the helper did not report its cookie)`, true);
          resolve(this.seq);
        }, timeoutMs);
        onAbort = () => {
          this.pending.delete(name);
          reject(signal!.reason);
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        fsp
          .mkdir(this.opts.cookieDir, { recursive: true, mode: 0o700 })
          .then(() => fsp.writeFile(file, '', { flag: 'wx', mode: 0o600 }))
          .catch((err: Error) => {
            this.pending.delete(name);
            this.lose(null, `journal: cannot make a sync cookie in ${this.opts.cookieDir}: ${err.message}`, true);
            resolve(this.seq);
          });
      });
      if (this.epochId === epoch && this.ended === null) this.checkRoots(seq);
      return { epoch, seq };
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
      await fsp.unlink(file).catch(() => {});
    }
  }

  private checkRoots(seq: number): void {
    const mounts = readMounts();
    for (const r of this.roots) {
      const change = r.recheck(mounts, seq);
      if (change) this.log.warn({ epoch: this.epochId, root: r.name, reason: change.reason }, change.lost ? 'change journal no longer sees this root; passes walk it in full until the journal restarts' : 'root changed; the next pass walks it in full');
    }
  }

  /**
   * The changes of `root` after `since`, or `full` with the reason a full walk is needed.
   * `ignoreOwnUpTo`: own events (of ownPid) at or before this seq are left out; a receiving
   * pass's writes are accounted for by its manifest. Every other event counts.
   */
  changesSince(root: RootName, since: JournalPosition, opts: { ignoreOwnUpTo?: number } = {}): SinceResult {
    if (since.epoch !== this.epochId) {
      const past = this.pastEpochs.get(since.epoch);
      return { full: past ?? `journal: the agent restarted since that position (epoch ${since.epoch}); this journal began anew (epoch ${this.epochId})` };
    }
    if (this.ended !== null) return { full: this.ended };
    const r = this.roots.find((x) => x.name === root);
    if (r === undefined) return { full: `journal: ${root} is not a root this journal watches` };
    return r.since(since.seq, opts.ignoreOwnUpTo ?? 0, this.losses.after(since.seq));
  }

  /**
   * Drop what `root` recorded at or before `upTo` (a committed pass's position), and the
   * agent's own events up to `ownUpTo`, which no query after that pass counts. Positions
   * before `upTo` get full from then on.
   */
  forget(root: RootName, upTo: JournalPosition, ownUpTo?: number): void {
    if (upTo.epoch !== this.epochId) return;
    // Another reader's position (hold) is kept answerable: nothing after it is dropped,
    // own events included, which that reader counts.
    let held = Infinity;
    for (const h of this.holds.values()) {
      const at = h.epoch === this.epochId ? h.seqs.get(root) : undefined;
      if (at !== undefined && at < held) held = at;
    }
    const own = ownUpTo ?? upTo.seq;
    this.roots.find((x) => x.name === root)?.forget(Math.min(upTo.seq, held), Math.min(own, held));
  }

  /** Positions other readers still ask from, per reader (`hold`). */
  private readonly holds = new Map<string, { epoch: string; seqs: Map<RootName, number> }>();

  /**
   * Keep `root`'s changes after `at` for the reader `who` (a quick verify's digest cache,
   * say), whatever a pass forgets: a later changesSince(root, at) is answered, not `full`.
   * A new hold of the same reader and root replaces the last one; null lets it go.
   */
  hold(who: string, root: RootName, at: JournalPosition | null): void {
    let h = this.holds.get(who);
    if (!h || h.epoch !== this.epochId) this.holds.set(who, (h = { epoch: this.epochId, seqs: new Map() }));
    if (at === null || at.epoch !== this.epochId) h.seqs.delete(root);
    else h.seqs.set(root, at.seq);
  }

  /** Whether this journal watches `root` at `abs` (a request may name another mailboxes dir). */
  watches(root: RootName, abs: string): boolean {
    return this.roots.some((r) => r.name === root && r.abs === abs);
  }

  /** Epoch, seq, losses, paths held, the helper's pid. */
  status(): JournalStatus {
    const losses = [...this.losses.all, ...this.roots.flatMap((r) => r.losses.all)].sort((a, b) => a.seq - b.seq).slice(-8).map((l) => l.reason);
    const roots = this.roots.map((r) => ({ name: r.name, entries: r.changes.size, ...(r.unwatched ? { unwatched: r.unwatched } : {}) }));
    return {
      epoch: this.epochId,
      seq: this.seq,
      ...(this.source?.pid !== undefined && this.ended === null ? { pid: this.source.pid } : {}),
      ...(this.ended !== null ? { ended: this.ended } : {}),
      losses,
      entries: roots.reduce((n, r) => n + r.entries, 0),
      roots,
    };
  }

  /** Stop the helper and start a new one: a new epoch, in which every root is watched as it is now. */
  async restart(): Promise<void> {
    const old = this.epochId;
    const reason = this.ended ?? `journal: the journal restarted at ${clock()}`;
    const source = this.source;
    this.source = null;
    this.pastEpochs.set(old, reason);
    if (this.pastEpochs.size > MAX_PAST_EPOCHS) this.pastEpochs.delete(this.pastEpochs.keys().next().value as string);
    this.ended = reason;
    await source?.close();
    await this.begin();
  }

  /** Stop the helper. */
  async close(): Promise<void> {
    const source = this.source;
    this.source = null;
    if (this.ended === null) this.end('journal: closed');
    await source?.close();
  }
}
