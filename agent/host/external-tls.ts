/**
 * The external TLS files of a relay (`tls_external_cert_and_key`), read on the old host and
 * written on the new one (host operations `tls.external_read` and `tls.external_write`,
 * proto/external-tls.ts). The old agent reads only the two paths its host's deployed
 * chatmail.ini names; the new agent writes only absolute paths outside the carried roots and
 * its own state dir, checks the content's SHA-256 on disk before the rename, keeps mode,
 * mtime and owner names, and never replaces a different file unless the controller's journal
 * says an earlier attempt wrote it. Free of gRPC.
 */
import * as crypto from 'node:crypto';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { CmError, EXTERNAL_TLS_MAX_BYTES, RERUN, ROOTS, type ExternalTlsFile, type ExternalTlsWrite, type ExternalTlsWritten } from '../../proto';
import { loadIdentity, nameOr } from '../fs/identity';
import { tmpName } from '../fs/landing';
import type { AgentRoots } from '../fs/paths';
import { utimesSeconds } from '../fs/walk';

/** Where chatmail/relay's deploy writes the relay's chatmail.ini on the host (basedeploy.py remote_chatmail_inipath). */
const DEPLOYED_INI = 'usr/local/lib/chatmaild/chatmail.ini';
/** Symlinks followed at most while resolving one path (as the kernel's MAXSYMLINKS). */
const MAX_LINKS = 40;

