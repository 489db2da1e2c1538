/**
 * The old agent's bridge (issue 14), as the controller calls it: start, stop and status,
 * with the wire's decimal-string counts turned into numbers.
 */
import * as grpc from '@grpc/grpc-js';
import { CmError, RERUN, type BridgeStartRequest, type BridgeStatusReply__Output } from '../proto';
import { bridgePortOf, type BridgePortFigures } from '../proto/bridge-port';
import { unary, type AgentHandle } from './agent-client';

/** The bridge as the old agent reports it. */
export interface BridgeView {
  running: boolean;
  listen: string[];
  target: string;
  startedMs: number | null;
  nowMs: number;
  open: number;
  /** Per port: the wire's figures, counts as numbers (proto/bridge-port.ts). */
  ports: BridgePortFigures[];
  /** Not running: why the bridge did not come back after an agent restart. */
  resumeError?: { code: string; message: string };
}

const BRIDGE_DEADLINE_MS = 15_000;

function viewOf(r: BridgeStatusReply__Output): BridgeView {
  return {
    running: r.running,
    listen: r.listen,
    target: r.target,
    startedMs: r.started_ms ? Number(r.started_ms) : null,
    nowMs: Number(r.now_ms) || Date.now(),
    open: r.open,
    ports: r.ports.map(bridgePortOf),
    ...(r.resume_error_code ? { resumeError: { code: r.resume_error_code, message: r.resume_error } } : {}),
  };
}

async function call<Req>(agent: AgentHandle, method: 'BridgeStart' | 'BridgeStop' | 'BridgeStatus', req: Req, signal?: AbortSignal, deadlineMs = BRIDGE_DEADLINE_MS): Promise<BridgeView> {
  try {
    const fn = agent.client[method] as unknown as Parameters<typeof unary<Req, BridgeStatusReply__Output>>[1];
    return viewOf(await unary<Req, BridgeStatusReply__Output>(agent, fn, req, deadlineMs, signal));
  } catch (err) {
    const cause = (err as CmError).cause as grpc.ServiceError | undefined;
    if (cause?.code === grpc.status.UNIMPLEMENTED) {
      throw new CmError('agent.too_old', `the ${agent.side} agent ${agent.address} cannot bridge: it is an older cmmigrate-agent`, {
        hint: `reinstall the agents with this cmmigrate (cmmigrate install-agent), then run ${RERUN}`,
        cause: err,
      });
    }
    throw err;
  }
}

/** What the bridge should listen on and pass to; empty `ports` means the relay's ports. */
export interface BridgeStartSpec {
  listen: string[];
  target: string;
  ports?: number[];
}

/** Starts the bridge on `agent` (the old host's); the same bridge again returns its status. */
export function startBridgeOn(agent: AgentHandle, spec: BridgeStartSpec, signal?: AbortSignal): Promise<BridgeView> {
  const req: BridgeStartRequest = { listen: spec.listen, target: spec.target, ports: spec.ports ?? [] };
  return call(agent, 'BridgeStart', req, signal);
}

/** Stops the bridge on `agent`; a bridge that does not run is not an error. Returns the last counts. */
export function stopBridgeOn(agent: AgentHandle, signal?: AbortSignal): Promise<BridgeView> {
  return call(agent, 'BridgeStop', {}, signal);
}

/** The bridge's status on `agent`; `deadlineMs` bounds the wait for an agent that does not answer (default 15 s). */
export function bridgeStatusOn(agent: AgentHandle, signal?: AbortSignal, deadlineMs?: number): Promise<BridgeView> {
  return call(agent, 'BridgeStatus', {}, signal, deadlineMs);
}
