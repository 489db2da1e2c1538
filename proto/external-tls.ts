/**
 * The two files of an externally managed certificate (`tls_external_cert_and_key = CERT KEY`
 * in chatmail.ini), as the host operations `tls.external_read` (old agent) and
 * `tls.external_write` (new agent) carry them: content, digest, owner names, mode, mtime and
 * the directories above them. chatmail/relay's configure stage requires both files on the
 * host (cmdeploy/src/cmdeploy/external/deployer.py: "External TLS file not found on
 * server"), so they must be on the new host before step 2; they are no root of the
 * allowlist because their paths are the operator's.
 */
import { z } from 'zod';

/** Largest certificate or key file carried (a full chain is a few KiB). */
export const EXTERNAL_TLS_MAX_BYTES = 64 * 1024;

const name = z.string().min(1).max(64);
const hostPath = z.string().min(2).max(4096);

/** A directory above a carried file, as on the old host: created so on the new host when missing. */
export const ExternalTlsDirSchema = z.object({
  path: hostPath,
  mode: z.number().int().min(0).max(0o7777),
  user: name,
  group: name,
});

/** One carried file. */
export const ExternalTlsFileSchema = z.object({
  /** The path chatmail.ini names (where the new host gets the file). */
  path: hostPath,
  /** Where a symlinked path led on the old host (certbot's live/ links); absent for a regular file. */
  resolved: hostPath.optional(),
  size: z.number().int().min(0).max(EXTERNAL_TLS_MAX_BYTES),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Content, base64. */
  data: z.string().max(Math.ceil(EXTERNAL_TLS_MAX_BYTES / 3) * 4),
  mode: z.number().int().min(0).max(0o7777),
  mtime_ns: z.string().regex(/^\d{1,20}$/),
  user: name,
  group: name,
  /** The directories from `/` down to the file's, outermost first. */
  dirs: z.array(ExternalTlsDirSchema).max(64),
});
export type ExternalTlsFile = z.infer<typeof ExternalTlsFileSchema>;

/** The input of `tls.external_write`; the output of `tls.external_read` is `{ files }` alone. */
export const ExternalTlsWriteSchema = z.object({
  files: z.array(ExternalTlsFileSchema).min(1).max(2),
  /**
   * Per path: the SHA-256 of the file an earlier attempt of this run wrote there (from the
   * controller's journal). Only a file with that digest (or the one being carried) is replaced.
   */
  replace: z.record(z.string(), z.string().regex(/^[0-9a-f]{64}$/)).default({}),
});
export type ExternalTlsWrite = z.infer<typeof ExternalTlsWriteSchema>;

export const ExternalTlsReadSchema = z.object({ files: z.array(ExternalTlsFileSchema).max(2) });

/** What `tls.external_write` did per file: written (new), replaced (an earlier attempt's), unchanged (same content; attributes set again). */
export const ExternalTlsWrittenSchema = z.object({
  written: z.array(z.object({ path: hostPath, result: z.enum(['written', 'replaced', 'unchanged']), sha256: z.string() })).max(2),
});
export type ExternalTlsWritten = z.infer<typeof ExternalTlsWrittenSchema>['written'][number];
