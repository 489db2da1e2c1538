/**
 * The merge of one root: it walks three sorted streams together — the sender's listing,
 * a walk of this host's tree, and the manifest of what earlier passes put here — and turns
 * every entry into an action: unchanged (only its record kept), attributes only, a rename
 * on the spot (a Maildir message whose flags or folder changed), fetch the content, or at
 * the end of the root a delete.
 *
 * Every path from the wire is checked here: relative, inside the root, in walk order, under
 * a directory the listing announced, so nothing is written through a symlink or outside
 * the roots. Memory stays bounded: one directory stack, the entries gone on the source,
 * and Maildir messages whose old name may come later in walk order.
 */
import * as fsSync from 'node:fs';
import * as path from 'node:path';
import { CmError, comparePaths, type ListBatch__Output, type ListEntry__Output } from '../../proto';
import type { Meta, Where } from './action-queue';
import type { Executor } from './executor';
import { TMP_PREFIX, typeConflict } from '../fs/landing';
import type { ManifestReader, ManifestRecord, StoredRecord } from './manifest';
import { manifestLine } from './manifest-line';
import { REPORT_LIMIT, type PassContext } from './pass';
import { checkListedPath } from './listed-path';
import { ensureParents, type ResolvedRoot } from '../fs/paths';
import { GoneIndex, maildirFolder } from './renames';
import { gidOf, inoOf, isDecimalOf, listedMtimeUs, mtimeUsOf, permOf, sizeOf, uidOf } from '../fs/stat-numbers';
import { us, type LocalWalk, type WalkEntry } from '../fs/walk';
import type { WalkScope } from '../fs/walk-scope';
import { wireError } from '../wire/wire-format';

/** Messages held back to the end of a root for a rename partner, at most. */
const MAX_DEFERRED = 50_000;

/** A directory being merged: its attributes are set once its contents are done. */
interface Frame {
  rel: string;
  abs: string;
  meta: Meta;
  /** The listed mtime in microseconds (stat-numbers.ts). */
  mtimeUs: number | bigint;
  t?: WalkEntry;
  dirty: boolean;
}

/** Owner ids on this host for a pair of listed owner names. */
interface Owner {
  user: string;
  group: string;
  uid: number;
  gid: number;
}

/**
 * A hard-link leader's path as a 53-bit hash (cyrb53): a few bytes each, and no hash object
 * per file as SHA-1 cost. Not a defence against a hostile sender (a truncated SHA-1 was none
 * either): what a link may point at is checked on the leader's own path.
 */
