/**
 * Start and stop an agent: bind the gRPC server with mutual TLS on the given address and
 * register the service. Used by the CLI and, in-process, by tests.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CmError, DEFAULT_MAILBOXES_DIR, formatHostPort, parseHostPort, ROOTS, SERVER_OPTIONS } from '../proto';
import { ChangeJournal } from './journal/journal';
import { createLogger, type Logger } from './log';
import { checkMailboxesDir, resolveRoots, type AgentRoots } from './fs/paths';
import { AgentService } from './service';
import { loadAgentTls, serverCredentials } from './tls';

export interface AgentServerOptions {
  listen: string;
  root: string;
  tlsDir: string;
  mailboxesDir?: string;
  /** Where the agent keeps its manifests; default <root>/var/lib/cmmigrate. */
  stateDir?: string;
  /** Seconds without progress after which a pass fails; default 300. */
  stallSeconds?: number;
  log?: Logger;
  /** Keep a change journal of the carried roots (issue 25); default true. */
  journal?: boolean;
  /** The python3 that runs the journal's fanotify helper; default `python3` from PATH. */
  python?: string;
}

/** How long a pass may see no progress at all before it fails as stalled. */
export const DEFAULT_STALL_SECONDS = 300;

export interface RunningAgent {
  /** The bound port (useful with :0). */
  port: number;
  address: string;
  stop(graceMs?: number): Promise<void>;
}

/**
 * The change journal of every root this agent may carry, from now on: a pass then walks
 * only what changed since the last one. Without it (--no-journal, or it cannot start)
 * every pass walks in full and says why.
 */
async function startJournal(cfg: AgentRoots, stateDir: string, opts: AgentServerOptions, log: Logger): Promise<{ journal: ChangeJournal | null; journalOff?: string }> {
  if (opts.journal === false) return { journal: null, journalOff: 'journal: off on this agent (--no-journal)' };
  const roots = resolveRoots(cfg, ROOTS.map((r) => r.name), cfg.mailboxesDir);
  try {
    const journal = await ChangeJournal.start({ roots: roots.map((r) => ({ name: r.name, abs: r.abs })), cookieDir: path.join(stateDir, 'journal'), log: log.child({ part: 'journal' }), python: opts.python });
    return { journal };
  } catch (err) {
    log.warn({ err }, 'change journal not started; every pass walks in full');
    return { journal: null, journalOff: `journal: not started (${(err as Error).message})` };
  }
}

export async function startAgent(opts: AgentServerOptions): Promise<RunningAgent> {
  const log = opts.log ?? createLogger();
  const root = path.resolve(opts.root);
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) {
    throw new CmError('usage.bad_option', `--root ${opts.root}: not a directory`, { hint: 'pass / on a relay host, or the directory that holds the relay\'s tree' });
  }
  const mailboxesDir = checkMailboxesDir(opts.mailboxesDir ?? DEFAULT_MAILBOXES_DIR);
  const tls = loadAgentTls(opts.tlsDir);
  const hp = parseHostPort(opts.listen, undefined, '--listen');
  const server = new grpc.Server(SERVER_OPTIONS);
  const stateDir = path.resolve(opts.stateDir ?? path.join(root, 'var/lib/cmmigrate'));
  const stallMs = Math.max(1, opts.stallSeconds ?? DEFAULT_STALL_SECONDS) * 1000;
  const shutdown = new AbortController();
  const { journal, journalOff } = await startJournal({ root, mailboxesDir }, stateDir, opts, log);
  const service = new AgentService({ roots: { root, mailboxesDir }, tls, log, stateDir, stallMs, signal: shutdown.signal, journal, journalOff });
  service.addToServer(server);
  const address = formatHostPort(hp.host, hp.port);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, serverCredentials(tls), (err, p) => {
      if (err) {
        const inUse = /EADDRINUSE|address already in use/i.test(err.message);
        reject(
          new CmError(inUse ? 'agent.port_in_use' : 'agent.bind_failed', `cannot listen on ${address}: ${err.message}`, {
            hint: inUse ? `another process holds ${address}; stop it or choose another port with --listen` : 'check that the address belongs to this host',
            cause: err,
          }),
        );
      } else resolve(p);
    });
  });
  if (log.isLevelEnabled('debug')) {
    const m = (): void => {
      const u = process.memoryUsage();
      log.debug({ rss: u.rss, heap_used: u.heapUsed, heap_total: u.heapTotal, external: u.external, array_buffers: u.arrayBuffers }, 'memory');
    };
    setInterval(m, 2000).unref();
  }
  // A bridge that ran before this agent restarted comes back (its state is on disk).
  await service.bridges.resume();
  log.info({ listen: formatHostPort(hp.host, port), root, mailboxes_dir: mailboxesDir, role: tls.label }, 'agent listening');
  return {
    port,
    address: formatHostPort(hp.host, port),
    stop: (graceMs = 5000) => {
      // The bridge stops with the agent but keeps its state: a restarted agent resumes it.
      shutdown.abort();
      void journal?.close();
      const bridgeDown = service.bridges.shutdown();
      const grpcDown = new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      return Promise.all([bridgeDown, grpcDown]).then(() => undefined);
    },
  };
}
