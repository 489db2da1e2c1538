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
 * A receiving pass that links to a file it landed changes that file's ctime: it makes the
 * leader's record again after its links and writes those records, sorted, in a journal whose
 * name sorts right after the pass's own (`<root>.pass-….z.jsonl`).
 *
 * Each line is one JSON object. Writers put the keys in one fixed order, path last
 * (`{"h":…,"d":…,"i":…,"s":…,"m":…,"c":…,"p":…}`), which a reader takes apart without a JSON
 * parse; any other line (older agents wrote `p` first) goes through JSON.parse, and a line
 * that parses neither way ends that file (a torn last line): its files are read again.
 */
import type { BigIntStats } from 'node:fs';
import * as fsSync from 'node:fs';
import * as path from 'node:path';
import { comparePaths } from '../../proto';
import { splitNs, timeBefore, timeText, type SplitNs } from '../fs/fast-lstat';
import { LineReader } from '../fs/line-reader';
import type { ResolvedRoot } from '../fs/paths';
import { devOf, inoOf, isDecimalOf, sizeOf } from '../fs/stat-numbers';

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
  return { p, d: statText(st, 'dev'), i: statText(st, 'ino'), s: statText(st, 'size'), m: timeText(st, 'mtime'), c: timeText(st, 'ctime'), h: sha256 };
}

/** A record as its line: keys in the order `parseRecord` takes apart without JSON.parse. */
export function recordText(r: DigestRecord): string {
  return `{"h":${JSON.stringify(r.h)},"d":${JSON.stringify(r.d)},"i":${JSON.stringify(r.i)},"s":${JSON.stringify(r.s)},"m":${JSON.stringify(r.m)},"c":${JSON.stringify(r.c)},"p":${JSON.stringify(r.p)}}`;
}

const KEYS = ['h', 'd', 'i', 's', 'm', 'c'] as const;
const QUOTE = 34;

/**
 * The record of one line, or null when it is not one (a torn line). The fixed layout
 * `recordText` writes is read by position; every other line goes through JSON.parse.
 */
export function parseRecord(line: string): DigestRecord | null {
  const fast = parseFixed(line);
  if (fast) return fast;
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  if (typeof o.p !== 'string' || typeof o.h !== 'string') return null;
  for (const k of KEYS) if (typeof o[k] !== 'string') return null;
  return { p: o.p, d: o.d as string, i: o.i as string, s: o.s as string, m: o.m as string, c: o.c as string, h: o.h };
}

/** `{"h":"…","d":"…",…,"p":"…"}` with plain values (no escapes but maybe in the path), or null. */
function parseFixed(line: string): DigestRecord | null {
  const v: string[] = [];
  let at = 0;
  for (const k of KEYS) {
    const head = (k === 'h' ? '{"' : ',"') + k + '":"';
    if (!line.startsWith(head, at)) return null;
    const from = at + head.length;
    const end = line.indexOf('"', from);
    if (end < 0) return null;
    const value = line.slice(from, end);
    if (value.indexOf('\\') >= 0) return null;
    v.push(value);
    at = end + 1;
  }
  if (!line.startsWith(',"p":"', at)) return null;
  const last = line.length - 1;
  // The path is a JSON string from the quote after `"p":` to the quote before the closing brace.
  if (line.charCodeAt(last) !== 125 || line.charCodeAt(last - 1) !== QUOTE || last - 1 < at + 5) return null;
  let p = line.slice(at + 6, last - 1);
  if (p.indexOf('\\') >= 0 || p.indexOf('"') >= 0) {
    try {
      p = JSON.parse(line.slice(at + 5, last)) as string;
    } catch {
      return null;
    }
    if (typeof p !== 'string') return null;
  }
  for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) < 32) return null; // JSON escapes control characters
  return { h: v[0], d: v[1], i: v[2], s: v[3], m: v[4], c: v[5], p };
}

