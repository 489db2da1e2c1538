/**
 * The controller's connections to the agents of a plan: mutual TLS with the controller's
 * certificate, and a check that the peer is an agent of this migration's CA.
 */
import * as path from 'node:path';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { agentClient, clientChannelOptions, fromServiceError, ROLE_AGENT, roleOf, type AgentClient } from '../proto';
import type { HostPlan, Plan } from './plan';
import { interruptedError } from './interrupt';
import { loadTls } from './tls-material';

export interface AgentHandle {
  side: 'old' | 'new';
  address: string;
  client: AgentClient;
}

/** Connect to one agent of the plan. */
export async function connectAgent(plan: Plan, side: 'old' | 'new'): Promise<AgentHandle> {
  const host: HostPlan = plan[side];
  const m = await loadTls(path.join(plan.tlsDir, 'controller'), 'controller');
  const creds = grpc.credentials.createSsl(m.ca, m.key, m.cert, {
    checkServerIdentity: (hostname, cert) => {
      const err = tls.checkServerIdentity(hostname, cert);
      if (err) return err;
      if (roleOf(cert) !== ROLE_AGENT) return new Error(`the ${side} agent at ${host.agent} presented a certificate that is not an agent's`);
      return undefined;
    },
  });
  return { side, address: host.agent, client: agentClient(host.agent, creds, clientChannelOptions()) };
}

/** A unary call as a promise, with the agent's errors turned back into CmErrors; `signal` cancels it (step.interrupted). */
export function unary<Req, Res>(
  a: AgentHandle,
  fn: (req: Req, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown,
  req: Req,
  deadlineMs = 15_000,
  signal?: AbortSignal,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(interruptedError(`the call to the ${a.side} agent ${a.address}`));
    const onAbort = (): void => (call as grpc.Call).cancel();
    const call = fn.call(a.client, req, { deadline: Date.now() + deadlineMs }, (err, res) => {
      signal?.removeEventListener('abort', onAbort);
      if (err && signal?.aborted) reject(interruptedError(`the call to the ${a.side} agent ${a.address}`, undefined, err));
      else if (err) reject(fromServiceError(err, `${a.side} agent ${a.address}`));
      else resolve(res as Res);
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Iterate a server stream, with the agent's errors turned back into CmErrors; `signal` cancels it (step.interrupted). */
export async function* streamOf<T>(a: AgentHandle, stream: grpc.ClientReadableStream<T>, signal?: AbortSignal): AsyncGenerator<T> {
  const onAbort = (): void => stream.cancel();
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const msg of stream as AsyncIterable<T>) yield msg;
  } catch (err) {
    if (signal?.aborted) throw interruptedError(`the call to the ${a.side} agent ${a.address}`, undefined, err);
    const e = err as grpc.ServiceError;
    if (typeof e.code === 'number') throw fromServiceError(e, `${a.side} agent ${a.address}`);
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    stream.cancel();
  }
}
