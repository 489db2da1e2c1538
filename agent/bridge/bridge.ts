/**
 * Folder agent/bridge/: the bridge engine (this file), its pipes, limits, counters, state
 * file and the manager the service calls. It imports nothing of the agent outside this
 * folder; ../bridge-call.ts adapts it to the wire.
 *
 * The bridge: the old host passes the relay's TCP ports, byte for byte and unparsed, to
 * the same ports of the new host, so clients that still resolve the old address reach the
 * new relay while DNS changes (issue 14).
 *
 * What it guarantees:
 * - Every accepted connection is piped both ways with backpressure (pipe.ts: a side stops
 *   reading while the other holds `limits.highWaterMark` or more unsent), so one
 *   connection holds at most about highWaterMark plus one 64 KiB read chunk per direction
 *   in memory, whatever the peers do; reads go into one shared buffer and reused chunks,
 *   so moving bytes allocates nothing in steady state.
 * - Half-close is passed on: one side's FIN becomes a FIN to the other side, and the other
 *   direction keeps flowing until it ends too.
 * - Limits (global, per client address, per port) are checked when a connection arrives;
 *   a connection over a limit is closed at once and counted as refused.
 * - A new host that refuses, is unreachable or does not accept within
 *   `limits.connectTimeoutMs` gets the client closed and counted as targetFailed; a
 *   connection with no byte either way for `limits.idleTimeoutMs` is closed and counted.
 * - stop() (or aborting `signal`) closes every listener and every connection, and resolves
 *   when the listeners are closed.
 * - Only counts are kept and reported, never contents.
 * - With a `stateDir`, what is bridged and the counters are kept in a state file
 *   (state.ts); stop() removes it, stop({ keepState: true }) and an abort keep it, so
 *   resumeBridge() in a restarted agent takes over.
 *
 * Node built-ins only: the agent bundle loads nothing else, and runs on Node 18.19.
 */
import * as net from 'node:net';
import { CmError } from '../../proto/errors';
import type { BridgeLimits } from './limits';
import { checkConfig, clearState, readState, writeState, type BridgeConfig, type BridgeState } from './state';
import { KEEPALIVE_MS, Pipe } from './pipe';
import { PortStats, type PortStatus } from './stats';

/** Something the bridge noticed that needs no action from its caller, for the log. */
export interface BridgeWarning {
  code: string;
  message: string;
  port?: number;
}

/** How a bridge runs, besides what it bridges. */
export interface BridgeOptions {
  /** Where the state file lives; without it nothing is written (tests, one-off runs). */
  stateDir?: string;
  /** Aborting stops the bridge and keeps its state file: the agent is going away, not the bridge. */
  signal?: AbortSignal;
  /** How often the counters are written to the state file; default 60 s. */
  saveIntervalMs?: number;
  /** Warnings (a listener error, a failed state write); no-op by default. */
  onWarning?: (w: BridgeWarning) => void;
  /** The clock of the counters, ms since the epoch; Date.now by default. */
  now?: () => number;
}

/** What a bridge's caller may give: limits may be partial (the rest are the defaults). */
export interface BridgeRequest {
  listen: string[];
  ports: number[];
  target: string;
  limits?: Partial<BridgeLimits>;
}

/** A bridge's whole status. */
export interface BridgeStatus {
  config: BridgeConfig;
  startedMs: number;
  nowMs: number;
  /** Bridged connections open now, all ports. */
  open: number;
  ports: PortStatus[];
}

/** The source address as the limits count it: IPv4-mapped IPv6 is the IPv4 address. */
function sourceOf(sock: net.Socket): string {
  const a = sock.remoteAddress ?? '';
  return a.startsWith('::ffff:') && net.isIPv4(a.slice(7)) ? a.slice(7) : a;
}

/**
 * A running bridge. Make one with startBridge() or resumeBridge(); read it with status();
 * end it with stop().
 */
export class Bridge {
  private readonly servers: net.Server[] = [];
  private readonly stats = new Map<number, PortStats>();
  private readonly pipes = new Set<Pipe>();
  private readonly bySource = new Map<string, number>();
  private readonly now: () => number;
  private readonly warn: (w: BridgeWarning) => void;
  private saveTimer?: NodeJS.Timeout;
  private stopping?: Promise<void>;
  private readonly onAbort = (): void => void this.stop({ keepState: true });

  private constructor(
    readonly config: BridgeConfig,
    readonly startedMs: number,
    private readonly opts: BridgeOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.warn = opts.onWarning ?? (() => undefined);
    for (const port of config.ports) this.stats.set(port, new PortStats(port));
  }

  /** Listens on every address and port, or listens on none and throws bridge.listen_failed. */
  static async start(config: BridgeConfig, opts: BridgeOptions, startedMs: number, saved?: BridgeState): Promise<Bridge> {
    if (opts.signal?.aborted) throw new CmError('bridge.aborted', 'bridge start was cancelled');
    const bridge = new Bridge(config, startedMs, opts);
    for (const s of saved?.stats ?? []) bridge.stats.get(s.port)?.restore(s);
    try {
      for (const address of config.listen) {
        for (const port of config.ports) await bridge.listen(address, port);
      }
      if (opts.signal?.aborted) throw new CmError('bridge.aborted', 'bridge start was cancelled');
      if (opts.stateDir) {
        try {
          bridge.save();
        } catch (err) {
          throw new CmError('bridge.state_write_failed', `the bridge cannot write its state in ${opts.stateDir}: ${(err as Error).message}`, {
            cause: err,
            hint: 'free space or fix permissions there (the agent keeps its state in it), then start the bridge again',
          });
        }
      }
    } catch (err) {
      await bridge.closeAll();
      throw err;
    }
    if (opts.stateDir) {
      bridge.saveTimer = setInterval(() => bridge.saveQuietly(), opts.saveIntervalMs ?? 60_000);
      bridge.saveTimer.unref();
    }
    opts.signal?.addEventListener('abort', bridge.onAbort, { once: true });
    return bridge;
  }

