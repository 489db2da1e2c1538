/**
 * Folder agent/verify/: the digest `cmmigrate verify` compares (this file) and the digest
 * records that passes leave on both hosts so that a quick verify reads only what changed
 * (digest-records.ts), and the last digest of each root that a quick verify starts from when
 * the change journal says what changed since (verify-cache.ts). It imports fs/, wire/ and
 * the change journal (journal/).
 *
 * The digest `cmmigrate verify` compares: one record per entry of a root, in walk order,
 * over its path, type, size, mode, owner names (after the plan's owner rules), mtime to
 * the microsecond, content SHA-256, symlink target and hard-link group. Sockets are
 * counted and left out, as the transfer leaves them out.
 */
import * as crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsSync from 'node:fs';
import { CmError, comparePaths, verifyLine, type RootName, type VerifyBatch } from '../../proto';
import { DigestReader, DigestWriter, digestRecord } from './digest-records';
import { OwnerNames, type Identity } from '../fs/identity';
import type { ResolvedRoot } from '../fs/paths';
import { devOf, gidOf, inoOf, mtimeUsOf, nlinkOf, permOf, sizeOf, uidOf } from '../fs/stat-numbers';
import { nextTurn, walkBatches, type WalkEntry } from '../fs/walk';
import { underRoot, WalkScope, type ScopedPath } from '../fs/walk-scope';
import type { ChangeJournal, JournalPosition } from '../journal/journal';
import { cacheFingerprint, dropVerifyCache, moveVerifyCache, pathOfLine, readLinks, readVerifyCache, VerifyCacheWriter, type VerifyCacheState } from './verify-cache';

export interface DigestOptions {
  identity: Identity;
  owners: Partial<Record<RootName, { user: string; group: string }>>;
  /** Stops the walk and the reads of files under way (their descriptors close). */
  signal?: AbortSignal;
  /**
   * Where this agent keeps its digest records (agent/verify/digest-records.ts). With it, the
   * digest records every file it hashed for later quick verifies; with `quick` too, a file
   * whose record still holds is not read.
   */
  records?: { stateDir: string; quick: boolean };
  /**
   * This host's change journal and its position taken before any root was walked (or why
   * there is none): a digest then keeps each root's lines as its cache, and a quick one
   * looks again only at what changed since the last (verify-cache.ts).
   */
  cache?: DigestJournal;
  /** Only the roots' digests are wanted (VerifyRequest.digests_only): lines may be left out. */
  digestsOnly?: boolean;
}

/** The change journal as a digest uses it. */
export interface DigestJournal {
  journal: ChangeJournal | null;
  position: JournalPosition | null;
  /** Why there is no journal or position. */
  off: string;
}

export interface RootResult {
  root: string;
  present: boolean;
  entries: number;
  sha256: string;
  socketsSkipped: number;
  /** Regular files whose digest came from a record, and files read and hashed. */
  fromRecords: number;
  read: number;
  /** Whether the root was walked in full (and why, with a journal) or only where it changed. */
  walk: { scoped: boolean; paths: number; reason: string };
}

/** An owner's name as a JSON string, made once per id. */
function jsonOf(cache: Map<number, string>, id: number, name: (id: number) => string): string {
  let json = cache.get(id);
  if (json === undefined) cache.set(id, (json = JSON.stringify(name(id))));
  return json;
}

/** Files up to this size are read whole, synchronously: one read, one buffer. */
const SMALL_FILE = 1024n * 1024n;

async function hashLarge(abs: string, signal?: AbortSignal): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const data of createReadStream(abs, { highWaterMark: 1024 * 1024, signal })) h.update(data as Buffer);
  return h.digest('hex');
}

/**
 * The lines of entries in walk order: owner names after the plan's rule, a file's digest
 * from `contentOf`, the first path of a hard-link group on the others. Remembers the
 * hard-link groups and sockets it met, for the digest cache.
 */
