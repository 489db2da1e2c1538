/**
 * The receiving side of a pass. It merges three sorted streams per root — the sender's
 * listing, a walk of this host's tree, and the manifest of what earlier passes put here —
 * and decides for every entry: unchanged, attributes only, rename on the spot, fetch the
 * content, or (at the end of the root) delete. Decisions become actions that one executor
 * applies in order, while the wanted files stream in over a second call.
 *
 * Guarantees:
 * - Memory stays bounded: nothing holds a whole-tree list (only one directory's names, the
 *   entries gone on the source, and Maildir messages whose rename partner may come later).
 * - Every path from the wire is checked (relative, inside an allowlisted root, in walk
 *   order, under a directory the listing announced), so nothing is written through a
 *   symlink or outside the roots.
 * - A fetched file lands only after its size and SHA-256 match; until then it is a hidden
 *   temp file (mode 0600) that a later pass removes if this one dies.
 * - Deletes touch only entries an earlier pass put here and nobody changed since, never in
 *   a pass where the sender hit read errors, and at most `maxDelete`.
 * - When the pass reports success, what it wrote is on stable storage (`sync -f` per root)
 *   and the manifest is committed.
 */
import * as crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import { constants as C } from 'node:fs';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as tar from 'tar-stream';
import { CmError, comparePaths, PROTOCOL_VERSION, type ListBatch__Output, type ListEntry__Output, type Phase, type RootName } from '../proto';
import type { Identity } from './identity';
import { ManifestReader, ManifestWriter, type ManifestRecord } from './manifest';
import { checkWirePath, ensureParents, type AgentRoots, type ResolvedRoot } from './paths';
import type { FetchWant } from './source';
import { parsePaxTime, ReadAhead, utimesSeconds, walkRoot, type WalkEntry } from './walk';
import { CONTROL_NAME, PAX_CONTROL, PAX_SHA256, PAX_SHA256_PATH, PAX_SKIPPED, PAX_TORN } from './wire-format';

const execFileP = promisify(execFile);

export interface OwnerNames {
  user: string;
  group: string;
}

/** The wire side of a Fetch call, as the receiver sees it. */
export interface FetchChannel {
  send(wants: FetchWant[]): void;
  end(): void;
  /** The tar stream of the answers. */
  data: AsyncIterable<Buffer>;
}

export interface PullItem {
  op: 'new' | 'changed' | 'renamed' | 'deleted' | 'kept';
  path: string;
  from?: string;
  what?: string;
}

export interface PullProgress {
  root: string;
  files: number;
  bytes: number;
  totalFiles: number;
  totalBytes: number;
  sentBytes: number;
}

export interface PullOptions {
  cfg: AgentRoots;
  roots: ResolvedRoot[];
  phase: Phase;
  owners: Partial<Record<RootName, OwnerNames>>;
  identity: Identity;
  /** Where the manifests live (outside the roots). */
  stateDir: string;
  list: AsyncIterable<ListBatch__Output>;
  openFetch: () => FetchChannel;
  dryRun?: boolean;
  /** Largest number of deletes; beyond it the pass fails. Negative: no limit. */
  maxDelete?: number;
  onProgress?: (p: PullProgress) => void;
  onItem?: (i: PullItem) => void;
  /** Called whenever the pass makes progress; a watchdog uses it to find a stalled sender. */
  onActivity?: () => void;
}

export interface PullSummary {
  files: number;
  bytes: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  fifos: number;
  socketsSkipped: number;
  wireBytes: number;
  renamed: number;
  deleted: number;
  unchanged: number;
  keptExtraneous: number;
  keptPaths: string[];
  vanished: number;
  vanishedPaths: string[];
  deletesSkipped: boolean;
  absentRoots: string[];
  ownersDefaulted: string[];
}

