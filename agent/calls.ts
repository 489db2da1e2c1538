/**
 * What every handler of the agent's service shares: the caller's role checked from its
 * certificate (one function for all calls), failures turned into a status that carries the
 * CmError code and hint (grpc-js catches only synchronous throws, so an async handler's
 * rejection is caught here), an AbortSignal for a streaming call that fires when the peer
 * cancels, and writes that honour backpressure.
 */
import type * as grpc from '@grpc/grpc-js';
import { asCmError, CmError, roleOf } from '../proto';
import type { Logger } from './log';

interface AnyCall {
  getAuthContext(): { sslPeerCertificate?: unknown };
  getPeer(): string;
}

type StreamCall = grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>;

/** Refuse a caller whose certificate is not of `role`. */
export function requireRole(call: AnyCall, role: string, method: string, log: Logger): void {
  const got = roleOf(call.getAuthContext().sslPeerCertificate);
  if (got !== role) {
    log.warn({ peer: call.getPeer(), method, role: got ?? null }, 'refused a call from a peer of the wrong role');
    throw new CmError('auth.wrong_role', `${method} needs a ${role} certificate of this migration; the caller presented ${got ? `a ${got} certificate` : 'none'}`, {
      hint: 'use the material that `cmmigrate init` wrote for this migration',
    });
  }
}

/** A unary handler: role check, then `fn`; its failure becomes the call's status. */
export function unaryCall<Req, Res>(role: string, method: string, log: Logger, fn: (call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    (async () => {
      requireRole(call, role, method, log);
      return fn(call);
    })().then(
      (r) => callback(null, r),
      (err: unknown) => {
        const e = asCmError(err);
        log.error({ err: e, code: e.code, method }, 'call failed');
        callback(e.toServiceError());
      },
    );
  };
}

/**
 * A streaming handler: role check, then `fn` with a signal that fires when the peer
 * cancels; the call ends when `fn` resolves, or with the status of its failure.
 */
export function streamingCall<C extends StreamCall>(role: string, method: string, log: Logger, fn: (call: C, signal: AbortSignal) => Promise<void>): (call: C) => void {
  return (call) => {
    const abort = new AbortController();
    call.on('cancelled', () => abort.abort());
    (async () => {
      requireRole(call, role, method, log);
      await fn(call, abort.signal);
      call.end();
    })().catch((err: unknown) => {
      const e = asCmError(err);
      if (abort.signal.aborted) {
        log.info({ method, code: e.code }, 'call cancelled by the peer');
        return;
      }
      log.error({ err: e, code: e.code, method }, 'call failed');
      // grpc-js sends a status for an 'error' event; after destroy() it would send none
      // and the caller would wait forever.
      call.emit('error', e.toServiceError());
    });
  };
}

/** Write every message of `source`, waiting when the call's buffer is full; stops when the peer goes. */
export async function writeAll<M>(call: StreamCall, source: AsyncIterable<M>, signal: AbortSignal, gone: string): Promise<void> {
  for await (const m of source) {
    if (!call.write(m)) await waitDrain(call, signal);
    if (signal.aborted) throw new CmError('transfer.cancelled', gone);
  }
}

function waitDrain(call: StreamCall, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.on('drain', done);
    signal.addEventListener('abort', done);
  });
}