class LineMaker {
  /** Hard-link groups still open: forgotten once all their links are seen. */
  private readonly leaders = new Map<string, { path: string; sha: string; left: number }>();
  /** Every hard-linked file met, by `dev:ino` (for the digest cache's links). */
  onLink: ((key: string, rel: string) => void) | null = null;
  /** The `dev:ino` of every hard-linked file met (a scoped digest's groups). */
  readonly linked = new Map<string, string[]>();
  keepLinked = false;
  readonly sockets: string[] = [];
  entries = 0;
  /** Regular files whose digest was taken (not the other names of a hard-linked file). */
  files = 0;
  private readonly names: OwnerNames;
  private readonly ruleUser: string | null;
  private readonly ruleGroup: string | null;
  private readonly userJson = new Map<number, string>();
  private readonly groupJson = new Map<number, string>();

  constructor(
    private readonly root: ResolvedRoot,
    opts: DigestOptions,
    private readonly contentOf: (e: WalkEntry) => Promise<string>,
    /** A hard-linked file's record line of the digest records, for a link that is not read (full walks). */
    private readonly linkRecord?: (e: WalkEntry, sha: string) => void,
  ) {
    const rule = opts.owners[root.name];
    this.names = new OwnerNames(opts.identity);
    // Owner names as JSON strings, as the lines carry them: the plan's rule, else by id.
    this.ruleUser = rule ? JSON.stringify(rule.user) : null;
    this.ruleGroup = rule ? JSON.stringify(rule.group) : null;
  }

  /** The line of an entry (with its newline); '' for a socket, which is counted and left out. */
  async line(e: WalkEntry): Promise<string> {
    if (e.type === 'socket') {
      this.sockets.push(e.rel);
      return '';
    }
    let sha = '';
    let hardlink = '';
    const st = e.st;
    if (e.type === 'file') {
      const nlink = nlinkOf(st);
      const key = nlink > 1 ? `${devOf(st)}:${inoOf(st)}` : '';
      const g = key ? this.leaders.get(key) : undefined;
      if (g) {
        hardlink = g.path;
        sha = g.sha;
        if (--g.left <= 0) this.leaders.delete(key);
        this.linkRecord?.(e, sha);
      } else {
        this.files++;
        sha = await this.contentOf(e);
        if (key) this.leaders.set(key, { path: e.rel, sha, left: nlink - 1 });
      }
      if (key) this.remember(key, e.rel);
    }
    const user = this.ruleUser ?? jsonOf(this.userJson, uidOf(st), (id) => this.names.user(id));
    const group = this.ruleGroup ?? jsonOf(this.groupJson, gidOf(st), (id) => this.names.group(id));
    this.entries++;
    return (
      verifyLine(
        e.rel,
        e.type,
        e.type === 'file' ? String(sizeOf(st)) : '0',
        e.type === 'symlink' ? 0 : permOf(st),
        user,
        group,
        this.root.runtimeParents?.has(e.rel) ? '0' : String(mtimeUsOf(st)),
        sha,
        e.type === 'symlink' ? fsSync.readlinkSync(e.abs) : '',
        hardlink,
      ) + '\n'
    );
  }

  private remember(key: string, rel: string): void {
    this.onLink?.(key, rel);
    if (!this.keepLinked) return;
    const g = this.linked.get(key);
    if (g) g.push(rel);
    else this.linked.set(key, [rel]);
  }
}

/** The journal's position before a Verify walks anything, or why there is none. */
export async function digestJournal(journal: ChangeJournal | null, off: string | undefined, signal: AbortSignal): Promise<DigestJournal> {
  if (!journal) return { journal: null, position: null, off: off ?? 'journal: off on this host' };
  try {
    // Held from the cookie on: own writes after it (a pass running meanwhile) count.
    return { journal, position: await journal.sync(signal, { hold: HOLD }), off: '' };
  } catch (err) {
    if (signal.aborted) throw err;
    return { journal, position: null, off: `journal: this host's journal did not answer (${(err as Error).message})` };
  }
}