const NAME_RE = /^(#\d{1,10}|[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\$?)$/;
export const TMP_PREFIX = '.cmmigrate-tmp-';
const QUEUE_LIMIT = 4096;
const WANT_BATCH = 256;
const MAX_DEFERRED = 50_000;
/** Entries of this host's walk read ahead of the merge, at most. */
const LOCAL_AHEAD = 1024;
const REPORT_LIMIT = 100;

interface Meta {
  uid: number;
  gid: number;
  mode: number;
  mtimeNs: bigint;
}

type Where = 'main' | 'extra';

type Action =
  | { k: 'mkdir'; rel: string; abs: string; replace: boolean; meta: Meta; si: string }
  | { k: 'finishDir'; rel: string; abs: string; meta: Meta }
  | { k: 'fetch'; rel: string; abs: string; s: ListEntry__Output; root: ResolvedRoot; where: Where }
  | { k: 'link'; rel: string; abs: string; leaderAbs: string; s: ListEntry__Output; where: Where }
  | { k: 'symlink'; rel: string; abs: string; target: string; meta: Meta; s: ListEntry__Output }
  | { k: 'fifo'; rel: string; abs: string; meta: Meta; s: ListEntry__Output }
  | { k: 'attrs'; rel: string; abs: string; meta: Meta; s: ListEntry__Output; symlink: boolean }
  | { k: 'keep'; rec: ManifestRecord }
  | { k: 'rename'; from: string; fromAbs: string; rel: string; abs: string; meta: Meta; s: ListEntry__Output; where: Where }
  | { k: 'rmtmp'; abs: string }
  | { k: 'delete'; rel: string; abs: string; dir: boolean }
  | { k: 'sync'; abs: string };

/** An entry of this host that the source no longer has: only what renames and deletes need. */
interface Gone {
  rel: string;
  abs: string;
  type: string;
  size: number;
  mtimeUs: bigint;
  ours: boolean;
  si: string;
  consumed: boolean;
}

interface Frame {
  rel: string;
  abs: string;
  meta: Meta;
  t?: WalkEntry;
  dirty: boolean;
}

function wireError(message: string, cause?: unknown): CmError {
  return new CmError('wire.protocol', message, {
    hint: 'the sending agent is not a cmmigrate agent of the same version, or the stream was damaged; nothing more was written',
    cause,
  });
}

function typeConflict(rel: string, want: string): CmError {
  return new CmError('transfer.type_conflict', `/${rel} on the new host is in the way: the source has ${want} there`, {
    hint: `move /${rel} aside on the new host, then run the same command again`,
  });
}

const us = (ns: bigint): bigint => ns / 1000n;

/** A bounded queue between the merge (producer) and the executor (consumer). */
class ActionQueue {
  private items: Action[] = [];
  private closed = false;

  /** An action was taken and is not applied yet (the executor clears it). */
  busy = false;

  /** Where the next action to take is: Array.shift() moves the whole array each time. */
  private head = 0;

  private get length(): number {
    return this.items.length - this.head;
  }

  /** Nothing queued and nothing being applied. */
  get empty(): boolean {
    return this.length === 0 && !this.busy;
  }

  private failed: unknown = null;
  private wakeConsumer: (() => void) | null = null;
  private wakeProducer: (() => void) | null = null;

  async push(a: Action): Promise<void> {
    while (this.length >= QUEUE_LIMIT && !this.failed) await new Promise<void>((r) => (this.wakeProducer = r));
    if (this.failed) throw this.failed;
    this.items.push(a);
    this.wakeConsumer?.();
    this.wakeConsumer = null;
  }
  close(): void {
    this.closed = true;
    this.wakeConsumer?.();
  }
  fail(err: unknown): void {
    this.failed = err;
    this.wakeProducer?.();
    this.wakeConsumer?.();
  }
  async shift(): Promise<Action | null> {
    while (!this.length && !this.closed && !this.failed) await new Promise<void>((r) => (this.wakeConsumer = r));
    if (this.failed) throw this.failed;
    let a: Action | null = null;
    if (this.length) {
      a = this.items[this.head];
      this.items[this.head++] = undefined as unknown as Action;
      if (this.head === this.items.length) {
        this.items = [];
        this.head = 0;
      } else if (this.head >= QUEUE_LIMIT) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
    }
    this.busy = a !== null;
    if (this.length < QUEUE_LIMIT / 2) {
      this.wakeProducer?.();
      this.wakeProducer = null;
    }
    return a;
  }
}

type TarEntry = AsyncIterable<Buffer> & { header: tar.Header };

/** Run one pass as the receiver. */
export async function pull(opts: PullOptions): Promise<PullSummary> {
  const p = new Puller(opts);
  try {
    await p.run();
  } catch (err) {
    await p.abort();
    throw diskFull(err, (err as NodeJS.ErrnoException).path ?? opts.cfg.root);
  }
  return p.summary;
}

class Puller {
  readonly summary: PullSummary = {
    files: 0,
    bytes: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    fifos: 0,
    socketsSkipped: 0,
    wireBytes: 0,
    renamed: 0,
    deleted: 0,
    unchanged: 0,
    keptExtraneous: 0,
    keptPaths: [],
    vanished: 0,
    vanishedPaths: [],
    deletesSkipped: false,
    absentRoots: [],
    ownersDefaulted: [],
  };
  private readonly queue = new ActionQueue();
  private fetch: FetchReader | null = null;
  private writer: ManifestWriter | null = null;
  private readonly defaulted = new Set<string>();
  private readErrors = false;
  private progress: PullProgress = { root: '', files: 0, bytes: 0, totalFiles: 0, totalBytes: 0, sentBytes: 0 };
  private lastProgress = 0;

  constructor(private readonly o: PullOptions) {}

  async run(): Promise<void> {
    const list = this.o.list[Symbol.asyncIterator]();
    if (this.o.roots.length) this.startLocalWalk(this.o.roots[0]);
    const first = await list.next();
    if (first.done) throw wireError('the sender\'s listing was empty');
    const announced = this.begin(first.value);
    let pendingBatch: ListBatch__Output | null = first.value.entries.length || first.value.root_end ? first.value : null;

    if (!this.o.dryRun) this.fetch = new FetchReader(this.o.openFetch(), this);
    const executor = this.o.dryRun ? Promise.resolve() : this.execute();
    executor.catch((err) => {
      this.queue.fail(err);
      this.failBarriers(err);
    });
    try {
      for (const root of this.o.roots) {
        const ann = announced.get(root.name)!;
        const batches = async function* (): AsyncGenerator<ListBatch__Output> {
          if (pendingBatch) {
            const b = pendingBatch;
            pendingBatch = null;
            yield b;
          }
          for (;;) {
            const n = await list.next();
            if (n.done) throw wireError(`the listing ended inside root ${root.name}`);
            yield n.value;
            if (n.value.root_end) return;
          }
        };
        this.progress = { root: root.name, files: 0, bytes: 0, totalFiles: Number(ann.files), totalBytes: Number(ann.bytes), sentBytes: this.progress.sentBytes };
        await this.mergeRoot(root, batches());
      }
      const rest = await list.next();
      if (!rest.done) throw wireError('the listing went on after its last root');
      this.queue.close();
      await executor;
    } catch (err) {
      this.queue.fail(err);
      // The executor may be waiting for a file that will not come now.
      this.fetch?.abort(err);
      await executor.catch(() => undefined);
      throw err;
    }
    for (const m of this.manifests.splice(0)) m.close();
    if (this.fetch) await this.fetch.finish();
    this.summary.ownersDefaulted = [...this.defaulted].sort();
    this.summary.wireBytes = this.fetch?.wireBytes ?? 0;
  }

  /** Something moved: the listing, the data, or the executor. */
  activity(): void {
    this.o.onActivity?.();
  }

  /** Put the journal's buffered records on disk: the pass is about to wait. */
  flushJournal(): void {
    this.writer?.flush();
  }

  async abort(): Promise<void> {
    for (const m of this.manifests.splice(0)) m.close();
    await this.fetch?.cleanup();
    this.writer?.close();
  }

  /** The first listing batch: protocol, roots, and the owner names every root needs. */
  private begin(b: ListBatch__Output): Map<string, { files: string; bytes: string }> {
    if (b.protocol !== PROTOCOL_VERSION) {
      throw new CmError('wire.protocol_version', `the sending agent speaks protocol ${JSON.stringify(b.protocol)}, this agent ${PROTOCOL_VERSION}`, {
        hint: 'install the same cmmigrate version on both hosts (cmmigrate install-agent old|new)',
      });
    }
    if (b.roots.length !== this.o.roots.length) throw wireError(`the sender announced ${b.roots.length} roots, ${this.o.roots.length} were asked`);
    const out = new Map<string, { files: string; bytes: string }>();
    const needUsers = new Set<string>();
    const needGroups = new Set<string>();
    b.roots.forEach((a, i) => {
      const mine = this.o.roots[i];
      if (a.name !== mine.name) throw wireError(`the sender announced root ${JSON.stringify(a.name)} where ${mine.name} was asked`);
      if (a.rel !== mine.rel) {
        throw new CmError('agent.path_mailboxes_mismatch', `root ${a.name} is /${a.rel} on the sender but /${mine.rel} here`, {
          hint: 'both agents must serve the same mailboxes dir (--mailboxes-dir)',
        });
      }
      out.set(a.name, { files: a.files, bytes: a.bytes });
      if (!a.present) {
        this.summary.absentRoots.push(a.name);
        return;
      }
      const rule = this.o.owners[mine.name];
      if (rule) {
        needUsers.add(rule.user);
        needGroups.add(rule.group);
      } else {
        a.users.forEach((u) => needUsers.add(u));
        a.groups.forEach((g) => needGroups.add(g));
      }
    });
    const { identity } = this.o;
    const missingUsers = [...needUsers].filter((u) => identity.uid(u) === undefined).sort();
    const missingGroups = [...needGroups].filter((g) => identity.gid(g) === undefined).sort();
    if (this.o.phase === 'final' && (missingUsers.length || missingGroups.length)) {
      const parts = [];
      if (missingUsers.length) parts.push(`users ${missingUsers.join(', ')}`);
      if (missingGroups.length) parts.push(`groups ${missingGroups.join(', ')}`);
      throw new CmError('transfer.missing_owners', `the new host lacks ${parts.join(' and ')}; nothing was written`, {
        hint: 'step 2 creates them: run `CMDEPLOY_STAGES=install,configure scripts/cmdeploy run --ssh-host NEW` from the relay checkout (cmmigrate run does it), then run the same command again',
        details: { users: missingUsers, groups: missingGroups },
      });
    }
    return out;
  }

  private owner(root: ResolvedRoot, uname: string, gname: string, rel: string): { uid: number; gid: number } {
    const rule = this.o.owners[root.name];
    const user = rule?.user ?? uname;
    const group = rule?.group ?? gname;
    if (!NAME_RE.test(user) || !NAME_RE.test(group)) throw wireError(`/${rel}: bad owner ${JSON.stringify(user)}:${JSON.stringify(group)}`);
    let uid = this.o.identity.uid(user);
    let gid = this.o.identity.gid(group);
    if (uid === undefined || gid === undefined) {
      if (this.o.phase === 'final') {
        throw new CmError('transfer.missing_owners', `the new host has no ${uid === undefined ? 'user ' + user : 'group ' + group} (for /${rel})`, {
          hint: 'run step 2 (cmdeploy install,configure) on the new host, then run the same command again',
        });
      }
      if (uid === undefined) this.defaulted.add(user);
      if (gid === undefined) this.defaulted.add(group);
      uid ??= 0;
      gid ??= 0;
    }
    return { uid, gid };
  }

  private item(i: PullItem): void {
    this.o.onItem?.(i);
  }

  private tick(files: number, bytes: number): void {
    this.progress.files += files;
    this.progress.bytes += bytes;
    const now = Date.now();
    if (now - this.lastProgress >= 250) {
      this.lastProgress = now;
      this.o.onProgress?.({ ...this.progress });
    }
  }

  // ------------------------------------------------------------------------------------
  // The merge

  private localWalks = new Map<string, ReadAhead<WalkEntry>>();
  /** The manifests read so far: each closes its files at their end, or in abort(). */
  private readonly manifests: ManifestReader[] = [];

  /**
   * Start walking a root of this host ahead of the merge: the first one while the sender
   * still walks its tree for the announcement, the others as their merge begins.
   */
  private startLocalWalk(root: ResolvedRoot): void {
    if (!this.localWalks.has(root.name)) this.localWalks.set(root.name, new ReadAhead(walkRoot(root)[Symbol.asyncIterator](), LOCAL_AHEAD));
  }

  private takeLocalWalk(root: ResolvedRoot): ReadAhead<WalkEntry> {
    this.startLocalWalk(root);
    const w = this.localWalks.get(root.name)!;
    this.localWalks.delete(root.name);
    return w;
  }

  private async mergeRoot(root: ResolvedRoot, batches: AsyncGenerator<ListBatch__Output>): Promise<void> {
    const dry = !!this.o.dryRun;
    const ours = await ManifestReader.open(this.o.stateDir, root.name);
    this.manifests.push(ours);
    if (!dry) this.writer = new ManifestWriter(this.o.stateDir, root.name);
    const local = this.takeLocalWalk(root);
    let t = (await local.next()).value as WalkEntry | undefined;
    const nextT = async (): Promise<void> => {
      t = ((await local.next()).value as WalkEntry | undefined) ?? undefined;
    };
    const stack: Frame[] = [];
    const gone: Gone[] = [];
    const goneByKey = new Map<string, Gone>();
    const goneByIno = new Map<string, Gone>();
    const deferred: { s: ListEntry__Output; abs: string; leaderAbs?: string }[] = [];
    const deferredLeaders = new Set<number>();
    const touched = new Map<string, Frame>();
    // Hard-link leaders listed so far, as 48-bit hashes of their paths: a few bytes each.
    const leaders = new Set<number>();
    const pathKey = (rel: string): number => crypto.createHash('sha1').update(rel).digest().readUIntBE(0, 6);
    const maildirs = new Set<string>();
    let prev = '';
    let started = false;
    let rootErrors = false;

    const rel2abs = (rel: string): string => path.join(this.o.cfg.root, rel);
    const finish = async (f: Frame): Promise<void> => {
      const changed = !f.t || f.dirty || f.t.st.uid !== BigInt(f.meta.uid) || f.t.st.gid !== BigInt(f.meta.gid) || Number(f.t.st.mode & 0o7777n) !== f.meta.mode || us(f.t.st.mtimeNs) !== us(f.meta.mtimeNs);
      if (!dry && changed) await this.queue.push({ k: 'finishDir', rel: f.rel, abs: f.abs, meta: f.meta });
      if (f.t && !changed) this.summary.unchanged++;
    };

    /** An entry of this host that the source does not have (any more). */
    const goneEntry = async (te: WalkEntry): Promise<void> => {
      const parentRel = path.posix.dirname(te.rel);
      let parentFrame: Frame | undefined;
      for (let i = stack.length - 1; i >= 0 && !parentFrame; i--) if (stack[i].rel === parentRel) parentFrame = stack[i];
      if (path.posix.basename(te.rel).startsWith(TMP_PREFIX)) {
        // Left by an interrupted pass.
        if (!dry) await this.queue.push({ k: 'rmtmp', abs: te.abs });
        if (parentFrame) parentFrame.dirty = true;
        return;
      }
      const m = ours.at(te.rel);
      const isOurs = !!m && m.t === te.type && m.i === String(te.st.ino) && (te.type !== 'file' || (m.s === Number(te.st.size) && m.m === String(us(te.st.mtimeNs))));
      const g: Gone = { rel: te.rel, abs: te.abs, type: te.type, size: Number(te.st.size), mtimeUs: us(te.st.mtimeNs), ours: isOurs, si: m?.si ?? '', consumed: false };
      gone.push(g);
      if (te.type === 'file') {
        const key = maildirKey(te.rel);
        if (key && !goneByKey.has(key)) goneByKey.set(key, g);
        if (g.si && isOurs && !goneByIno.has(g.si)) goneByIno.set(g.si, g);
      }
      if (parentFrame) touched.set(parentFrame.rel, parentFrame);
    };

    const findRename = (s: ListEntry__Output): Gone | undefined => {
      const key = maildirKey(s.path);
      const byKey = key ? goneByKey.get(key) : undefined;
      const byIno = s.ino ? goneByIno.get(s.ino) : undefined;
      // A rename keeps size and mtime; an inode number alone may have been reused.
      for (const g of [byKey, byIno]) {
        if (g && !g.consumed && g.type === 'file' && g.size === Number(s.size) && g.mtimeUs === us(BigInt(s.mtime_ns))) return g;
      }
      return undefined;
    };

    const renameOrFetch = async (s: ListEntry__Output, abs: string, meta: Meta, where: Where): Promise<void> => {
      const g = findRename(s);
      if (g) {
        g.consumed = true;
        this.summary.renamed++;
        this.item({ op: 'renamed', path: '/' + s.path, from: '/' + g.rel });
        const parent = stack.find((f) => f.rel === path.posix.dirname(g.rel));
        if (parent) touched.set(parent.rel, parent);
        if (!dry) await this.queue.push({ k: 'rename', from: g.rel, fromAbs: g.abs, rel: s.path, abs, meta, s, where });
        else this.tick(1, Number(s.size));
        return;
      }
      this.item({ op: 'new', path: '/' + s.path });
      if (!dry) await this.queueFetch({ k: 'fetch', rel: s.path, abs, s, root, where });
      else this.tick(1, Number(s.size));
    };

    for await (const batch of batches) {
      this.activity();
      for (const s of batch.entries) {
        // Check the entry: a sound path, inside this root, in walk order, under its directory.
        const rel = checkWirePath(s.path, 'listed path');
        if (!started) {
          if (rel !== root.rel) throw wireError(`root ${root.name} began with /${rel}, not /${root.rel}`);
          started = true;
          if (!dry) await ensureParents(this.o.cfg, rel);
        } else {
          if (!rel.startsWith(root.rel + '/')) {
            throw new CmError('agent.path_outside_root', `refused /${rel}: outside root ${root.name} (/${root.rel})`, {
              hint: 'an agent writes only inside its allowlisted roots; the sender is damaged or hostile',
            });
          }
          if (comparePaths(prev, rel) >= 0) throw wireError(`the listing is out of order at /${rel}`);
        }
        prev = rel;
        const abs = rel2abs(rel);
        // Entries of this host before this one are gone on the source.
        while (t && comparePaths(t.rel, rel) < 0) {
          await goneEntry(t);
          await nextT();
        }
        const te = t && t.rel === rel ? t : undefined;
        if (te) await nextT();
        // Close the directories this entry is not in.
        while (stack.length && !rel.startsWith(stack[stack.length - 1].rel + '/')) await finish(stack.pop()!);
        if (rel !== root.rel) {
          const top = stack[stack.length - 1];
          if (!top || path.posix.dirname(rel) !== top.rel) throw wireError(`/${rel} is listed without its directory before it; refused`);
        }
        const mtimeNs = parsePaxTime(String(s.mtime_ns).replace(/^(\d+)(\d{9})$/, '$1.$2'));
        if (mtimeNs === undefined || !/^\d{1,21}$/.test(s.mtime_ns)) throw wireError(`/${rel}: bad mtime ${JSON.stringify(s.mtime_ns)}`);
        const { uid, gid } = this.owner(root, s.user, s.group, rel);
        const meta: Meta = { uid, gid, mode: s.mode & 0o7777, mtimeNs: BigInt(s.mtime_ns) };
        const m = te ? ours.at(rel) : undefined;
        const isOurs = !!m && te !== undefined && m.i === String(te.st.ino);
        const top = stack[stack.length - 1];
        /** The same entry of the same type here: unchanged, or only its attributes to set. */
        const keepOrFixAttrs = async (here: WalkEntry, symlink: boolean): Promise<void> => {
          const what = differs(here, s, meta);
          if (!what.length) {
            this.summary.unchanged++;
            if (!dry && isOurs) await this.keep(record(rel, here, s));
            return;
          }
          this.item({ op: 'changed', path: '/' + rel, what: what.join(',') });
          if (!dry) await this.queue.push({ k: 'attrs', rel, abs, meta, s, symlink });
        };

        switch (s.type) {
          case 'dir': {
            let replace = false;
            if (te && te.type !== 'dir') {
              if (te.type !== 'symlink') throw typeConflict(rel, 'a directory');
              replace = true; // a symlink is replaced, never followed
            }
            if (!te || replace) {
              this.item({ op: 'new', path: '/' + rel + '/' });
              this.summary.dirs++;
              if (!dry) await this.queue.push({ k: 'mkdir', rel, abs, replace, meta, si: s.ino });
              if (top) top.dirty = true;
            } else if (!dry && isOurs) {
              // Recorded before its contents: the manifest stays in walk order.
              await this.keep(record(rel, te!, s));
            }
            const name = path.posix.basename(rel);
            if ((name === 'cur' || name === 'new') && te && te.type === 'dir') maildirs.add(path.posix.dirname(rel));
            stack.push({ rel, abs, meta, t: replace ? undefined : te, dirty: false });
            break;
          }
          case 'file': {
            if (s.leader) {
              const leaderRel = checkWirePath(s.leader, 'hard-link leader');
              if (!leaders.has(pathKey(leaderRel)) || comparePaths(leaderRel, rel) >= 0 || !leaderRel.startsWith(root.rel + '/')) {
                throw new CmError('wire.bad_link', `refused hard link /${rel} -> /${leaderRel}: not a file listed before it`, {
                  hint: 'hard links may only point at files listed earlier in the same pass',
                });
              }
              if (te && te.type === 'dir') throw typeConflict(rel, 'a file');
              if (top) top.dirty = true;
              if (deferredLeaders.has(pathKey(leaderRel))) {
                // Its leader is settled at the end of the root: so is this link.
                deferred.push({ s, abs, leaderAbs: rel2abs(leaderRel) });
                if (top) touched.set(top.rel, top);
                break;
              }
              if (!dry) await this.queue.push({ k: 'link', rel, abs, leaderAbs: rel2abs(leaderRel), s, where: 'main' });
              else if (!te) this.item({ op: 'new', path: '/' + rel, what: `hard link to /${leaderRel}` });
              break;
            }
            if (Number(s.nlink) > 1) leaders.add(pathKey(rel));
            if (te && te.type === 'dir') throw typeConflict(rel, 'a file');
            if (te && te.type === 'file') {
              const what = differs(te, s, meta);
              if (!what.length) {
                this.summary.unchanged++;
                this.tick(1, Number(s.size));
                if (!dry && isOurs) await this.keep(record(rel, te, s));
                break;
              }
              if (!what.includes('size') && !what.includes('mtime')) {
                this.item({ op: 'changed', path: '/' + rel, what: what.join(',') });
                this.tick(1, Number(s.size));
                if (!dry) await this.queue.push({ k: 'attrs', rel, abs, meta, s, symlink: false });
                break;
              }
              this.item({ op: 'changed', path: '/' + rel, what: what.join(',') });
              if (top) top.dirty = true;
              if (!dry) await this.queueFetch({ k: 'fetch', rel, abs, s, root, where: 'main' });
              else this.tick(1, Number(s.size));
              break;
            }
            // New here (or replacing a symlink or FIFO): moved on the source, or new.
            if (top) top.dirty = true;
            const folder = maildirFolder(rel);
            if (!te && folder && maildirs.has(folder) && deferred.length < MAX_DEFERRED && !findRename(s)) {
              // Its old name may come later in walk order (new/ sorts after cur/): decide at the end.
              deferred.push({ s, abs });
              if (Number(s.nlink) > 1) deferredLeaders.add(pathKey(rel));
              if (top) touched.set(top.rel, top);
              break;
            }
            await renameOrFetch(s, abs, meta, 'main');
            break;
          }
          case 'symlink': {
            if (te && te.type === 'dir') throw typeConflict(rel, 'a symlink');
            if (!s.link || s.link.includes('\0') || Buffer.byteLength(s.link) > 4096) throw wireError(`/${rel}: bad symlink target`);
            const same = te && te.type === 'symlink' && (await fs.readlink(te.abs).catch(() => null)) === s.link;
            if (same) {
              await keepOrFixAttrs(te!, true);
              break;
            }
            this.item({ op: te ? 'changed' : 'new', path: '/' + rel, what: te ? 'link' : undefined });
            if (top) top.dirty = true;
            if (!dry) await this.queue.push({ k: 'symlink', rel, abs, target: s.link, meta, s });
            break;
          }
          case 'fifo': {
            if (te && te.type === 'dir') throw typeConflict(rel, 'a FIFO');
            if (te && te.type === 'fifo') {
              await keepOrFixAttrs(te, false);
              break;
            }
            this.item({ op: te ? 'changed' : 'new', path: '/' + rel, what: te ? 'type' : undefined });
            if (top) top.dirty = true;
            if (!dry) await this.queue.push({ k: 'fifo', rel, abs, meta, s });
            break;
          }
          default:
            if (s.type === 'character-device' || s.type === 'block-device' || s.type === 'device') {
              throw new CmError('wire.device_node', `refused /${rel}: device nodes are never written`, {
                hint: 'the sender must not send device nodes; nothing was written for this entry',
              });
            }
            throw wireError(`/${rel}: unsupported entry type ${JSON.stringify(s.type)}`);
        }
      }
      if (batch.root_end) {
        const e = batch.root_end;
        this.summary.socketsSkipped += Number(e.sockets_skipped);
        if (Number(e.vanished) > 0) {
          rootErrors = true;
          this.summary.vanished += Number(e.vanished);
          for (const v of e.vanished_paths) if (this.summary.vanishedPaths.length < REPORT_LIMIT) this.summary.vanishedPaths.push(v);
        }
      }
    }
    if (!started) {
      // The root is absent on the source: leave this host's copy alone.
      return;
    }
    // What is left of this host's tree is gone on the source.
    while (t) {
      await goneEntry(t);
      await nextT();
    }
    while (stack.length) await finish(stack.pop()!);

    // Messages whose old names came later in walk order.
    for (const d of deferred) {
      if (d.leaderAbs) {
        if (!dry) await this.queue.push({ k: 'link', rel: d.s.path, abs: d.abs, leaderAbs: d.leaderAbs, s: d.s, where: 'extra' });
        continue;
      }
      const { uid, gid } = this.owner(root, d.s.user, d.s.group, d.s.path);
      await renameOrFetch(d.s, d.abs, { uid, gid, mode: d.s.mode & 0o7777, mtimeNs: BigInt(d.s.mtime_ns) }, 'extra');
    }
    // Wait for the executor: live-pass skips of fetched files count as read errors too.
    if (!dry) await this.barrier();
    const deletesAllowed = !rootErrors && !this.readErrors;
    for (let i = gone.length - 1; i >= 0; i--) {
      const g = gone[i];
      if (g.consumed) continue;
      if (!g.ours) {
        this.summary.keptExtraneous++;
        if (this.summary.keptPaths.length < REPORT_LIMIT) this.summary.keptPaths.push('/' + g.rel);
        this.item({ op: 'kept', path: '/' + g.rel });
        continue;
      }
      if (!deletesAllowed) {
        this.summary.deletesSkipped = true;
        continue;
      }
      const limit = this.o.maxDelete ?? -1;
      if (limit >= 0 && this.summary.deleted >= limit) {
        throw new CmError('transfer.max_delete', `this pass would delete more than --max-delete ${limit} entries (at /${g.rel}); stopped before deleting more`, {
          hint: 'look at what would go with --dry-run; then run the same command with a larger --max-delete',
        });
      }
      this.summary.deleted++;
      this.item({ op: 'deleted', path: '/' + g.rel });
      if (!dry) await this.queue.push({ k: 'delete', rel: g.rel, abs: g.abs, dir: g.type === 'dir' });
    }
    // Directories whose contents changed after they were finished get their times again.
    if (!dry) {
      for (const f of [...touched.values()].sort((a, b) => comparePaths(b.rel, a.rel))) {
        await this.queue.push({ k: 'finishDir', rel: f.rel, abs: f.abs, meta: f.meta });
      }
      await this.queue.push({ k: 'sync', abs: root.abs });
      await this.barrier();
      await this.writer!.commit();
      this.writer = null;
    }
    this.o.onProgress?.({ ...this.progress });
  }

  /** Ask for the file now, so that its data streams in while earlier actions run. */
  private async queueFetch(a: Extract<Action, { k: 'fetch' }>): Promise<void> {
    this.fetch!.want({ path: a.rel, size: Number(a.s.size), mtimeNs: BigInt(a.s.mtime_ns) });
    await this.queue.push(a);
  }

  private barrierWaiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  /** Wait until the executor has applied everything queued so far. */
  private async barrier(): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.barrierWaiters.push({ resolve, reject }));
    await this.queue.push({ k: 'sync', abs: '' });
    await done;
  }

  private failBarriers(err: unknown): void {
    for (const w of this.barrierWaiters.splice(0)) w.reject(err);
  }

  // ------------------------------------------------------------------------------------
  // The executor

  private async execute(): Promise<void> {
    for (;;) {
      // About to wait: what was applied must be on record, or a kill now orphans it.
      if (this.queue.empty) this.flushJournal();
      const a = await this.queue.shift();
      if (!a) return;
      await this.apply(a);
      this.queue.busy = false;
      this.activity();
    }
  }

  /**
   * The record of an entry this pass leaves as it is. When nothing waits in the queue before
   * it, it goes straight into the journal: the journal stays in walk order, and an unchanged
   * entry costs no trip through the executor.
   */
  private async keep(rec: ManifestRecord): Promise<void> {
    if (this.writer && this.queue.empty) this.writer.append(rec);
    else await this.queue.push({ k: 'keep', rec });
  }

  private async apply(a: Action): Promise<void> {
    const w = this.writer;
    switch (a.k) {
      case 'mkdir': {
        if (a.replace) fsSync.unlinkSync(a.abs);
        fsSync.mkdirSync(a.abs, { mode: 0o700 });
        const st = fsSync.lstatSync(a.abs, { bigint: true });
        if (w) w.append({ p: a.rel, t: 'dir', s: 0, m: String(us(a.meta.mtimeNs)), i: String(st.ino), si: a.si });
        return;
      }
      case 'finishDir': {
        fsSync.chownSync(a.abs, a.meta.uid, a.meta.gid);
        fsSync.chmodSync(a.abs, a.meta.mode);
        const t = utimesSeconds(a.meta.mtimeNs);
        fsSync.utimesSync(a.abs, t, t);
        return;
      }
      case 'fetch': {
        const r = await this.fetch!.receive(a.rel, a.abs, (uname, gname) => this.owner(a.root, uname, gname, a.rel));
        if (r === null) {
          this.readErrors = true;
          this.summary.vanished++;
          if (this.summary.vanishedPaths.length < REPORT_LIMIT) this.summary.vanishedPaths.push('/' + a.rel);
          return;
        }
        this.summary.files++;
        this.summary.bytes += r.size;
        this.progress.sentBytes += r.size;
        this.tick(1, r.size);
        if (w) w.append({ p: a.rel, t: 'file', s: r.size, m: String(us(r.mtimeNs)), i: r.ino, si: a.s.ino }, a.where);
        return;
      }
      case 'link': {
        const x = lstatOrNull(a.leaderAbs);
        const y = lstatOrNull(a.abs);
        if (!x) return; // its leader was skipped in a live pass
        if (y && y.ino === x.ino) {
          this.summary.unchanged++;
        } else {
          const tmp = tmpName(a.abs);
          fsSync.linkSync(a.leaderAbs, tmp);
          await renameIntoPlace(tmp, a.abs, a.rel);
          this.summary.hardlinks++;
        }
        if (w) w.append({ p: a.rel, t: 'file', s: Number(x.size), m: String(us(x.mtimeNs)), i: String(x.ino), si: a.s.ino }, a.where);
        return;
      }
      case 'symlink': {
        const tmp = tmpName(a.abs);
        fsSync.symlinkSync(a.target, tmp);
        fsSync.lchownSync(tmp, a.meta.uid, a.meta.gid);
        const t = utimesSeconds(a.meta.mtimeNs);
        fsSync.lutimesSync(tmp, t, t);
        await renameIntoPlace(tmp, a.abs, a.rel);
        this.summary.symlinks++;
        await this.record(a.rel, 'symlink', 0, a.meta, a.s);
        return;
      }
      case 'fifo': {
        const tmp = tmpName(a.abs);
        await execFileP('mkfifo', ['-m', '600', tmp]); // Node has no mkfifo
        fsSync.chownSync(tmp, a.meta.uid, a.meta.gid);
        fsSync.chmodSync(tmp, a.meta.mode);
        const t = utimesSeconds(a.meta.mtimeNs);
        fsSync.utimesSync(tmp, t, t);
        await renameIntoPlace(tmp, a.abs, a.rel);
        this.summary.fifos++;
        await this.record(a.rel, 'fifo', 0, a.meta, a.s);
        return;
      }
      case 'attrs': {
        const t = utimesSeconds(a.meta.mtimeNs);
        if (a.symlink) {
          fsSync.lchownSync(a.abs, a.meta.uid, a.meta.gid);
          fsSync.lutimesSync(a.abs, t, t);
        } else {
          fsSync.chownSync(a.abs, a.meta.uid, a.meta.gid);
          fsSync.chmodSync(a.abs, a.meta.mode);
          fsSync.utimesSync(a.abs, t, t);
        }
        await this.record(a.rel, a.s.type, Number(a.s.size), a.meta, a.s);
        return;
      }
      case 'keep':
        if (w) w.append(a.rec);
        return;
      case 'rename': {
        fsSync.renameSync(a.fromAbs, a.abs);
        fsSync.chownSync(a.abs, a.meta.uid, a.meta.gid);
        fsSync.chmodSync(a.abs, a.meta.mode);
        const t = utimesSeconds(a.meta.mtimeNs);
        fsSync.utimesSync(a.abs, t, t);
        this.tick(1, Number(a.s.size));
        await this.record(a.rel, 'file', Number(a.s.size), a.meta, a.s, a.where);
        return;
      }
      case 'rmtmp':
        await fs.rm(a.abs, { force: true });
        return;
      case 'delete':
        try {
          if (a.dir) fsSync.rmdirSync(a.abs);
          else fsSync.unlinkSync(a.abs);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') return;
          if (code === 'ENOTEMPTY' || code === 'EEXIST') {
            // Something that is not ours is still inside: keep the directory.
            this.summary.deleted--;
            this.summary.keptExtraneous++;
            if (this.summary.keptPaths.length < REPORT_LIMIT) this.summary.keptPaths.push('/' + a.rel);
            return;
          }
          throw err;
        }
        return;
      case 'sync':
        if (a.abs) await execFileP('sync', ['-f', a.abs]); // one syncfs per root, not an fsync per file
        for (const w2 of this.barrierWaiters.splice(0)) w2.resolve();
        return;
    }
  }

  private async record(rel: string, type: string, size: number, meta: Meta, s: ListEntry__Output, where: Where = 'main'): Promise<void> {
    if (!this.writer) return;
    const st = fsSync.lstatSync(path.join(this.o.cfg.root, rel), { bigint: true });
    this.writer.append({ p: rel, t: type, s: size, m: String(us(meta.mtimeNs)), i: String(st.ino), si: s.ino }, where);
  }
}

