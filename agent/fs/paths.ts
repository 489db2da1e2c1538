/**
 * Folder agent/fs/: the host's files as every role of the agent sees them: the allowlisted
 * roots and path checks (paths.ts), the walk and its lstat (walk.ts, fast-lstat.ts,
 * stat-numbers.ts), owner names (identity.ts), how an entry lands under a temp name
 * (landing.ts), and the line reader of the agent's own state files. It imports nothing of
 * the agent outside this folder: send/, receive/, verify/, host/ and journal/ build on it.
 *
 * Where an agent may read and write: the allowlisted roots under --root, and the checks
 * every path from the wire passes before it touches the disk.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { CmError, DEFAULT_MAILBOXES_DIR, RERUN, ROOTS, RootName, isRootName } from '../../proto';

export interface AgentRoots {
  /** The agent's --root, absolute. */
  root: string;
  /** The mailboxes dir as a host path, e.g. /home/vmail/mail. */
  mailboxesDir: string;
}

export interface ResolvedRoot {
  name: RootName;
  /** Host path without the leading slash, as it appears on the wire: 'var/lib/acme'. */
  rel: string;
  /** Where it is on this machine: <root>/var/lib/acme. */
  abs: string;
  optional: boolean;
  /** Runtime paths inside the root (RootSpec.runtime) as wire paths; walks leave them out. */
  skip?: ReadonlySet<string>;
  /**
   * Directories holding runtime paths: their mtime changes whenever the host adds or removes
   * one (a postfix start), so verify leaves it out. Passes still carry it.
   */
  runtimeParents?: ReadonlySet<string>;
}

const SYSTEM_DIRS = ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib64', '/proc', '/root', '/run', '/sbin', '/sys', '/usr'];

/** Check a mailboxes dir given on the command line: absolute, normal, not a system dir. */
export function checkMailboxesDir(dir: string): string {
  const norm = path.posix.normalize(dir);
  if (!path.posix.isAbsolute(dir) || norm !== dir.replace(/\/+$/, '') || norm.split('/').length < 3) {
    throw new CmError('usage.bad_option', `--mailboxes-dir ${dir}: expected an absolute, normalized path at least two levels deep, such as ${DEFAULT_MAILBOXES_DIR}`);
  }
  if (SYSTEM_DIRS.some((s) => norm === s || norm.startsWith(s + '/'))) {
    throw new CmError('usage.bad_option', `--mailboxes-dir ${dir}: a system directory cannot be a mailboxes dir`);
  }
  return norm;
}

/** The roots a request names, resolved under this agent's --root. */
export function resolveRoots(cfg: AgentRoots, names: readonly string[], requestedMailboxesDir: string): ResolvedRoot[] {
  const requested = requestedMailboxesDir || DEFAULT_MAILBOXES_DIR;
  if (requested !== cfg.mailboxesDir) {
    throw new CmError(
      'agent.path_mailboxes_mismatch',
      `the plan's mailboxes dir ${requested} is not this agent's ${cfg.mailboxesDir}`,
      { hint: `start the agent with --mailboxes-dir ${requested}, or fix relay.mailboxes_dir in the plan` },
    );
  }
  const out: ResolvedRoot[] = [];
  for (const name of names) {
    if (!isRootName(name)) {
      throw new CmError('agent.path_outside_root', `no such root "${name}"; an agent serves only ${ROOTS.map((r) => r.name).join(', ')}`);
    }
    const spec = ROOTS.find((r) => r.name === name)!;
    const hostPath = spec.path ?? cfg.mailboxesDir;
    const rel = hostPath.replace(/^\/+/, '');
    const r: ResolvedRoot = { name, rel, abs: path.join(cfg.root, rel), optional: spec.optional };
    if (spec.runtime?.length) {
      r.skip = new Set(spec.runtime.map((p) => `${rel}/${p}`));
      r.runtimeParents = new Set(spec.runtime.map((p) => path.posix.dirname(`${rel}/${p}`)));
    }
    out.push(r);
  }
  return out;
}

const MAX_PATH_BYTES = 4096;
const MAX_NAME_BYTES = 255;

/**
 * A path from the wire, checked: relative, no empty, `.` or `..` components, no NUL,
 * within length limits. Returns it without a trailing slash. Throws `wire.bad_path`.
 */
export function checkWirePath(p: string, what = 'path'): string {
  const bad = (why: string): never => {
    throw new CmError('wire.bad_path', `refused ${what} ${JSON.stringify(p)} from the sender: ${why}`, {
      hint: 'the sending agent is not a cmmigrate agent of this migration or is damaged; nothing was written for this entry',
    });
  };
  if (typeof p !== 'string' || p.length === 0) bad('empty');
  const s = p.endsWith('/') ? p.slice(0, -1) : p;
  if (s.startsWith('/')) bad('absolute path');
  if (s.includes('\0')) bad('NUL byte');
  if (Buffer.byteLength(s) > MAX_PATH_BYTES) bad('too long');
  for (const c of s.split('/')) {
    if (c === '' || c === '.' || c === '..') bad(`"${c}" component`);
    if (Buffer.byteLength(c) > MAX_NAME_BYTES) bad('name too long');
  }
  return s;
}

/** The root a wire path belongs to (it is the root itself or below it), or undefined. */
export function rootOf(roots: readonly ResolvedRoot[], rel: string): ResolvedRoot | undefined {
  return roots.find((r) => rel === r.rel || rel.startsWith(r.rel + '/'));
}

/**
 * Make sure the parents of a root exist on this machine as real directories: create the
 * missing ones (root, 0755) and refuse a symlink anywhere on the way.
 */
export async function ensureParents(cfg: AgentRoots, rel: string): Promise<void> {
  const parts = rel.split('/').slice(0, -1);
  let cur = cfg.root;
  for (const part of parts) {
    cur = path.join(cur, part);
    let st;
    try {
      st = await fs.lstat(cur);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await fs.mkdir(cur, { mode: 0o755 }).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e;
      });
      await fs.chown(cur, 0, 0);
      await fs.chmod(cur, 0o755);
      continue;
    }
    if (!st.isDirectory()) {
      throw new CmError('agent.path_not_directory', `${cur} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}; cmmigrate writes nothing through symlinks`, {
        hint: `replace ${cur} with a real directory on this host, then run ${RERUN}`,
      });
    }
  }
}