/** Hard-linked paths a quick verify holds at most (some 40 MiB): past it, it walks the root in full. */
const MAX_LINK_PATHS = 250_000;
/** Entries a quick verify looks at again at most before it walks the root in full instead. */
const MAX_SCOPED_ENTRIES = 250_000;

/**
 * Yield the records of a root in walk order as their lines (proto/verify-record.ts), a batch
 * of lines at a time as UTF-8, then the root's digest over those bytes. With the change
 * journal (`opts.cache`), a quick verify looks again only at what the journal says changed
 * since the root's last digest, and takes every other line from that digest's cache
 * (verify-cache.ts); anything that keeps it from doing so soundly is a full walk, with the
 * reason in the result.
 */
export async function* digestRoot(root: ResolvedRoot, opts: DigestOptions): AsyncGenerator<Buffer | RootResult> {
  const plan = opts.records?.quick && opts.cache ? scopedPlan(root, opts, opts.cache) : { reason: '' };
  if ('scope' in plan && plan.paths.length === 0) return yield* unchangedDigest(root, opts, plan);
  if ('scope' in plan) {
    const scoped = await collectScope(root, opts, plan);
    if ('entries' in scoped) {
      try {
        return yield* mergedDigest(root, opts, plan, scoped);
      } catch (err) {
        // A damaged cache: without lines asked for, nothing went out yet, and a full walk
        // answers instead; with lines, the next verify walks (the cache is gone).
        if (!(err instanceof DamagedCache)) throw err;
        dropVerifyCache(opts.records!.stateDir, root.name);
        if (!opts.digestsOnly) throw new Error(`${err.message}; it was removed: run the verify again, which walks ${root.name} in full`);
        plan.reason = `journal: ${err.message}`;
        return yield* fullDigest(root, opts, plan.reason);
      }
    }
    plan.reason = scoped.reason;
  }
  yield* fullDigest(root, opts, 'reason' in plan ? plan.reason : '');
}

/** Why a digest walks in full, or what it takes from the cache. */
type ScopedPlan = { reason: string } | { scope: WalkScope; paths: ScopedPath[]; cache: { state: VerifyCacheState; lines: string; links: string }; journal: DigestJournal; reason: string };

function fingerprintOf(root: ResolvedRoot, opts: DigestOptions): string {
  return cacheFingerprint(opts.identity.digest, opts.owners[root.name], root.rel, root.runtimeParents ?? []);
}

/** From the cache and the journal: the scope to look at again, or why the root is walked in full. */
function scopedPlan(root: ResolvedRoot, opts: DigestOptions, dj: DigestJournal): ScopedPlan {
  const { journal, position } = dj;
  if (!journal || !position) return { reason: dj.off };
  const cache = readVerifyCache(opts.records!.stateDir, root.name);
  if (!cache) return { reason: 'journal: no earlier digest of this root to start from' };
  if (cache.state.fingerprint !== fingerprintOf(root, opts)) return { reason: "journal: this host's users, the owner rules or the root's place changed since the last digest" };
  if (!journal.watches(root.name, root.abs)) return { reason: `journal: it watches another directory than ${root.abs} for ${root.name}` };
  const res = journal.changesSince(root.name, { epoch: cache.state.epoch, seq: cache.state.seq });
  if ('full' in res) return { reason: res.full };
  const paths: ScopedPath[] = res.changes.map((c) => ({ path: underRoot(root.rel, c.path), scope: c.scope }));
  const scope = new WalkScope(root.rel, paths);
  if (scope.whole) return { reason: 'journal: the root itself came or went' };
  return { scope, paths, cache, journal: dj, reason: '' };
}

/**
 * The entries the scope covers, walked, with every hard-link group they touch whole: a
 * file written or renamed under one name changes the lines of its other names (the digest,
 * the group's first path), which the journal does not name. The cache's groups give the
 * other names of what it held, the inode those of a link made since; a group whose names
 * do not add up to its link count is a full walk.
 */
