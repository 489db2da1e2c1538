/**
 * Files the controller keeps (the plan, the TLS material, the run's journal) are replaced
 * whole: a crash at any moment leaves the old content or the new one, never a torn file.
 */
import * as crypto from 'node:crypto';
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

/**
 * Writes `data` to a temp file beside `file` with exactly `mode` (whatever the umask),
 * flushes it, renames it over `file` and flushes the directory. Synchronous: callers such
 * as the journal must not interleave two saves.
 */
export function writeFileAtomicSync(file: string, data: string, mode: number): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    fchmodSync(fd, mode);
    writeFileSync(fd, data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}
