/**
 * The agent's gRPC service: a thin adapter over the walk, tar and digest modules. Every
 * call checks the caller's role from its certificate, validates the request with zod, and
 * turns any failure into a status that carries the CmError code and hint.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { z } from 'zod';
import {
  agentClient,
  agentService,
  asCmError,
  clientChannelOptions,
  CmError,
  fromServiceError,
  HOST_OP_MAX_UNITS,
  isHostOpName,
  isUnitName,
  parseHostPort,
  PROTOCOL_VERSION,
  ROLE_AGENT,
  ROLE_CONTROLLER,
  ROOTS,
  rootsForPhase,
  SERVICE_OPS,
  type AgentHandlers,
  type Chunk,
  type Chunk__Output,
  type HostOpReply,
  type ListBatch,
  type ListBatch__Output,
  type InfoReply,
  type Phase,
  type PullEvent,
  type RootName,
  type VerifyBatch,
  type VerifyEntry,
  VERSION,
} from '../proto';
import type { Logger } from './log';
import { HostOpRunner } from './host-ops';
import { loadIdentity } from './identity';
import { resolveRoots, type AgentRoots } from './paths';
import { pull, type FetchChannel, type OwnerNames } from './pull';
import { announceAndList, checkRequiredRoots, fetchTar, type FetchWant } from './source';
import { peerCredentials, roleOf, type AgentTls } from './tls';
import { digestRoot } from './tree-digest';

const NAME = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/);
const ScopeSchema = z.object({
  mailboxes_dir: z.string().max(4096),
  roots: z.array(z.string().max(32)).max(16),
});
const OwnerSchema = z.object({ root: z.string().max(32), user: NAME, group: NAME });
const PhaseSchema = z.enum(['INITIAL', 'FINAL']);
const PullSchema = z.object({
  source: z.string().min(1).max(300),
  phase: PhaseSchema,
  scope: ScopeSchema,
  owners: z.array(OwnerSchema).max(16),
  dry_run: z.boolean(),
  max_delete: z.string().regex(/^-?\d{1,18}$/),
});
const VerifySchema = z.object({ scope: ScopeSchema, owners: z.array(OwnerSchema).max(16) });
const ListSchema = z.object({ phase: PhaseSchema, scope: ScopeSchema });
const MTIME_NS = z.string().regex(/^\d{1,21}$/);
const FetchFirstSchema = z.object({ phase: PhaseSchema, scope: ScopeSchema, items: z.array(z.unknown()).max(0) });
const HostOpSchema = z.object({
  op: z.string().max(64),
  units: z.array(z.string().max(256)).max(HOST_OP_MAX_UNITS, `at most ${HOST_OP_MAX_UNITS} units per call`),
});
const FetchItemsSchema = z.object({
  items: z
    .array(z.object({ path: z.string().min(1).max(4096), size: z.string().regex(/^\d{1,20}$/), mtime_ns: MTIME_NS }))
    .min(1)
    .max(4096),
});

function parse<T>(schema: z.ZodType<T>, req: unknown, what: string): T {
  const r = schema.safeParse(req);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new CmError('usage.bad_request', `bad ${what} request: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return r.data;
}

const phaseOf = (p: 'INITIAL' | 'FINAL'): Phase => (p === 'INITIAL' ? 'initial' : 'final');

function ownersMap(rules: { root: string; user: string; group: string }[]): Partial<Record<RootName, OwnerNames>> {
  const out: Partial<Record<RootName, OwnerNames>> = {};
  for (const r of rules) {
    if (!ROOTS.some((x) => x.name === r.root)) throw new CmError('usage.bad_request', `owner rule for unknown root ${JSON.stringify(r.root)}`);
    out[r.root as RootName] = { user: r.user, group: r.group };
  }
  return out;
}

function rootsOfScope(scope: { roots: string[] }, phase: Phase): string[] {
  return scope.roots.length ? scope.roots : rootsForPhase(phase);
}

interface AnyCall {
  getAuthContext(): { sslPeerCertificate?: unknown };
  getPeer(): string;
}

export interface AgentServiceOptions {
  roots: AgentRoots;
  tls: AgentTls;
  log: Logger;
  /** Where the receiving agent keeps its manifests (outside the roots). */
  stateDir: string;
  /** A pass whose sender sends nothing for this long fails (connect.stalled). */
  stallMs: number;
}

/** The Agent service; `addToServer(server)` registers it. */
export class AgentService {
  private readonly hostOps: HostOpRunner;