async function collectScope(root: ResolvedRoot, opts: DigestOptions, plan: Extract<ScopedPlan, { scope: WalkScope }>): Promise<{ entries: WalkEntry[]; scope: WalkScope; links: Map<string, string[]> } | { reason: string }> {
  const byKey = readLinks(plan.cache.links, MAX_LINK_PATHS);
  if (!byKey) return { reason: `journal: more than ${MAX_LINK_PATHS} hard-linked files to hold` };
  const paths = [...plan.paths];
  let scope = plan.scope;
  const added = new Set<string>();
  const addGroup = (members: string[]): boolean => {
    let more = false;
    for (const p of members) {
      if (added.has(p) || scope.covers(p)) continue;
      added.add(p);
      paths.push({ path: p, scope: 'entry' });
      more = true;
    }
    return more;
  };
  for (const members of byKey.values()) if (members.some((p) => scope.covers(p))) addGroup(members);
  for (let round = 0; round < 4; round++) {
    if (round > 0 || added.size) scope = new WalkScope(root.rel, paths);
    const entries: WalkEntry[] = [];
    for await (const batch of walkBatches(root, { scope })) {
      if (opts.signal?.aborted) throw cancelled();
      for (const e of batch) entries.push(e);
      if (entries.length > MAX_SCOPED_ENTRIES) return { reason: `journal: more than ${MAX_SCOPED_ENTRIES} entries changed` };
    }
    // Links per inode seen in the scope, against the inode's link count.
    const seen = new Map<string, { n: number; nlink: number }>();
    for (const e of entries) {
      if (e.type !== 'file' || nlinkOf(e.st) <= 1) continue;
      const key = `${devOf(e.st)}:${inoOf(e.st)}`;
      const s = seen.get(key);
      if (s) s.n++;
      else seen.set(key, { n: 1, nlink: nlinkOf(e.st) });
    }
    let more = false;
    for (const key of seen.keys()) {
      const members = byKey.get(key);
      if (members && addGroup(members)) more = true;
    }
    if (more) continue;
    if (entries[0]?.rel !== root.rel) return { reason: `journal: the root /${root.rel} is not there now` };
    for (const [key, s] of seen) {
      if (s.n !== s.nlink) return { reason: `journal: a hard-linked file (inode ${key}) has ${s.nlink} names, ${s.n} of them known` };
    }
    return { entries, scope, links: byKey };
  }
  return { reason: 'journal: hard-link groups kept growing while the scope was looked at' };
}

const cancelled = (): CmError => new CmError('transfer.cancelled', 'the caller went away; the digest was not finished');