function pathKey(rel: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < rel.length; i++) {
    const c = rel.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** Merges one root of a pass; see the module comment. */
export class RootMerge {
  private readonly dry: boolean;
  private t: WalkEntry | undefined;
  private readonly stack: Frame[] = [];
  private readonly gone = new GoneIndex();
  private readonly deferred: { s: ListEntry__Output; abs: string; leaderAbs?: string }[] = [];
  private readonly deferredLeaders = new Set<number>();
  private readonly touched = new Map<string, Frame>();
  /** Hard-link leaders listed so far, with this host's inode when the leader is unchanged here. */
  private readonly leaders = new Map<number, number | bigint | null>();
  /** Owner ids of the last owner names seen: most entries share them. */
  private lastOwner: Owner | null = null;
  /** `--root` with a slash: a checked wire path appended to it is its path here. */
  private readonly base: string;
  /** Maildir folders (parents of cur/ and new/) that exist here. */
  private readonly maildirs = new Set<string>();
  private prev = '';
  private started = false;
  private rootErrors = false;

  constructor(
    private readonly ctx: PassContext,
    private readonly exec: Executor,
    private readonly root: ResolvedRoot,
    /** The manifest of what earlier passes put here. */
    private readonly ours: ManifestReader,
    /** This host's walk of the root. */
    private readonly local: LocalWalk,
    /**
     * Set when the change journals named what changed (issue 25): the listing and the local
     * walk hold only this scope, and what it does not cover keeps its records.
     */
    private readonly scope?: WalkScope,
  ) {
    this.dry = !!ctx.o.dryRun;
    this.base = path.join(ctx.o.cfg.root, '/');
    if (scope) {
      ours.onSkip = (rec) => {
        if (scope.covers(rec.p)) this.droppedCovered++;
      };
    }
  }

  /** Scoped: records kept as they were, by path (they are carried over, not written again). */
  private readonly keptSame = new Set<string>();
  /** Scoped: records of covered paths that nothing here looked at again (gone on both hosts). */
  private droppedCovered = 0;

  /** Merge the root's batches of the listing, then settle renames and deletes. */
  async run(batches: AsyncIterable<ListBatch__Output>): Promise<void> {
    this.t = this.local.next();
    for await (const batch of batches) {
      this.ctx.activity();
      for (const s of batch.entries) {
        const p = this.entry(s);
        if (p) await p;
      }
      if (batch.root_end) this.rootEnd(batch.root_end);
    }
    // The root is absent on the source: leave this host's copy alone.
    if (!this.started) return;
    await this.finish();
  }

  private nextT(): void {
    this.t = this.local.next();
  }

  private rootEnd(e: NonNullable<ListBatch__Output['root_end']>): void {
    const { summary } = this.ctx;
    summary.sockets_skipped += Number(e.sockets_skipped);
    if (Number(e.vanished) > 0) {
      this.rootErrors = true;
      summary.vanished += Number(e.vanished);
      for (const v of e.vanished_paths) if (summary.vanished_paths.length < REPORT_LIMIT) summary.vanished_paths.push(v);
    }
  }

  /** Check a listed path: sound, inside this root, in walk order. */
  private checkPath(s: ListEntry__Output): string {
    const rel = checkListedPath(s.path, 'listed path');
    const { root } = this;
    if (!this.started) {
      if (rel !== root.rel) throw wireError(`root ${root.name} began with /${rel}, not /${root.rel}`);
      this.started = true;
    } else {
      if (!isUnder(rel, root.rel)) {
        throw new CmError('agent.path_outside_root', `refused /${rel}: outside root ${root.name} (/${root.rel})`, {
          hint: 'an agent writes only inside its allowlisted roots; the sender is damaged or hostile',
        });
      }
      if (comparePaths(this.prev, rel) >= 0) throw wireError(`the listing is out of order at /${rel}`);
    }
    this.prev = rel;
    return rel;
  }

  /**
   * One listed entry. An entry that needs no queue operation costs no promise: each step
   * returns one only when it has to wait, and the rest of the entry continues after it.
   */
  private entry(s: ListEntry__Output): Promise<void> | undefined {
    const first = !this.started;
    const rel = this.checkPath(s);
    if (first && !this.dry) return ensureParents(this.ctx.o.cfg, rel).then(() => this.goneBefore(s, rel));
    return this.goneBefore(s, rel);
  }

  /** Entries of this host before this one are gone on the source. */
  private goneBefore(s: ListEntry__Output, rel: string): Promise<void> | undefined {
    while (this.t && comparePaths(this.t.rel, rel) < 0) {
      const t = this.t;
      this.nextT();
      const p = this.goneEntry(t);
      if (p) return p.then(() => this.goneBefore(s, rel));
    }
    const te = this.t && this.t.rel === rel ? this.t : undefined;
    if (te) this.nextT();
    return this.closeDirs(s, rel, te);
  }

  /** Close the directories this entry is not in. */
  private closeDirs(s: ListEntry__Output, rel: string, te: WalkEntry | undefined): Promise<void> | undefined {
    const { stack } = this;
    while (stack.length && !isUnder(rel, stack[stack.length - 1].rel)) {
      const p = this.finishDir(stack.pop()!);
      if (p) return p.then(() => this.closeDirs(s, rel, te));
    }
    return this.decide(s, rel, te);
  }

  /** What this entry needs: the handlers return the promise of their one queue operation, if any. */
  private decide(s: ListEntry__Output, rel: string, te: WalkEntry | undefined): Promise<void> | undefined {
    const { stack } = this;
    if (rel !== this.root.rel) {
      const top = stack[stack.length - 1];
      if (!top || !isUnder(rel, top.rel) || rel.indexOf('/', top.rel.length + 1) !== -1) throw wireError(`/${rel} is listed without its directory before it; refused`);
    }
    // Nanoseconds as decimal digits (1 to 21; as pax time, whole seconds fit in 12 digits).
    const mtimeUs = listedMtimeUs(s.mtime_ns);
    if (mtimeUs === undefined) throw wireError(`/${rel}: bad mtime ${JSON.stringify(s.mtime_ns)}`);
    const abs = this.base + rel;
    const l: Listed = { owner: this.ownerOf(s, rel), mode: s.mode & 0o7777, mtimeUs };
    // The record of an earlier pass, if this host's entry is still the one it wrote.
    const recorded = te ? this.ours.at(rel, inoOf(te.st)) : undefined;
    const ours = recorded && isDecimalOf(recorded.i, inoOf(te!.st)) ? recorded : undefined;
    switch (s.type) {
      case 'dir':
        return this.dir(s, rel, abs, te, l, ours);
      case 'file':
        return s.leader ? this.hardLink(s, rel, abs, te, ours) : this.file(s, rel, abs, te, l, ours, recorded !== undefined);
      case 'symlink':
        return this.symlink(s, rel, abs, te, l, ours);
      case 'fifo':
        return this.fifo(s, rel, abs, te, l, ours);
      default:
        if (s.type === 'character-device' || s.type === 'block-device' || s.type === 'device') {
          throw new CmError('wire.device_node', `refused /${rel}: device nodes are never written`, {
            hint: 'the sender must not send device nodes; nothing was written for this entry',
          });
        }
        throw wireError(`/${rel}: unsupported entry type ${JSON.stringify(s.type)}`);
    }
  }

  /** Owner ids by name (or the root's rule) for a listed entry. */
  private ownerOf(s: ListEntry__Output, rel: string): Owner {
    let o = this.lastOwner;
    if (!o || o.user !== s.user || o.group !== s.group) {
      const { uid, gid } = this.ctx.owner(this.root, s.user, s.group, rel);
      o = this.lastOwner = { user: s.user, group: s.group, uid, gid };
    }
    return o;
  }

  /** What a listed entry gets here: owner ids by name (or the root's rule), mode, mtime. */
  private metaOf(s: ListEntry__Output, rel: string): Meta {
    const o = this.ownerOf(s, rel);
    return { uid: o.uid, gid: o.gid, mode: s.mode & 0o7777, mtimeNs: BigInt(s.mtime_ns) };
  }

  /**
   * The record of an entry this pass leaves as it is. When it is the committed manifest's
   * next record as it stands and nothing waits before it, the writer only counts it
   * (ManifestWriter.follow): a root where nothing changed writes no journal.
   */
  private keep(ours: StoredRecord, line: string): Promise<void> | undefined {
    const { writer, queue } = this.ctx;
    if (this.scope && line === ours.line) {
      this.keptSame.add(ours.p);
      return undefined;
    }
    if (line === ours.line && writer && queue.empty && writer.keepSame(this.ours.ordinalOf(ours))) return undefined;
    return this.exec.keep(line);
  }

  private get top(): Frame | undefined {
    return this.stack[this.stack.length - 1];
  }

  private item(op: 'new' | 'changed' | 'renamed' | 'deleted' | 'kept', p: string, what?: string, from?: string): void {
    this.ctx.o.onItem?.({ op, path: p, what, from });
  }

  private dir(s: ListEntry__Output, rel: string, abs: string, te: WalkEntry | undefined, l: Listed, ours: StoredRecord | undefined): Promise<void> | undefined {
    let replace = false;
    if (te && te.type !== 'dir') {
      if (te.type !== 'symlink') throw typeConflict(rel, 'a directory');
      replace = true; // a symlink is replaced, never followed
    }
    const top = this.top;
    const name = path.posix.basename(rel);
    if ((name === 'cur' || name === 'new') && te && te.type === 'dir') this.maildirs.add(path.posix.dirname(rel));
    const meta = this.metaOf(s, rel);
    this.stack.push({ rel, abs, meta, mtimeUs: l.mtimeUs, t: replace ? undefined : te, dirty: false });
    if (!te || replace) {
      this.item('new', '/' + rel + '/');
      this.ctx.summary.dirs++;
      if (top) top.dirty = true;
      if (!this.dry) return this.ctx.queue.push({ k: 'mkdir', rel, abs, replace, meta, si: s.ino });
    } else if (!this.dry && ours) {
      // Recorded before its contents: the manifest stays in walk order.
      return this.keep(ours, keptLine(ours, rel, te, s));
    }
    return undefined;
  }

  /** A file listed as a hard link to a leader listed before it. */
  private hardLink(s: ListEntry__Output, rel: string, abs: string, te: WalkEntry | undefined, ours: StoredRecord | undefined): Promise<void> | undefined {
    const leaderRel = checkListedPath(s.leader, 'hard-link leader');
    const key = pathKey(leaderRel);
    const leaderIno = this.leaders.get(key);
    if (leaderIno === undefined || comparePaths(leaderRel, rel) >= 0 || !leaderRel.startsWith(this.root.rel + '/')) {
      throw new CmError('wire.bad_link', `refused hard link /${rel} -> /${leaderRel}: not a file listed before it`, {
        hint: 'hard links may only point at files listed earlier in the same pass',
      });
    }
    if (te && te.type === 'dir') throw typeConflict(rel, 'a file');
    if (!this.dry && leaderIno !== null && te && te.type === 'file' && inoOf(te.st) === leaderIno) {
      // Already a link to its leader, which this pass leaves as it is: nothing to do but keep
      // its record (what the executor's link action would record: the same inode's).
      this.ctx.summary.unchanged++;
      return ours ? this.keep(ours, keptLine(ours, rel, te, s)) : this.exec.keep(manifestLine(record(rel, te, s)));
    }
    const top = this.top;
    if (top) top.dirty = true;
    const leaderAbs = this.base + leaderRel;
    if (this.deferredLeaders.has(key)) {
      // Its leader is settled at the end of the root: so is this link.
      this.deferred.push({ s, abs, leaderAbs });
      if (top) this.touched.set(top.rel, top);
      return undefined;
    }
    if (!this.dry) return this.ctx.queue.push({ k: 'link', rel, abs, leaderAbs, s, where: 'main' });
    if (!te) this.item('new', '/' + rel, `hard link to /${leaderRel}`);
    return undefined;
  }

  private file(s: ListEntry__Output, rel: string, abs: string, te: WalkEntry | undefined, l: Listed, ours: StoredRecord | undefined, recorded = false): Promise<void> | undefined {
    const key = Number(s.nlink) > 1 ? pathKey(rel) : -1;
    if (key >= 0) this.leaders.set(key, null);
    if (te && te.type === 'dir') throw typeConflict(rel, 'a file');
    const top = this.top;
    if (te && te.type === 'file') {
      // The journals saw data written here: same size and mtime prove nothing (issue 25).
      const content = this.scope !== undefined && this.scope.contentChanged(rel);
      let what = differs(te, s, l);
      if (content) what = [...what, 'content'];
      if (!what.length) {
        if (key >= 0) this.leaders.set(key, inoOf(te.st));
        this.ctx.summary.unchanged++;
        this.ctx.tick(1, Number(s.size));
        if (this.dry) return undefined;
        if (ours) return this.keep(ours, keptLine(ours, rel, te, s));
        // A pass wrote this path, and the copy here is what the source lists, but its record
        // is of another inode: a pass killed after it put this copy in place lost the record
        // of it. The file is cmmigrate's; without a record it would be kept forever once the
        // source removes it.
        if (recorded) return this.exec.keep(manifestLine(record(rel, te, s)));
        return undefined;
      }
      this.item('changed', '/' + rel, what.join(','));
      if (!content && !what.includes('size') && !what.includes('mtime')) {
        this.ctx.tick(1, Number(s.size));
        return this.dry ? undefined : this.ctx.queue.push({ k: 'attrs', rel, abs, meta: this.metaOf(s, rel), s, symlink: false });
      }
      if (top) top.dirty = true;
      if (!this.dry) return this.exec.fetchLater({ k: 'fetch', rel, abs, s, root: this.root, where: 'main' });
      this.ctx.tick(1, Number(s.size));
      return undefined;
    }
    // New here (or replacing a symlink or FIFO): moved on the source, or new.
    if (top) top.dirty = true;
    const folder = maildirFolder(rel);
    if (!te && folder && this.maildirs.has(folder) && this.deferred.length < MAX_DEFERRED && !this.gone.findRename(s)) {
      // Its old name may come later in walk order (new/ sorts after cur/): decide at the end.
      this.deferred.push({ s, abs });
      if (Number(s.nlink) > 1) this.deferredLeaders.add(pathKey(rel));
      if (top) this.touched.set(top.rel, top);
      return undefined;
    }
    return this.renameOrFetch(s, abs, this.metaOf(s, rel), 'main');
  }

  private symlink(s: ListEntry__Output, rel: string, abs: string, te: WalkEntry | undefined, l: Listed, ours: StoredRecord | undefined): Promise<void> | undefined {
    if (te && te.type === 'dir') throw typeConflict(rel, 'a symlink');
    if (!s.link || s.link.includes('\0') || Buffer.byteLength(s.link) > 4096) throw wireError(`/${rel}: bad symlink target`);
    if (te && te.type === 'symlink' && readlinkOrNull(te.abs) === s.link) return this.keepOrFixAttrs(s, rel, abs, te, l, ours, true);
    this.item(te ? 'changed' : 'new', '/' + rel, te ? 'link' : undefined);
    const top = this.top;
    if (top) top.dirty = true;
    return this.dry ? undefined : this.ctx.queue.push({ k: 'symlink', rel, abs, target: s.link, meta: this.metaOf(s, rel), s });
  }

  private fifo(s: ListEntry__Output, rel: string, abs: string, te: WalkEntry | undefined, l: Listed, ours: StoredRecord | undefined): Promise<void> | undefined {
    if (te && te.type === 'dir') throw typeConflict(rel, 'a FIFO');
    if (te && te.type === 'fifo') return this.keepOrFixAttrs(s, rel, abs, te, l, ours, false);
    this.item(te ? 'changed' : 'new', '/' + rel, te ? 'type' : undefined);
    const top = this.top;
    if (top) top.dirty = true;
    return this.dry ? undefined : this.ctx.queue.push({ k: 'fifo', rel, abs, meta: this.metaOf(s, rel), s });
  }

  /** The same entry of the same type here: unchanged, or only its attributes to set. */
  private keepOrFixAttrs(s: ListEntry__Output, rel: string, abs: string, here: WalkEntry, l: Listed, ours: StoredRecord | undefined, symlink: boolean): Promise<void> | undefined {
    const what = differs(here, s, l);
    if (!what.length) {
      this.ctx.summary.unchanged++;
      return !this.dry && ours ? this.keep(ours, keptLine(ours, rel, here, s)) : undefined;
    }
    this.item('changed', '/' + rel, what.join(','));
    return this.dry ? undefined : this.ctx.queue.push({ k: 'attrs', rel, abs, meta: this.metaOf(s, rel), s, symlink });
  }

  /** A directory's contents are done: set its attributes if they or it changed. */
  private finishDir(f: Frame): Promise<void> | undefined {
    const st = f.t?.st;
    const changed = !st || f.dirty || uidOf(st) !== f.meta.uid || gidOf(st) !== f.meta.gid || permOf(st) !== f.meta.mode || mtimeUsOf(st) !== f.mtimeUs;
    if (f.t && !changed) this.ctx.summary.unchanged++;
    if (!this.dry && changed) return this.ctx.queue.push({ k: 'finishDir', rel: f.rel, abs: f.abs, meta: f.meta });
    return undefined;
  }

  /** An entry of this host that the source does not have (any more). */
  private goneEntry(te: WalkEntry): Promise<void> | undefined {
    const parentRel = path.posix.dirname(te.rel);
    const { stack } = this;
    let parentFrame: Frame | undefined;
    for (let i = stack.length - 1; i >= 0 && !parentFrame; i--) if (stack[i].rel === parentRel) parentFrame = stack[i];
    if (path.posix.basename(te.rel).startsWith(TMP_PREFIX)) {
      // Left by an interrupted pass.
      if (parentFrame) parentFrame.dirty = true;
      return this.dry ? undefined : this.ctx.queue.push({ k: 'rmtmp', abs: te.abs });
    }
    const m = this.ours.at(te.rel, inoOf(te.st));
    const isOurs = !!m && m.t === te.type && m.i === String(te.st.ino) && (te.type !== 'file' || (m.s === Number(te.st.size) && m.m === String(us(te.st.mtimeNs))));
    this.gone.add({ rel: te.rel, abs: te.abs, type: te.type, size: Number(te.st.size), mtimeUs: us(te.st.mtimeNs), ours: isOurs, si: m?.si ?? '', consumed: false });
    if (parentFrame) this.touched.set(parentFrame.rel, parentFrame);
    return undefined;
  }

  private renameOrFetch(s: ListEntry__Output, abs: string, meta: Meta, where: Where): Promise<void> | undefined {
    // Data written since the last pass: the old copy here is no longer this file's content.
    const g = this.scope?.contentChanged(s.path) ? undefined : this.gone.findRename(s);
    if (g) {
      g.consumed = true;
      this.ctx.summary.renamed++;
      this.item('renamed', '/' + s.path, undefined, '/' + g.rel);
      const parent = this.stack.find((f) => f.rel === path.posix.dirname(g.rel));
      if (parent) this.touched.set(parent.rel, parent);
      if (!this.dry) return this.ctx.queue.push({ k: 'rename', from: g.rel, fromAbs: g.abs, rel: s.path, abs, meta, s, where });
      this.ctx.tick(1, Number(s.size));
      return undefined;
    }
    this.item('new', '/' + s.path);
    if (!this.dry) return this.exec.fetchLater({ k: 'fetch', rel: s.path, abs, s, root: this.root, where });
    this.ctx.tick(1, Number(s.size));
    return undefined;
  }

  /** The end of the root: what is left here is gone on the source; renames, deletes, sync, commit. */
  private async finish(): Promise<void> {
    while (this.t) {
      await this.goneEntry(this.t);
      this.nextT();
    }
    while (this.stack.length) await this.finishDir(this.stack.pop()!);
    // Messages whose old names came later in walk order.
    for (const d of this.deferred) {
      if (d.leaderAbs) {
        if (!this.dry) await this.ctx.queue.push({ k: 'link', rel: d.s.path, abs: d.abs, leaderAbs: d.leaderAbs, s: d.s, where: 'extra' });
        continue;
      }
      await this.renameOrFetch(d.s, d.abs, this.metaOf(d.s, d.s.path), 'extra');
    }
    // Wait for the executor: live-pass skips of fetched files count as read errors too.
    if (!this.dry) await this.exec.barrier();
    await this.deletes();
    // Directories whose contents changed after they were finished get their times again.
    if (!this.dry) {
      for (const f of [...this.touched.values()].sort((a, b) => comparePaths(b.rel, a.rel))) {
        await this.ctx.queue.push({ k: 'finishDir', rel: f.rel, abs: f.abs, meta: f.meta });
      }
      // Durable before the manifest commits: what this pass wrote, and what an interrupted pass
      // wrote and recorded in its journal. A root where neither happened has nothing unsynced
      // to answer for, and one `sync` process costs more than walking thousands of entries.
      await this.exec.barrier();
      if (this.ctx.wrote || !this.ours.clean) {
        await this.ctx.queue.push({ k: 'sync', abs: this.root.abs });
        await this.exec.barrier();
      }
      if (this.scope) await this.commitScoped(this.scope);
      else await this.ctx.writer!.commit();
      this.ctx.writer = null;
    }
    this.ctx.o.onProgress?.({ ...this.ctx.progress });
  }

  /**
   * Commit a scoped pass: the records of covered paths that no entry here asked for are
   * counted (up to the end of the scope), then the manifest keeps every record the scope
   * does not cover and those this pass kept as they were, with this pass's own records.
   */
  private async commitScoped(scope: WalkScope): Promise<void> {
    let unchanged = !this.ctx.wrote && this.gone.all.length === 0 && !this.ctx.writer!.wroteRecords;
    if (unchanged) {
      // Nothing else changed: the manifest stays only if no record the scope covers was left out.
      const last = scope.last;
      const below = scope.lastCoversBelow;
      this.ours.skipWhile((p) => comparePaths(p, last) <= 0 || (below && isUnder(p, last)));
      unchanged = this.droppedCovered === 0;
    }
    this.ours.onSkip = null;
    const keptSame = this.keptSame;
    await this.ctx.writer!.commitScoped(this.ours.committedFiles, (p) => !scope.covers(p) || keptSame.has(p), unchanged);
  }

  /** Delete, deepest first, what earlier passes put here and the source no longer has. */
  private async deletes(): Promise<void> {
    const { summary } = this.ctx;
    const deletesAllowed = !this.rootErrors && !this.ctx.readErrors;
    const limit = this.ctx.o.maxDelete ?? -1;
    const gone = this.gone.all;
    for (let i = gone.length - 1; i >= 0; i--) {
      const g = gone[i];
      if (g.consumed) continue;
      if (!g.ours) {
        summary.kept_extraneous++;
        if (summary.kept_paths.length < REPORT_LIMIT) summary.kept_paths.push('/' + g.rel);
        this.item('kept', '/' + g.rel);
        continue;
      }
      if (!deletesAllowed) {
        summary.deletes_skipped = true;
        continue;
      }
      if (limit >= 0 && summary.deleted >= limit) {
        throw new CmError('transfer.max_delete', `this pass would delete more than --max-delete ${limit} entries (at /${g.rel}); stopped before deleting more`, {
          hint: 'look at what would go with --dry-run; then run the same command with a larger --max-delete',
        });
      }
      summary.deleted++;
      this.item('deleted', '/' + g.rel);
      if (!this.dry) await this.ctx.queue.push({ k: 'delete', rel: g.rel, abs: g.abs, dir: g.type === 'dir' });
    }
  }
}

/** `rel` is below `dir` (without building `dir + '/'` for every entry). */
function isUnder(rel: string, dir: string): boolean {
  return rel.length > dir.length && rel.charCodeAt(dir.length) === 47 /* / */ && rel.startsWith(dir);
}

/** A symlink's target, or null if it is gone or no symlink now. */
function readlinkOrNull(abs: string): string | null {
  try {
    return fsSync.readlinkSync(abs);
  } catch {
    return null;
  }
}

/** The journal record of an entry this host already has as listed. */
function record(rel: string, te: WalkEntry, s: ListEntry__Output): ManifestRecord {
  return { p: rel, t: te.type, s: te.type === 'file' ? Number(sizeOf(te.st)) : 0, m: String(mtimeUsOf(te.st)), i: String(inoOf(te.st)), si: s.ino };
}

/**
 * The journal line of an entry an earlier pass wrote (`ours`: same path and inode) and this
 * one leaves as it is: the earlier line itself when the record would say the same, so that
 * an unchanged entry is not encoded again.
 */
function keptLine(ours: StoredRecord, rel: string, te: WalkEntry, s: ListEntry__Output): string {
  const size = te.type === 'file' ? Number(sizeOf(te.st)) : 0;
  const m = mtimeUsOf(te.st);
  if (ours.t === te.type && ours.s === size && ours.si === s.ino && isDecimalOf(ours.m, m)) return ours.line;
  return manifestLine({ p: rel, t: te.type, s: size, m: String(m), i: ours.i, si: s.ino });
}

/** Nothing differs (shared: most entries are unchanged). */
const SAME: readonly string[] = Object.freeze([]);

/** What a listed entry asks of this host, as the merge compares it. */
interface Listed {
  owner: Owner;
  /** Permission bits. */
  mode: number;
  /** The listed mtime in microseconds (stat-numbers.ts). */
  mtimeUs: number | bigint;
}

/** What differs between this host's entry and the listed one. */
function differs(te: WalkEntry, s: ListEntry__Output, l: Listed): readonly string[] {
  const { st } = te;
  const mode = s.type !== 'symlink' && permOf(st) !== l.mode;
  const owner = uidOf(st) !== l.owner.uid || gidOf(st) !== l.owner.gid;
  const type = te.type !== s.type;
  const size = s.type === 'file' && Number(sizeOf(st)) !== Number(s.size);
  const mtime = mtimeUsOf(st) !== l.mtimeUs;
  if (!(type || size || mtime || mode || owner)) return SAME;
  const out: string[] = [];
  if (type) out.push('type');
  if (size) out.push('size');
  if (mtime) out.push('mtime');
  if (mode) out.push('mode');
  if (owner) out.push('owner');
  return out;
}
