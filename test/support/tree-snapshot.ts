/**
 * Entry-by-entry snapshots of trees below a host root, and their differences: what a test
 * uses to say "the target now holds exactly what the source held".
 *
 * A snapshot records, per entry, what a transfer must carry: type, size, mode (with setuid,
 * setgid and sticky bits), owner and group *names* (read from that root's etc/passwd and
 * etc/group, so two hosts with different numeric ids compare equal), mtime in microseconds,
 * the SHA-256 of every regular file, symlink targets, and which files share an inode.
 * Walks use lstat only: symlinks are recorded, never followed; FIFOs are never opened.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'other';

export interface EntrySnapshot {
  /** Host path, e.g. `/home/vmail/mail/example.org/a@example.org/cur/1775...:2,S`. */
  path: string;
  type: EntryType;
  /** Bytes for files, the target length for symlinks, 0 otherwise (directory sizes depend on the filesystem's history). */
  size: number;
  /** `st_mode & 0o7777`. */
  mode: number;
  /** Owner name from the root's etc/passwd, `#<uid>` if it has none. */
  user: string;
  /** Group name from the root's etc/group, `#<gid>` if it has none. */
  group: string;
  /** mtime in microseconds since the epoch (nanoseconds truncated); 0 for directories when `mtimeDirs` is false. */
  mtimeUs: bigint;
  /** Regular files only. */
  sha256?: string;
  /** Symlinks only: the target, as stored. */
  link?: string;
  /** Files with nlink > 1: the smallest path in this snapshot that shares the inode (possibly its own). */
  hardlinkGroup?: string;
}

export interface SnapshotOptions {
  /** Leave sockets out (a transfer skips them). Default false. */
  skipSockets?: boolean;
  /** Record directory mtimes. Default true; false records 0 so they never differ. */
  mtimeDirs?: boolean;
}

export interface DiffOptions {
  /** Don't compare user and group names. */
  ignoreOwners?: boolean;
  /** Leave out paths for which this returns true (both sides). */
  ignore?: (path: string) => boolean;
}

export interface Identity {
  users: Map<number, string>;
  groups: Map<number, string>;
}

const CONCURRENCY = 16;
const HASH_CHUNK = 1 << 20;

/** Names by id from `<root>/etc/passwd` and `<root>/etc/group`; a missing file gives an empty map. */
export async function readIdentity(root: string): Promise<Identity> {
  const [users, groups] = await Promise.all([
    readIdFile(path.join(root, 'etc/passwd')),
    readIdFile(path.join(root, 'etc/group')),
  ]);
  return { users, groups };
}

async function readIdFile(file: string): Promise<Map<number, string>> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw err;
  }
  const byId = new Map<number, string>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const [name, , idField] = line.split(':');
    const id = Number(idField);
    if (!name || idField === undefined || idField === '' || !Number.isInteger(id) || id < 0) continue;
    if (!byId.has(id)) byId.set(id, name); // the first line wins, as getpwuid does
  }
  return byId;
}

/**
 * Snapshot the trees at `relPaths` (host paths such as `/home/vmail/mail`) below `root`.
 * Absent paths are left out; a path that is a file, symlink or FIFO is a one-entry tree.
 * Keys are host paths, in sorted order.
 */
