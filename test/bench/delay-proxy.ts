/**
 * A TCP relay that makes loopback look like a long link: every chunk read on one side is
 * written to the other `delayMs` later (25 ms each way gives a 50 ms round trip). Chunks
 * leave in the order they came (one FIFO queue per direction, stamped with their due time),
 * an end of stream travels behind the data before it, and each direction holds at most
 * `maxQueuedBytes`: beyond that it stops reading until the queue drains to half, so memory
 * stays bounded and a slow receiver slows the sender, as on a real link. It adds delay,
 * not a bandwidth limit or loss.
 */
import * as net from 'node:net';

export interface DelayProxyOptions {
  /** Where the proxy listens. */
  listenHost: string;
  /** 0 (default): a free port. */
  listenPort?: number;
  /** Where each accepted connection is relayed to. */
  targetHost: string;
  targetPort: number;
  /** Delay added in each direction. */
  delayMs: number;
  /** Bytes queued per direction before reading pauses. Default 64 MiB (more than 1 GB/s × 50 ms). */
  maxQueuedBytes?: number;
}

export interface DelayProxy {
  host: string;
  port: number;
  /** Stop listening and cut every relayed connection. */
  close(): Promise<void>;
}

interface Pending {
  due: number;
  /** null: the end of the stream. */
  data: Buffer | null;
}

/** One direction: read from `from`, write to `to` `delayMs` later. */
class DelayedPipe {
  private readonly queue: Pending[] = [];
  private head = 0;
  private queued = 0;
  private timer: NodeJS.Timeout | undefined;
  private blocked = false;
  private paused = false;

  constructor(
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    delayMs: number,
    private readonly maxQueued: number,
  ) {
    from.on('data', (chunk: Buffer) => {
      this.push({ due: performance.now() + delayMs, data: chunk });
      this.queued += chunk.length;
      if (this.queued >= this.maxQueued && !this.paused) {
        this.paused = true;
        from.pause();
      }
    });
    from.on('end', () => this.push({ due: performance.now() + delayMs, data: null }));
    to.on('drain', () => {
      this.blocked = false;
      this.flush();
    });
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

/** Start a delaying relay; resolves once it listens. */
export function startDelayProxy(opts: DelayProxyOptions): Promise<DelayProxy> {
  const maxQueued = opts.maxQueuedBytes ?? 64 * 1024 * 1024;
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    const upstream = net.connect({ host: opts.targetHost, port: opts.targetPort, allowHalfOpen: true, noDelay: true });
    sockets.add(client);
    sockets.add(upstream);
    const pipes = [new DelayedPipe(client, upstream, opts.delayMs, maxQueued), new DelayedPipe(upstream, client, opts.delayMs, maxQueued)];
    let ended = 0;
    const teardown = (): void => {
      pipes.forEach((p) => p.stop());
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', teardown);
      s.on('close', () => {
        sockets.delete(s);
        teardown();
      });
      // Both directions finished: close (a half-closed socket otherwise lingers).
      s.on('finish', () => {
        if (++ended === 2) teardown();
      });
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listenPort ?? 0, opts.listenHost, () => {
      const { port } = server.address() as net.AddressInfo;
      resolve({
        host: opts.listenHost,
        port,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