function record(rel: string, te: WalkEntry, s: ListEntry__Output): ManifestRecord {
  return { p: rel, t: te.type, s: te.type === 'file' ? Number(te.st.size) : 0, m: String(us(te.st.mtimeNs)), i: String(te.st.ino), si: s.ino };
}

/** What differs between this host's entry and the listed one. */
function differs(te: WalkEntry, s: ListEntry__Output, meta: Meta): string[] {
  const out: string[] = [];
  if (te.type !== s.type) out.push('type');
  if (s.type === 'file' && Number(te.st.size) !== Number(s.size)) out.push('size');
  if (us(te.st.mtimeNs) !== us(meta.mtimeNs)) out.push('mtime');
  if (s.type !== 'symlink' && Number(te.st.mode & 0o7777n) !== meta.mode) out.push('mode');
  if (Number(te.st.uid) !== meta.uid || Number(te.st.gid) !== meta.gid) out.push('owner');
  return out;
}

/** For a message in `X/cur/` or `X/new/`: X and its base name (the part before `:2,`). */
function maildirKey(rel: string): string | undefined {
  const folder = maildirFolder(rel);
  if (!folder) return undefined;
  const name = path.posix.basename(rel);
  return `${folder}\0${name.split(':')[0]}`;
}

function maildirFolder(rel: string): string | undefined {
  const dir = path.posix.dirname(rel);
  const b = path.posix.basename(dir);
  return b === 'cur' || b === 'new' ? path.posix.dirname(dir) : undefined;
}

