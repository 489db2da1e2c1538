/**
 * The files at the top of agent/ are the agent as a process and a gRPC service: the CLI
 * (cli.ts), the server (server.ts), this service, what every handler shares (calls.ts),
 * the requests checked with zod (requests.ts), the call adapters (bridge-call.ts,
 * host-op-call.ts), TLS material (tls.ts) and the log (log.ts). The work lives in the
 * folders below, which never import these files but log.ts, tls.ts and requests.ts:
 * fs/ (shared), wire/, send/, receive/, verify/, host/, bridge/. test/layout.test.ts
 * holds these rules.
 *
 * The agent's gRPC service: a thin adapter. Each handler checks the caller's role (calls.ts),
 * parses its request with zod (requests.ts), calls one function, and writes what it
 * returns; any failure becomes a status that carries the CmError code and hint.
 */
import type * as grpc from '@grpc/grpc-js';
import * as path from 'node:path';
import { agentService, ROLE_AGENT, ROLE_CONTROLLER, type AgentHandlers, type PullEvent, type RootAnnouncement } from '../proto';
import type { ChangeJournal } from './journal/journal';
import { BridgeManager } from './bridge/manager';
import { bridgeReply, bridgeRequestOf } from './bridge-call';
import { streamingCall, unaryCall, writeAll } from './calls';
import { HostOpRunner } from './host/host-ops';
import { hostOpReply } from './host-op-call';
import { loadIdentity } from './fs/identity';
import { agentInfo } from './host/info';
import { listBatches } from './send/listing';
import type { Logger } from './log';
import { resolveRoots, type AgentRoots } from './fs/paths';
import { pullFromPeer } from './receive/pull-session';
import { BridgeStartSchema, FetchFirstSchema, FetchItemsSchema, HostOpSchema, ListSchema, ownersMap, parse, phaseOf, PullSchema, rootsOfScope, VerifySchema } from './requests';
import { PassDigests } from './verify/digest-records';
import { fetchTar, type FetchWant } from './send/tar-writer';
import type { AgentTls } from './tls';
import { digestJournal, verifyBatches } from './verify/tree-digest';
import { listScopes } from './send/list-scopes';

export interface AgentServiceOptions {
  roots: AgentRoots;
  tls: AgentTls;
  log: Logger;
  /** Where the receiving agent keeps its manifests (outside the roots). */
  stateDir: string;
  /** A pass whose sender sends nothing for this long fails (connect.stalled). */
  stallMs: number;
  /** The agent's shutdown: a running bridge stops and keeps its state, to resume at the next start. */
  signal?: AbortSignal;
  /** The change journal of the carried roots (issue 25), or null with the reason in journalOff. */
  journal: ChangeJournal | null;
  journalOff?: string;
}

type Writable = grpc.ServerWritableStream<unknown, unknown>;
type Duplex = grpc.ServerDuplexStream<unknown, unknown>;

/** The Agent service; `addToServer(server)` registers it. */
export class AgentService {
  private readonly hostOps: HostOpRunner;
  /** The one bridge this agent may run (issue 14); its state lives in <stateDir>/bridge. */
  readonly bridges: BridgeManager;

  constructor(private readonly opts: AgentServiceOptions) {
    this.hostOps = new HostOpRunner({ roots: opts.roots, log: opts.log.child({ method: 'HostOp' }), stateDir: opts.stateDir });
    const blog = opts.log.child({ method: 'Bridge' });
    this.bridges = new BridgeManager({
      stateDir: path.join(opts.stateDir, 'bridge'),
      signal: opts.signal,
      onWarning: (w) => blog.warn({ code: w.code, port: w.port }, w.message),
    });
  }

  addToServer(server: grpc.Server): void {
    const { log } = this.opts;
    const handlers: AgentHandlers = {
      Info: unaryCall(ROLE_CONTROLLER, 'Info', log, () => agentInfo(this.opts.roots, this.opts.tls.label)),
      HostOp: unaryCall(ROLE_CONTROLLER, 'HostOp', log, (call) => hostOpReply(this.hostOps, parse(HostOpSchema, call.request, 'HostOp'))),
      BridgeStart: unaryCall(ROLE_CONTROLLER, 'BridgeStart', log, async (call) => bridgeReply(await this.bridges.start(bridgeRequestOf(parse(BridgeStartSchema, call.request, 'BridgeStart'))))),
      BridgeStop: unaryCall(ROLE_CONTROLLER, 'BridgeStop', log, async () => bridgeReply(await this.bridges.stop())),
      BridgeStatus: unaryCall(ROLE_CONTROLLER, 'BridgeStatus', log, async () => bridgeReply(this.bridges.status())),
      Pull: streamingCall(ROLE_CONTROLLER, 'Pull', log, (call: Writable, signal) => this.pull(call, signal)),
      Verify: streamingCall(ROLE_CONTROLLER, 'Verify', log, (call: Writable, signal) => this.verify(call, signal)),
      List: streamingCall(ROLE_AGENT, 'List', log, (call: Writable, signal) => this.list(call, signal)),
      Fetch: streamingCall(ROLE_AGENT, 'Fetch', log, (call: Duplex, signal) => this.fetch(call, signal)),
    };
    server.addService(agentService(), handlers);
  }