/** Whether `rec`, taken from a records file stamped `stamp` (its mtime), still gives the content of a file with stat `st`. */
export function recordHolds(rec: DigestRecord, st: BigIntStats, stamp: SplitNs): boolean {
  return (
    isDecimalOf(rec.i, inoOf(st)) &&
    isDecimalOf(rec.s, sizeOf(st)) &&
    rec.m === timeText(st, 'mtime') &&
    rec.c === timeText(st, 'ctime') &&
    isDecimalOf(rec.d, devOf(st)) &&
    timeBefore(st, 'ctime', stamp) &&
    timeBefore(st, 'mtime', stamp)
  );
}


/** A count field of a stat as decimal text, without a BigInt where the walk has the binding's numbers. */
function statText(st: BigIntStats, field: 'dev' | 'ino' | 'size'): string {
  return String(field === 'dev' ? devOf(st) : field === 'ino' ? inoOf(st) : sizeOf(st));
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
  /** `rec`'s line when it is in `recordText`'s layout, so that a writer can copy it as it is. */
  line: string | null;
  stamp: SplitNs;
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
      const h: Head = { rec: null, line: null, stamp: splitNs(lines.mtimeNs()), lines };
      r.heads.push(h);
      r.advance(h);
    }
    return r;
  }

  /** The next record of a file; a line that is no record ends the file (torn by a kill). */
  private advance(h: Head): void {
    for (;;) {
      const line = h.lines.next();
      if (line === null) break;
      if (!line) continue;
      const fixed = parseFixed(line);
      const rec = fixed ?? parseRecord(line);
      if (!rec) break;
      h.rec = rec;
      h.line = fixed ? line : null;
      return;
    }
    h.lines.close();
    h.rec = null;
    h.line = null;
  }

  /**
   * The SHA-256 recorded for `p` if the newest record of it still holds for `st`, else
   * undefined. Calls must come in walk order.
   */
  sha256(p: string, st: BigIntStats): string | undefined {
    const found = this.newest(p);
    this.hitLine = null;
    if (!found || !recordHolds(found.rec, st, found.stamp)) return undefined;
    this.hits++;
    this.hitLine = found.line;
    return found.rec.h;
  }

  /**
   * After `sha256` answered from a record: that record's line when a writer may copy it as
   * it is (`DigestWriter.appendLine`), else null.
   */
  hitLine: string | null = null;

  /**
   * The line of `p`'s newest record when that holds for `st` and can be copied as it is,
   * else null; not counted as a hit (for the further links of a hard-link group).
   */
  lineFor(p: string, st: BigIntStats): string | null {
    const found = this.newest(p);
    return found && found.line !== null && recordHolds(found.rec, st, found.stamp) ? found.line : null;
  }

  /** The newest record of `p` as stored, whether or not it holds. Calls must come in walk order. */
  at(p: string): DigestRecord | undefined {
    return this.newest(p)?.rec;
  }

  /** Advances every file past `p`; the record of `p` in the newest file that has one, with that file's stamp. */
  private newest(p: string): { rec: DigestRecord; line: string | null; stamp: SplitNs } | undefined {
    let found: { rec: DigestRecord; line: string | null; stamp: SplitNs } | undefined;
    for (const h of this.heads) {
      while (h.rec && h.rec.p !== p && comparePaths(h.rec.p, p) < 0) this.advance(h);
      if (h.rec && h.rec.p === p) {
        found = { rec: h.rec, line: h.line, stamp: h.stamp }; // later files (newer passes) win
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
          found = { rec: h.rec, stamp: h.stamp.big };
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

  /**
   * A new journal of `root`; with `after` (another writer's journal), one whose name sorts
   * right after that one, so that its records win over those.
   */
  constructor(
    stateDir: string,
    private readonly root: string,
    after?: string,
  ) {
    this.dir = path.join(stateDir, DIR);
    this.file = after ? after.replace(/\.jsonl$/, '.z.jsonl') : path.join(this.dir, `${root}.pass-${Date.now()}-${process.pid}.jsonl`);
  }

  /** The journal's path. */
  get journal(): string {
    return this.file;
  }

  append(rec: DigestRecord): void {
    this.appendLine(rec.p, recordText(rec));
  }

  /** Append the record of `p` as its line, already in `recordText`'s layout. */
  appendLine(p: string, line: string): void {
    if (this.last !== null && comparePaths(this.last, p) >= 0) return;
    this.last = p;
    this.buf.push(line);
    if (this.buf.length >= 256) this.flush();
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
      buf.push(recordText(rec));
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
  /** The last record added: a landed file whose hard links this pass is about to make. */
  private last: DigestRecord | null = null;
  /** Landed files that this pass links to, by path: their record and the links still to make. */
  private readonly linking = new Map<string, { rec: DigestRecord; left: number }>();
  /** Records made again after a link changed the file's ctime; written, sorted, at close. */
  private readonly relinkedRecs = new Map<string, DigestRecord>();

  constructor(
    private readonly stateDir: string,
    private readonly roots: readonly ResolvedRoot[],
  ) {}

  /** Record the digest of `rel`, whose stat while it was hashed or after it landed is `st`. */
  add(rel: string, st: BigIntStats, sha256: string): void {
    const root = this.rootOf(rel);
    if (!root) return;
    let w = this.writers.get(root.name);
    if (!w) {
      w = new DigestWriter(this.stateDir, root.name);
      this.writers.set(root.name, w);
    }
    this.last = digestRecord(rel, st, sha256);
    w.append(this.last);
  }

  /**
   * `rel`, just added, is the leader of `links` hard links this pass makes: each link changes
   * its ctime, so its record would no longer hold and a quick verify would read it again.
   * Bounded: past RELINK_MAX leaders waiting, the rest are simply read again.
   */
  expectLinks(rel: string, links: number): void {
    if (links <= 0 || this.last?.p !== rel || this.linking.size >= RELINK_MAX) return;
    this.linking.set(rel, { rec: this.last, left: links });
  }

  /**
   * A link to `leader` was made: `before` and `after` are the leader's stat around it. When
   * the leader's record held for `before` (nothing else changed the file since it landed), it
   * is made again for `after`, with the digest it had.
   */
  relinked(leader: string, before: BigIntStats, after: BigIntStats | null): void {
    const l = this.linking.get(leader);
    if (!l) return;
    const r = l.rec;
    if (!after || r.i !== String(before.ino) || r.d !== String(before.dev) || r.s !== String(before.size) || r.m !== String(before.mtimeNs) || r.c !== String(before.ctimeNs)) {
      this.linking.delete(leader);
      this.relinkedRecs.delete(leader);
      return;
    }
    l.rec = digestRecord(leader, after, r.h);
    this.relinkedRecs.set(leader, l.rec);
    if (--l.left <= 0) this.linking.delete(leader);
  }

  /** Keep every root's records (journals beside the committed sets). */
  close(): void {
    for (const w of this.writers.values()) w.close();
    // The records made again go in a journal of their own, in walk order, named to sort after
    // the pass's journal so that they win over the records they replace.
    const byRoot = new Map<string, DigestRecord[]>();
    for (const rec of this.relinkedRecs.values()) {
      const root = this.rootOf(rec.p);
      if (!root) continue;
      const list = byRoot.get(root.name);
      if (list) list.push(rec);
      else byRoot.set(root.name, [rec]);
    }
    for (const [name, recs] of byRoot) {
      const w = new DigestWriter(this.stateDir, name, this.writers.get(name)?.journal);
      recs.sort((a, b) => comparePaths(a.p, b.p));
      for (const rec of recs) w.append(rec);
      w.close();
    }
    this.writers.clear();
    this.linking.clear();
    this.relinkedRecs.clear();
  }

  private rootOf(rel: string): ResolvedRoot | undefined {
    return this.roots.find((r) => rel === r.rel || rel.startsWith(r.rel + '/'));
  }
}

/** Hard-link leaders a pass keeps the record of while it makes their links, at most. */
const RELINK_MAX = 65_536;