  constructor(private readonly opts: AgentServiceOptions) {
    this.hostOps = new HostOpRunner({ roots: opts.roots, log: opts.log.child({ method: 'HostOp' }) });
  }

  addToServer(server: grpc.Server): void {
    const handlers: AgentHandlers = {
      Info: (call, callback) => {
        this.unary(call, ROLE_CONTROLLER, 'Info', () => this.info())
          .then((r) => callback(null, r))
          .catch((err: CmError) => callback(err.toServiceError()));
      },
      HostOp: (call, callback) => {
        this.unary(call, ROLE_CONTROLLER, 'HostOp', () => this.hostOp(call.request))
          .then((r) => callback(null, r))
          .catch((err: CmError) => callback(err.toServiceError()));
      },
      Pull: (call) => this.stream(call, ROLE_CONTROLLER, 'Pull', (signal) => this.pull(call, signal)),
      Verify: (call) => this.stream(call, ROLE_CONTROLLER, 'Verify', () => this.verify(call)),
      List: (call) => this.stream(call, ROLE_AGENT, 'List', (signal) => this.list(call, signal)),
      Fetch: (call) => this.stream(call, ROLE_AGENT, 'Fetch', (signal) => this.fetchFiles(call, signal)),
    };
    server.addService(agentService(), handlers);
  }

  private checkRole(call: AnyCall, role: string, method: string): void {
    const cert = call.getAuthContext().sslPeerCertificate as { subject?: Record<string, string> } | undefined;
    const got = roleOf(cert);
    if (got !== role) {
      this.opts.log.warn({ peer: call.getPeer(), method, role: got ?? null }, 'refused a call from a peer of the wrong role');
      throw new CmError('auth.wrong_role', `${method} needs a ${role} certificate of this migration; the caller presented ${got ? `a ${got} certificate` : 'none'}`, {
        hint: 'use the material that `cmmigrate init` wrote for this migration',
      });
    }
  }

  private async unary<T>(call: AnyCall, role: string, method: string, fn: () => Promise<T>): Promise<T> {
    try {
      this.checkRole(call, role, method);
      return await fn();
    } catch (err) {
      const e = asCmError(err);
      this.opts.log.error({ err: e, code: e.code, method }, 'call failed');
      throw e;
    }
  }

  /** Run a server-streaming handler; grpc-js does not catch async errors, so we do. */
  private stream(call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>, role: string, method: string, fn: (signal: AbortSignal) => Promise<void>): void {
    const abort = new AbortController();
    call.on('cancelled', () => abort.abort());
    (async () => {
      this.checkRole(call, role, method);
      await fn(abort.signal);
      call.end();
    })().catch((err: unknown) => {
      const e = asCmError(err);
      if (abort.signal.aborted) {
        this.opts.log.info({ method, code: e.code }, 'call cancelled by the peer');
        return;
      }
      this.opts.log.error({ err: e, code: e.code, method }, 'call failed');
      // grpc-js sends a status for an 'error' event; after destroy() it would send none
      // and the caller would wait forever.
      call.emit('error', e.toServiceError());
    });
  }

  private async list(call: grpc.ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
    const req = parse(ListSchema, call.request, 'List');
    const phase = phaseOf(req.phase);
    const roots = resolveRoots(this.opts.roots, rootsOfScope(req.scope, phase), req.scope.mailboxes_dir);
    const identity = await loadIdentity(this.opts.roots.root);
    const log = this.opts.log.child({ method: 'List', phase, peer: call.getPeer() });
    const { announced, entries } = await announceAndList(roots, phase, identity, (msg, f) => log.warn(f, msg));
    checkRequiredRoots(phase, roots, announced);
    log.info({ roots: announced.map((a) => ({ name: a.name, present: a.present, files: a.files, bytes: a.bytes })) }, 'listing');
    const first: ListBatch = { protocol: PROTOCOL_VERSION, roots: announced };
    if (!call.write(first)) await waitDrain(call, signal);
    let batch: ListBatch['entries'] = [];
    for await (const item of entries) {
      if (signal.aborted) throw new CmError('transfer.cancelled', 'the receiver went away');
      if ('path' in item) {
        batch.push(item);
        if (batch.length >= 512) {
          if (!call.write({ entries: batch } as ListBatch)) await waitDrain(call, signal);
          batch = [];
        }
      } else {
        if (!call.write({ entries: batch, root_end: item } as ListBatch)) await waitDrain(call, signal);
        batch = [];
      }
    }
  }