/** A root walked in full; with the journal, its lines become the root's digest cache. */
async function* fullDigest(root: ResolvedRoot, opts: DigestOptions, reason: string): AsyncGenerator<Buffer | RootResult> {
  const rootHash = crypto.createHash('sha256');
  let present = false;
  let read = 0;
  const reader = opts.records?.quick ? DigestReader.open(opts.records.stateDir, root.name) : null;
  const writer = opts.records ? new DigestWriter(opts.records.stateDir, root.name) : null;
  const position = opts.cache?.position ?? null;
  if (opts.cache && opts.records) dropVerifyCache(opts.records.stateDir, root.name);
  const cacheWriter = position && opts.records ? new VerifyCacheWriter(opts.records.stateDir, root.name) : null;

  /** A file's digest: from its record while that holds (quick), else read; its record is written either way. */
  const contentOf = async (e: WalkEntry): Promise<string> => {
    const recorded = reader?.sha256(e.rel, e.st);
    if (recorded !== undefined) {
      if (writer) {
        if (reader!.hitLine !== null) writer.appendLine(e.rel, reader!.hitLine);
        else writer.append(digestRecord(e.rel, e.st, recorded));
      }
      return recorded;
    }
    read++;
    const sha = await hashFile(e, opts.signal);
    writer?.append(digestRecord(e.rel, e.st, sha));
    return sha;
  };
  const linkRecord = (e: WalkEntry, sha: string): void => {
    if (!writer) return;
    const line = reader?.lineFor(e.rel, e.st);
    if (line) writer.appendLine(e.rel, line);
    else writer.append(digestRecord(e.rel, e.st, sha));
  };
  const maker = new LineMaker(root, opts, contentOf, linkRecord);
  if (cacheWriter) maker.onLink = (key, rel) => cacheWriter.link(key, rel);
  try {
    for await (const batch of walkBatches(root)) {
      if (opts.signal?.aborted) throw cancelled();
      present = true;
      let lines = '';
      for (const e of batch) {
        lines += await maker.line(e);
        if (opts.signal?.aborted) throw cancelled();
      }
      if (lines) {
        // Encoded once: the root digest hashes these bytes and the Verify answer sends them.
        const bytes = Buffer.from(lines, 'utf8');
        rootHash.update(bytes);
        cacheWriter?.write(bytes);
        yield bytes;
      }
    }
    if (opts.signal?.aborted) throw cancelled();
    const sha256 = rootHash.digest('hex');
    // The walk saw every file of the root: its records replace the older ones.
    if (present) writer?.commit();
    if (present && cacheWriter && position) {
      cacheWriter.commit({ epoch: position.epoch, seq: position.seq, fingerprint: fingerprintOf(root, opts), entries: maker.entries, files: maker.files, sha256, sockets: maker.sockets });
      opts.cache!.journal!.hold(HOLD, root.name, position);
    }
    yield { root: root.name, present, entries: maker.entries, sha256, socketsSkipped: maker.sockets.length, fromRecords: reader?.hits ?? 0, read, walk: { scoped: false, paths: 0, reason } };
  } finally {
    reader?.close();
    writer?.close();
    cacheWriter?.close();
  }
}

/** The journal's reader name for the digest caches' positions (ChangeJournal.hold). */
const HOLD = 'verify';

/** One buffer that small files are read into, again and again: no garbage per file. */
const READ_BUF = Buffer.allocUnsafe(Number(SMALL_FILE));

/** A small file's SHA-256, read synchronously into READ_BUF (to its end, whatever its size now). */
function hashSmall(abs: string): string {
  const fd = fsSync.openSync(abs, 'r');
  try {
    const h = crypto.createHash('sha256');
    for (;;) {
      const n = fsSync.readSync(fd, READ_BUF, 0, READ_BUF.length, null);
      if (n === 0) break;
      h.update(READ_BUF.subarray(0, n));
    }
    return h.digest('hex');
  } finally {
    fsSync.closeSync(fd);
  }
}

/** A regular file's SHA-256; small files are read synchronously. */
async function hashFile(e: WalkEntry, signal?: AbortSignal): Promise<string> {
  if (e.st.size <= SMALL_FILE) return hashSmall(e.abs);
  try {
    return await hashLarge(e.abs, signal);
  } catch (err) {
    if (signal?.aborted) throw cancelled();
    throw err;
  }
}

/**
 * Nothing changed in the root since its last digest, not even the root itself: that digest
 * stands, its lines as the cache has them (none with `digestsOnly`); the cache now starts
 * from this digest's position.
 */
async function* unchangedDigest(root: ResolvedRoot, opts: DigestOptions, plan: Extract<ScopedPlan, { scope: WalkScope }>): AsyncGenerator<Buffer | RootResult> {
  const { state } = plan.cache;
  if (!opts.digestsOnly) {
    for (const block of lineBlocks(plan.cache.lines, root.name)) {
      yield block;
      await nextTurn();
      if (opts.signal?.aborted) throw cancelled();
    }
  }
  const position = plan.journal.position!;
  moveVerifyCache(opts.records!.stateDir, root.name, { ...state, epoch: position.epoch, seq: position.seq });
  plan.journal.journal!.hold(HOLD, root.name, position);
  yield { root: root.name, present: true, entries: state.entries, sha256: state.sha256, socketsSkipped: state.sockets.length, fromRecords: state.files, read: 0, walk: { scoped: true, paths: 0, reason: '' } };
}

