/**
 * Folder agent/receive/: the new host's side of a pass, from the session with the old agent
 * (pull-session.ts) through the merge (merge.ts, renames.ts, listed-path.ts), the action
 * queue and its executor, the Fetch reader, to the manifest of what passes put here
 * (manifest.ts, manifest-line.ts). It imports fs/, wire/, verify/ (digest records) and the
 * checked requests (../requests.ts), never send/.
 *
 * The receiving side of a pass. For every root it merges the sender's listing with this
 * host's tree and the manifest of earlier passes (merge.ts), which decides per entry:
 * unchanged, attributes only, rename on the spot, fetch the content, or (at the end of the
 * root) delete. The decisions become actions that one executor (executor.ts) applies in
 * order, while the wanted files stream in over a second call (fetch-reader.ts).
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
import { CmError, emptySummary, PROTOCOL_VERSION, RERUN, type ListBatch__Output, type ListRoot__Output, type PassProgress, type ScopedPath__Output, type PassSummary } from '../../proto';
import { ActionQueue } from './action-queue';
import { Executor } from './executor';
import { FetchReader } from './fetch-reader';
import { diskFull } from '../fs/landing';
import { PassDigests } from '../verify/digest-records';
import { ManifestReader, ManifestWriter } from './manifest';
import { RootMerge } from './merge';
import type { PassContext, PullOptions } from './pass';
import type { ResolvedRoot } from '../fs/paths';
import { checkWirePath } from '../fs/paths';
import { LocalWalk } from '../fs/walk';
import { WalkScope, type ScopeKind } from '../fs/walk-scope';
import { dropJournalState } from './journal-state';
import { wireError } from '../wire/wire-format';

export type { FetchChannel } from './fetch-reader';
export { TMP_PREFIX } from '../fs/landing';
export type { OwnerNames, PullOptions } from './pass';

const NAME_RE = /^(#\d{1,10}|[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\$?)$/;

/**
 * A root's scope as the sender announced it, checked as every path from the wire is: each
 * path sound and inside the root, each scope one of the three.
 */
export function scopeFromWire(name: string, rootRel: string, wire: readonly ScopedPath__Output[]): WalkScope {
  const paths = wire.map((p) => {
    const rel = checkWirePath(p.path, 'scoped path');
    if (rel !== rootRel && !rel.startsWith(rootRel + '/')) throw wireError(`scoped path /${rel} is outside root ${name}`);
    if (p.scope !== 'entry' && p.scope !== 'children' && p.scope !== 'subtree') throw wireError(`scoped path /${rel}: unknown scope ${JSON.stringify(p.scope)}`);
    return { path: rel, scope: p.scope as ScopeKind, content: p.content === true };
  });
  return new WalkScope(rootRel, paths);
}

/** Run one pass as the receiver; the summary's `seconds` is left for the caller. */
export async function pull(opts: PullOptions): Promise<PassSummary> {
  const p = new Puller(opts);
  try {
    await p.run();
  } catch (err) {
    await p.abort();
    throw diskFull(err, (err as NodeJS.ErrnoException).path ?? opts.cfg.root);
  }
  return p.summary;
}

/** One receiving pass: the context its merges and its executor share. */
class Puller implements PassContext {
  readonly summary: PassSummary = emptySummary();
  readonly queue = new ActionQueue();
  fetch: FetchReader | null = null;
  writer: ManifestWriter | null = null;
  /** The digests of the files this pass landed, for a quick verify of this host. */
  digests: PassDigests | null = null;
  readErrors = false;
  wrote = false;
  progress: PassProgress = { root: '', files: 0, bytes: 0, total_files: 0, total_bytes: 0, sent_bytes: 0 };
  private readonly exec = new Executor(this);
  private readonly defaulted = new Set<string>();
  private lastProgress = 0;
  /** The manifests read so far: each closes its files at their end, or in abort(). */
  private readonly manifests: ManifestReader[] = [];
  /** The sender's announcement of each root. */
  readonly announced = new Map<string, ListRoot__Output>();

  constructor(readonly o: PullOptions) {}

