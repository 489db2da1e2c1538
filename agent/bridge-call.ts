/**
 * The Bridge calls: the wire's request as the engine's (agent/bridge/), and the manager's
 * status as the wire's reply, its ports as proto's BridgePortFigures (grpc-js takes the
 * 64-bit counts as numbers; they arrive as decimal strings, read by proto/bridge-port.ts).
 */
import type { BridgeLimitsWire, BridgePortFigures, BridgeStatusReply } from '../proto';
import type { BridgeRequest } from './bridge/bridge';
import type { BridgeLimits } from './bridge/limits';
import type { ManagedStatus } from './bridge/manager';
import type { PortStatus } from './bridge/stats';
import type { BridgeStartChecked } from './requests';

// proto3 has no "absent" for a scalar: 0 stands for "the default" (the engine refuses 0).
const orDefault = (n: number | undefined): number | undefined => (n ? n : undefined);

/** A checked BridgeStart request as the engine's request. */
export function bridgeRequestOf(req: BridgeStartChecked): BridgeRequest {
  const l = req.limits;
  const limits: Partial<BridgeLimits> = {};
  if (l) {
    const set = <K extends keyof BridgeLimits>(k: K, v: BridgeLimits[K] | undefined): void => {
      if (v !== undefined) limits[k] = v;
    };
    set('maxConnections', orDefault(l.max_connections));
    set('maxPerSource', orDefault(l.max_per_source));
    set('idleTimeoutMs', orDefault(l.idle_timeout_ms));
    set('connectTimeoutMs', orDefault(l.connect_timeout_ms));
    set('highWaterMark', orDefault(l.high_water_mark));
    if (l.per_port_set || Object.keys(l.per_port).length) {
      limits.perPort = Object.fromEntries(Object.entries(l.per_port).map(([k, v]) => [Number(k), v]));
    }
  }
  return { listen: req.listen, ports: req.ports, target: req.target, limits };
}

function limitsWire(l: BridgeLimits): BridgeLimitsWire {
  return {
    max_connections: l.maxConnections,
    max_per_source: l.maxPerSource,
    per_port: { ...l.perPort },
    per_port_set: true,
    idle_timeout_ms: l.idleTimeoutMs,
    connect_timeout_ms: l.connectTimeoutMs,
    high_water_mark: l.highWaterMark,
  };
}

function portWire(p: PortStatus): BridgePortFigures {
  return {
    port: p.port,
    open: p.open,
    total: p.total,
    refused: p.refused,
    target_failed: p.targetFailed,
    idle_closed: p.idleClosed,
    bytes_to_target: p.bytesToTarget,
    bytes_from_target: p.bytesFromTarget,
    last_connection_ms: p.lastConnectionMs === null ? '' : String(p.lastConnectionMs),
    buffered: p.buffered,
    per_minute: { start_ms: String(p.perMinute.startMs), counts: p.perMinute.counts },
  };
}

/** The manager's status as the wire's reply; a stopped bridge carries its last counts. */
export function bridgeReply(s: ManagedStatus): BridgeStatusReply {
  const b = s.running ? s : s.last;
  const out: BridgeStatusReply = { running: s.running };
  if (b) {
    Object.assign(out, {
      listen: b.config.listen,
      target: b.config.target,
      limits: limitsWire(b.config.limits),
      started_ms: String(b.startedMs),
      now_ms: String(b.nowMs),
      open: b.open,
      ports: b.ports.map(portWire),
    } satisfies BridgeStatusReply);
  } else out.now_ms = String(Date.now());
  if (!s.running && s.resumeError) {
    out.resume_error_code = s.resumeError.code;
    out.resume_error = s.resumeError.message;
  }
  return out;
}
