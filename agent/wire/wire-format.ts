/**
 * Folder agent/wire/: the formats the sender and the receiver share, as tar-stream's
 * headers.js sits between pack.js and extract.js: this file for the Fetch answer's tar
 * stream, packed-entries.ts for the List answer's entries. It imports only fs/.
 *
 * What cmmigrate adds to a plain pax tar stream of a Fetch answer, shared by the sender
 * (tar-writer.ts) and the receiver (fetch-reader.ts): control entries (digest, skipped, end),
 * the pax keys that carry digests, the pax time format, and what a want looks like.
 *
 * A regular file's SHA-256 is known only after its data, so it travels in the pax header of
 * the entry that follows the file (or of the end entry): `CMMIGRATE.sha256` with the path it
 * belongs to in `CMMIGRATE.sha256.path`. A file that changed while it was read is followed
 * by `CMMIGRATE.torn` instead, and the receiver discards it.
 */
import { CmError } from '../../proto';

export const PAX_CONTROL = 'CMMIGRATE.control';
export const PAX_SHA256 = 'CMMIGRATE.sha256';
export const PAX_SHA256_PATH = 'CMMIGRATE.sha256.path';
export const PAX_TORN = 'CMMIGRATE.torn';
/** In a `skipped` control entry: the wanted path the sender did not send. */
export const PAX_SKIPPED = 'CMMIGRATE.skipped';

/** Name of control entries in the tar stream; never written to disk. */
export const CONTROL_NAME = '.cmmigrate-control';

/** A file the receiver asks for, with what it expects (a final pass checks it is unchanged). */
export interface FetchWant {
  path: string;
  size: number;
  mtimeNs: bigint;
}

/** An mtime in nanoseconds as pax writes it: "seconds.nanoseconds". */
export function paxTime(ns: bigint): string {
  const sec = ns / 1_000_000_000n;
  const frac = ns % 1_000_000_000n;
  return `${sec}.${frac.toString().padStart(9, '0')}`;
}

/** Parse a pax time ("1775324677", "1775324677.5", "…123456789") into nanoseconds. */
export function parsePaxTime(s: string): bigint | undefined {
  const m = /^(\d{1,12})(?:\.(\d{1,9}))?$/.exec(s);
  if (!m) return undefined;
  const frac = (m[2] ?? '').padEnd(9, '0');
  return BigInt(m[1]) * 1_000_000_000n + BigInt(frac);
}

/** The sender broke the format (listing or tar stream): nothing more is written. */
export function wireError(message: string, cause?: unknown): CmError {
  return new CmError('wire.protocol', message, {
    hint: 'the sending agent is not a cmmigrate agent of the same version, or the stream was damaged; nothing more was written',
    cause,
  });
}
