/**
 * The receiving agent's record of what its passes put on this host, per root, so that a
 * later pass deletes only entries cmmigrate wrote and recognises renamed files.
 *
 * A pass appends one JSON line per entry to its own journal, in walk order (`main`), plus
 * a second sorted journal for entries settled at the end of a root (`extra`). A
 * directory's record is written when it is created or found, before its contents. When the pass
 * succeeds its journals become the root's manifest (fsync, then rename); until then the
 * previous manifest and any journal of an interrupted pass stay, and count as "ours".
 * Readers merge all of a root's files in walk order, holding one line of each.
 */
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { comparePaths } from '../../proto';
import { LineReader } from '../fs/line-reader';
import { isDecimalOf } from '../fs/stat-numbers';
import { manifestLine, manifestLinkOf, manifestPathOf, parseManifestLine, type ManifestRecord, type StoredRecord } from './manifest-line';

export type { ManifestRecord, StoredRecord } from './manifest-line';


const MANIFEST = 'manifest';

function filesOf(dir: string, root: string, names: string[]): string[] {
  return names.filter((n) => n.startsWith(root + '.') && n.endsWith('.jsonl')).map((n) => path.join(dir, n));
}


/** Write the first `n` bytes of `buf`, however many calls it takes. */
function writeAll(fd: number, buf: Buffer, n: number): void {
  for (let off = 0; off < n; ) off += fsSync.writeSync(fd, buf, off, n - off);
}

/**
 * A root's manifest is only what passes committed: no journal of an interrupted pass lies
 * beside it (checked before a pass asks the journals for what changed).
 */
export function manifestClean(dir: string, root: string): boolean {
  let names: string[];
  try {
    names = fsSync.readdirSync(dir);
  } catch {
    return true;
  }
  const committed = new Set([`${root}.${MANIFEST}.jsonl`, `${root}.${MANIFEST}.extra.jsonl`]);
  return filesOf(dir, root, names).every((f) => committed.has(path.basename(f)));
}

/** One manifest file being read: its current record, and that record's ordinal in the file. */
interface Head {
  file: string;
  rec: StoredRecord | null;
  lines: LineReader;
  /** Records read from this file so far (the current one included). */
  count: number;
  /** A line that is no record stopped this file. */
  torn: boolean;
}

/**
 * Every record of a root's committed manifest as its path and source dev:ino, in each file's
 * order (the main file, then the extra one), decoding only those two fields: for a look
 * through the whole manifest that needs no more (the other names of hard-linked files).
 */