  async run(): Promise<void> {
    const list = this.o.list[Symbol.asyncIterator]();
    const first = await list.next();
    if (first.done) throw wireError('the sender\'s listing was empty');
    const announced = this.begin(first.value);
    this.o.onAnnounced?.(this.announced);
    let pendingBatch: ListBatch__Output | null = first.value.entries.length || first.value.root_end ? first.value : null;

    if (!this.o.dryRun) {
      const digests = new PassDigests(this.o.stateDir, this.o.roots);
      this.digests = digests;
      this.fetch = new FetchReader(this.o.openFetch(), {
        onActivity: () => this.activity(),
        beforeWait: () => this.writer?.flush(),
        onLanded: (rel, st, sha) => digests.add(rel, st, sha),
      });
    }
    const executor = this.o.dryRun ? Promise.resolve() : this.exec.run();
    executor.catch((err) => {
      this.queue.fail(err);
      this.exec.failBarriers(err);
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
        this.progress = { root: root.name, files: 0, bytes: 0, total_files: Number(ann.files), total_bytes: Number(ann.bytes), sent_bytes: this.progress.sent_bytes };
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
    this.digests?.close();
    this.summary.owners_defaulted = [...this.defaulted].sort();
    this.summary.wire_bytes = this.fetch?.wireBytes ?? 0;
  }

  /** Something moved: the listing, the data, or the executor. */
  activity(): void {
    this.o.onActivity?.();
  }

  /** After a failure: close the manifests, remove temp files, end the Fetch call. */
  async abort(): Promise<void> {
    for (const m of this.manifests.splice(0)) m.close();
    await this.fetch?.cleanup();
    this.writer?.close();
    this.digests?.close();
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
      this.announced.set(a.name, a);
      if (!a.present) {
        this.summary.absent_roots.push(a.name);
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
        hint: `step 2 creates them: run \`CMDEPLOY_STAGES=install,configure scripts/cmdeploy run --ssh-host NEW\` from the relay checkout (cmmigrate run does it), then run ${RERUN}`,
        details: { users: missingUsers, groups: missingGroups },
      });
    }
    return out;
  }

  /** Owner ids on this host for a listed entry's names (or the root's forced owner). */
  owner(root: ResolvedRoot, uname: string, gname: string, rel: string): { uid: number; gid: number } {
    const rule = this.o.owners[root.name];
    const user = rule?.user ?? uname;
    const group = rule?.group ?? gname;
    if (!NAME_RE.test(user) || !NAME_RE.test(group)) throw wireError(`/${rel}: bad owner ${JSON.stringify(user)}:${JSON.stringify(group)}`);
    let uid = this.o.identity.uid(user);
    let gid = this.o.identity.gid(group);
    if (uid === undefined || gid === undefined) {
      if (this.o.phase === 'final') {
        throw new CmError('transfer.missing_owners', `the new host has no ${uid === undefined ? 'user ' + user : 'group ' + group} (for /${rel})`, {
          hint: `run step 2 (cmdeploy install,configure) on the new host, then run ${RERUN}`,
        });
      }
      if (uid === undefined) this.defaulted.add(user);
      if (gid === undefined) this.defaulted.add(group);
      uid ??= 0;
      gid ??= 0;
    }
    return { uid, gid };
  }

  /** Count files and bytes done, and report progress at most every 250 ms. */
  tick(files: number, bytes: number): void {
    this.progress.files += files;
    this.progress.bytes += bytes;
    const now = Date.now();
    if (now - this.lastProgress >= 250) {
      this.lastProgress = now;
      this.o.onProgress?.({ ...this.progress });
    }
  }

  private async mergeRoot(root: ResolvedRoot, batches: AsyncGenerator<ListBatch__Output>): Promise<void> {
    const ann = this.announced.get(root.name)!;
    const scope = this.scopeOf(root, ann);
    const ours = await ManifestReader.open(this.o.stateDir, root.name);
    this.manifests.push(ours);
    if (scope && !ours.clean) throw wireError(`root ${root.name}: a scoped listing over a manifest with an interrupted pass's records`);
    if (ann.present) {
      const reason = scope ? '' : ann.walk_reason || this.o.journal?.reasons.get(root.name) || '';
      this.summary.walks.push({ root: root.name, scoped: !!scope, paths: scope?.size ?? 0, reason });
    }
    if (!this.o.dryRun) {
      // The journal state describes the committed manifest; this pass is about to change both.
      dropJournalState(this.o.stateDir, root.name);
      this.writer = new ManifestWriter(this.o.stateDir, root.name);
      if (!scope) this.writer.follow(ours);
    }
    this.wrote = false;
    await new RootMerge(this, this.exec, root, ours, new LocalWalk(root, { scope }), scope).run(batches);
  }

  /**
   * The scope of a root the sender listed only in part: the paths both walk, checked as
   * every path from the wire is; only a root this receiver asked a scope for may have one.
   */
  private scopeOf(root: ResolvedRoot, ann: ListRoot__Output): WalkScope | undefined {
    if (!ann.scoped) return undefined;
    if (!this.o.journal?.asked.has(root.name)) throw wireError(`root ${root.name} was listed in part, which this receiver did not ask for`);
    return scopeFromWire(root.name, root.rel, ann.scope);
  }
}