  private async pull(call: Writable, signal: AbortSignal): Promise<void> {
    const req = parse(PullSchema, call.request, 'Pull');
    const summary = await pullFromPeer(req, this.opts, signal, (ev) => call.write(ev));
    call.write({ summary } satisfies PullEvent);
  }

  private async verify(call: Writable, signal: AbortSignal): Promise<void> {
    const req = parse(VerifySchema, call.request, 'Verify');
    const roots = resolveRoots(this.opts.roots, rootsOfScope(req.scope, 'final'), req.scope.mailboxes_dir);
    const identity = await loadIdentity(this.opts.roots.root);
    const cache = await digestJournal(this.opts.journal, this.opts.journalOff, signal);
    await writeAll(call, verifyBatches(roots, { identity, owners: ownersMap(req.owners), signal, records: { stateDir: this.opts.stateDir, quick: req.quick === true }, cache }, req.digests_only === true), signal, 'the controller went away');
  }

  private async list(call: Writable, signal: AbortSignal): Promise<void> {
    const req = parse(ListSchema, call.request, 'List');
    const phase = phaseOf(req.phase);
    const roots = resolveRoots(this.opts.roots, rootsOfScope(req.scope, phase), req.scope.mailboxes_dir);
    const identity = await loadIdentity(this.opts.roots.root);
    const log = this.opts.log.child({ method: 'List', phase, peer: call.getPeer() });
    const onAnnounced = (announced: RootAnnouncement[]): void =>
      log.info({ roots: announced.map((a) => ({ name: a.name, present: a.present, files: a.files, bytes: a.bytes, scoped: a.scoped, paths: a.scope.length, walk_reason: a.walk_reason || undefined })) }, 'listing');
    const scopes = await listScopes(this.opts.journal, this.opts.journalOff, req.journal, identity, signal);
    await writeAll(call, listBatches(roots, phase, identity, signal, (msg, f) => log.warn(f, msg), onAnnounced, this.opts.stateDir, scopes), signal, 'the receiver went away');
  }

  private async fetch(call: Duplex, signal: AbortSignal): Promise<void> {
    // Iterating a Readable destroys it at its end; the answer still has to go out.
    const it = (call as unknown as { iterator(o: { destroyOnReturn: boolean }): AsyncIterator<unknown> }).iterator({ destroyOnReturn: false });
    const head = await it.next();
    if (head.done) return;
    const req = parse(FetchFirstSchema, head.value, 'Fetch');
    const phase = phaseOf(req.phase);
    const roots = resolveRoots(this.opts.roots, rootsOfScope(req.scope, phase), req.scope.mailboxes_dir);
    const identity = await loadIdentity(this.opts.roots.root);
    const log = this.opts.log.child({ method: 'Fetch', phase, peer: call.getPeer() });
    const wants = (async function* (): AsyncGenerator<FetchWant> {
      for (;;) {
        const n = await it.next();
        if (n.done) return;
        const m = parse(FetchItemsSchema, n.value, 'Fetch');
        for (const i of m.items) yield { path: i.path, size: Number(i.size), mtimeNs: BigInt(i.mtime_ns) };
      }
    })();
    let sent = 0;
    const messages = (async function* () {
      for await (const data of fetchTar({ roots, phase, identity, wants, signal, onWarning: (msg, f) => log.warn(f, msg), onDigest: (rel, st, sha) => digests.add(rel, st, sha) })) {
        sent += data.length;
        yield { data };
      }
    })();
    // What this pass read and hashed, kept for a quick verify of this host.
    const digests = new PassDigests(this.opts.stateDir, roots);
    try {
      await writeAll(call, messages, signal, 'the receiver went away');
    } finally {
      digests.close();
    }
    log.info({ wire_bytes: sent }, 'files sent');
  }
}
