/**
 * A receiving agent's session with the sending agent, for one Pull: it opens the channel
 * (List and Fetch on the old agent, mutual TLS as an agent), runs the pass over it, and
 * owns what a session needs around the pass: a watchdog that fails a sender that sends
 * nothing (`connect.stalled`), the translation of the peer's gRPC errors back into
 * CmErrors, cancellation of both calls when the pass ends or the controller goes away,
 * and the summary with the pass's duration.
 */
import type * as grpc from '@grpc/grpc-js';
import {
  agentClient,
  clientChannelOptions,
  CmError,
  fromServiceError,
  parseHostPort,
  RERUN,
  type Chunk__Output,
  type ListBatch__Output,
  type ListRoot__Output,
  type PassSummary,
  type PullEvent,
  type RootName,
} from '../../proto';
import type { ChangeJournal, JournalPosition } from '../journal/journal';
import { loadIdentity, type Identity } from '../fs/identity';
import { fingerprint, readJournalState, writeJournalState } from './journal-state';
import { eachLink, manifestClean } from './manifest';
import { underRoot } from '../fs/walk-scope';
import type { OwnerNames } from './pass';
import { MAX_SCOPE_PATHS } from '../requests';
import type { FetchChannel } from './fetch-reader';
import { unpackEntries } from '../wire/packed-entries';
import type { Logger } from '../log';
import { resolveRoots, type AgentRoots, type ResolvedRoot } from '../fs/paths';
import { pull, scopeFromWire } from './pull';
import { ownersMap, phaseOf, rootsOfScope, type PullRequestChecked } from '../requests';
import { peerCredentials, type AgentTls } from '../tls';
import { wireError } from '../wire/wire-format';

/** What a session needs of the agent it runs in. */
export interface PullSessionEnv {
  roots: AgentRoots;
  tls: AgentTls;
  log: Logger;
  /** Where the receiving agent keeps its manifests (outside the roots). */
  stateDir: string;
  /** A pass whose sender sends nothing for this long fails (connect.stalled). */
  stallMs: number;
  /** This host's change journal, or why there is none (issue 25). */
  journal: ChangeJournal | null;
  journalOff?: string;
}

/** The journal part of a List request, and what the pass commits afterwards. */
interface JournalAsk {
  start: JournalPosition | null;
  requests: { root: string; since: { epoch: string; seq: number }; changed: { path: string; scope: string; content: boolean }[]; sender_identity: string; last_try?: boolean }[];
  asked: Set<string>;
  reasons: Map<string, string>;
}

/** A root-relative journal path as a path under --root. */

/**
 * Ask this host's journal what changed in each root since the last committed pass, so
 * that the sender lists only that and what changed there (issue 25). A root gets a full
 * walk, with the reason, when anything is missing or does not match: no committed state,
 * an interrupted pass, other owner names or rules, or a journal that lost track.
 */
async function askJournal(env: PullSessionEnv, roots: ResolvedRoot[], identity: Identity, owners: Partial<Record<RootName, OwnerNames>>, noJournal: boolean, signal: AbortSignal): Promise<JournalAsk> {
  const ask: JournalAsk = { start: null, requests: [], asked: new Set(), reasons: new Map() };
  const none = (reason: string): JournalAsk => {
    for (const r of roots) ask.reasons.set(r.name, reason);
    return ask;
  };
  if (noJournal) return none('journal: not used (--no-journal)');
  const journal = env.journal;
  if (!journal) return none(env.journalOff ?? 'journal: off on the new host');
  try {
    ask.start = await journal.sync(signal);
  } catch (err) {
    return none(`journal: the new host's journal did not answer (${(err as Error).message})`);
  }
  for (const root of roots) {
    const state = readJournalState(env.stateDir, root.name);
    let reason = '';
    if (!state) reason = 'journal: no earlier pass recorded where it left off';
    else if (!manifestClean(env.stateDir, root.name)) reason = 'journal: an interrupted pass left records to settle';
    else if (state.fingerprint !== fingerprint(identity.digest, owners[root.name])) reason = "journal: the new host's users or the owner rules changed since the last pass";
    else {
      const res = journal.changesSince(root.name, { epoch: state.receiver.epoch, seq: state.receiver.start }, { ignoreOwnUpTo: state.receiver.end });
      if ('full' in res) reason = res.full;
      else if (res.changes.length > MAX_SCOPE_PATHS) reason = `journal: ${res.changes.length} paths changed on the new host, more than are listed one by one`;
      else {
        ask.requests.push({
          root: root.name,
          since: state.sender,
          changed: res.changes.map((c) => ({ path: underRoot(root.rel, c.path), scope: c.scope, content: c.content })),
          sender_identity: state.senderIdentity,
        });
        ask.asked.add(root.name);
        continue;
      }
    }
    ask.reasons.set(root.name, reason);
  }
  return ask;
}

