/**
 * The executor of a receiving pass: it takes the merge's actions from the queue in order and
 * applies them to this host's tree, each change made under a temp name and renamed into
 * place, and appends the record of what it wrote to the root's journal. Synchronous fs
 * calls: on the page cache they cost microseconds, a trip through the thread pool tens.
 */
import { execFile } from 'node:child_process';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { ListEntry__Output } from '../../proto';
import type { Action, Meta, Where } from './action-queue';
import { lstatOrNull, renameIntoPlace, tmpName, typeConflict } from '../fs/landing';
import { REPORT_LIMIT, type PassContext } from './pass';
import { us, utimesSeconds } from '../fs/walk';

const execFileP = promisify(execFile);

type Act<K extends Action['k']> = Extract<Action, { k: K }>;

/** Applies the queued actions of one pass; see the module comment. */
export class Executor {
  private barrierWaiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];

  constructor(private readonly ctx: PassContext) {}

  /** Apply actions until the queue closes (or fails). */
  async run(): Promise<void> {
    const { queue } = this.ctx;
    for (;;) {
      // About to wait: what was applied must be on record, or a kill now orphans it.
      if (queue.empty) this.ctx.writer?.flush();
      const a = await queue.shift();
      if (!a) return;
      await this.apply(a);
      queue.busy = false;
      this.ctx.activity();
    }
  }

  /**
   * The record of an entry this pass leaves as it is, as its manifest line. When nothing
   * waits in the queue before it, it goes straight into the journal: the journal stays in
   * walk order, and an unchanged entry costs no trip through the executor.
   */
  keep(line: string): Promise<void> | undefined {
    const { writer, queue } = this.ctx;
    if (writer && queue.empty) {
      writer.appendKept(line);
      return undefined;
    }
    return queue.push({ k: 'keep', line });
  }

  /** Ask for the file now, so that its data streams in while earlier actions run. */
  async fetchLater(a: Act<'fetch'>): Promise<void> {
    this.ctx.fetch!.want({ path: a.rel, size: Number(a.s.size), mtimeNs: BigInt(a.s.mtime_ns) });
    await this.ctx.queue.push(a);
  }

  /** Wait until the executor has applied everything queued so far. */
  async barrier(): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.barrierWaiters.push({ resolve, reject }));
    await this.ctx.queue.push({ k: 'sync', abs: '' });
    await done;
  }

  /** The executor failed: whoever waits at a barrier gets `err`. */
  failBarriers(err: unknown): void {
    for (const w of this.barrierWaiters.splice(0)) w.reject(err);
  }

  private async apply(a: Action): Promise<void> {
    if (a.k !== 'keep' && a.k !== 'sync' && !this.ctx.wrote) {
      this.ctx.writer?.open();
      this.ctx.wrote = true;
    }
    switch (a.k) {
      case 'mkdir':
        return this.mkdir(a);
      case 'finishDir':
        return setAttrs(a.abs, a.meta);
      case 'fetch':
        return this.fetch(a);
      case 'link':
        return this.link(a);
      case 'symlink':
        return this.symlink(a);
      case 'fifo':
        return this.fifo(a);
      case 'attrs':
        return this.attrs(a);
      case 'keep':
        this.ctx.writer?.appendKept(a.line);
        return;
      case 'rename':
        return this.rename(a);
      case 'rmtmp':
        await fs.rm(a.abs, { force: true });
        return;
      case 'delete':
        return this.delete(a);
      case 'sync':
        if (a.abs) await execFileP('sync', ['-f', a.abs]); // one syncfs per root, not an fsync per file
        for (const w of this.barrierWaiters.splice(0)) w.resolve();
        return;
    }
  }

  private mkdir(a: Act<'mkdir'>): void {
    if (a.replace) fsSync.unlinkSync(a.abs);
    try {
      fsSync.mkdirSync(a.abs, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      this.appeared(a);
    }
    const st = fsSync.lstatSync(a.abs, { bigint: true });
    this.ctx.writer?.append({ p: a.rel, t: 'dir', s: 0, m: String(us(a.meta.mtimeNs)), i: String(st.ino), si: a.si });
  }

  /**
   * The directory appeared since the listing: upstream's step 2 runs beside step 1 and its
   * configure stage creates `<mailboxes_dir>` (chatmail/relay cmdeploy/src/cmdeploy/deployers.py
   * ChatmailDeployer.configure). A real directory is taken as there (finishDir sets its owner,
   * mode and times); a symlink is replaced, never followed, as the merge does; anything else is
   * in the way.
   */
  private appeared(a: Act<'mkdir'>): void {
    const st = fsSync.lstatSync(a.abs);
    if (st.isDirectory()) return;
    if (!st.isSymbolicLink()) throw typeConflict(a.rel, 'a directory');
    fsSync.unlinkSync(a.abs);
    fsSync.mkdirSync(a.abs, { mode: 0o700 });
  }

  private async fetch(a: Act<'fetch'>): Promise<void> {
    const { summary, writer } = this.ctx;
    // A fetch may wait on the sender for long (a big file, a slow link): what earlier actions
    // put in place must be on record first, or a kill while waiting orphans it, and the next
    // pass takes it for a file cmmigrate did not write (as run() does before the queue waits).
    writer?.flush();
    // The record is written the moment the file is in place (FetchReader.settle), before
    // anything can interrupt the pass between the two.
    const record = (r: { size: number; mtimeNs: bigint; ino: string }): void => writer?.append({ p: a.rel, t: 'file', s: r.size, m: String(us(r.mtimeNs)), i: r.ino, si: a.s.ino }, a.where);
    const r = await this.ctx.fetch!.receive(a.rel, a.abs, (uname, gname) => this.ctx.owner(a.root, uname, gname, a.rel), record);
    if (r === null) {
      this.ctx.readErrors = true;
      summary.vanished++;
      if (summary.vanished_paths.length < REPORT_LIMIT) summary.vanished_paths.push('/' + a.rel);
      return;
    }
    // Its hard links will change its ctime: keep its record to make again after them.
    if (Number(a.s.nlink) > 1) this.ctx.digests?.expectLinks(a.rel, Number(a.s.nlink) - 1);
    summary.files++;
    summary.bytes += r.size;
    this.ctx.progress.sent_bytes += r.size;
    this.ctx.tick(1, r.size);
  }

  private async link(a: Act<'link'>): Promise<void> {
    const { writer } = this.ctx;
    const x = lstatOrNull(a.leaderAbs);
    const y = lstatOrNull(a.abs);
    if (!x) return; // its leader was skipped in a live pass
    if (y && y.ino === x.ino) {
      this.ctx.summary.unchanged++;
    } else {
      const tmp = tmpName(a.abs);
      fsSync.linkSync(a.leaderAbs, tmp);
      await renameIntoPlace(tmp, a.abs, a.rel);
      this.ctx.summary.hardlinks++;
      this.ctx.digests?.relinked(a.s.leader, x, lstatOrNull(a.leaderAbs));
    }
    writer?.append({ p: a.rel, t: 'file', s: Number(x.size), m: String(us(x.mtimeNs)), i: String(x.ino), si: a.s.ino }, a.where);
  }

  private async symlink(a: Act<'symlink'>): Promise<void> {
    const tmp = tmpName(a.abs);
    fsSync.symlinkSync(a.target, tmp);
    fsSync.lchownSync(tmp, a.meta.uid, a.meta.gid);
    const t = utimesSeconds(a.meta.mtimeNs);
    fsSync.lutimesSync(tmp, t, t);
    await renameIntoPlace(tmp, a.abs, a.rel);
    this.ctx.summary.symlinks++;
    this.record(a.rel, 'symlink', 0, a.meta, a.s);
  }

  private async fifo(a: Act<'fifo'>): Promise<void> {
    const tmp = tmpName(a.abs);
    await execFileP('mkfifo', ['-m', '600', tmp]); // Node has no mkfifo
    setAttrs(tmp, a.meta);
    await renameIntoPlace(tmp, a.abs, a.rel);
    this.ctx.summary.fifos++;
    this.record(a.rel, 'fifo', 0, a.meta, a.s);
  }

  private attrs(a: Act<'attrs'>): void {
    if (a.symlink) {
      const t = utimesSeconds(a.meta.mtimeNs);
      fsSync.lchownSync(a.abs, a.meta.uid, a.meta.gid);
      fsSync.lutimesSync(a.abs, t, t);
    } else setAttrs(a.abs, a.meta);
    this.record(a.rel, a.s.type, Number(a.s.size), a.meta, a.s);
  }

  private rename(a: Act<'rename'>): void {
    fsSync.renameSync(a.fromAbs, a.abs);
    setAttrs(a.abs, a.meta);
    this.ctx.tick(1, Number(a.s.size));
    this.record(a.rel, 'file', Number(a.s.size), a.meta, a.s, a.where);
  }

  private delete(a: Act<'delete'>): void {
    try {
      if (a.dir) fsSync.rmdirSync(a.abs);
      else fsSync.unlinkSync(a.abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        // Something that is not ours is still inside: keep the directory.
        const { summary } = this.ctx;
        summary.deleted--;
        summary.kept_extraneous++;
        if (summary.kept_paths.length < REPORT_LIMIT) summary.kept_paths.push('/' + a.rel);
        return;
      }
      throw err;
    }
  }

  private record(rel: string, type: string, size: number, meta: Meta, s: ListEntry__Output, where: Where = 'main'): void {
    const w = this.ctx.writer;
    if (!w) return;
    const st = fsSync.lstatSync(path.join(this.ctx.o.cfg.root, rel), { bigint: true });
    w.append({ p: rel, t: type, s: size, m: String(us(meta.mtimeNs)), i: String(st.ino), si: s.ino }, where);
  }
}

/** Owner, mode and times of a file or directory (not a symlink). */
function setAttrs(abs: string, meta: Meta): void {
  fsSync.chownSync(abs, meta.uid, meta.gid);
  fsSync.chmodSync(abs, meta.mode);
  const t = utimesSeconds(meta.mtimeNs);
  fsSync.utimesSync(abs, t, t);
}