  private listen(address: string, port: number): Promise<void> {
    const limits = this.config.limits;
    const server = net.createServer(
      {
        allowHalfOpen: true,
        pauseOnConnect: true,
        highWaterMark: limits.highWaterMark,
        noDelay: true,
        keepAlive: true,
        keepAliveInitialDelay: KEEPALIVE_MS,
      },
      (sock) => this.accept(port, sock),
    );
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException): void => {
        reject(
          new CmError('bridge.listen_failed', `the bridge cannot listen on ${net.isIPv6(address) ? `[${address}]` : address}:${port}: ${err.code ?? err.message}`, {
            cause: err,
            hint:
              err.code === 'EADDRINUSE'
                ? `stop what holds port ${port} on the old host (ss -ltnp 'sport = :${port}'; e.g. systemctl stop nginx), then start the bridge again`
                : 'check that the address belongs to the old host (ip addr), then start the bridge again',
            details: { address, port, errno: err.code },
          }),
        );
      };
      server.once('error', failed);
      server.listen({ host: address, port, ipv6Only: net.isIPv6(address), backlog: 511 }, () => {
        server.off('error', failed);
        // Accept errors (EMFILE under a flood) must not end the agent, nor flood its log:
        // one warning per listener and 10 s, with the number of errors in between.
        let quietUntil = 0;
        let suppressed = 0;
        server.on('error', (err: NodeJS.ErrnoException) => {
          const t = this.now();
          if (t < quietUntil) return void suppressed++;
          quietUntil = t + 10_000;
          const more = suppressed ? ` (and ${suppressed} more errors since the last warning)` : '';
          suppressed = 0;
          this.warn({ code: 'bridge.listener_error', port, message: `bridge listener ${address}:${port}: ${err.code ?? err.message}${more}` });
        });
        resolve();
      });
    });
  }

  private accept(port: number, client: net.Socket): void {
    const stats = this.stats.get(port)!;
    stats.arrived(this.now());
    client.on('error', () => undefined);
    const limits = this.config.limits;
    const source = sourceOf(client);
    const fromSource = this.bySource.get(source) ?? 0;
    const portLimit = limits.perPort[port];
    if (
      this.stopping ||
      source === '' ||
      this.pipes.size >= limits.maxConnections ||
      fromSource >= limits.maxPerSource ||
      (portLimit !== undefined && stats.live.size >= portLimit)
    ) {
      stats.refused++;
      client.destroy();
      return;
    }
    this.bySource.set(source, fromSource + 1);
    const pipe: Pipe = new Pipe(
      client,
      this.config.target,
      port,
      limits,
      () => stats.targetFailed++,
      () => stats.idleClosed++,
      () => {
        this.pipes.delete(pipe);
        stats.closed(pipe);
        const n = (this.bySource.get(source) ?? 1) - 1;
        if (n > 0) this.bySource.set(source, n);
        else this.bySource.delete(source);
      },
    );
    this.pipes.add(pipe);
    stats.live.add(pipe);
  }

  /** Counts per port, now. */
  status(): BridgeStatus {
    const nowMs = this.now();
    return {
      config: this.config,
      startedMs: this.startedMs,
      nowMs,
      open: this.pipes.size,
      ports: this.config.ports.map((p) => this.stats.get(p)!.status(nowMs)),
    };
  }

  private state(): BridgeState {
    const nowMs = this.now();
    return {
      version: 1,
      config: this.config,
      startedMs: this.startedMs,
      savedMs: nowMs,
      stats: this.config.ports.map((p) => this.stats.get(p)!.save(nowMs)),
    };
  }

  private save(): void {
    writeState(this.opts.stateDir!, this.state());
  }

  private saveQuietly(): void {
    try {
      this.save();
    } catch (err) {
      this.warn({ code: 'bridge.state_write_failed', message: `bridge state not saved: ${(err as Error).message}` });
    }
  }

  private async closeAll(): Promise<void> {
    const closing = this.servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve())));
    for (const p of this.pipes) p.close();
    await Promise.all(closing);
  }

  /**
   * Closes every listener and connection. The state file is removed unless `keepState`
   * (then the counters are saved in it for resumeBridge). Safe to call more than once.
   */
  stop(opts: { keepState?: boolean } = {}): Promise<void> {
    this.stopping ??= (async () => {
      this.opts.signal?.removeEventListener('abort', this.onAbort);
      if (this.saveTimer) clearInterval(this.saveTimer);
      await this.closeAll();
      if (!this.opts.stateDir) return;
      if (opts.keepState) this.saveQuietly();
      else clearState(this.opts.stateDir);
    })();
    return this.stopping;
  }
}

/** Starts a bridge: checks the request (bridge.bad_config, bridge.bad_limits), listens, writes the state file. */
export async function startBridge(request: BridgeRequest, opts: BridgeOptions = {}): Promise<Bridge> {
  const config = checkConfig(request);
  return Bridge.start(config, opts, (opts.now ?? Date.now)());
}

/**
 * Resumes the bridge described in `stateDir` (an agent that restarted), with its start time
 * and counters; null when no bridge was running. Throws bridge.bad_state for a damaged
 * file and bridge.listen_failed when a port cannot be taken again.
 */
export async function resumeBridge(stateDir: string, opts: Omit<BridgeOptions, 'stateDir'> = {}): Promise<Bridge | null> {
  const saved = readState(stateDir);
  if (!saved) return null;
  return Bridge.start(saved.config, { ...opts, stateDir }, saved.startedMs, saved);
}