/**
 * The listing to merge: as it came, unless a scoped root has hard-linked files with names
 * outside the scope. A change reaches a hard-linked file under one name only (the one its
 * writer used, which may be gone since), and a new link names only itself; the other names
 * of such a file are in this host's manifest, as the records with the same sender inode.
 * Two kinds are looked up: the inodes the sender names (links_outside), and those of the
 * records the scope covers. Their other names join the request and the sender lists again;
 * if some are still outside then, it walks that root in full.
 */
async function withLinkNames(list: AsyncGenerator<ListBatch__Output>, stateDir: string, ask: JournalAsk, again: () => AsyncGenerator<ListBatch__Output>): Promise<AsyncGenerator<ListBatch__Output>> {
  const first = await list.next();
  if (first.done) return list;
  let retry = false;
  for (const r of first.value.roots) {
    if (!r.scoped && !r.links_outside.length) continue;
    const req = ask.requests.find((q) => q.root === r.name);
    if (!req) throw wireError(`root ${r.name}: the sender answered for a scope this receiver did not ask for`);
    const scope = scopeFromWire(r.name, r.rel, r.scope);
    const inodes = new Set(r.links_outside);
    if (!scope.empty) eachLink(stateDir, r.name, (p, si) => si && scope.covers(p) && inodes.add(si));
    if (!inodes.size) continue;
    const before = req.changed.length;
    eachLink(stateDir, r.name, (p, si) => inodes.has(si) && !scope.covers(p) && req.changed.push({ path: p, scope: 'entry', content: false }));
    if (req.changed.length > before || r.links_outside.length) retry = true;
  }
  if (!retry) {
    return (async function* () {
      yield first.value;
      yield* list;
    })();
  }
  await list.return(undefined);
  for (const q of ask.requests) q.last_try = true;
  for (const q of [...ask.requests]) {
    if (q.changed.length <= MAX_SCOPE_PATHS) continue;
    ask.requests.splice(ask.requests.indexOf(q), 1);
    ask.asked.delete(q.root);
    ask.reasons.set(q.root, `journal: ${q.changed.length} paths changed or linked, more than are listed one by one`);
  }
  return again();
}

/**
 * After a pass that settled everything it saw: commit, per root it listed, where the
 * sender's journal and this host's stood, for the next pass to start from. A pass that
 * left anything for later (a vanished entry, held deletes, owners defaulted) commits
 * nothing, and the next pass walks in full.
 */
async function commitJournal(env: PullSessionEnv, ask: JournalAsk, announced: Map<string, { present: boolean; position: { epoch: string; seq: string } | null; identity: string }>, summary: PassSummary, identity: Identity, owners: Partial<Record<RootName, OwnerNames>>, roots: ResolvedRoot[], signal: AbortSignal): Promise<void> {
  if (!env.journal || !ask.start) return;
  if (summary.vanished > 0 || summary.deletes_skipped || summary.owners_defaulted.length > 0) return;
  let end: JournalPosition;
  try {
    end = await env.journal.sync(signal);
  } catch {
    return;
  }
  if (end.epoch !== ask.start.epoch) return;
  for (const root of roots) {
    const a = announced.get(root.name);
    if (!a || !a.present || !a.position || !a.position.epoch || !a.identity) continue;
    writeJournalState(env.stateDir, root.name, {
      v: 1,
      sender: { epoch: a.position.epoch, seq: Number(a.position.seq) },
      senderIdentity: a.identity,
      receiver: { epoch: ask.start.epoch, start: ask.start.seq, end: end.seq },
      fingerprint: fingerprint(identity.digest, owners[root.name]),
    });
    // The next pass asks from this pass's start, without this agent's writes up to its end:
    // the journal lets go of the rest (the initial copy's own writes, above all).
    env.journal.forget(root.name, ask.start, end.seq);
  }
}

/** A sender stalls when it sends nothing for `stallMs`; the watchdog cancels its calls then. */
class Watchdog {
  stalled = false;
  private last = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor(stallMs: number, onStall: () => void) {
    this.timer = setInterval(() => {
      if (Date.now() - this.last > stallMs) {
        this.stalled = true;
        onStall();
      }
    }, Math.min(5000, Math.max(100, stallMs / 4)));
  }

  /** The pass moved. */
  readonly touch = (): void => {
    this.last = Date.now();
  };

  stop(): void {
    clearInterval(this.timer);
  }
}

/** A peer's stream with its gRPC errors as the CmErrors the peer raised. */
async function* translated<T>(s: AsyncIterable<T>, peer: string): AsyncGenerator<T> {
  try {
    for await (const m of s) yield m;
  } catch (err) {
    const e = err as grpc.ServiceError;
    if (typeof e.code === 'number') throw fromServiceError(e, peer);
    throw err;
  }
}

