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
  parseHostPort,
  PROTOCOL_VERSION,
  ROLE_AGENT,
  ROLE_CONTROLLER,
  ROOTS,
  rootsForPhase,
  type AgentHandlers,
  type Chunk,
  type InfoReply,
  type Phase,
  type PullEvent,
  type RootName,
  type VerifyBatch,
  type VerifyEntry,
} from '../proto';
import type { Logger } from './log';
import { loadIdentity } from './identity';
import { resolveRoots, type AgentRoots } from './paths';
import { sendTar } from './tar-send';
import { receiveTar, type OwnerNames } from './tar-receive';
import { peerCredentials, roleOf, type AgentTls } from './tls';
import { digestRoot } from './tree-digest';

export const VERSION: string = (() => {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require('../../package.json').version as string;
  } catch {
    return '0.0.0';
  }
})();

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
});
const SendSchema = z.object({ phase: PhaseSchema, scope: ScopeSchema });
const VerifySchema = z.object({ scope: ScopeSchema, owners: z.array(OwnerSchema).max(16) });

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
}

/** The Agent service; `addToServer(server)` registers it. */
export class AgentService {
  constructor(private readonly opts: AgentServiceOptions) {}

  addToServer(server: grpc.Server): void {
    const handlers: AgentHandlers = {
      Info: (call, callback) => {
        this.unary(call, ROLE_CONTROLLER, 'Info', () => this.info())
          .then((r) => callback(null, r))
          .catch((err: CmError) => callback(err.toServiceError()));
      },
      Pull: (call) => this.stream(call, ROLE_CONTROLLER, 'Pull', (signal) => this.pull(call, signal)),
      Send: (call) => this.stream(call, ROLE_AGENT, 'Send', (signal) => this.send(call, signal)),
      Verify: (call) => this.stream(call, ROLE_CONTROLLER, 'Verify', () => this.verify(call)),
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
  private stream(call: grpc.ServerWritableStream<unknown, unknown>, role: string, method: string, fn: (signal: AbortSignal) => Promise<void>): void {
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
      call.destroy(e.toServiceError() as unknown as Error);
    });
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

  private async send(call: grpc.ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
    const req = parse(SendSchema, call.request, 'Send');
    const phase = phaseOf(req.phase);
    const roots = resolveRoots(this.opts.roots, rootsOfScope(req.scope, phase), req.scope.mailboxes_dir);
    const identity = await loadIdentity(this.opts.roots.root);
    const log = this.opts.log.child({ method: 'Send', phase, peer: call.getPeer() });
    log.info({ roots: roots.map((r) => r.name) }, 'sending');
    let sent = 0;
    for await (const data of sendTar({ roots, phase, identity, signal, onWarning: (msg, f) => log.warn(f, msg) })) {
      const msg: Chunk = { data };
      sent += data.length;
      if (!call.write(msg)) await waitDrain(call, signal);
      if (signal.aborted) throw new CmError('transfer.cancelled', 'the receiver went away');
    }
    log.info({ wire_bytes: sent }, 'sent');
  }

  private async pull(call: grpc.ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
    const req = parse(PullSchema, call.request, 'Pull');
    const phase = phaseOf(req.phase);
    const names = rootsOfScope(req.scope, phase);
    const roots = resolveRoots(this.opts.roots, names, req.scope.mailboxes_dir);
    const owners = ownersMap(req.owners);
    const source = parseHostPort(req.source, undefined, 'source agent');
    const identity = await loadIdentity(this.opts.roots.root);
    const log = this.opts.log.child({ method: 'Pull', phase, source: req.source });
    const started = process.hrtime.bigint();
    log.info({ roots: names }, 'pulling');

    const client = agentClient(req.source, peerCredentials(this.opts.tls), clientChannelOptions(true));
    const stream = client.Send({ phase: req.phase, scope: { mailboxes_dir: req.scope.mailboxes_dir, roots: names } });
    const onAbort = (): void => stream.cancel();
    signal.addEventListener('abort', onAbort);
    let lastProgress = 0;
    try {
      const source$ = (async function* () {
        try {
          for await (const msg of stream as AsyncIterable<Chunk & { data: Buffer }>) yield msg.data;
        } catch (err) {
          const e = err as grpc.ServiceError;
          if (typeof e.code === 'number') throw fromServiceError(e, `${source.host}:${source.port}`);
          throw err;
        }
      })();
      const summary = await receiveTar(source$, {
        cfg: this.opts.roots,
        roots,
        phase,
        owners,
        identity,
        onProgress: (p) => {
          const now = Date.now();
          if (now - lastProgress < 250) return;
          lastProgress = now;
          const ev: PullEvent = {
            progress: { root: p.root, files: p.files, bytes: p.bytes, total_files: p.totalFiles, total_bytes: p.totalBytes },
          };
          call.write(ev);
        },
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
        },
      };
      log.info({ files: summary.files, bytes: summary.bytes, seconds, vanished: summary.vanishedCount, changed: summary.changedCount }, 'pulled');
      call.write(ev);
    } finally {
      signal.removeEventListener('abort', onAbort);
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

function waitDrain(call: grpc.ServerWritableStream<unknown, unknown>, signal?: AbortSignal): Promise<void> {
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