/** The paths of `tls_external_cert_and_key` in the host's deployed chatmail.ini (chatmaild config.py: split on whitespace). */
export async function deployedExternalPaths(root: string): Promise<string[]> {
  let text: string;
  try {
    text = await fs.readFile(path.join(root, DEPLOYED_INI), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new CmError('host.bad_file', `on ${os.hostname()}: cannot read /${DEPLOYED_INI}: ${(err as Error).message}`, { cause: err });
  }
  const m = /^\s*tls_external_cert_and_key\s*=(.*)$/m.exec(text);
  return (m?.[1] ?? '').trim().split(/\s+/).filter((p) => p.startsWith('/'));
}

/**
 * The host path `p` leads to under `root`, every symlink followed with `root` as `/` (an
 * absolute link target stays under --root, as in a chroot).
 */
async function resolveUnder(root: string, p: string): Promise<string> {
  let rest = p.split('/').filter(Boolean);
  let at = '/';
  let links = 0;
  while (rest.length > 0) {
    const [head, ...tail] = rest;
    rest = tail;
    if (head === '.') continue;
    if (head === '..') {
      at = path.posix.dirname(at);
      continue;
    }
    const next = path.posix.join(at, head);
    const st = await fs.lstat(path.join(root, next));
    if (!st.isSymbolicLink()) {
      at = next;
      continue;
    }
    if (++links > MAX_LINKS) throw new CmError('host.bad_file', `on ${os.hostname()}: ${p} leads through more than ${MAX_LINKS} symlinks`);
    const target = await fs.readlink(path.join(root, next));
    if (target.startsWith('/')) at = '/';
    rest = [...target.split('/').filter(Boolean), ...rest];
  }
  return at;
}

function sha256(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

/**
 * `tls.external_read` on the old host: both files its deployed chatmail.ini names, each with
 * content, digest, owner names, mode, mtime and the directories above it. A symlinked path is
 * read as the file it leads to (upstream's configure accepts one: pyinfra's File fact).
 */
export async function readExternalTls(roots: AgentRoots, fields: Record<string, unknown>): Promise<ExternalTlsFile[]> {
  const paths = await deployedExternalPaths(roots.root);
  const identity = await loadIdentity(roots.root);
  const out: ExternalTlsFile[] = [];
  for (const p of paths) {
    let resolved: string;
    try {
      resolved = await resolveUnder(roots.root, p);
    } catch (err) {
      if (err instanceof CmError) throw err;
      throw new CmError('host.bad_file', `on ${os.hostname()}: ${p} (tls_external_cert_and_key) cannot be followed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
    const fh = await fs.open(path.join(roots.root, resolved), fsSync.constants.O_RDONLY | fsSync.constants.O_NOFOLLOW | fsSync.constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
      throw new CmError('host.bad_file', `on ${os.hostname()}: cannot open ${resolved}: ${err.code ?? err.message}`, { cause: err });
    });
    try {
      const st = await fh.stat({ bigint: true });
      if (!st.isFile()) throw new CmError('host.bad_file', `on ${os.hostname()}: ${p} is not a regular file`);
      if (st.size > BigInt(EXTERNAL_TLS_MAX_BYTES)) throw new CmError('host.bad_file', `on ${os.hostname()}: ${p} has ${st.size} bytes, more than a certificate or key (${EXTERNAL_TLS_MAX_BYTES})`);
      const data = await fh.readFile();
      const dirs: ExternalTlsFile['dirs'] = [];
      for (let d = path.posix.dirname(p); d !== '/'; d = path.posix.dirname(d)) {
        const ds = await fs.stat(path.join(roots.root, d));
        dirs.unshift({ path: d, mode: ds.mode & 0o7777, user: nameOr(ds.uid, identity.userName(ds.uid)), group: nameOr(ds.gid, identity.groupName(ds.gid)) });
      }
      out.push({
        path: p,
        ...(resolved !== p ? { resolved } : {}),
        size: data.length,
        sha256: sha256(data),
        data: data.toString('base64'),
        mode: Number(st.mode) & 0o7777,
        mtime_ns: String(st.mtimeNs),
        user: nameOr(Number(st.uid), identity.userName(Number(st.uid))),
        group: nameOr(Number(st.gid), identity.groupName(Number(st.gid))),
        dirs,
      });
      data.fill(0);
    } finally {
      await fh.close();
    }
  }
  fields.files = out.length;
  return out;
}

function refused(p: string, why: string): CmError {
  return new CmError('host.tls_path_refused', `${p} (tls_external_cert_and_key) is not written on ${os.hostname()}: ${why}`, {
    hint: `name files outside the relay state cmmigrate carries in tls_external_cert_and_key (chatmail.ini), deploy the old host with it, then run ${RERUN}`,
  });
}

/** Refuses a path that is not absolute and normal, or lies inside (or above) a carried root or the agent's state dir. */
export function checkExternalPath(p: string, roots: AgentRoots, stateDir: string): void {
  if (!p.startsWith('/') || p.includes('\0') || path.posix.normalize(p) !== p || p.endsWith('/') || p === '/') throw refused(p, 'not an absolute, normal file path');
  const inside = (a: string, b: string): boolean => a === b || a.startsWith(b + '/');
  for (const r of ROOTS) {
    const rootPath = r.path ?? roots.mailboxesDir;
    if (inside(p, rootPath) || inside(rootPath, p)) throw refused(p, `it is inside the carried root ${r.name} (${rootPath})`);
  }
  const abs = path.join(roots.root, p);
  if (inside(abs, stateDir) || inside(stateDir, abs)) throw refused(p, `it is inside the agent's state dir ${stateDir}`);
}

async function sha256OfFile(abs: string): Promise<string> {
  return sha256(await fs.readFile(abs));
}

/**
 * `tls.external_write` on the new host: each file at its path, atomically (temp file in the
 * same directory, checked on disk against the digest, renamed), with the old host's owner
 * names, mode and mtime; directories above it created as on the old host where missing.
 */
export async function writeExternalTls(req: ExternalTlsWrite, roots: AgentRoots, stateDir: string, fields: Record<string, unknown>): Promise<ExternalTlsWritten[]> {
  for (const f of req.files) {
    checkExternalPath(f.path, roots, stateDir);
    for (const d of f.dirs) {
      if (!f.path.startsWith(d.path + '/')) throw refused(f.path, `${d.path} is not a directory above it`);
    }
  }
  const identity = await loadIdentity(roots.root);
  const owner = (f: { user: string; group: string }, what: string): { uid: number; gid: number } => {
    const uid = identity.uid(f.user);
    const gid = identity.gid(f.group);
    if (uid === undefined || gid === undefined) {
      throw new CmError('transfer.missing_owners', `the new host ${os.hostname()} has no ${uid === undefined ? 'user ' + f.user : 'group ' + f.group} (the owner of ${what} on the old host); nothing was written there`, {
        hint: `create it on the new host (as on the old host), then run ${RERUN}`,
      });
    }
    return { uid, gid };
  };
  // Decide for every file before anything is created: a refusal of either file (content,
  // owner, conflict, a directory that leads elsewhere) leaves the new host as it was.
  const realRoot = await fs.realpath(roots.root);
  const plans: { f: (typeof req.files)[number]; data: Buffer; want: { uid: number; gid: number }; abs: string; result: ExternalTlsWritten['result']; dirs: { abs: string; uid: number; gid: number; mode: number }[] }[] = [];
  for (const f of req.files) {
    const data = Buffer.from(f.data, 'base64');
    if (data.length !== f.size || sha256(data) !== f.sha256) {
      throw new CmError('transfer.digest_mismatch', `${f.path}: the content that arrived does not match the old host's SHA-256; nothing was written`, { hint: `run ${RERUN}` });
    }
    const want = owner(f, f.path);
    const abs = path.join(roots.root, f.path);
    let result: ExternalTlsWritten['result'] = 'written';
    const st = await fs.lstat(abs).catch(() => null);
    if (st) {
      if (!st.isFile()) throw new CmError('host.tls_file_conflict', `${f.path} on the new host ${os.hostname()} is not a regular file (a ${st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'directory' : 'special file'}); it is not replaced`, { hint: `move ${f.path} aside on the new host, then run ${RERUN}` });
      const have = await sha256OfFile(abs);
      if (have === f.sha256) result = 'unchanged';
      else if (req.replace[f.path] === have) result = 'replaced';
      else {
        throw new CmError('host.tls_file_conflict', `${f.path} on the new host ${os.hostname()} holds another file than the old host's (different content), which no earlier attempt of this move wrote; it is not replaced`, {
          hint: `compare the two; if the old host's is the one to keep, remove ${f.path} on the new host, then run ${RERUN}`,
          details: { path: f.path },
        });
      }
    }
    const dirs = f.dirs.filter((d) => !fsSync.existsSync(path.join(roots.root, d.path))).map((d) => ({ abs: path.join(roots.root, d.path), mode: d.mode, ...owner(d, d.path) }));
    // A symlinked directory on this host must not lead the write into a carried root or out
    // of --root: resolve the nearest directory above the file that exists, the rest is made here.
    let existing = path.dirname(abs);
    const missing: string[] = [];
    while (!fsSync.existsSync(existing) && existing !== realRoot && existing !== path.dirname(existing)) {
      missing.unshift(path.basename(existing));
      existing = path.dirname(existing);
    }
    const realParent = path.join(await fs.realpath(existing), ...missing);
    const hostParent = '/' + path.relative(realRoot, realParent);
    if (hostParent.startsWith('/..')) throw refused(f.path, `its directory leads out of the agent's root (to ${realParent})`);
    checkExternalPath(path.posix.join(hostParent, path.basename(f.path)), { ...roots, root: realRoot }, stateDir);
    plans.push({ f, data, want, abs, result, dirs });
  }
  const out: ExternalTlsWritten[] = [];
  for (const { f, data, want, abs, result, dirs } of plans) {
    for (const d of dirs) {
      if (fsSync.existsSync(d.abs)) continue;
      await fs.mkdir(d.abs);
      await fs.chown(d.abs, d.uid, d.gid);
      await fs.chmod(d.abs, d.mode);
    }
    const mtime = utimesSeconds(BigInt(f.mtime_ns));
    if (result === 'unchanged') {
      await fs.chown(abs, want.uid, want.gid);
      await fs.chmod(abs, f.mode);
      await fs.utimes(abs, mtime, mtime);
    } else {
      const tmp = tmpName(abs);
      try {
        const fh = await fs.open(tmp, 'wx', 0o600);
        try {
          await fh.writeFile(data);
          await fh.chown(want.uid, want.gid);
          await fh.chmod(f.mode);
          await fh.sync();
        } finally {
          await fh.close();
        }
        await fs.utimes(tmp, mtime, mtime);
        if ((await sha256OfFile(tmp)) !== f.sha256) {
          throw new CmError('transfer.digest_mismatch', `${f.path}: the file written on ${os.hostname()} does not read back with the old host's SHA-256`, { hint: `check the new host's disk, then run ${RERUN}` });
        }
        await fs.rename(tmp, abs);
      } catch (err) {
        await fs.rm(tmp, { force: true });
        throw err;
      }
      const dir = await fs.open(path.dirname(abs), 'r');
      await dir.sync().finally(() => dir.close());
    }
    data.fill(0);
    out.push({ path: f.path, result, sha256: f.sha256 });
  }
  fields.files = out.length;
  return out;
}
