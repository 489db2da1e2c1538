/**
 * What cmmigrate adds to a plain pax tar stream of a Fetch answer, shared by sender and
 * receiver: control entries (digest, skipped, end) and the pax keys that carry digests.
 *
 * A regular file's SHA-256 is known only after its data, so it travels in the pax header of
 * the entry that follows the file (or of the end entry): `CMMIGRATE.sha256` with the path it
 * belongs to in `CMMIGRATE.sha256.path`. A file that changed while it was read is followed
 * by `CMMIGRATE.torn` instead, and the receiver discards it.
 */
export const PAX_CONTROL = 'CMMIGRATE.control';
export const PAX_SHA256 = 'CMMIGRATE.sha256';
export const PAX_SHA256_PATH = 'CMMIGRATE.sha256.path';
export const PAX_TORN = 'CMMIGRATE.torn';
/** In a `skipped` control entry: the wanted path the sender did not send. */
export const PAX_SKIPPED = 'CMMIGRATE.skipped';

/** Name of control entries in the tar stream; never written to disk. */
export const CONTROL_NAME = '.cmmigrate-control';