  private async fetchFiles(call: grpc.ServerDuplexStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
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
    for await (const data of fetchTar({ roots, phase, identity, wants, signal, onWarning: (msg, f) => log.warn(f, msg) })) {
      sent += data.length;
      if (!call.write({ data } as Chunk)) await waitDrain(call, signal);
      if (signal.aborted) throw new CmError('transfer.cancelled', 'the receiver went away');
    }
    log.info({ wire_bytes: sent }, 'files sent');
  }

  /** One operation of the allowlist; names outside it are refused before anything runs. */
  private async hostOp(request: unknown): Promise<HostOpReply> {
    const req = parse(HostOpSchema, request, 'HostOp');
    const op = req.op;
    if (!isHostOpName(op)) {
      throw new CmError('agent.op_not_allowed', `HostOp ${JSON.stringify(op)} is not an operation an agent runs`, {
        hint: 'the controller and the agent may be of different cmmigrate versions: reinstall the agent (cmmigrate install-agent)',
      });
    }
    const bad = req.units.find((u) => !isUnitName(u));
    if (bad !== undefined) throw new CmError('agent.unit_not_allowed', `HostOp ${op}: unit ${JSON.stringify(bad)} is not one an agent may touch`);
    const units = [...new Set(req.units)].filter(isUnitName);
    const isService = SERVICE_OPS.includes(op);
    if (isService && units.length === 0) throw new CmError('usage.bad_request', `HostOp ${op} needs at least one unit`);
    if (!isService && units.length > 0) throw new CmError('usage.bad_request', `HostOp ${op} takes no units`);
    const r = await this.hostOps.run(op, units);
    return {
      units: r.units ?? [],
      output: r.output ?? '',
      chatmail_version: r.chatmailVersion ?? '',
      chatmail_version_present: r.chatmailVersion !== undefined,
      free_bytes: String(r.disk?.freeBytes ?? 0),
      total_bytes: String(r.disk?.totalBytes ?? 0),
      path: r.disk?.path ?? '',
      tree_bytes: String(r.tree?.bytes ?? 0),
      tree_files: String(r.tree?.files ?? 0),
    };
  }

  private async info(): Promise<InfoReply> {
    const { roots } = this.opts;
    const all = resolveRoots(roots, ROOTS.map((r) => r.name), roots.mailboxesDir);
    const present = await Promise.all(all.map((r) => fs.lstat(r.abs).then(() => true, () => false)));
    let osName = '';
    try {
      const text = await fs.readFile(path.join(roots.root, 'etc/os-release'), 'utf8');
      osName = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(text)?.[1] ?? '';
    } catch {
      /* no os-release under --root */
    }
    let free = 0;
    for (let p = path.join(roots.root, roots.mailboxesDir); ; p = path.dirname(p)) {
      try {
        const s = await fs.statfs(p);
        free = s.bavail * s.bsize;
        break;
      } catch {
        if (p === path.dirname(p)) break;
      }
    }
    return {
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      hostname: os.hostname(),
      os: osName,
      node: process.version,
      root: roots.root,
      roots: all.map((r, i) => ({ name: r.name, path: '/' + r.rel, present: present[i] })),
      free_bytes: String(free),
      role: this.opts.tls.label,
    };
  }

