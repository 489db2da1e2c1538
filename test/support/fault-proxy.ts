/**
 * The one TCP relay of the tests and the bench, on loopback. It puts faults between two
 * peers: it counts the bytes the target (the old agent) sends to the clients, can hold them
 * at an exact count (a deterministic point inside a pass, where a test kills a process), and
 * can cut every relayed connection (RST) or stall them (stop forwarding both ways while the
 * sockets stay open). With `delayMs` it makes loopback look like a long link (the bench's
 * 50 ms round trip): every chunk is written on `delayMs` later, in the order it came, an end
 * of stream travelling behind the data before it, with at most `maxQueuedBytes` queued per
 * direction (beyond that it stops reading until the queue drains to half, so a slow receiver
 * slows the sender, as on a real link). It adds delay, not a bandwidth limit or loss.
 */
import * as net from 'node:net';

export interface FaultProxyOptions {
  /** Where the proxy listens. */
  listenHost: string;
  /** 0 (default): a free port. */
  listenPort?: number;
  /** Where each accepted connection is relayed to. */
  targetHost: string;
  targetPort: number;
  /** Delay added to each chunk: the same both ways, or per direction (up: to the target, down: to the client). Default none. */
  delayMs?: number | { up: number; down: number };
  /** Bytes queued per delayed direction before reading pauses. Default 64 MiB (more than 1 GB/s × 50 ms). */
  maxQueuedBytes?: number;
}

export interface FaultProxy {
  /** host:port to put in the plan as the old agent's address. */
  address: string;
  host: string;
  port: number;
  /** Bytes relayed from the target (the old agent) to the clients so far. */
  readonly down: number;
  /**
   * Hold the downstream once `bytes` more have gone through: resolves at that point, with
   * forwarding stopped in both directions until `release()`.
   */
  holdAfter(bytes: number): Promise<void>;
  /** Forward again what was held, and everything after it. */
  release(): void;
  /** Stop forwarding both ways now, sockets open (a stalled peer). */
  stall(): void;
  /** Cut every relayed connection with a TCP reset; later connections are relayed again. */
  cut(): void;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Stop listening and cut every relayed connection. */
  close(): Promise<void>;
}

type Direction = 'down' | 'up';

/** Where one direction's chunks go: straight to the socket, or through a DelayedWriter. */
interface Sink {
  write(chunk: Buffer): void;
  stop(): void;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  sinks: Record<Direction, Sink>;
  /** Chunks held per direction while stopped. */
  held: Record<Direction, Buffer[]>;
}

interface Pending {
  due: number;
  /** null: the end of the stream. */
  data: Buffer | null;
}

/** One delayed direction: what is written reaches `to` `delayMs` later; `from` pauses while too much is queued. */
class DelayedWriter implements Sink {
  private readonly queue: Pending[] = [];
  private head = 0;
  private queued = 0;
  private timer: NodeJS.Timeout | undefined;
  private blocked = false;
  private paused = false;

  constructor(
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    private readonly delayMs: number,
    private readonly maxQueued: number,
  ) {
    to.on('drain', () => {
      this.blocked = false;
      this.flush();
    });
  }

  write(chunk: Buffer): void {
    this.push({ due: performance.now() + this.delayMs, data: chunk });
    this.queued += chunk.length;
    if (this.queued >= this.maxQueued && !this.paused) {
      this.paused = true;
      this.from.pause();
    }
  }

  end(): void {
    this.push({ due: performance.now() + this.delayMs, data: null });
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.head = 0;
  }

  private push(p: Pending): void {
    this.queue.push(p);
    if (!this.timer && !this.blocked) this.schedule();
  }

  private schedule(): void {
    if (this.head >= this.queue.length) return;
    const wait = Math.max(0, this.queue[this.head].due - performance.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, Math.ceil(wait));
  }

  private flush(): void {
    if (this.timer) return;
    const now = performance.now();
    while (this.head < this.queue.length && this.queue[this.head].due <= now) {
      const p = this.queue[this.head];
      this.queue[this.head++] = undefined as unknown as Pending;
      if (p.data === null) {
        this.to.end();
        continue;
      }
      this.queued -= p.data.length;
      if (this.paused && this.queued <= this.maxQueued / 2) {
        this.paused = false;
        this.from.resume();
      }
      if (!this.to.write(p.data)) {
        this.blocked = true;
        break;
      }
    }
    // Drop the consumed prefix now and then, so the array does not grow without end.
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    if (!this.blocked) this.schedule();
  }
}