export async function snapshotTree(
  root: string,
  relPaths: string[],
  opts: SnapshotOptions = {},
): Promise<Map<string, EntrySnapshot>> {
  const ids = await readIdentity(root);
  const stats = new Map<string, fs.BigIntStats>();

  const visit = async (hostPath: string, st: fs.BigIntStats): Promise<void> => {
    stats.set(hostPath, st);
    if (!st.isDirectory()) return;
    const names = (await fsp.readdir(path.join(root, hostPath))).sort();
    const children = await mapLimit(names, CONCURRENCY, async (name) => {
      const child = path.posix.join(hostPath, name);
      return { child, st: await lstatOrUndefined(path.join(root, child)) };
    });
    for (const { child, st: cst } of children) {
      if (cst) await visit(child, cst); // vanished between readdir and lstat: not there
    }
  };
  for (const rel of relPaths) {
    const hostPath = path.posix.resolve('/', rel);
    if (stats.has(hostPath)) continue;
    const st = await lstatOrUndefined(path.join(root, hostPath));
    if (st) await visit(hostPath, st);
  }

  const keys = [...stats.keys()].sort();
  const smallestByInode = new Map<string, string>();
  for (const key of keys) {
    const st = stats.get(key)!;
    if (!st.isFile() || st.nlink <= 1n) continue;
    const inode = `${st.dev}:${st.ino}`;
    if (!smallestByInode.has(inode)) smallestByInode.set(inode, key); // keys are sorted
  }

  const entries = new Map<string, EntrySnapshot>();
  for (const key of keys) {
    const st = stats.get(key)!;
    const type = entryType(st);
    if (type === 'socket' && opts.skipSockets) continue;
    const entry: EntrySnapshot = {
      path: key,
      type,
      size: type === 'file' || type === 'symlink' ? Number(st.size) : 0,
      mode: Number(st.mode & 0o7777n),
      user: ids.users.get(Number(st.uid)) ?? `#${st.uid}`,
      group: ids.groups.get(Number(st.gid)) ?? `#${st.gid}`,
      mtimeUs: type === 'dir' && opts.mtimeDirs === false ? 0n : st.mtimeNs / 1000n,
    };
    if (type === 'symlink') entry.link = await fsp.readlink(path.join(root, key));
    if (type === 'file' && st.nlink > 1n) entry.hardlinkGroup = smallestByInode.get(`${st.dev}:${st.ino}`);
    entries.set(key, entry);
  }

  const files = [...entries.values()].filter((e) => e.type === 'file');
  await mapLimit(files, CONCURRENCY, async (e) => {
    e.sha256 = await sha256File(path.join(root, e.path));
  });
  return entries;
}

/**
 * Human-readable differences between two snapshots, one line per difference, sorted by
 * path: `/x/y: mode 0600 != 0644`, `/x/z: missing on b`. Empty when the trees match.
 */
export function diffSnapshots(
  a: Map<string, EntrySnapshot>,
  b: Map<string, EntrySnapshot>,
  opts: DiffOptions = {},
): string[] {
  const out: string[] = [];
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  for (const key of keys) {
    if (opts.ignore?.(key)) continue;
    const x = a.get(key);
    const y = b.get(key);
    if (!y) {
      out.push(`${key}: missing on b`);
      continue;
    }
    if (!x) {
      out.push(`${key}: missing on a`);
      continue;
    }
    if (x.type !== y.type) {
      out.push(`${key}: type ${x.type} != ${y.type}`);
      continue;
    }
    if (x.size !== y.size) out.push(`${key}: size ${x.size} != ${y.size}`);
    if (x.mode !== y.mode) out.push(`${key}: mode ${octal(x.mode)} != ${octal(y.mode)}`);
    if (!opts.ignoreOwners) {
      if (x.user !== y.user) out.push(`${key}: user ${x.user} != ${y.user}`);
      if (x.group !== y.group) out.push(`${key}: group ${x.group} != ${y.group}`);
    }
    if (x.mtimeUs !== y.mtimeUs) out.push(`${key}: mtime ${seconds(x.mtimeUs)} != ${seconds(y.mtimeUs)}`);
    if (x.sha256 !== y.sha256) out.push(`${key}: content sha256 ${short(x.sha256)} != ${short(y.sha256)}`);
    if (x.link !== y.link) out.push(`${key}: symlink target ${x.link} != ${y.link}`);
    if (x.hardlinkGroup !== y.hardlinkGroup) {
      out.push(`${key}: hard link group ${x.hardlinkGroup ?? '(none)'} != ${y.hardlinkGroup ?? '(none)'}`);
    }
  }
  return out;
}

function entryType(st: fs.BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return 'other';
}

async function lstatOrUndefined(abs: string): Promise<fs.BigIntStats | undefined> {
  try {
    return await fsp.lstat(abs, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function sha256File(abs: string): Promise<string> {
  const hash = createHash('sha256');
  const fh = await fsp.open(abs, 'r');
  try {
    const buf = Buffer.allocUnsafe(HASH_CHUNK);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

/** `fn` over `items` with at most `limit` calls in flight; results in input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function octal(mode: number): string {
  return mode.toString(8).padStart(4, '0');
}

function seconds(us: bigint): string {
  const sign = us < 0n ? '-' : '';
  const abs = us < 0n ? -us : us;
  return `${sign}${abs / 1_000_000n}.${(abs % 1_000_000n).toString().padStart(6, '0')}`;
}

function short(digest: string | undefined): string {
  return digest === undefined ? '(none)' : digest.slice(0, 12);
}
