/**
 * Folder agent/send/: the old host's side of a pass, the List answer (this file) and the
 * Fetch answer (tar-writer.ts, cut into messages by chunker.ts). It reads the roots and
 * writes nothing there. It imports fs/, wire/ and verify/ (the records a pass leaves for a
 * quick verify), never receive/.
 *
 * The sender's listing (the counterpart of merge.ts on the receiver): an announcement of
 * every root (presence, totals, the owner names it uses) so that the receiver can refuse a
 * pass before it writes anything, then the roots' entries in walk order, metadata only.
 * Hard links name the first listed path of their inode. Live (initial) passes report
 * entries that vanish while walked; strict (final) passes fail, naming the path. Sockets
 * are skipped and counted; device nodes stop the pass before anything is sent.
 */
import * as fsSync from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CmError, PROTOCOL_VERSION, RERUN, type ListBatch, type ListedEntry, type ListedRootEnd, type Phase, type RootAnnouncement } from '../../proto';
import { nameOr, OwnerNames, type Identity } from '../fs/identity';
import { PackedWriter, unpackEntries } from '../wire/packed-entries';
import type { ResolvedRoot } from '../fs/paths';
import { devOf, gidOf, inoOf, nlinkOf, permOf, sizeOf, uidOf } from '../fs/stat-numbers';
import { nextTurn, TreeWalk, type WalkEntry } from '../fs/walk';
import type { WalkScope } from '../fs/walk-scope';

export type { ListedEntry, RootAnnouncement } from '../../proto';
/** The record that ends one root of a listing. */
export type ListEnd = ListedRootEnd;

const REPORT_LIMIT = 1000;

/** A final pass found the source changing: mail still runs on the old host. */
export function strictChange(rel: string, what: string): CmError {
  return new CmError('transfer.source_changed', `/${rel} ${what} while the final pass read it`, {
    hint: `mail must be stopped on the old host during the final pass (step 3: cmdeploy run --disable-mail); stop what still writes there, then run ${RERUN}`,
  });
}

/** A device node in the relay's state: refused before anything is sent. */
export function deviceNode(rel: string): CmError {
  return new CmError('transfer.device_node', `/${rel} is a device node; cmmigrate never copies device nodes`, {
    hint: `remove it from the relay's state on the old host, then run ${RERUN}`,
  });
}

/** The roots a final pass cannot do without. */
export function checkRequiredRoots(phase: Phase, roots: ResolvedRoot[], announced: RootAnnouncement[]): void {
  const missing = announced.filter((a) => !a.present && !roots.find((r) => r.name === a.name)!.optional);
  if (missing.length > 0 && phase === 'final') {
    throw new CmError('transfer.source_root_missing', `the source has no ${missing.map((m) => '/' + m.rel).join(', ')}`, {
      hint: 'check the agent\'s --root on the old host; a relay deployed by cmdeploy has all of these',
    });
  }
}

/** Entries the walk takes between two turns of the event loop. */
const WALK_BATCH = 256;

/** Listed entries kept in memory, at most: the rest waits in a spill file until it goes out. */
const LIST_AHEAD = 32_768;

/** Entries per List message. */
const LIST_BATCH = 512;

/** Turns one root's walk into packed entries: hard-link leaders, sockets, vanished entries. */
class RootLister {
  readonly end: ListEnd = { sockets_skipped: 0, vanished: 0, vanished_paths: [] };
  /** What the root's announcement counts: entries but sockets, the owners' ids, files and bytes (a hard-linked file once). */
  readonly tally = { entries: 0, files: 0, bytes: 0, uids: new Set<number>(), gids: new Set<number>() };
  /** Hard-link groups still open, by device and inode: their leader and the links not yet seen. */
  private readonly leaders = new Map<string, { rel: string; left: number }>();
  private readonly names: OwnerNames;

  constructor(
    private readonly strict: boolean,
    identity: Identity,
    private readonly onWarning?: (msg: string, fields: Record<string, unknown>) => void,
  ) {
    this.names = new OwnerNames(identity);
  }

