/**
 * A bridged port's figures as both sides use them: the wire's BridgePortStatus with its
 * 64-bit counts as numbers (numbered.ts's BridgePortFigures). The one conversion from the
 * wire (uint64 fields arrive as decimal strings with the loader's `longs: String`) lives
 * here; the agent sends numbers as they are.
 */
import type { BridgePortStatus__Output } from './generated/cmmigrate/v1/BridgePortStatus';
import type { BridgePortFigures } from './numbered';

export type { BridgePortFigures };

/** The fields that travel as uint64 (strings once decoded); the other strings are the wire's ms stamps. */
type Int64Field = Exclude<{ [K in keyof BridgePortStatus__Output]: BridgePortStatus__Output[K] extends string ? K : never }[keyof BridgePortStatus__Output], 'last_connection_ms'>;

// A Record, so that the compiler insists on every uint64 field of the .proto.
const INT64: Record<Int64Field, true> = {
  total: true, refused: true, target_failed: true, idle_closed: true, bytes_to_target: true, bytes_from_target: true, buffered: true,
};
const INT64_FIELDS = Object.keys(INT64) as Int64Field[];

/** A decoded wire BridgePortStatus as BridgePortFigures. */
export function bridgePortOf(p: BridgePortStatus__Output): BridgePortFigures {
  const out = { ...p, per_minute: { start_ms: p.per_minute?.start_ms ?? '0', counts: p.per_minute?.counts ?? [] } } as unknown as BridgePortFigures;
  for (const k of INT64_FIELDS) out[k] = Number(p[k]);
  return out;
}

/** When the port's last connection arrived (ms since the epoch), or null when none did. */
export function lastConnectionMs(p: BridgePortFigures): number | null {
  return p.last_connection_ms ? Number(p.last_connection_ms) : null;
}
