/**
 * The generated message types with their 64-bit integers as plain numbers: what a side
 * builds in memory and hands to `call.write()` as it is (grpc-js accepts numbers for
 * 64-bit fields). With `longs: String` those fields arrive as decimal strings
 * (`X__Output`); counts and byte sizes stay far below 2^53.
 */
import type { Long } from '@grpc/proto-loader';
import type { BridgeMinutes } from './generated/cmmigrate/v1/BridgeMinutes';
import type { BridgePortStatus } from './generated/cmmigrate/v1/BridgePortStatus';
import type { ListEnd } from './generated/cmmigrate/v1/ListEnd';
import type { ListEntry } from './generated/cmmigrate/v1/ListEntry';
import type { ListRoot } from './generated/cmmigrate/v1/ListRoot';
import type { Progress } from './generated/cmmigrate/v1/Progress';
import type { Summary } from './generated/cmmigrate/v1/Summary';

/**
 * A generated input type `T` with every field present, and every numeric field (64-bit
 * integers, doubles) a number.
 */
export type Numbered<T> = { [K in keyof T]-?: number extends NonNullable<T[K]> ? number : Exclude<NonNullable<T[K]>, Long> };

/** The result of one pass, as the receiving agent counts it and sends it. */
export type PassSummary = Numbered<Summary>;
/** How far a pass is, per root. */
export type PassProgress = Numbered<Progress>;
/** One entry of a sender's listing, as the sender builds it. */
export type ListedEntry = Numbered<ListEntry>;
/** The record that ends one root of a listing. */
export type ListedRootEnd = Numbered<ListEnd>;
/** One root of the listing's announcement. */
export type RootAnnouncement = Numbered<ListRoot>;

/**
 * One bridged port's figures (issue 14), as the old agent sends them and the controller
 * reads them; `last_connection_ms` and `per_minute.start_ms` stay the wire's decimal
 * strings ('' for no connection yet).
 */
export type BridgePortFigures = Omit<Numbered<BridgePortStatus>, 'per_minute'> & { per_minute: Numbered<BridgeMinutes> };

/** A pass summary with nothing counted yet. */
export function emptySummary(): PassSummary {
  return {
    files: 0,
    bytes: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    fifos: 0,
    sockets_skipped: 0,
    seconds: 0,
    wire_bytes: 0,
    absent_roots: [],
    owners_defaulted: [],
    renamed: 0,
    deleted: 0,
    unchanged: 0,
    kept_extraneous: 0,
    vanished: 0,
    deletes_skipped: false,
    kept_paths: [],
    vanished_paths: [],
    walks: [],
  };
}