const TMP_SALT = crypto.randomBytes(4).toString('hex');
let tmpCounter = 0;
function tmpName(abs: string): string {
  return path.join(path.dirname(abs), `${TMP_PREFIX}${TMP_SALT}-${(tmpCounter++).toString(36)}`);
}

function lstatOrNull(p: string): fsSync.BigIntStats | null {
  try {
    return fsSync.lstatSync(p, { bigint: true });
  } catch {
    return null;
  }
}

async function renameIntoPlace(tmp: string, abs: string, rel: string): Promise<void> {
  try {
    fsSync.renameSync(tmp, abs);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'EEXIST') throw typeConflict(rel, 'not a directory');
    throw err;
  }
}

/**
 * The receiving end of a Fetch call: sends wants in batches, reads the answers in order,
 * writes each file to a temp file and renames it into place once its digest (which comes
 * with the next entry) matches.
 */
class FetchReader {
  wireBytes = 0;
  private readonly entries: AsyncIterator<TarEntry>;
  private peeked: TarEntry | null = null;
  private pending: { rel: string; abs: string; tmp: string; sha256: string } | null = null;
  private currentTmp: string | null = null;
  private batch: FetchWant[] = [];
  private ended = false;
  private feedError: unknown = null;
  private lastTorn: string | null = null;

