/**
 * What cmmigrate adds to a plain pax tar stream, shared by sender and receiver: control
 * entries (begin, end) and the pax keys that carry digests and hard-link leaders.
 *
 * A regular file's SHA-256 is known only after its data, so it travels in the pax header of
 * the entry that follows the file (or of the end entry): `CMMIGRATE.sha256` with the path it
 * belongs to in `CMMIGRATE.sha256.path`. A file that changed while it was read is followed
 * by `CMMIGRATE.torn` instead, and the receiver discards it.
 */
import { z } from 'zod';

export const PAX_CONTROL = 'CMMIGRATE.control';
export const PAX_JSON = 'CMMIGRATE.json';
export const PAX_SHA256 = 'CMMIGRATE.sha256';
export const PAX_SHA256_PATH = 'CMMIGRATE.sha256.path';
export const PAX_TORN = 'CMMIGRATE.torn';
export const PAX_HARDLINK_LEADER = 'CMMIGRATE.hl';

/** Name of control entries in the tar stream; never written to disk. */
export const CONTROL_NAME = '.cmmigrate-control';

const nameList = z.array(z.string().max(256)).max(100_000);

export const RootAnnouncement = z.object({
  name: z.string(),
  rel: z.string(),
  present: z.boolean(),
  files: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  entries: z.number().int().nonnegative(),
  users: nameList,
  groups: nameList,
});
export type RootAnnouncement = z.infer<typeof RootAnnouncement>;

export const BeginControl = z.object({
  protocol: z.string(),
  phase: z.enum(['initial', 'final']),
  roots: z.array(RootAnnouncement).max(64),
});
export type BeginControl = z.infer<typeof BeginControl>;

export const EndControl = z.object({
  sockets_skipped: z.number().int().nonnegative(),
  vanished: z.array(z.string()).max(1000),
  changed: z.array(z.string()).max(1000),
  vanished_count: z.number().int().nonnegative(),
  changed_count: z.number().int().nonnegative(),
});
export type EndControl = z.infer<typeof EndControl>;
