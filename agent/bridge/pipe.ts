/**
 * One bridged connection, piped both ways with backpressure and half-close (bridge.ts says
 * what the bridge guarantees as a whole).
 */
import * as net from 'node:net';
import type { BridgeLimits } from './limits';
import type { LiveConnection } from './stats';

/** TCP keepalive on both sockets: finds peers that vanished without a FIN (NAT timeouts) during long IDLEs. */
export const KEEPALIVE_MS = 60_000;

/**
 * One bridged connection: the client's socket (accepted paused) and the one this opens to
 * the new host. Bytes flow both ways once the new host accepts; either side's error, the
 * idle timeout or close() end both sockets; `onClosed` runs once, after both have closed.
 */
export class Pipe implements LiveConnection {
  readonly target: net.Socket;
  private idle = false;

  constructor(
    readonly client: net.Socket,
    host: string,
    port: number,
    limits: BridgeLimits,
    onTargetFailed: () => void,
    onIdle: () => void,
    onClosed: () => void,
  ) {
    const hwm = limits.highWaterMark;
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
    } as net.NetConnectOpts);
    const target = this.target;
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
      // pipe() ends the other side's writable half on 'end' (allowHalfOpen on both sockets
      // keeps the reverse direction open) and pauses the source while the destination is
      // over its highWaterMark. The client was accepted paused; pipe() resumes it.
      client.pipe(target);
      target.pipe(client);
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
