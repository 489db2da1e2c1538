/**
 * A TCP relay on loopback that puts faults between the two agents: it counts the bytes the
 * old agent sends to the new one, can hold them at an exact count (a deterministic point
 * inside a pass, where a test kills a process), and can cut every relayed connection (RST)
 * or stall them (stop forwarding both ways while the sockets stay open).
 */
import * as net from 'node:net';

export interface FaultProxy {
  /** host:port to put in the plan as the old agent's address. */
  address: string;
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
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  /** Chunks held per direction while stopped. */
  heldDown: Buffer[];
  heldUp: Buffer[];
}

export async function startFaultProxy(opts: { listenHost: string; targetHost: string; targetPort: number }): Promise<FaultProxy> {
  const pairs = new Set<Pair>();
  let down = 0;
  let connections = 0;
  let stopped = false;
  let trigger: { at: number; resolve: () => void } | null = null;

  const forward = (p: Pair, dir: 'down' | 'up', chunk: Buffer): void => {
    const to = dir === 'down' ? p.client : p.upstream;
    if (stopped) {
      (dir === 'down' ? p.heldDown : p.heldUp).push(chunk);
      return;
    }
    if (dir === 'down' && trigger && down + chunk.length >= trigger.at) {
      const n = trigger.at - down;
      const t = trigger;
      trigger = null;
      if (n > 0) to.write(chunk.subarray(0, n));
      down += n;
      stop();
      if (n < chunk.length) p.heldDown.push(chunk.subarray(n));
      t.resolve();
      return;
    }
    if (dir === 'down') down += chunk.length;
    to.write(chunk);
  };

  const stop = (): void => {
    stopped = true;
    for (const p of pairs) {
      p.client.pause();
      p.upstream.pause();
    }
  };

  const server = net.createServer({ noDelay: true }, (client) => {
    connections++;
    const [host, port] = [opts.targetHost, opts.targetPort];
    const upstream = net.connect({ host, port, noDelay: true });
    const p: Pair = { client, upstream, heldDown: [], heldUp: [] };
    pairs.add(p);
    if (stopped) {
      client.pause();
      upstream.pause();
    }
    upstream.on('data', (d: Buffer) => forward(p, 'down', d));
    client.on('data', (d: Buffer) => forward(p, 'up', d));
    const teardown = (): void => {
      pairs.delete(p);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', teardown);
      s.on('close', teardown);
      s.on('end', teardown);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, opts.listenHost, () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;

  return {
    address: `${opts.listenHost}:${port}`,
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
        for (const d of p.heldUp.splice(0)) forward(p, 'up', d);
        for (const d of p.heldDown.splice(0)) forward(p, 'down', d);
        p.client.resume();
        p.upstream.resume();
      }
    },
    stall: stop,
    cut() {
      for (const p of [...pairs]) {
        pairs.delete(p);
        p.client.resetAndDestroy();
        p.upstream.resetAndDestroy();
      }
      stopped = false;
      trigger = null;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const p of pairs) {
          p.client.destroy();
          p.upstream.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
