/**
 * A pass's summary as both sides use it: the wire's Summary with its 64-bit counts as
 * numbers. The one conversion from the wire (int64 fields arrive as decimal strings with
 * the loader's `longs: String`) lives here; the other way needs none, because Summary
 * accepts numbers as they are. The type is numbered.ts's PassSummary, the one the agent sends.
 */
import type { Summary__Output } from './generated/cmmigrate/v1/Summary';
import type { PassSummary } from './numbered';

export type { PassSummary };

/** The fields that travel as int64 (strings once decoded). */
type Int64Field = { [K in keyof Summary__Output]: Summary__Output[K] extends string ? K : never }[keyof Summary__Output];

// A Record, so that the compiler insists on every int64 field of the .proto.
const INT64: Record<Int64Field, true> = {
  files: true, bytes: true, dirs: true, symlinks: true, hardlinks: true, fifos: true, sockets_skipped: true,
  wire_bytes: true, renamed: true, deleted: true, unchanged: true, kept_extraneous: true, vanished: true,
};
const INT64_FIELDS = Object.keys(INT64) as Int64Field[];

/** A decoded wire Summary as a PassSummary; seconds kept to the millisecond. */
export function passSummaryOf(s: Summary__Output): PassSummary {
  const out = { ...s, seconds: Math.round(s.seconds * 1000) / 1000 } as unknown as PassSummary;
  for (const k of INT64_FIELDS) out[k] = Number(s[k]);
  out.walks = (s.walks ?? []).map((w) => ({ root: w.root, scoped: w.scoped, paths: Number(w.paths), reason: w.reason }));
  return out;
}