  private readonly extract: ReturnType<typeof tar.extract>;

  constructor(
    private readonly ch: FetchChannel,
    private readonly owner: Puller,
  ) {
    const extract = tar.extract();
    this.extract = extract;
    const self = this;
    // A header it cannot parse destroys the entry being read too, which then reports only
    // "Stream was destroyed": keep the reason.
    extract.on('error', (err: unknown) => {
      if (!self.feedError) self.feedError = translateTarError(err);
    });
    (async () => {
      for await (const data of ch.data) {
        self.wireBytes += data.length;
        self.owner.activity();
        if (!extract.write(data)) await new Promise<void>((res) => extract.once('drain', () => res()));
      }
      (extract as unknown as { end(): void }).end();
    })().catch((err: unknown) => {
      self.feedError = err;
      extract.destroy(err instanceof Error ? err : new Error(String(err)));
    });
    this.entries = (extract as unknown as AsyncIterable<TarEntry>)[Symbol.asyncIterator]();
  }

  /** Stop: whatever waits for the stream gets `err`. */
  abort(err: unknown): void {
    if (!this.feedError) this.feedError = err;
    this.extract.destroy(err instanceof Error ? err : new Error(String(err)));
  }

  want(w: FetchWant): void {
    this.batch.push(w);
    if (this.batch.length >= WANT_BATCH) this.flush();
  }