/**
 * The root's lines from the cache, but for what the scope covers, which comes from the
 * entries walked now, merged in walk order; the merged lines become the new cache.
 */
async function* mergedDigest(root: ResolvedRoot, opts: DigestOptions, plan: Extract<ScopedPlan, { scope: WalkScope }>, scoped: { entries: WalkEntry[]; scope: WalkScope; links: Map<string, string[]> }): AsyncGenerator<Buffer | RootResult> {
  const { scope, entries } = scoped;
  const { state } = plan.cache;
  const position = plan.journal.position!;
  let read = 0;
  const maker = new LineMaker(root, opts, async (e) => {
    read++;
    return hashFile(e, opts.signal);
  });
  maker.keepLinked = true;
  const fresh: { rel: string; line: string }[] = [];
  for (const e of entries) {
    const line = await maker.line(e);
    if (opts.signal?.aborted) throw cancelled();
    if (line) fresh.push({ rel: e.rel, line });
  }
  const sockets = [...state.sockets.filter((p) => !scope.covers(p)), ...maker.sockets];
  const rootHash = crypto.createHash('sha256');
  const cacheWriter = new VerifyCacheWriter(opts.records!.stateDir, root.name);
  let entriesOut = 0;
  let keptFiles = 0;
  try {
    // The cache's lines stay bytes: runs of kept lines go out as slices of what was read,
    // only each line's path is decoded (to merge and to ask the scope).
    let parts: Buffer[] = [];
    const flush = (): Buffer => {
      const bytes = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      parts = [];
      rootHash.update(bytes);
      cacheWriter.write(bytes);
      return bytes;
    };
    let i = 0;
    for (const data of lineBlocks(plan.cache.lines, root.name)) {
      let run = 0;
      let at = 0;
      for (;;) {
        const nl = data.indexOf(10, at);
        if (nl === -1) break;
        const line = parseCacheLine(data, at, nl);
        if (!line) throw new DamagedCache(`the digest cache of ${root.name} has a line that is no record`);
        let before = i;
        while (i < fresh.length && comparePaths(fresh[i].rel, line.path) < 0) i++;
        const covered = scope.covers(line.path);
        if (i > before || covered) {
          if (at > run) parts.push(data.subarray(run, at));
          if (i > before) {
            let text = '';
            for (; before < i; before++) text += fresh[before].line;
            parts.push(Buffer.from(text, 'utf8'));
          }
          run = covered ? nl + 1 : at;
        }
        if (!covered) {
          entriesOut++;
          if (line.ownDigest) keptFiles++;
        }
        at = nl + 1;
      }
      if (at > run) parts.push(data.subarray(run, at));
      if (parts.length) {
        const bytes = flush();
        if (!opts.digestsOnly) yield bytes;
      }
      await nextTurn();
      if (opts.signal?.aborted) throw cancelled();
    }
    if (i < fresh.length) {
      let text = '';
      for (; i < fresh.length; i++) text += fresh[i].line;
      parts.push(Buffer.from(text, 'utf8'));
      const bytes = flush();
      if (!opts.digestsOnly) yield bytes;
    }
    entriesOut += fresh.length;
    const sha256 = rootHash.digest('hex');
    // The groups the scope touched were looked at whole: their links are the ones met now.
    for (const [key, members] of scoped.links) for (const p of members) if (!scope.covers(p)) cacheWriter.link(key, p);
    for (const [key, members] of maker.linked) for (const p of members) cacheWriter.link(key, p);
    cacheWriter.commit({ epoch: position.epoch, seq: position.seq, fingerprint: state.fingerprint, entries: entriesOut, files: keptFiles + maker.files, sha256, sockets });
    plan.journal.journal!.hold(HOLD, root.name, position);
    yield { root: root.name, present: true, entries: entriesOut, sha256, socketsSkipped: sockets.length, fromRecords: keptFiles, read, walk: { scoped: true, paths: scope.size, reason: '' } };
  } finally {
    cacheWriter.close();
  }
}

