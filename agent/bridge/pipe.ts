/**
 * One bridged connection, piped both ways with backpressure and half-close (bridge.ts says
 * what the bridge guarantees as a whole).
 */
import * as net from 'node:net';
import type { BridgeLimits } from './limits';
import type { LiveConnection } from './stats';

/** TCP keepalive on both sockets: finds peers that vanished without a FIN (NAT timeouts) during long IDLEs. */
export const KEEPALIVE_MS = 60_000;

/** What one read takes at most (libuv's own read size). */
const CHUNK = 64 * 1024;
/**
 * The one buffer every bridged socket reads into (`onread`). Its bytes are copied out in
 * the read callback, before the next read of any socket can start, so one buffer serves
 * them all and an idle connection holds none.
 */
const SCRATCH = Buffer.allocUnsafeSlow(CHUNK);
/**
 * Chunks that were written and can take the next read. Without them every 64 KiB read
 * allocated a new buffer outside the V8 heap, and in the agent (small heap flags) the
 * external memory pressure ran a full mark-compact every ~30 MB: as much CPU as the
 * writes themselves (bench: test/bench/bridge-bench.ts).
 */
const spare: Buffer[] = [];
/** Spare chunks kept for reuse, all connections together (4 MiB). */
const SPARE_MAX = 64;
/** Chunks made since the agent started, all connections together: they grow with what is in flight at once, not with the bytes moved. */
export const chunkCount = { made: 0 };

/** A read callback of net's `onread`: false stops reading until the socket's resume(). */
type OnRead = (n: number, buf: Buffer) => boolean;

/**
 * One direction, `src` to `dst`: each read is copied into a reused chunk and written to
 * `dst`; reading stops while `dst` holds `hwm` bytes or more unsent, and goes on at its
 * 'drain'. At most `hwm` + one chunk is held for the direction. `src`'s FIN becomes
 * `dst`'s once what came before it is written.
 */
function relay(src: net.Socket, dst: net.Socket, hwm: number): OnRead {
  let paused = false;
  dst.on('drain', () => {
    if (paused) {
      paused = false;
      src.resume();
    }
  });
  src.on('end', () => dst.end());
  return (n, buf) => {
    let chunk = spare.pop();
    if (chunk === undefined) {
      chunk = Buffer.allocUnsafeSlow(CHUNK);
      chunkCount.made++;
    }
    buf.copy(chunk, 0, 0, n);
    dst.write(chunk.subarray(0, n), (err) => {
      if (!err && spare.length < SPARE_MAX) spare.push(chunk);
    });
    if (dst.writableLength < hwm) return true;
    paused = true;
    return false;
  };
}

/**
 * net's own keys of the `onread` option, which every net.Socket carries (Node 12 and
 * later, 18.19 and 20 checked). A server has no `onread` for the sockets it accepts;
 * setting these on an accepted socket before it first reads is what `onread` does in
 * net.Socket's constructor. null on a runtime without them: the client's side then
 * falls back to pipe().
 */
const ONREAD_KEYS = ((): { buffer: symbol; callback: symbol; gen: symbol } | null => {
  const keys = Object.getOwnPropertySymbols(new net.Socket());
  const key = (d: string): symbol | undefined => keys.find((k) => k.description === d);
  const [buffer, callback, gen] = [key('kBuffer'), key('kBufferCb'), key('kBufferGen')];
  return buffer && callback && gen ? { buffer, callback, gen } : null;
})();

/** Gives an accepted socket that has not read yet the `onread` of net.connect; false when it cannot. */
function useOnRead(sock: net.Socket, callback: OnRead): boolean {
  const handle = (sock as unknown as { _handle?: { reading?: boolean; useUserBuffer?: (b: Buffer) => void } })._handle;
  if (!ONREAD_KEYS || !handle || handle.reading || typeof handle.useUserBuffer !== 'function') return false;
  const s = sock as unknown as Record<symbol, unknown>;
  s[ONREAD_KEYS.gen] = null;
  s[ONREAD_KEYS.buffer] = SCRATCH;
  s[ONREAD_KEYS.callback] = callback;
  handle.useUserBuffer(SCRATCH);
  return true;
}

/**
 * One bridged connection: the client's socket (accepted paused) and the one this opens to
 * the new host. Bytes flow both ways once the new host accepts; either side's error, the
 * idle timeout or close() end both sockets; `onClosed` runs once, after both have closed.
 */
export class Pipe implements LiveConnection {
  readonly target: net.Socket;
  /** The client's reads go through the pooled `onread` path, not pipe(); known once the new host accepts. */
  pooled = false;
  private idle = false;

  constructor(
    readonly client: net.Socket,
    host: string,
    port: number,
    limits: BridgeLimits,
    onTargetFailed: () => void,
    onIdle: () => void,
    onClosed: () => void,
    /** false: the client's side takes pipe(), the path of a runtime without net's onread keys. */
    pooledReads = true,
  ) {
    const hwm = limits.highWaterMark;
    // Assigned once `target` exists; the new host sends nothing before it connects.
    let toClient: OnRead | undefined;
    // net.Socket passes these on to its Duplex (the typings lack them).
    this.target = net.connect({
      host,
      port,
      allowHalfOpen: true,
      readableHighWaterMark: hwm,
      writableHighWaterMark: hwm,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: KEEPALIVE_MS,
      onread: { buffer: SCRATCH, callback: (n: number, buf: Buffer) => toClient!(n, buf) },
    } as net.NetConnectOpts);
    const target = this.target;
    toClient = relay(target, client, hwm);
    let connected = false;
    let closes = 0;
    const closed = (): void => {
      if (++closes === 2) onClosed();
    };
    const both = (): void => {
      client.destroy();
      target.destroy();
    };
    client.on('close', closed);
    target.on('close', closed);
    // Either side's error ends both: the bridge passes bytes, not errors.
    client.on('error', both);
    client.on('close', () => {
      if (!connected) target.destroy();
    });
    const timer = setTimeout(() => target.destroy(new Error('connect timeout')), limits.connectTimeoutMs);
    target.once('error', () => {
      if (!connected) onTargetFailed();
    });
    target.on('error', both);
    target.on('close', () => clearTimeout(timer));
    target.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      const onTimeout = (): void => {
        if (!this.idle) {
          this.idle = true;
          onIdle();
        }
        both();
      };
      client.setTimeout(limits.idleTimeoutMs, onTimeout);
      target.setTimeout(limits.idleTimeoutMs, onTimeout);
      // Each side's FIN ends the other's writable half (allowHalfOpen on both sockets keeps
      // the reverse direction open). resume() starts the client's reads (it was accepted
      // paused) and makes both streams flowing, without which 'end' is not emitted.
      this.pooled = pooledReads && useOnRead(client, relay(client, target, hwm));
      if (this.pooled) client.resume();
      else client.pipe(target);
      target.resume();
    });
  }

  bytesToTarget(): number {
    return this.client.bytesRead;
  }

  bytesFromTarget(): number {
    return this.target.bytesRead;
  }

  buffered(): number {
    const c = this.client;
    const t = this.target;
    return c.readableLength + c.writableLength + t.readableLength + t.writableLength;
  }

  close(): void {
    this.client.destroy();
    this.target.destroy();
  }
}