  private flush(): void {
    if (!this.batch.length) return;
    this.ch.send(this.batch);
    this.batch = [];
  }

  /** The next entry of the answer stream, settling the pending file with its header. */
  private async next(): Promise<TarEntry> {
    // The file settled by the last entry is in place now; its record must be on disk before
    // this entry's data is awaited, or a kill meanwhile leaves a file no pass owns.
    this.owner.flushJournal();
    if (this.peeked) {
      const e = this.peeked;
      this.peeked = null;
      return e;
    }
    this.flush();
    let n: IteratorResult<TarEntry>;
    try {
      n = await this.entries.next();
    } catch (err) {
      throw this.feedError ?? translateTarError(err);
    }
    if (n.done) throw this.feedError ?? wireError('the sender\'s file stream ended early');
    await this.settle((n.value.header.pax ?? {}) as Record<string, string>);
    return n.value;
  }

  private async settle(pax: Record<string, string>): Promise<void> {
    const p = this.pending;
    const digest = pax[PAX_SHA256];
    const torn = pax[PAX_TORN] === '1';
    if (!p) {
      if (digest !== undefined || torn) throw wireError('a digest for no file');
      return;
    }
    if (pax[PAX_SHA256_PATH] !== p.rel) throw wireError(`/${p.rel}: its digest did not follow it`);
    this.pending = null;
    if (torn) {
      await fs.rm(p.tmp, { force: true });
      this.lastTorn = p.rel;
      return;
    }
    if (digest !== p.sha256) {
      await fs.rm(p.tmp, { force: true });
      throw new CmError('transfer.digest_mismatch', `/${p.rel}: SHA-256 of the received data does not match the sender's; the file was not written`, {
        hint: 'the data was damaged on the way or the sender is faulty; run the same command again, and check the network and both hosts\' disks if it recurs',
      });
    }
    await renameIntoPlace(p.tmp, p.abs, p.rel);
  }