  /** A hard-linked file listed with fewer of its names than its link count: the first such path. */
  get incompleteLink(): string | null {
    for (const l of this.leaders.values()) return l.rel;
    return null;
  }

  /** Every such file, as dev:ino (ListEntry.ino). */
  incompleteInodes(): string[] {
    return [...this.leaders.keys()];
  }

  readonly vanished = (rel: string): void => {
    if (this.strict) throw strictChange(rel, 'vanished');
    this.end.vanished++;
    if (this.end.vanished_paths.length < REPORT_LIMIT) this.end.vanished_paths.push('/' + rel);
    this.onWarning?.('source entry vanished during a live pass; the final pass settles it', { path: '/' + rel });
  };

  /** Pack a walked entry into `out`; false when it is not listed (a socket, or gone meanwhile). */
  entry(e: WalkEntry, out: PackedWriter): boolean {
    if (e.type === 'socket') {
      this.end.sockets_skipped++;
      return false;
    }
    if (e.type === 'device') throw deviceNode(e.rel);
    const st = e.st;
    // As numbers (stat-numbers.ts): a BigInt per field read was most of an entry's garbage.
    const nlink = nlinkOf(st);
    const uid = uidOf(st);
    const gid = gidOf(st);
    const dev = devOf(st);
    const ino = inoOf(st);
    const size = e.type === 'file' ? sizeOf(st) : 0;
    const t = this.tally;
    t.entries++;
    t.uids.add(uid);
    t.gids.add(gid);
    let leader = '';
    if (e.type === 'file') {
      if (nlink > 1) {
        const key = `${dev}:${ino}`;
        const l = this.leaders.get(key);
        if (l) {
          leader = l.rel;
          if (--l.left <= 0) this.leaders.delete(key);
        } else this.leaders.set(key, { rel: e.rel, left: nlink - 1 });
      }
      // A hard-linked file's content counts once, at its leader.
      if (!leader) {
        t.files++;
        t.bytes += Number(size);
      }
    }
    const user = this.names.user(uid);
    const group = this.names.group(gid);
    let link = '';
    if (e.type === 'symlink') {
      try {
        link = fsSync.readlinkSync(e.abs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          this.vanished(e.rel);
          return false;
        }
        throw err;
      }
    }
    out.add({
      path: e.rel,
      type: e.type,
      size,
      mtimeNs: st.mtimeNs,
      mode: permOf(st),
      user,
      group,
      link,
      dev,
      ino,
      leader,
      nlink,
    });
    return true;
  }
}

/** One List message's worth of a root's entries, packed: in memory, or where it lies in the spill file. */
interface Run {
  packed?: Buffer;
  at: number;
  length: number;
  /** Set on a root's last run. */
  end?: ListEnd;
}

/**
 * Packed runs beyond what the listing keeps in memory, in a file of the agent's state dir
 * that is unlinked as soon as it is open: the data lives as long as the descriptor, so no
 * end of the call (error, cancel, a killed agent) leaves it behind. Only a kill between
 * the open and the unlink can; the next listing removes such leftovers.
 */
class SpillFile {
  private fd: number | null = null;
  private size = 0;

  constructor(private readonly dir: string) {}

  write(data: Buffer): number {
    try {
      if (this.fd === null) this.fd = openSpill(this.dir);
      const at = this.size;
      for (let done = 0; done < data.length; ) done += fsSync.writeSync(this.fd, data, done, data.length - done, at + done);
      this.size += data.length;
      return at;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOSPC' && code !== 'EDQUOT') throw err;
      throw new CmError('transfer.disk_full', `the old host ${os.hostname()} ran out of ${code === 'EDQUOT' ? 'disk quota' : 'disk space'} in ${this.dir}, where a listing beyond ${LIST_AHEAD} entries waits until it is sent; nothing was written on the new host for this pass`, {
        hint: `free space in ${this.dir} on the old host (or start its agent with --state-dir on a filesystem with room), then run ${RERUN}`,
        cause: err,
      });
    }
  }

  /** Where the next write goes: rewind(mark) drops what was written after it. */
  mark(): number {
    return this.size;
  }

  rewind(mark: number): void {
    this.size = mark;
  }