/**
 * The listing as the merge takes it: a batch's packed entries (protocol 2) unpacked into
 * its `entries`. A batch may carry entries one way or the other, not both.
 */
export async function* unpacked(list: AsyncIterable<ListBatch__Output>): AsyncGenerator<ListBatch__Output> {
  for await (const b of list) {
    if (b.packed && b.packed.length > 0) {
      if (b.entries.length > 0) throw wireError('a listing batch carried entries both packed and unpacked');
      b.entries = unpackEntries(b.packed);
      b.packed = EMPTY;
    }
    yield b;
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * Run one Pull against the sending agent `req.source`: progress (and in a dry run, each
 * item) goes to `onEvent`; resolves with the pass's summary.
 */
export async function pullFromPeer(req: PullRequestChecked, env: PullSessionEnv, signal: AbortSignal, onEvent: (ev: PullEvent) => void): Promise<PassSummary> {
  const phase = phaseOf(req.phase);
  const names = rootsOfScope(req.scope, phase);
  const roots = resolveRoots(env.roots, names, req.scope.mailboxes_dir);
  const owners = ownersMap(req.owners);
  const source = parseHostPort(req.source, undefined, 'source agent');
  const peer = `old agent ${source.host}:${source.port}`;
  const identity = await loadIdentity(env.roots.root);
  const log = env.log.child({ method: 'Pull', phase, source: req.source, dry_run: req.dry_run });
  const started = process.hrtime.bigint();
  log.info({ roots: names }, 'pulling');

  const client = agentClient(req.source, peerCredentials(env.tls), clientChannelOptions(true));
  const scope = { mailboxes_dir: req.scope.mailboxes_dir, roots: names };
  const calls: { cancel(): void }[] = [];
  const cancelAll = (): void => calls.forEach((c) => c.cancel());
  signal.addEventListener('abort', cancelAll);
  const watchdog = new Watchdog(env.stallMs, cancelAll);
  try {
    const ask = await askJournal(env, roots, identity, owners, req.no_journal, signal);
    const listCall = client.List({ phase: req.phase, scope, journal: ask.requests });
    calls.push(listCall);
    const first = unpacked(translated(listCall as AsyncIterable<ListBatch__Output>, peer));
    // Hard-linked files with names outside the scope: ask again with the names this host's
    // manifest has for them (a second listing, only when a scoped root needs it). Inside the
    // pass's own stream, so that a stall or a failure there is the pass's.
    const list = (async function* (): AsyncGenerator<ListBatch__Output> {
      if (!ask.requests.length) return yield* first;
      yield* await withLinkNames(first, env.stateDir, ask, () => {
        const again = client.List({ phase: req.phase, scope, journal: ask.requests });
        calls.push(again);
        return unpacked(translated(again as AsyncIterable<ListBatch__Output>, peer));
      });
    })();
    const openFetch = (): FetchChannel => {
      const f = client.Fetch();
      calls.push(f);
      f.write({ phase: req.phase, scope, items: [] });
      return {
        send: (wants) => {
          f.write({ items: wants.map((w) => ({ path: w.path, size: w.size, mtime_ns: String(w.mtimeNs) })) });
        },
        end: () => f.end(),
        data: (async function* () {
          for await (const m of translated(f as AsyncIterable<Chunk__Output>, peer)) yield m.data as Buffer;
        })(),
      };
    };
    let announced = new Map<string, ListRoot__Output>();
    const summary = await pull({
      cfg: env.roots,
      roots,
      phase,
      owners,
      identity,
      stateDir: env.stateDir,
      list,
      openFetch,
      dryRun: req.dry_run,
      maxDelete: Number(req.max_delete),
      onProgress: (progress) => onEvent({ progress }),
      onItem: req.dry_run ? (item) => onEvent({ item }) : undefined,
      onActivity: watchdog.touch,
      journal: { asked: ask.asked, reasons: ask.reasons },
      onAnnounced: (a) => (announced = a),
    }).catch((err: unknown) => {
      if (watchdog.stalled) {
        throw new CmError('connect.stalled', `${peer} sent nothing for ${Math.round(env.stallMs / 1000)} s; the pass was stopped`, {
          hint: `check the old host and the network between the hosts, then run ${RERUN}: it continues where it stopped`,
          cause: err,
        });
      }
      throw err;
    });
    if (!req.dry_run) await commitJournal(env, ask, announced, summary, identity, owners, roots, signal);
    summary.seconds = Number(process.hrtime.bigint() - started) / 1e9;
    log.info({ files: summary.files, bytes: summary.bytes, renamed: summary.renamed, deleted: summary.deleted, unchanged: summary.unchanged, seconds: summary.seconds }, 'pulled');
    return summary;
  } finally {
    signal.removeEventListener('abort', cancelAll);
    // A failed pass must not leave the sender reading files for nobody.
    watchdog.stop();
    cancelAll();
    client.close();
  }
}
