/**
 * How a received entry lands on the new host: it is made under a hidden temp name in its
 * target directory (mode 0600 until it is complete) and renamed into place, so a reader
 * never sees half a file and a later pass removes what a dead one left.
 */
import * as crypto from 'node:crypto';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { CmError, RERUN } from '../../proto';

/** The name prefix of temp files; a pass removes those it finds (an earlier pass died). */
export const TMP_PREFIX = '.cmmigrate-tmp-';

const TMP_SALT = crypto.randomBytes(4).toString('hex');
let tmpCounter = 0;

/** A fresh hidden temp name in the directory of `abs`. */
export function tmpName(abs: string): string {
  return path.join(path.dirname(abs), `${TMP_PREFIX}${TMP_SALT}-${(tmpCounter++).toString(36)}`);
}

/** Something of another type on the new host is where the source has `want`. */
export function typeConflict(rel: string, want: string): CmError {
  return new CmError('transfer.type_conflict', `/${rel} on the new host is in the way: the source has ${want} there`, {
    hint: `move /${rel} aside on the new host, then run ${RERUN}`,
  });
}

/** Rename a finished temp file over `abs`; the temp file goes either way. */
export async function renameIntoPlace(tmp: string, abs: string, rel: string): Promise<void> {
  try {
    fsSync.renameSync(tmp, abs);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'EEXIST') throw typeConflict(rel, 'not a directory');
    throw err;
  }
}

/** lstat, or null when there is nothing (or nothing readable) at `p`. */
export function lstatOrNull(p: string): fsSync.BigIntStats | null {
  try {
    return fsSync.lstatSync(p, { bigint: true });
  } catch {
    return null;
  }
}

/** ENOSPC and EDQUOT as an error that names this host and the path being written. */
export function diskFull(err: unknown, where: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return err;
  return new CmError('transfer.disk_full', `the new host ${os.hostname()} ran out of ${code === 'EDQUOT' ? 'disk quota' : 'disk space'} writing ${where}; what was committed before stays`, {
    hint: `free space on the new host (or grow its filesystem), then run ${RERUN}: it continues where it stopped`,
    cause: err,
  });
}