  read(at: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    for (let done = 0; done < length; ) {
      const n = fsSync.readSync(this.fd!, out, done, length - done, at + done);
      if (n === 0) throw new Error('the listing\'s spill file ended early');
      done += n;
    }
    return out;
  }

  close(): void {
    if (this.fd !== null) fsSync.closeSync(this.fd);
    this.fd = null;
  }
}

const SPILL_PREFIX = 'list-spill.';
let spillSeq = 0;

function openSpill(dir: string): number {
  fsSync.mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const name of fsSync.readdirSync(dir)) {
    // Left by an agent killed between open and unlink; a live listing's file has no name.
    if (name.startsWith(SPILL_PREFIX)) fsSync.rmSync(path.join(dir, name), { force: true });
  }
  const file = path.join(dir, `${SPILL_PREFIX}${process.pid}.${++spillSeq}`);
  const fd = fsSync.openSync(file, 'wx+', 0o600);
  fsSync.rmSync(file, { force: true });
  return fd;
}

/**
 * What the change journals let a listing leave out (issue 25): the sender's journal
 * position at the listing's start, and per root the scope to list, or why it is walked in
 * full. Built by the service from the agent's journal and the receiver's request.
 */
export interface ListScopes {
  /** The sender's journal position that this listing covers (taken before it walks); null: no journal. */
  position: { epoch: string; seq: number } | null;
  /** The sender's owner names (Identity.digest), for the receiver to hand back next time. */
  identity: string;
  /**
   * A root's scope, or the reason it is walked in full; undefined: the receiver asked for no
   * scope. `lastTry`: hard links with names outside the scope mean a full walk, not a second request.
   */
  of(root: ResolvedRoot): { scope: WalkScope; lastTry: boolean } | { reason: string } | undefined;
}

/** Hard-linked files named in a links_outside answer, at most (more: a full walk). */
const MAX_LINKS_OUTSIDE = 4096;

/** A listing: the announcement, then the entries. */
export interface Listing {
  /** Every root: presence, totals, and the owner names it uses. */
  announced: RootAnnouncement[];
  /** Every entry of the roots in walk order, each root's entries followed by its end record (for tests: unpacked). */
  entries: AsyncGenerator<ListedEntry | ListEnd>;
  /**
   * The same entries as the List messages carry them: runs of at most LIST_BATCH entries,
   * packed, a root's end record with its last run. Take either this or `entries`.
   */
  runs: AsyncGenerator<{ packed: Buffer; end?: ListEnd }>;
  /** Let the spill file go (taking all the runs does too). */
  close(): void;
}

/**
 * Announce the roots, then list them, from one walk: the walk that counts for the
 * announcement packs the entries as it goes, keeps the first `keep` of them in memory and
 * writes the rest to a spill file in `spillDir`, which goes when the listing ends. Sockets
 * are left out and counted; a device node stops the pass.
 */
