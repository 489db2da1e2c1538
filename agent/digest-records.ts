/**
 * The content digests that passes recorded, per root, so that a quick verify takes a
 * regular file's SHA-256 from a record instead of reading the file again.
 *
 * A record holds the SHA-256 of a file together with the file's device, inode, size, mtime
 * and ctime (nanoseconds) as they were when it was hashed. It holds while all five are
 * unchanged: ctime cannot be set from user space, so a later change cannot hide behind a
 * restored mtime. What it cannot see is a change made in the same timestamp tick as the
 * record was taken (the filesystem's clock is coarse); as git does with its index
 * (Documentation/technical/racy-git.txt), a record is trusted only for a file whose ctime
 * and mtime are older than the records file itself, whose mtime comes from the same clock
 * and is set after every record in it was written. A racy entry is simply read again.
 *
 * Files: `<state>/digests/<root>.jsonl` is the last committed set; a pass appends to
 * `<root>.<pass>.jsonl` in walk order and commits it (fsync, rename) when it ends. Readers
 * merge every file of a root in walk order, holding one line of each, and later files win,
 * so memory stays bounded whatever the tree's size, and a killed pass's records still count.
 */
import type { BigIntStats } from 'node:fs';
import * as fsSync from 'node:fs';
import * as path from 'node:path';
import { comparePaths } from '../proto';
import { LineReader, nextRecord } from './line-reader';
import type { ResolvedRoot } from './paths';

export interface DigestRecord {
  /** Path relative to --root. */
  p: string;
  /** st_dev, st_ino, st_size, mtime and ctime in nanoseconds, as decimal strings. */
  d: string;
  i: string;
  s: string;
  m: string;
  c: string;
  /** SHA-256 of the content, hex. */
  h: string;
}

const DIR = 'digests';
const COMMITTED = 'jsonl';
/** Journals kept beside the committed set at most; past it they are merged into it (compact). */
const MAX_JOURNALS = 4;

/** The record a file's current stat and digest make. */
export function digestRecord(p: string, st: BigIntStats, sha256: string): DigestRecord {
  return { p, d: String(st.dev), i: String(st.ino), s: String(st.size), m: String(st.mtimeNs), c: String(st.ctimeNs), h: sha256 };
}

/** Whether `rec`, taken from a records file stamped `stampNs`, still gives the content of a file with stat `st`. */
export function recordHolds(rec: DigestRecord, st: BigIntStats, stampNs: bigint): boolean {
  return (
    rec.i === String(st.ino) &&
    rec.s === String(st.size) &&
    rec.m === String(st.mtimeNs) &&
    rec.c === String(st.ctimeNs) &&
    rec.d === String(st.dev) &&
    st.ctimeNs < stampNs &&
    st.mtimeNs < stampNs
  );
}

function rootFiles(dir: string, root: string): string[] {
  let names: string[];
  try {
    names = fsSync.readdirSync(dir);
  } catch {
    return [];
  }
  const committed = `${root}.${COMMITTED}`;
  const journals = names.filter((n) => n.startsWith(root + '.') && n.endsWith('.jsonl') && n !== committed && !n.includes('.tmp'));
  // Pass ids sort by time (pass-<ms>-<pid>): the committed set first, then older journals.
  journals.sort();
  return [...(names.includes(committed) ? [committed] : []), ...journals].map((n) => path.join(dir, n));
}

interface Head {
  rec: DigestRecord | null;
  stamp: bigint;
  lines: LineReader;
}

/** Reads a root's records as one stream in walk order: `at(path)` answers with the newest record of the path. */
export class DigestReader {
  private readonly heads: Head[] = [];
  /** Records answered from, for the report. */
  hits = 0;

  /** Open a root's records; none is an empty reader. */
  static open(stateDir: string, root: string): DigestReader {
    const r = new DigestReader();
    for (const file of rootFiles(path.join(stateDir, DIR), root)) {
      let lines: LineReader;
      try {
        lines = new LineReader(file);
      } catch {
        continue; // a journal committed or removed meanwhile: its records are elsewhere
      }
      const h: Head = { rec: null, stamp: lines.mtimeNs(), lines };
      r.heads.push(h);
      r.advance(h);
    }
    return r;
  }

  private advance(h: Head): void {
    h.rec = nextRecord<DigestRecord>(h.lines);
  }

  /**
   * The SHA-256 recorded for `p` if the newest record of it still holds for `st`, else
   * undefined. Calls must come in walk order.
   */
  sha256(p: string, st: BigIntStats): string | undefined {
    const found = this.newest(p);
    if (!found || !recordHolds(found.rec, st, found.stamp)) return undefined;
    this.hits++;
    return found.rec.h;
  }

  /** The newest record of `p` as stored, whether or not it holds. Calls must come in walk order. */
  at(p: string): DigestRecord | undefined {
    return this.newest(p)?.rec;
  }

  /** Advances every file past `p`; the record of `p` in the newest file that has one, with that file's stamp. */
  private newest(p: string): { rec: DigestRecord; stamp: bigint } | undefined {
    let found: { rec: DigestRecord; stamp: bigint } | undefined;
    for (const h of this.heads) {
      while (h.rec && comparePaths(h.rec.p, p) < 0) this.advance(h);
      if (h.rec && h.rec.p === p) {
        found = { rec: h.rec, stamp: h.stamp }; // later files (newer passes) win
        this.advance(h);
      }
    }
    return found;
  }

