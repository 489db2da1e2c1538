/**
 * The sender's listing (the counterpart of merge.ts on the receiver): an announcement of
 * every root (presence, totals, the owner names it uses) so that the receiver can refuse a
 * pass before it writes anything, then the roots' entries in walk order, metadata only.
 * Hard links name the first listed path of their inode. Live (initial) passes report
 * entries that vanish while walked; strict (final) passes fail, naming the path. Sockets
 * are skipped and counted; device nodes stop the pass before anything is sent.
 */
import * as fsSync from 'node:fs';
import { CmError, PROTOCOL_VERSION, RERUN, type ListBatch, type ListedEntry, type ListedRootEnd, type Phase, type RootAnnouncement } from '../proto';
import { nameOr, type Identity } from './identity';
import type { ResolvedRoot } from './paths';
import { nextTurn, TreeWalk, type WalkEntry } from './walk';

export type { ListedEntry, RootAnnouncement } from '../proto';
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

/** Entries that the announcing walk keeps for the listing, at most: up to this many, one walk does. */
const LIST_AHEAD = 32_768;

/** Turns one root's walk into listed entries: hard-link leaders, sockets, vanished entries. */
class RootLister {
  readonly end: ListEnd = { sockets_skipped: 0, vanished: 0, vanished_paths: [] };
  private readonly leaders = new Map<string, { rel: string; left: bigint }>();
  /** Owner names by id: most entries share a few owners. */
  private readonly users = new Map<number, string>();
  private readonly groups = new Map<number, string>();

  constructor(
    private readonly strict: boolean,
    private readonly identity: Identity,
    private readonly onWarning?: (msg: string, fields: Record<string, unknown>) => void,
  ) {}

  readonly vanished = (rel: string): void => {
    if (this.strict) throw strictChange(rel, 'vanished');
    this.end.vanished++;
    if (this.end.vanished_paths.length < REPORT_LIMIT) this.end.vanished_paths.push('/' + rel);
    this.onWarning?.('source entry vanished during a live pass; the final pass settles it', { path: '/' + rel });
  };

  /** The listed form of a walked entry, or null (a socket, or gone meanwhile). */
  entry(e: WalkEntry): ListedEntry | null {
    if (e.type === 'socket') {
      this.end.sockets_skipped++;
      return null;
    }
    if (e.type === 'device') throw deviceNode(e.rel);
    const uid = Number(e.st.uid);
    const gid = Number(e.st.gid);
    const ino = `${e.st.dev}:${e.st.ino}`;
    let user = this.users.get(uid);
    if (user === undefined) this.users.set(uid, (user = nameOr(uid, this.identity.userName(uid))));
    let group = this.groups.get(gid);
    if (group === undefined) this.groups.set(gid, (group = nameOr(gid, this.identity.groupName(gid))));
    let leader = '';
    if (e.type === 'file' && e.st.nlink > 1n) {
      const l = this.leaders.get(ino);
      if (l) {
        leader = l.rel;
        if (--l.left <= 0n) this.leaders.delete(ino);
      } else this.leaders.set(ino, { rel: e.rel, left: e.st.nlink - 1n });
    }
    let link = '';
    if (e.type === 'symlink') {
      try {
        link = fsSync.readlinkSync(e.abs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          this.vanished(e.rel);
          return null;
        }
        throw err;
      }
    }
    return {
      path: e.rel,
      type: e.type,
      size: e.type === 'file' ? Number(e.st.size) : 0,
      mtime_ns: String(e.st.mtimeNs),
      mode: Number(e.st.mode & 0o7777n),
      user,
      group,
      link,
      ino,
      leader,
      nlink: Number(e.st.nlink),
    };
  }
}

/** A listing: the announcement, then the entries. */
export interface Listing {
  /** Every root: presence, totals, and the owner names it uses. */
  announced: RootAnnouncement[];
  /** Every entry of the roots in walk order, each root's entries followed by its end record. */
  entries: AsyncGenerator<ListedEntry | ListEnd>;
  /**
   * The same entries as runs of at most LIST_BATCH, a root's end record ending its run (the
   * List messages): a promise per run, not per entry. Take either this or `entries`.
   */
  runs: AsyncGenerator<(ListedEntry | ListEnd)[]>;
}

/** Entries per List message. */
const LIST_BATCH = 512;

/**
 * Announce the roots, then list them. The walk that counts for the announcement keeps the
 * first LIST_AHEAD entries it lists, so a tree of that size is walked once; beyond it the
 * listing walks again from where the kept entries stop. Sockets are left out and counted;
 * a device node stops the pass.
 */