/** A digest cache whose lines file is not what its digest wrote. */
class DamagedCache extends Error {}

/**
 * A cache's lines file as blocks of whole lines (about 1 MiB each), every one a buffer of
 * its own; a file that ends inside a line is no cache.
 */
function* lineBlocks(file: string, root: string): Generator<Buffer> {
  const fd = fsSync.openSync(file, 'r');
  try {
    let tail = Buffer.alloc(0);
    for (;;) {
      const chunk = Buffer.allocUnsafe(1 << 20);
      const n = fsSync.readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      const data = tail.length ? Buffer.concat([tail, chunk.subarray(0, n)]) : chunk.subarray(0, n);
      const end = data.lastIndexOf(10) + 1;
      tail = Buffer.from(data.subarray(end));
      if (end) yield data.subarray(0, end);
    }
    if (tail.length) throw new DamagedCache(`the digest cache of ${root} ends inside a line`);
  } finally {
    fsSync.closeSync(fd);
  }
}

const FILE_TYPE = Buffer.from(',"file",');
const NO_LINK = Buffer.from(',""]');

/**
 * The path of the cache line in data[start, end) (proto/verify-record.ts: a JSON array, the
 * path first), and whether it is a file with a digest of its own (not the other name of a
 * hard-linked file, whose line ends in its group's first path). A path without escapes is
 * decoded from its bytes; any other goes through JSON.parse.
 */
function parseCacheLine(data: Buffer, start: number, end: number): { path: string; ownDigest: boolean } | null {
  if (data[start] !== 0x5b || data[start + 1] !== 0x22) return null;
  let q = start + 2;
  let plain = true;
  for (; q < end; q++) {
    const c = data[q];
    if (c === 0x22) break;
    if (c === 0x5c) {
      plain = false;
      break;
    }
  }
  let path: string;
  let after: number;
  if (plain && q < end) {
    path = data.toString('utf8', start + 2, q);
    after = q + 1;
  } else {
    const at = pathOfLine(data.toString('utf8', start, end));
    if (!at) return null;
    path = at.path;
    after = start + Buffer.byteLength(data.toString('utf8', start, end).slice(0, at.end));
  }
  const ownDigest = data.compare(FILE_TYPE, 0, FILE_TYPE.length, after, after + FILE_TYPE.length) === 0 && end - start >= NO_LINK.length && data.compare(NO_LINK, 0, NO_LINK.length, end - NO_LINK.length, end) === 0;
  return { path, ownDigest };
}

/**
 * The Verify answer as messages: each root's record lines a walk batch at a time, the root's
 * digest on its last; with `digestsOnly`, one message per root with its digest and no lines.
 */
export async function* verifyBatches(roots: ResolvedRoot[], opts: DigestOptions, digestsOnly = false): AsyncGenerator<VerifyBatch> {
  for (const root of roots) {
    // One batch held back, so that the root's digest travels with the root's last lines.
    let held: Buffer = Buffer.alloc(0);
    for await (const item of digestRoot(root, { ...opts, digestsOnly })) {
      if (Buffer.isBuffer(item)) {
        if (digestsOnly) continue;
        if (held.length) yield { lines: held };
        held = item;
        continue;
      }
      yield { lines: held, root_done: { root: item.root, present: item.present, entries: item.entries, sha256: item.sha256, sockets_skipped: item.socketsSkipped, from_records: item.fromRecords, read: item.read, scoped: item.walk.scoped, paths: item.walk.paths, walk_reason: item.walk.reason } };
      held = Buffer.alloc(0);
    }
  }
}
