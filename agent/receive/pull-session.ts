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
  type PassSummary,
  type PullEvent,
} from '../../proto';
import type { FetchChannel } from './fetch-reader';
import { loadIdentity } from '../fs/identity';
import { unpackEntries } from '../wire/packed-entries';
import type { Logger } from '../log';
import { resolveRoots, type AgentRoots } from '../fs/paths';
import { pull } from './pull';
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
    const listCall = client.List({ phase: req.phase, scope });
    calls.push(listCall);
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
    const summary = await pull({
      cfg: env.roots,
      roots,
      phase,
      owners,
      identity,
      stateDir: env.stateDir,
      list: unpacked(translated(listCall as AsyncIterable<ListBatch__Output>, peer)),
      openFetch,
      dryRun: req.dry_run,
      maxDelete: Number(req.max_delete),
      onProgress: (progress) => onEvent({ progress }),
      onItem: req.dry_run ? (item) => onEvent({ item }) : undefined,
      onActivity: watchdog.touch,
    }).catch((err: unknown) => {
      if (watchdog.stalled) {
        throw new CmError('connect.stalled', `${peer} sent nothing for ${Math.round(env.stallMs / 1000)} s; the pass was stopped`, {
          hint: `check the old host and the network between the hosts, then run ${RERUN}: it continues where it stopped`,
          cause: err,
        });
      }
      throw err;
    });
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