export async function announceAndList(
  roots: ResolvedRoot[],
  phase: Phase,
  identity: Identity,
  onWarning?: (msg: string, fields: Record<string, unknown>) => void,
  keep = LIST_AHEAD,
): Promise<Listing> {
  const strict = phase === 'final';
  const announced: RootAnnouncement[] = [];
  let kept: (ListedEntry | ListEnd | null)[] = [];
  let resume: { index: number; after: string | undefined; lister: RootLister } | null = null;
  for (const [index, root] of roots.entries()) {
    const uids = new Set<number>();
    const gids = new Set<number>();
    const seen = new Set<string>();
    let files = 0;
    let bytes = 0;
    let entries = 0;
    let present = false;
    const keeping = resume === null;
    const lister = new RootLister(strict, identity, onWarning);
    let lastKept: string | undefined;
    // Vanished entries count where they are listed: here while keeping, else in the second walk.
    const onVanished = (rel: string): void => {
      if (keeping && resume === null) lister.vanished(rel);
    };
    const walk = new TreeWalk(root, { onVanished });
    for (let batch = walk.take(WALK_BATCH); batch.length > 0; batch = walk.take(WALK_BATCH)) {
      for (const e of batch) {
        present = true;
        if (e.type === 'device') throw deviceNode(e.rel);
        if (keeping && resume === null) {
          if (kept.length < keep) {
            const listed = lister.entry(e);
            if (listed) kept.push(listed);
            lastKept = e.rel;
          } else resume = { index, after: lastKept, lister };
        }
        if (e.type === 'socket') continue;
        entries++;
        uids.add(Number(e.st.uid));
        gids.add(Number(e.st.gid));
        if (e.type === 'file') {
          if (e.st.nlink > 1n) {
            const key = `${e.st.dev}:${e.st.ino}`;
            if (seen.has(key)) continue;
            seen.add(key);
          }
          files++;
          bytes += Number(e.st.size);
        }
      }
      await nextTurn();
    }
    if (keeping && resume === null) kept.push(lister.end);
    const users = new Set([...uids].map((u) => nameOr(u, identity.userName(u))));
    const groups = new Set([...gids].map((g) => nameOr(g, identity.groupName(g))));
    announced.push({ name: root.name, rel: root.rel, present, files, bytes, entries, users: [...users].sort(), groups: [...groups].sort() });
  }
  const rest = resume as { index: number; after: string | undefined; lister: RootLister } | null;
  const runs = async function* (): AsyncGenerator<(ListedEntry | ListEnd)[]> {
    let out: (ListedEntry | ListEnd)[] = [];
    for (let i = 0; i < kept.length; i++) {
      const item = kept[i]!;
      kept[i] = null; // gone out: let it go
      out.push(item);
      if (out.length >= LIST_BATCH || !('path' in item)) {
        yield out;
        out = [];
      }
    }
    kept = [];
    if (!rest) return;
    for (let i = rest.index; i < roots.length; i++) {
      const resuming = i === rest.index;
      const lister = resuming ? rest.lister : new RootLister(strict, identity, onWarning);
      const walk = new TreeWalk(roots[i], { onVanished: lister.vanished, after: resuming ? rest.after : undefined });
      for (let batch = walk.take(WALK_BATCH); batch.length > 0; batch = walk.take(WALK_BATCH)) {
        for (const e of batch) {
          const listed = lister.entry(e);
          if (!listed) continue;
          out.push(listed);
          if (out.length >= LIST_BATCH) {
            yield out;
            out = [];
          }
        }
        await nextTurn();
      }
      out.push(lister.end);
      yield out;
      out = [];
    }
  };
  const flat = async function* (r: AsyncGenerator<(ListedEntry | ListEnd)[]>): AsyncGenerator<ListedEntry | ListEnd> {
    for await (const run of r) yield* run;
  };
  const r = runs();
  return { announced, entries: flat(r), runs: r };
}

/**
 * The List answer as messages: the announcement first (after checking the roots a final
 * pass needs), then the entries in batches, each root's last batch with its end record.
 */
export async function* listBatches(
  roots: ResolvedRoot[],
  phase: Phase,
  identity: Identity,
  signal: AbortSignal,
  onWarning?: (msg: string, fields: Record<string, unknown>) => void,
  onAnnounced?: (announced: RootAnnouncement[]) => void,
): AsyncGenerator<ListBatch> {
  const { announced, runs } = await announceAndList(roots, phase, identity, onWarning);
  checkRequiredRoots(phase, roots, announced);
  onAnnounced?.(announced);
  yield { protocol: PROTOCOL_VERSION, roots: announced };
  for await (const run of runs) {
    if (signal.aborted) throw new CmError('transfer.cancelled', 'the receiver went away');
    const last = run[run.length - 1];
    if (last !== undefined && !('path' in last)) yield { entries: run.slice(0, -1) as ListedEntry[], root_end: last };
    else yield { entries: run as ListedEntry[] };
  }
}