  private async pull(call: grpc.ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
    const req = parse(PullSchema, call.request, 'Pull');
    const phase = phaseOf(req.phase);
    const names = rootsOfScope(req.scope, phase);
    const roots = resolveRoots(this.opts.roots, names, req.scope.mailboxes_dir);
    const owners = ownersMap(req.owners);
    const source = parseHostPort(req.source, undefined, 'source agent');
    const peer = `old agent ${source.host}:${source.port}`;
    const identity = await loadIdentity(this.opts.roots.root);
    const log = this.opts.log.child({ method: 'Pull', phase, source: req.source, dry_run: req.dry_run });
    const started = process.hrtime.bigint();
    log.info({ roots: names }, 'pulling');

    const client = agentClient(req.source, peerCredentials(this.opts.tls), clientChannelOptions(true));
    const scope = { mailboxes_dir: req.scope.mailboxes_dir, roots: names };
    const calls: { cancel(): void }[] = [];
    const onAbort = (): void => calls.forEach((c) => c.cancel());
    signal.addEventListener('abort', onAbort);
    // A sender that is connected but sends nothing must fail the pass, not hang it.
    let lastActivity = Date.now();
    let stalled = false;
    const stallMs = this.opts.stallMs;
    const watchdog = setInterval(() => {
      if (Date.now() - lastActivity > stallMs) {
        stalled = true;
        calls.forEach((c) => c.cancel());
      }
    }, Math.min(5000, Math.max(100, stallMs / 4)));
    const translate = async function* <T>(s: AsyncIterable<T>): AsyncGenerator<T> {
      try {
        for await (const m of s) yield m;
      } catch (err) {
        const e = err as grpc.ServiceError;
        if (typeof e.code === 'number') throw fromServiceError(e, peer);
        throw err;
      }
    };
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
            for await (const m of translate(f as AsyncIterable<Chunk__Output>)) yield m.data as Buffer;
          })(),
        };
      };
      const summary = await pull({
        cfg: this.opts.roots,
        roots,
        phase,
        owners,
        identity,
        stateDir: this.opts.stateDir,
        list: translate(listCall as AsyncIterable<ListBatch__Output>),
        openFetch,
        dryRun: req.dry_run,
        maxDelete: Number(req.max_delete),
        onProgress: (p) => {
          const ev: PullEvent = {
            progress: { root: p.root, files: p.files, bytes: p.bytes, total_files: p.totalFiles, total_bytes: p.totalBytes, sent_bytes: p.sentBytes },
          };
          call.write(ev);
        },
        onItem: req.dry_run ? (i) => call.write({ item: { op: i.op, path: i.path, from: i.from ?? '', what: i.what ?? '' } } as PullEvent) : undefined,
        onActivity: () => {
          lastActivity = Date.now();
        },
      }).catch((err: unknown) => {
        if (stalled) {
          throw new CmError('connect.stalled', `${peer} sent nothing for ${Math.round(stallMs / 1000)} s; the pass was stopped`, {
            hint: 'check the old host and the network between the hosts, then run the same command again: it continues where it stopped',
            cause: err,
          });
        }
        throw err;
      });
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const ev: PullEvent = {
        summary: {
          files: summary.files,
          bytes: summary.bytes,
          dirs: summary.dirs,
          symlinks: summary.symlinks,
          hardlinks: summary.hardlinks,
          fifos: summary.fifos,
          sockets_skipped: summary.socketsSkipped,
          seconds,
          wire_bytes: summary.wireBytes,
          absent_roots: summary.absentRoots,
          owners_defaulted: summary.ownersDefaulted,
          renamed: summary.renamed,
          deleted: summary.deleted,
          unchanged: summary.unchanged,
          kept_extraneous: summary.keptExtraneous,
          vanished: summary.vanished,
          deletes_skipped: summary.deletesSkipped,
          kept_paths: summary.keptPaths,
          vanished_paths: summary.vanishedPaths,
        },
      };
      log.info({ files: summary.files, bytes: summary.bytes, renamed: summary.renamed, deleted: summary.deleted, unchanged: summary.unchanged, seconds }, 'pulled');
      call.write(ev);
    } finally {
      signal.removeEventListener('abort', onAbort);
      // A failed pass must not leave the sender reading files for nobody.
      clearInterval(watchdog);
      calls.forEach((c) => c.cancel());
      client.close();
    }
  }

  private async verify(call: grpc.ServerWritableStream<unknown, unknown>): Promise<void> {
    const req = parse(VerifySchema, call.request, 'Verify');
    const roots = resolveRoots(this.opts.roots, rootsOfScope(req.scope, 'final'), req.scope.mailboxes_dir);
    const owners = ownersMap(req.owners);
    const identity = await loadIdentity(this.opts.roots.root);
    for (const root of roots) {
      let batch: VerifyEntry[] = [];
      for await (const item of digestRoot(root, { identity, owners })) {
        if ('present' in item) {
          const msg: VerifyBatch = {
            entries: batch,
            root_done: { root: item.root, present: item.present, entries: item.entries, sha256: item.sha256, sockets_skipped: item.socketsSkipped },
          };
          if (!call.write(msg)) await waitDrain(call);
          batch = [];
        } else {
          batch.push(item);
          if (batch.length >= 256) {
            const msg: VerifyBatch = { entries: batch };
            if (!call.write(msg)) await waitDrain(call);
            batch = [];
          }
        }
      }
    }
  }
}

function waitDrain(call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      call.off('drain', done);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    call.on('drain', done);
    signal?.addEventListener('abort', done);
  });
}