export function eachLink(dir: string, root: string, fn: (p: string, si: string) => unknown): void {
  for (const name of [`${root}.${MANIFEST}.jsonl`, `${root}.${MANIFEST}.extra.jsonl`]) {
    let lines: LineReader;
    try {
      lines = new LineReader(path.join(dir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    try {
      for (let line = lines.nextBytes(); line !== null; line = lines.nextBytes()) {
        if (!line.length) continue;
        const rec = manifestLinkOf(line);
        // A line that is no record ends its file, as for the reader.
        if (!rec) break;
        fn(rec.p, rec.si);
      }
    } finally {
      lines.close();
    }
  }
}

/** Reads every manifest file of a root as one sorted stream, answering `at(path)` in walk order. */
export class ManifestReader {
  private heads: Head[] = [];
  /**
   * Only a committed manifest, no journal of an interrupted pass: every record in it was
   * made durable (sync) before that pass committed it.
   */
  clean = true;
  /** The record the last `at` returned, and its ordinal among the committed records (-1: none). */
  private lastRec: StoredRecord | undefined;
  private lastOrdinal = -1;

  static async open(dir: string, root: string): Promise<ManifestReader> {
    const r = new ManifestReader();
    let names: string[] = [];
    try {
      names = await fs.readdir(dir);
    } catch {
      /* no manifest yet */
    }
    const committed = new Set([`${root}.${MANIFEST}.jsonl`, `${root}.${MANIFEST}.extra.jsonl`].map((n) => path.join(dir, n)));
    // Oldest first, so that a later file's record of a path wins: the committed manifest,
    // then the journals of interrupted passes by their start (pass-<ms>-<pid>), never in the
    // directory's own order, which on ext4 is a hash's.
    const rank = (f: string): string => (committed.has(f) ? `0${f}` : `1${f}`);
    for (const file of filesOf(dir, root, names).sort((a, b) => (rank(a) < rank(b) ? -1 : rank(a) > rank(b) ? 1 : 0))) {
      if (!committed.has(file)) r.clean = false;
      const head: Head = { file, rec: null, lines: new LineReader(file), count: 0, torn: false };
      r.heads.push(head);
      r.advance(head);
    }
    return r;
  }

  /**
   * The committed manifest's files when a pass may leave them as they are (ManifestWriter's
   * `follow`): no journal of an interrupted pass beside them, nothing torn so far.
   */
  get followable(): string[] | null {
    return this.clean && this.heads.length && !this.heads.some((h) => h.torn) ? this.heads.map((h) => h.file) : null;
  }

  /**
   * The ordinal of `rec` among the committed manifest's records in walk order, if the last
   * `at` returned it, the manifest is clean and no other file had a record for its path;
   * -1 otherwise.
   */
  ordinalOf(rec: StoredRecord): number {
    return rec === this.lastRec ? this.lastOrdinal : -1;
  }

  /**
   * Whether the manifest's files hold nothing but their first `n` records in walk order:
   * every line read back as a record, none after the n-th.
   */
  isExactly(n: number): boolean {
    let count = 0;
    for (const h of this.heads) {
      while (h.rec) this.advance(h);
      if (h.torn) return false;
      count += h.count;
    }
    return this.clean && count === n;
  }

  /**
   * The next record of a file, skipping empty lines; null at its end, and at a line that is
   * no record: a torn last line of a killed pass makes the rest of that file unusable.
   */
  private advance(h: Head): void {
    for (;;) {
      const line = h.lines.next();
      if (line === null) {
        h.rec = null;
        return;
      }
      if (!line) continue;
      h.rec = parseManifestLine(line);
      if (h.rec) {
        h.count++;
      } else {
        h.torn = true;
        h.lines.close();
      }
      return;
    }
  }

  /**
   * Called with each record that `at` (or `skipWhile`) passes over without returning it: a
   * pass that walks only what the journals name counts those it should have seen.
   */
  onSkip: ((rec: StoredRecord) => void) | null = null;

  /** The committed manifest's files (for a pass that carries their records over). */
  get committedFiles(): string[] {
    return this.heads.map((h) => h.file);
  }

  /** Pass over records while `more(path)` holds, in walk order (each goes to onSkip). */
  skipWhile(more: (p: string) => boolean): void {
    for (;;) {
      let min: Head | null = null;
      for (const h of this.heads) if (h.rec && (!min || comparePaths(h.rec.p, min.rec!.p) < 0)) min = h;
      if (!min || !more(min.rec!.p)) return;
      this.onSkip?.(min.rec!);
      this.advance(min);
    }
  }

  /**
   * The record of `p`, if any, with its line. Calls must come in walk order. With `ino`
   * (this host's inode of `p`), a record of that inode wins over a later one of another:
   * a pass killed after it put a file in place but before it committed leaves both, and
   * the one that describes the file there is the one that holds.
   */
  at(p: string, ino?: number | bigint): StoredRecord | undefined {
    let found: StoredRecord | undefined;
    let hits = 0;
    let before = 0;
    for (const h of this.heads) {
      while (h.rec && comparePaths(h.rec.p, p) < 0) {
        this.onSkip?.(h.rec);
        this.advance(h);
      }
      // This file's records before `p`: all it read but its current one.
      before += h.rec ? h.count - 1 : h.count;
      if (h.rec && h.rec.p === p) {
        // Later files (newer passes) win, unless only an earlier one is of this inode.
        if (!found || ino === undefined || isDecimalOf(h.rec.i, ino) || !isDecimalOf(found.i, ino)) found = h.rec;
        hits++;
        this.advance(h);
      }
    }
    this.lastRec = found;
    this.lastOrdinal = this.clean && hits === 1 ? before : -1;
    return found;
  }

  /** Close the files still open (a pass that stopped early). */
  close(): void {
    for (const h of this.heads) h.lines.close();
  }
}

/**
 * Appends this pass's records; `commit` turns them into the root's manifest. Records go to
 * the journal with plain synchronous writes (a fresh one at once, kept ones in batches),
 * and whenever the pass waits for data: if the agent is killed, the page cache still has
 * them, and the next pass knows what this one put there.
 */
export class ManifestWriter {
  private readonly id = `pass-${Date.now()}-${process.pid}`;
  private readonly files: Record<'main' | 'extra', { path: string; fd: number | null; buf: string[]; fresh: number }>;
  /**
   * Following the committed manifest (see `follow`): its file, the reader, and how many of
   * its records, from the first, this pass kept as they are without writing them.
   */
  private following: { files: string[]; reader: ManifestReader; kept: number } | null = null;

  constructor(
    private readonly dir: string,
    private readonly root: string,
  ) {
    this.files = {
      main: { path: path.join(dir, `${root}.${this.id}.jsonl`), fd: null, buf: [], fresh: 0 },
      extra: { path: path.join(dir, `${root}.${this.id}.extra.jsonl`), fd: null, buf: [], fresh: 0 },
    };
  }

  /** This pass wrote a record (to its journal or its buffer), fresh or kept. */
  get wroteRecords(): boolean {
    const { main, extra } = this.files;
    return main.fd !== null || extra.fd !== null || main.buf.length > 0 || extra.buf.length > 0;
  }

  /** Set by close(): the pass stopped, but an action already under way may still append. */
  private closed = false;

  /**
   * Follow the root's committed manifest (`reader.followable`): while this pass keeps its
   * records one after the other as they are (keepSame), nothing is written; a pass that
   * kept every one of them and wrote nothing leaves that manifest as it is at commit, as it
   * would have written the same records again. Anything else (a record not kept, a fresh
   * one, a journal opened) first writes the records kept so far to the journal, read back
   * from that manifest, and the pass goes on as usual. The manifest stays in place until a
   * commit replaces it, so a kill while following leaves what an earlier pass committed:
   * as when a kill loses kept lines still in the buffer.
   */
  follow(reader: ManifestReader): void {
    const files = reader.followable;
    if (files && !this.closed && this.files.main.fd === null && !this.files.main.buf.length) this.following = { files, reader, kept: 0 };
  }

  /**
   * Keep, without writing it, the record the reader gave as `ordinal` of the committed
   * manifest (ManifestReader.ordinalOf), when it is the next one there; false when it is not
   * (the caller appends the line as usual).
   */
  keepSame(ordinal: number): boolean {
    const f = this.following;
    if (!f || ordinal !== f.kept) return false;
    f.kept++;
    return true;
  }

  /**
   * Stop following: the records kept so far go to the journal, in their order: the first
   * `kept` records of the committed manifest's files, read again and merged in walk order.
   */
  private diverge(): void {
    const f = this.following;
    if (!f) return;
    this.following = null;
    if (!f.kept) return;
    const heads = f.files.map((file) => ({ lines: new LineReader(file), rec: null as StoredRecord | null }));
    const next = (h: (typeof heads)[number]): void => {
      let line = h.lines.next();
      while (line === '') line = h.lines.next();
      // A line that is no record ends its file, as for the reader.
      h.rec = line === null ? null : parseManifestLine(line);
    };
    try {
      heads.forEach(next);
      for (let n = 0; n < f.kept; n++) {
        let min: (typeof heads)[number] | null = null;
        for (const h of heads) if (h.rec && (!min || comparePaths(h.rec.p, min.rec!.p) < 0)) min = h;
        if (!min) throw new Error(`the manifest of ${this.root} changed during the pass`);
        this.push(min.rec!.line, 'main');
        next(min);
      }
    } finally {
      for (const h of heads) h.lines.close();
    }
  }

  append(rec: ManifestRecord, which: 'main' | 'extra' = 'main'): void {
    this.appendLine(manifestLine(rec), which);
  }

  /** Append a record given as its line (manifestLine, or a line read back from a manifest). */
  appendLine(line: string, which: 'main' | 'extra' = 'main'): void {
    this.diverge();
    this.files[which].fresh++;
    this.push(line, which);
  }

  /**
   * Append the record of an entry this pass leaves as it is. Such lines wait in larger
   * batches: this pass changed nothing they describe, and until it commits the manifest and
   * journals that recorded those entries stay and still count, so a kill that loses such a
   * line leaves the entry as ours as it was before, and the next pass records it again.
   */
  appendKept(line: string): void {
    this.diverge();
    this.push(line, 'main');
  }

  private push(line: string, which: 'main' | 'extra'): void {
    const f = this.files[which];
    f.buf.push(line);
    if (this.closed) {
      // The executor finished an action (a link or rename it awaited) after the pass was
      // stopped: its file is in place, so its record goes to the journal at once, or the
      // next pass would take the file for one cmmigrate did not write.
      this.flushOne(which);
      if (f.fd !== null) fsSync.closeSync(f.fd);
      f.fd = null;
      return;
    }
    // The record of an entry this pass put in place goes out at once: until it is in the
    // journal, a kill of the agent leaves a file here that the next pass takes for one
    // cmmigrate did not write (and keeps, though the source may remove it). Kept records
    // wait in larger batches: the earlier manifest still vouches for those entries.
    if (f.fresh || f.buf.length >= 256) this.flushOne(which);
  }

  /** Write what is buffered (cheap: one write per file). */
  flush(): void {
    this.flushOne('main');
    this.flushOne('extra');
  }

  /**
   * Make the journal exist before this pass changes the tree: a pass killed after that
   * leaves a journal, so the next pass knows there may be writes that were never synced
   * (ManifestReader.clean).
   */
  open(): void {
    this.diverge();
    this.openOne(this.files.main);
  }

  private openOne(f: { path: string; fd: number | null }): number {
    if (f.fd === null) {
      fsSync.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      f.fd = fsSync.openSync(f.path, 'a', 0o600);
    }
    return f.fd;
  }

  private flushOne(which: 'main' | 'extra'): void {
    const f = this.files[which];
    if (!f.buf.length) return;
    this.openOne(f);
    const text = f.buf.join('\n') + '\n';
    f.buf = [];
    f.fresh = 0;
    fsSync.writeSync(f.fd!, text);
  }

  /** Make this pass's records the root's manifest, durably. */
  async commit(): Promise<void> {
    const f = this.following;
    // Every record of the committed manifest kept as it was, nothing else: it is this pass's
    // manifest already, made durable by the pass that committed it.
    if (f && f.reader.isExactly(f.kept)) {
      this.following = null;
      return;
    }
    this.diverge();
    this.flush();
    const final: Record<'main' | 'extra', string> = {
      main: path.join(this.dir, `${this.root}.${MANIFEST}.jsonl`),
      extra: path.join(this.dir, `${this.root}.${MANIFEST}.extra.jsonl`),
    };
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const which of ['main', 'extra'] as const) {
      const f = this.files[which];
      if (f.fd !== null) {
        fsSync.fsyncSync(f.fd);
        fsSync.closeSync(f.fd);
        f.fd = null;
      } else {
        await fs.writeFile(f.path, '', { mode: 0o600 });
      }
    }
    await this.putInPlace([this.files.main.path, final.main], [this.files.extra.path, final.extra]);
  }

  /**
   * Rename the new files over the manifest, remove the journals of interrupted passes (and
   * any other file of the root), and make the directory durable.
   */
  private async putInPlace(...renames: [from: string, to: string][]): Promise<void> {
    const names = await fs.readdir(this.dir);
    for (const [from, to] of renames) await fs.rename(from, to);
    const keep = new Set(renames.map(([, to]) => to));
    for (const file of filesOf(this.dir, this.root, names)) if (!keep.has(file)) await fs.rm(file, { force: true });
    const d = await fs.open(this.dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }

  /**
   * Commit a pass that walked only what the journals named (issue 25): the root's manifest
   * becomes the committed one's records that `keepOld` keeps (those outside the pass's
   * scope, and those it kept as they were) merged in walk order with this pass's records.
   * With `unchanged` (the pass wrote no record, changed nothing and dropped no record), the
   * committed manifest stays as it is.
   */
  async commitScoped(committed: string[], keepOld: (p: string) => boolean, unchanged: boolean): Promise<void> {
    this.following = null;
    const m = this.files.main;
    const e = this.files.extra;
    if (unchanged && !this.wroteRecords) return;
    this.flush();
    for (const f of [m, e]) {
      if (f.fd !== null) {
        fsSync.fsyncSync(f.fd);
        fsSync.closeSync(f.fd);
        f.fd = null;
      }
    }
    // The old records to keep, merged with this pass's main journal, into a file no reader
    // takes for a manifest until it is renamed into place.
    const merged = path.join(this.dir, `${this.root}.${this.id}.merged.tmp`);
    const out = fsSync.openSync(merged, 'w', 0o600);
    // Lines stay bytes, copied as read: only each line's path is decoded, to merge in walk
    // order and to ask keepOld (a manifest holds a line per entry of the root).
    const heads = [...committed, ...(fsSync.existsSync(m.path) ? [m.path] : [])].map((file, i) => ({ lines: new LineReader(file), line: null as Buffer | null, p: '', ours: i >= committed.length }));
    const next = (h: (typeof heads)[number]): void => {
      for (;;) {
        let line = h.lines.nextBytes();
        while (line !== null && line.length === 0) line = h.lines.nextBytes();
        const p = line === null ? null : manifestPathOf(line);
        // A line that is no record ends its file, as for the reader.
        h.line = p === null ? null : line;
        if (p === null) return;
        h.p = p;
        if (h.ours || keepOld(p)) return;
      }
    };
    try {
      heads.forEach(next);
      let buf = Buffer.allocUnsafe(1 << 20);
      let at = 0;
      for (;;) {
        let min: (typeof heads)[number] | null = null;
        for (const h of heads) if (h.line && (!min || comparePaths(h.p, min.p) < 0)) min = h;
        if (!min) break;
        const line = min.line!;
        if (at + line.length + 1 > buf.length) {
          writeAll(out, buf, at);
          at = 0;
          if (line.length + 1 > buf.length) buf = Buffer.allocUnsafe(2 * (line.length + 1));
        }
        at += line.copy(buf, at);
        buf[at++] = 10;
        next(min);
      }
      writeAll(out, buf, at);
      fsSync.fsyncSync(out);
    } finally {
      fsSync.closeSync(out);
      for (const h of heads) h.lines.close();
    }
    if (!fsSync.existsSync(e.path)) await fs.writeFile(e.path, '', { mode: 0o600 });
    await this.putInPlace([merged, path.join(this.dir, `${this.root}.${MANIFEST}.jsonl`)], [e.path, path.join(this.dir, `${this.root}.${MANIFEST}.extra.jsonl`)]);
  }

  /** Keep what was written as a journal of an interrupted pass (it still counts as ours). */
  close(): void {
    // What was kept while following stays recorded in the committed manifest.
    this.following = null;
    this.closed = true;
    for (const which of ['main', 'extra'] as const) {
      const f = this.files[which];
      try {
        this.flushOne(which);
      } catch {
        /* best effort: the pass failed already */
      }
      if (f.fd !== null) {
        fsSync.closeSync(f.fd);
        f.fd = null;
      }
    }
  }
}