  /**
   * Every path's newest record in walk order, leaving out records that were racy in their
   * own file (they would never hold): what compaction keeps.
   */
  *all(): Generator<DigestRecord> {
    for (;;) {
      let min: string | undefined;
      for (const h of this.heads) if (h.rec && (min === undefined || comparePaths(h.rec.p, min) < 0)) min = h.rec.p;
      if (min === undefined) return;
      let found: { rec: DigestRecord; stamp: bigint } | undefined;
      for (const h of this.heads) {
        if (h.rec && h.rec.p === min) {
          found = { rec: h.rec, stamp: h.stamp };
          this.advance(h);
        }
      }
      if (found && BigInt(found.rec.c) < found.stamp && BigInt(found.rec.m) < found.stamp) yield found.rec;
    }
  }

  close(): void {
    for (const h of this.heads) h.lines.close();
  }
}

/**
 * A pass's records of one root, appended in walk order; `commit` makes them the root's
 * set. A record out of order is dropped (it only means a read later), never misfiled.
 */
export class DigestWriter {
  private readonly dir: string;
  private readonly file: string;
  private fd: number | null = null;
  private buf: string[] = [];
  private last: string | null = null;

  constructor(
    stateDir: string,
    private readonly root: string,
  ) {
    this.dir = path.join(stateDir, DIR);
    this.file = path.join(this.dir, `${root}.pass-${Date.now()}-${process.pid}.jsonl`);
  }

  append(rec: DigestRecord): void {
    if (this.last !== null && comparePaths(this.last, rec.p) >= 0) return;
    this.last = rec.p;
    this.buf.push(JSON.stringify(rec));
    if (this.buf.length >= 64) this.flush();
  }

  /** Write what is buffered. */
  flush(): void {
    if (!this.buf.length) return;
    if (this.fd === null) {
      fsSync.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      this.fd = fsSync.openSync(this.file, 'a', 0o600);
    }
    fsSync.writeSync(this.fd, this.buf.join('\n') + '\n');
    this.buf = [];
  }

  /**
   * Make this pass's records the root's set: the pass saw every file of the root, so records
   * of the older files are no longer needed. Only for a pass that walked the whole root.
   */
  commit(): void {
    this.flush();
    fsSync.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (this.fd === null) this.fd = fsSync.openSync(this.file, 'a', 0o600);
    fsSync.fsyncSync(this.fd);
    fsSync.closeSync(this.fd);
    this.fd = null;
    const committed = path.join(this.dir, `${this.root}.${COMMITTED}`);
    const others = rootFiles(this.dir, this.root).filter((f) => f !== this.file && f !== committed);
    fsSync.renameSync(this.file, committed);
    for (const f of others) fsSync.rmSync(f, { force: true });
    const d = fsSync.openSync(this.dir, 'r');
    try {
      fsSync.fsyncSync(d);
    } finally {
      fsSync.closeSync(d);
    }
  }

  /**
   * Keep what was written as a journal beside the committed set (a pass saw only the files
   * it sent or received); past MAX_JOURNALS they are merged into the set.
   */
  close(): void {
    try {
      this.flush();
      if (this.fd !== null) fsSync.closeSync(this.fd);
      this.fd = null;
      if (rootFiles(this.dir, this.root).length > MAX_JOURNALS + 1) compactDigests(path.dirname(this.dir), this.root);
    } catch {
      /* best effort: records only save reads */
    }
    if (this.fd !== null) fsSync.closeSync(this.fd);
    this.fd = null;
  }
}

/**
 * Merge a root's committed set and journals into one committed set, newest record per path,
 * streaming (one line of each file held). Each record keeps the guard it had: a record racy
 * in its own file is left out, since the new file's later stamp would otherwise trust it.
 */
export function compactDigests(stateDir: string, root: string): void {
  const dir = path.join(stateDir, DIR);
  const files = rootFiles(dir, root);
  if (files.length <= 1) return;
  const reader = DigestReader.open(stateDir, root);
  const tmp = path.join(dir, `${root}.tmp-${process.pid}`);
  const fd = fsSync.openSync(tmp, 'w', 0o600);
  try {
    let buf: string[] = [];
    for (const rec of reader.all()) {
      buf.push(JSON.stringify(rec));
      if (buf.length >= 256) {
        fsSync.writeSync(fd, buf.join('\n') + '\n');
        buf = [];
      }
    }
    if (buf.length) fsSync.writeSync(fd, buf.join('\n') + '\n');
    fsSync.fsyncSync(fd);
  } finally {
    fsSync.closeSync(fd);
    reader.close();
  }
  fsSync.renameSync(tmp, path.join(dir, `${root}.${COMMITTED}`));
  for (const f of files) if (!f.endsWith(`${root}.${COMMITTED}`)) fsSync.rmSync(f, { force: true });
}

/**
 * The records one pass makes, routed to the writer of each root by path; for the sender's
 * Fetch and the receiver's landed files, which come in the order asked (walk order).
 */
export class PassDigests {
  private readonly writers = new Map<string, DigestWriter>();

  constructor(
    private readonly stateDir: string,
    private readonly roots: readonly ResolvedRoot[],
  ) {}

  /** Record the digest of `rel`, whose stat while it was hashed or after it landed is `st`. */
  add(rel: string, st: BigIntStats, sha256: string): void {
    const root = this.roots.find((r) => rel === r.rel || rel.startsWith(r.rel + '/'));
    if (!root) return;
    let w = this.writers.get(root.name);
    if (!w) {
      w = new DigestWriter(this.stateDir, root.name);
      this.writers.set(root.name, w);
    }
    w.append(digestRecord(rel, st, sha256));
  }

  /** Keep every root's records (journals beside the committed sets). */
  close(): void {
    for (const w of this.writers.values()) w.close();
    this.writers.clear();
  }
}