  /**
   * Receive the file just asked for: its content into place, or null when the sender
   * skipped it (it vanished or kept changing during a live pass).
   */
  async receive(rel: string, abs: string, owner: (u: string, g: string) => { uid: number; gid: number }): Promise<{ size: number; mtimeNs: bigint; ino: string } | null> {
    try {
      return await this.receiveOne(rel, abs, owner);
    } catch (err) {
      // Name the file the stream broke on.
      if (err instanceof CmError && err.code === 'wire.protocol' && !err.message.includes(`/${rel}`)) {
        throw new CmError(err.code, `while receiving /${rel}: ${err.message}`, { hint: err.hint, cause: err });
      }
      throw err;
    }
  }

  private async receiveOne(rel: string, abs: string, owner: (u: string, g: string) => { uid: number; gid: number }): Promise<{ size: number; mtimeNs: bigint; ino: string } | null> {
    let e = await this.next();
    const ctl = (x: TarEntry): string | undefined => ((x.header.pax ?? {}) as Record<string, string>)[PAX_CONTROL];
    while (ctl(e) === 'digest') {
      await this.drain(e);
      e = await this.next();
    }
    const pax = (e.header.pax ?? {}) as Record<string, string>;
    if (ctl(e) === 'skipped') {
      await this.drain(e);
      if (e.header.name !== CONTROL_NAME || pax[PAX_SKIPPED] !== rel) throw wireError(`expected /${rel}, the sender skipped ${JSON.stringify(pax[PAX_SKIPPED])}`);
      return null;
    }
    if (ctl(e) !== undefined) throw wireError(`expected /${rel}, got a ${ctl(e)} entry`);
    const name = e.header.name.replace(/\/$/, '');
    if (name !== rel) throw wireError(`expected /${rel}, the sender sent ${JSON.stringify(name)}`);
    if (e.header.type !== 'file') {
      if (e.header.type === 'character-device' || e.header.type === 'block-device') {
        throw new CmError('wire.device_node', `refused /${rel}: device nodes are never written`, { hint: 'the sender must not send device nodes; nothing was written for this entry' });
      }
      throw wireError(`/${rel}: expected a file, got ${String(e.header.type)}`);
    }
    const mtimeNs = parsePaxTime(pax.mtime ?? '');
    if (mtimeNs === undefined) throw wireError(`/${rel}: missing or bad mtime`);
    const { uid, gid } = owner(pax.uname ?? '', pax.gname ?? '');
    const tmp = tmpName(abs);
    this.currentTmp = tmp;
    // Synchronous calls: a few microseconds each on the page cache, where a trip through
    // the thread pool costs tens; the socket buffers meanwhile.
    const fd = fsSync.openSync(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
    const hash = crypto.createHash('sha256');
    let size = 0;
    let ino = '';
    try {
      for await (const data of e) {
        hash.update(data);
        size += data.length;
        let off = 0;
        while (off < data.length) off += fsSync.writeSync(fd, data, off, data.length - off);
      }
      if (size !== e.header.size) throw wireError(`/${rel}: size header says ${e.header.size}, got ${size} bytes`);
      fsSync.fchownSync(fd, uid, gid);
      fsSync.fchmodSync(fd, e.header.mode & 0o7777);
      const t = utimesSeconds(mtimeNs);
      fsSync.futimesSync(fd, t, t);
      ino = String(fsSync.fstatSync(fd, { bigint: true }).ino);
    } catch (err) {
      fsSync.closeSync(fd);
      await fs.rm(tmp, { force: true });
      this.currentTmp = null;
      // The stream was destroyed under us: the reason is the error that destroyed it.
      throw diskFull(this.feedError ?? translateTarError(err), '/' + rel);
    }
    fsSync.closeSync(fd);
    this.currentTmp = null;
    this.pending = { rel, abs, tmp, sha256: hash.digest('hex') };
    // Its digest comes with the next entry: the next file, or a digest the sender sends
    // when it has nothing more to send.
    this.peeked = await this.next();
    if (ctl(this.peeked) === 'digest') {
      await this.drain(this.peeked);
      this.peeked = null;
    }
    if (this.lastTorn === rel) return null; // it changed while read: dropped, left for the final pass
    return { size, mtimeNs, ino };
  }

  /** Read an entry to its end; a stream destroyed meanwhile reports why. */
  private async drain(entry: TarEntry): Promise<void> {
    try {
      await drain(entry);
    } catch (err) {
      throw this.feedError ?? translateTarError(err);
    }
  }

  /** After the last want: the end of the stream. */
  async finish(): Promise<void> {
    this.flush();
    this.ch.end();
    this.ended = true;
    let e = await this.next();
    while (((e.header.pax ?? {}) as Record<string, string>)[PAX_CONTROL] === 'digest') {
      await this.drain(e);
      e = await this.next();
    }
    if (((e.header.pax ?? {}) as Record<string, string>)[PAX_CONTROL] !== 'end') throw wireError(`unexpected entry ${JSON.stringify(e.header.name)} after the last file`);
    await this.drain(e);
    const n = await this.entries.next().catch((err) => {
      throw this.feedError ?? translateTarError(err);
    });
    if (!n.done) throw wireError('entries after the end of the stream');
    if (this.feedError) throw this.feedError;
  }

  async cleanup(): Promise<void> {
    const tmps = [this.pending?.tmp, this.currentTmp].filter((t): t is string => !!t);
    this.pending = null;
    this.currentTmp = null;
    await Promise.all(tmps.map((t) => fs.rm(t, { force: true })));
    if (!this.ended) {
      this.ended = true;
      try {
        this.ch.end();
      } catch {
        /* already closed */
      }
    }
  }
}

/** ENOSPC and EDQUOT as an error that names this host and the path being written. */
function diskFull(err: unknown, where: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return err;
  return new CmError('transfer.disk_full', `the new host ${os.hostname()} ran out of ${code === 'EDQUOT' ? 'disk quota' : 'disk space'} writing ${where}; what was committed before stays`, {
    hint: 'free space on the new host (or grow its filesystem), then run the same command again: it continues where it stopped',
    cause: err,
  });
}

function translateTarError(err: unknown): unknown {
  if (err instanceof CmError) return err;
  const msg = (err as Error)?.message ?? String(err);
  if (/Unexpected end of data|Invalid tar header|size mismatch|unknown format|Invalid|Header exceeds max size/i.test(msg)) return wireError(`bad tar stream: ${msg}`, err);
  return err;
}

async function drain(entry: TarEntry): Promise<void> {
  for await (const _ of entry) void _;
}