/** Start a relay; resolves once it listens. */
export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const delay = typeof opts.delayMs === 'object' ? opts.delayMs : { up: opts.delayMs ?? 0, down: opts.delayMs ?? 0 };
  const delayed = delay.up > 0 || delay.down > 0;
  const maxQueued = opts.maxQueuedBytes ?? 64 * 1024 * 1024;
  const pairs = new Set<Pair>();
  let down = 0;
  let connections = 0;
  let stopped = false;
  let trigger: { at: number; resolve: () => void } | null = null;

  const forward = (p: Pair, dir: Direction, chunk: Buffer): void => {
    if (stopped) {
      p.held[dir].push(chunk);
      return;
    }
    if (dir === 'down' && trigger && down + chunk.length >= trigger.at) {
      const n = trigger.at - down;
      const t = trigger;
      trigger = null;
      if (n > 0) p.sinks.down.write(chunk.subarray(0, n));
      down += n;
      stop();
      if (n < chunk.length) p.held.down.push(chunk.subarray(n));
      t.resolve();
      return;
    }
    if (dir === 'down') down += chunk.length;
    p.sinks[dir].write(chunk);
  };

  const stop = (): void => {
    stopped = true;
    for (const p of pairs) {
      p.client.pause();
      p.upstream.pause();
    }
  };

  /** A direction's sink; a delayed one also carries the end of its stream. */
  const sink = (from: net.Socket, to: net.Socket, ms: number): Sink => {
    if (!delayed) return { write: (b) => void to.write(b), stop: () => undefined };
    const w = new DelayedWriter(from, to, ms, maxQueued);
    from.on('end', () => w.end());
    return w;
  };

  // Delayed, an end of stream travels to the other side (half-open sockets); otherwise it tears the pair down.
  const server = net.createServer({ allowHalfOpen: delayed, noDelay: true }, (client) => {
    connections++;
    const upstream = net.connect({ host: opts.targetHost, port: opts.targetPort, allowHalfOpen: delayed, noDelay: true });
    const p: Pair = { client, upstream, sinks: { up: sink(client, upstream, delay.up), down: sink(upstream, client, delay.down) }, held: { down: [], up: [] } };
    pairs.add(p);
    if (stopped) {
      client.pause();
      upstream.pause();
    }
    upstream.on('data', (d: Buffer) => forward(p, 'down', d));
    client.on('data', (d: Buffer) => forward(p, 'up', d));
    const teardown = (): void => {
      pairs.delete(p);
      p.sinks.up.stop();
      p.sinks.down.stop();
      client.destroy();
      upstream.destroy();
    };
    let finished = 0;
    for (const s of [client, upstream]) {
      s.on('error', teardown);
      if (!delayed) {
        s.on('close', teardown);
        s.on('end', teardown);
        continue;
      }
      // A side that closed cleanly may still have data under way to the other: close once
      // both directions finished (a half-closed socket otherwise lingers).
      s.on('close', (hadError) => hadError && teardown());
      s.on('finish', () => ++finished === 2 && teardown());
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listenPort ?? 0, opts.listenHost, () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;

  return {
    address: `${opts.listenHost}:${port}`,
    host: opts.listenHost,
    port,
    get down() {
      return down;
    },
    get connections() {
      return connections;
    },
    holdAfter(bytes) {
      return new Promise<void>((resolve) => {
        trigger = { at: down + Math.max(1, bytes), resolve };
      });
    },
    release() {
      stopped = false;
      trigger = null;
      for (const p of pairs) {
        // Through forward(): a trigger armed meanwhile still counts these bytes.
        for (const d of p.held.up.splice(0)) forward(p, 'up', d);
        for (const d of p.held.down.splice(0)) forward(p, 'down', d);
        p.client.resume();
        p.upstream.resume();
      }
    },
    stall: stop,
    cut() {
      for (const p of [...pairs]) {
        pairs.delete(p);
        p.sinks.up.stop();
        p.sinks.down.stop();
        p.client.resetAndDestroy();
        p.upstream.resetAndDestroy();
      }
      stopped = false;
      trigger = null;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const p of pairs) {
          p.sinks.up.stop();
          p.sinks.down.stop();
          p.client.destroy();
          p.upstream.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