export async function announceAndList(
  roots: ResolvedRoot[],
  phase: Phase,
  identity: Identity,
  onWarning?: (msg: string, fields: Record<string, unknown>) => void,
  keep = LIST_AHEAD,
  spillDir = os.tmpdir(),
  scopes?: ListScopes,
): Promise<Listing> {
  const strict = phase === 'final';
  const announced: RootAnnouncement[] = [];
  const runs: (Run | null)[] = [];
  const spill = new SpillFile(spillDir);
  const writer = new PackedWriter();
  let kept = 0;
  try {
    for (const root of roots) {
      let present = false;
      let lister = new RootLister(strict, identity, onWarning);
      const asked = scopes?.of(root);
      let scope = asked && 'scope' in asked ? asked.scope : undefined;
      let walkReason = asked && 'reason' in asked ? asked.reason : '';
      let linksOutside: string[] = [];
      const start = { runs: runs.length, kept, spill: spill.mark() };
      const cut = (end?: ListEnd): void => {
        const n = writer.count;
        if (kept + n <= keep) {
          kept += n;
          const packed = writer.take();
          runs.push({ packed, at: 0, length: packed.length, end });
        } else {
          const data = writer.peek();
          const at = data.length > 0 ? spill.write(data) : 0;
          runs.push({ at, length: data.length, end });
          writer.reset();
        }
      };
      for (;;) {
        const walk = new TreeWalk(root, { onVanished: lister.vanished, scope });
        for (let batch = walk.take(WALK_BATCH); batch.length > 0; batch = walk.take(WALK_BATCH)) {
          present = true;
          for (const e of batch) if (lister.entry(e, writer) && writer.count >= LIST_BATCH) cut();
          await nextTurn();
        }
        const partial = scope ? lister.incompleteLink : null;
        if (partial === null) break;
        // A hard-linked file whose other names the journals did not name. The receiver's
        // manifest knows the names it had at the last pass: it asks again with them.
        const inodes = lister.incompleteInodes();
        if (asked && 'lastTry' in asked && !asked.lastTry && inodes.length <= MAX_LINKS_OUTSIDE) {
          linksOutside = inodes;
          break;
        }
        // Still some after that: only a full walk finds them, and its leader must be the first in walk order.
        walkReason = `journal: /${partial} has hard links outside what changed`;
        scope = undefined;
        runs.length = start.runs;
        kept = start.kept;
        spill.rewind(start.spill);
        writer.reset();
        present = false;
        lister = new RootLister(strict, identity, onWarning);
      }
      cut(lister.end);
      const { uids, gids, files, bytes, entries } = lister.tally;
      const users = new Set([...uids].map((u) => nameOr(u, identity.userName(u))));
      const groups = new Set([...gids].map((g) => nameOr(g, identity.groupName(g))));
      announced.push({
        name: root.name,
        rel: root.rel,
        present,
        files,
        bytes,
        entries,
        users: [...users].sort(),
        groups: [...groups].sort(),
        position: scopes?.position ?? { epoch: '', seq: 0 },
        scoped: !!scope,
        scope: scope ? scope.paths() : [],
        walk_reason: scope ? '' : walkReason,
        identity: scopes?.identity ?? '',
        links_outside: linksOutside,
      });
    }
  } catch (err) {
    spill.close();
    throw err;
  }
  const out = async function* (): AsyncGenerator<{ packed: Buffer; end?: ListEnd }> {
    try {
      for (let i = 0; i < runs.length; i++) {
        const run = runs[i]!;
        runs[i] = null; // gone out: let it go
        yield { packed: run.packed ?? (run.length > 0 ? spill.read(run.at, run.length) : Buffer.alloc(0)), end: run.end };
      }
    } finally {
      spill.close();
    }
  };
  const flat = async function* (r: AsyncGenerator<{ packed: Buffer; end?: ListEnd }>): AsyncGenerator<ListedEntry | ListEnd> {
    for await (const run of r) {
      for (const e of unpackEntries(run.packed)) yield { ...e, size: Number(e.size), nlink: Number(e.nlink) };
      if (run.end) yield run.end;
    }
  };
  const r = out();
  return { announced, entries: flat(r), runs: r, close: () => spill.close() };
}

/**
 * The List answer as messages: the announcement first (after checking the roots a final
 * pass needs), then the entries packed in batches, each root's last batch with its end record.
 */
export async function* listBatches(
  roots: ResolvedRoot[],
  phase: Phase,
  identity: Identity,
  signal: AbortSignal,
  onWarning?: (msg: string, fields: Record<string, unknown>) => void,
  onAnnounced?: (announced: RootAnnouncement[]) => void,
  spillDir?: string,
  scopes?: ListScopes,
): AsyncGenerator<ListBatch> {
  const listing = await announceAndList(roots, phase, identity, onWarning, LIST_AHEAD, spillDir, scopes);
  const { announced, runs } = listing;
  try {
    checkRequiredRoots(phase, roots, announced);
    onAnnounced?.(announced);
    yield { protocol: PROTOCOL_VERSION, roots: announced };
    for await (const run of runs) {
      if (signal.aborted) throw new CmError('transfer.cancelled', 'the receiver went away');
      yield run.end ? { packed: run.packed, root_end: run.end } : { packed: run.packed };
    }
  } finally {
    listing.close();
  }
}
