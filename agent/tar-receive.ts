/**
 * The receiving side of a pass: applies a tar stream from the sending agent to this host.
 *
 * Guarantees: every path is checked before it touches the disk (relative, inside an
 * allowlisted root, under a directory that this stream announced, never through a
 * symlink); a regular file is written to a hidden temp file in its directory with mode
 * 0600, and renamed into place only after its size and SHA-256 match what the sender read;
 * owners are mapped by name; directory modes and mtimes are applied after their contents.
 * On any error the temp files are removed and the error names the path.
 */
import * as crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import { constants as C } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as tar from 'tar-stream';
import { CmError, PROTOCOL_VERSION, type Phase, type RootName } from '../proto';
import type { Identity } from './identity';
import { checkWirePath, ensureParents, rootOf, type AgentRoots, type ResolvedRoot } from './paths';
import { parsePaxTime, utimesSeconds } from './walk';
import {
  BeginControl,
  CONTROL_NAME,
  EndControl,
  PAX_CONTROL,
  PAX_HARDLINK_LEADER,
  PAX_JSON,
  PAX_SHA256,
  PAX_SHA256_PATH,
  PAX_TORN,
  type RootAnnouncement,
} from './wire-format';

const execFileP = promisify(execFile);

/** One entry of tar-stream's extract: its header and its data. */
type TarEntry = AsyncIterable<Buffer> & { header: tar.Header };

export interface OwnerNames {
  user: string;
  group: string;
}

export interface ReceiveOptions {
  cfg: AgentRoots;
  /** The roots this pass may write, resolved on this host. */
  roots: ResolvedRoot[];
  phase: Phase;
  /** Forced owners per root (the plan's [owners]). */
  owners: Partial<Record<RootName, OwnerNames>>;
  /** This host's names. */
  identity: Identity;
  onProgress?: (p: RootProgress) => void;
}

export interface RootProgress {
  root: string;
  files: number;
  bytes: number;
  totalFiles: number;
  totalBytes: number;
}

export interface ReceiveSummary {
  files: number;
  bytes: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  fifos: number;
  socketsSkipped: number;
  wireBytes: number;
  absentRoots: string[];
  ownersDefaulted: string[];
  vanished: string[];
  changed: string[];
  vanishedCount: number;
  changedCount: number;
}

const NAME_RE = /^(#\d{1,10}|[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\$?)$/;
const TMP_PREFIX = '.cmmigrate-tmp-';

interface DirFrame {
  rel: string;
  abs: string;
  uid: number;
  gid: number;
  mode: number;
  mtimeNs: bigint;
}

interface PendingFile {
  rel: string;
  abs: string;
  tmp: string;
  sha256: string;
  leader: boolean;
}

function wireError(message: string, cause?: unknown): CmError {
  return new CmError('wire.protocol', message, {
    hint: 'the sending agent is not a cmmigrate agent of the same version, or the stream was damaged; nothing more was written',
    cause,
  });
}

/** Apply the tar stream `source` (chunks from the sender) to this host. */
export async function receiveTar(source: AsyncIterable<Buffer>, opts: ReceiveOptions): Promise<ReceiveSummary> {
  const r = new Receiver(opts);
  const extract = tar.extract();
  const feeding = (async () => {
    for await (const data of source) {
      r.summary.wireBytes += data.length;
      if (!extract.write(data)) await new Promise<void>((res) => extract.once('drain', () => res()));
    }
    (extract as unknown as { end(): void }).end();
  })().catch((err: unknown) => {
    r.feedError = err;
    extract.destroy(err instanceof Error ? err : new Error(String(err)));
  });
  try {
    for await (const entry of extract as unknown as AsyncIterable<TarEntry>) {
      await r.entry(entry);
    }
    await feeding;
    if (r.feedError) throw r.feedError;
    await r.finish();
  } catch (err) {
    await feeding;
    await r.cleanup();
    if (r.feedError) throw r.feedError;
    if (err instanceof CmError) throw err;
    const msg = (err as Error).message ?? String(err);
    if (/Unexpected end of data|Invalid tar header|size mismatch|unknown format/i.test(msg)) throw wireError(`bad tar stream: ${msg}`, err);
    throw err;
  }
  return r.summary;
}

class Receiver {
  readonly summary: ReceiveSummary = {
    files: 0,
    bytes: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    fifos: 0,
    socketsSkipped: 0,
    wireBytes: 0,
    absentRoots: [],
    ownersDefaulted: [],
    vanished: [],
    changed: [],
    vanishedCount: 0,
    changedCount: 0,
  };
  feedError: unknown = null;
  private begun = false;
  private ended = false;
  private readonly announced = new Map<string, RootAnnouncement>();
  private readonly stack: DirFrame[] = [];
  private pending: PendingFile | null = null;
  private currentTmp: string | null = null;
  private readonly leaders = new Set<string>();
  private readonly defaulted = new Set<string>();
  private readonly progress = new Map<string, RootProgress>();
  private readonly rootsWritten = new Set<ResolvedRoot>();

  constructor(private readonly opts: ReceiveOptions) {}

  async entry(entry: TarEntry): Promise<void> {
    const h = entry.header;
    const pax = (h.pax ?? {}) as Record<string, string>;
    await this.settlePending(pax);
    if (pax[PAX_CONTROL] !== undefined) {
      await this.control(h, pax, entry);
      return;
    }
    if (!this.begun) throw wireError(`the stream did not start with a begin entry (got ${JSON.stringify(h.name)})`);
    if (this.ended) throw wireError(`entry ${JSON.stringify(h.name)} after the end of the stream`);
    const rel = checkWirePath(h.name);
    const root = rootOf(this.opts.roots, rel);
    if (!root) {
      throw new CmError('agent.path_outside_root', `refused /${rel}: outside the roots of this pass (${this.opts.roots.map((x) => '/' + x.rel).join(', ')})`, {
        hint: 'an agent writes only inside its allowlisted roots; the sender is damaged or hostile',
      });
    }
    const abs = path.join(this.opts.cfg.root, rel);
    await this.placeInTree(rel, abs, root);
    const mtimeNs = parsePaxTime(pax.mtime ?? '');
    if (mtimeNs === undefined) throw wireError(`/${rel}: missing or bad mtime ${JSON.stringify(pax.mtime)}`);
    const { uid, gid } = this.owner(root, pax.uname, pax.gname, rel);
    const mode = h.mode & 0o7777;
    switch (h.type) {
      case 'directory':
        await this.directory(rel, abs, { rel, abs, uid, gid, mode, mtimeNs });
        break;
      case 'file':
      case 'contiguous-file':
        await this.file(rel, abs, root, entry, { uid, gid, mode, mtimeNs }, pax[PAX_HARDLINK_LEADER] === '1');
        break;
      case 'link':
        await this.hardlink(rel, abs, root, h.linkname);
        break;
      case 'symlink':
        await this.symlink(rel, abs, root, h.linkname, { uid, gid, mtimeNs });
        break;
      case 'fifo':
        await this.fifo(rel, abs, root, { uid, gid, mode, mtimeNs });
        break;
      case 'character-device':
      case 'block-device':
        throw new CmError('wire.device_node', `refused /${rel}: device nodes are never written`, {
          hint: 'the sender must not send device nodes; nothing was written for this entry',
        });
      default:
        throw wireError(`/${rel}: unsupported entry type ${String(h.type)}`);
    }
    await drain(entry);
  }

  private async control(h: tar.Header, pax: Record<string, string>, entry: TarEntry): Promise<void> {
    if (h.name !== CONTROL_NAME || h.size !== 0) throw wireError('malformed control entry');
    await drain(entry);
    let body: unknown;
    try {
      body = JSON.parse(pax[PAX_JSON] ?? '');
    } catch (err) {
      throw wireError('control entry with bad JSON', err);
    }
    if (pax[PAX_CONTROL] === 'begin') {
      if (this.begun) throw wireError('a second begin entry');
      const parsed = BeginControl.safeParse(body);
      if (!parsed.success) throw wireError(`bad begin entry: ${parsed.error.message}`);
      await this.begin(parsed.data);
      return;
    }
    if (pax[PAX_CONTROL] === 'end') {
      if (!this.begun || this.ended) throw wireError('end entry out of place');
      const parsed = EndControl.safeParse(body);
      if (!parsed.success) throw wireError(`bad end entry: ${parsed.error.message}`);
      this.ended = true;
      const e = parsed.data;
      this.summary.socketsSkipped = e.sockets_skipped;
      this.summary.vanished.push(...e.vanished);
      this.summary.changed.push(...e.changed);
      this.summary.vanishedCount += e.vanished_count;
      this.summary.changedCount += e.changed_count;
      return;
    }
    throw wireError(`unknown control entry ${JSON.stringify(pax[PAX_CONTROL])}`);
  }

  private async begin(b: BeginControl): Promise<void> {
    if (b.protocol !== PROTOCOL_VERSION) {
      throw new CmError('wire.protocol_version', `the sending agent speaks protocol ${b.protocol}, this agent ${PROTOCOL_VERSION}`, {
        hint: 'install the same cmmigrate version on both hosts (cmmigrate install-agent old|new)',
      });
    }
    if (b.phase !== this.opts.phase) throw wireError(`the sender sent phase ${b.phase}, ${this.opts.phase} was asked`);
    for (const a of b.roots) {
      const mine = this.opts.roots.find((x) => x.name === a.name);
      if (!mine) throw new CmError('agent.path_outside_root', `the sender offers root ${a.name}, which this pass does not include`);
      if (mine.rel !== a.rel) {
        throw new CmError('agent.path_mailboxes_mismatch', `root ${a.name} is /${a.rel} on the sender but /${mine.rel} here`, {
          hint: 'both agents must serve the same mailboxes dir (--mailboxes-dir)',
        });
      }
      this.announced.set(a.rel, a);
      if (!a.present) this.summary.absentRoots.push(a.name);
      this.progress.set(a.rel, { root: a.name, files: 0, bytes: 0, totalFiles: a.files, totalBytes: a.bytes });
    }
    // Every name the pass will need, checked before anything is written.
    const needUsers = new Set<string>();
    const needGroups = new Set<string>();
    for (const a of b.roots) {
      if (!a.present) continue;
      const rule = this.opts.owners[a.name as RootName];
      if (rule) {
        needUsers.add(rule.user);
        needGroups.add(rule.group);
      } else {
        a.users.forEach((u) => needUsers.add(u));
        a.groups.forEach((g) => needGroups.add(g));
      }
    }
    const { identity } = this.opts;
    const missingUsers = [...needUsers].filter((u) => identity.uid(u) === undefined).sort();
    const missingGroups = [...needGroups].filter((g) => identity.gid(g) === undefined).sort();
    if (this.opts.phase === 'final' && (missingUsers.length || missingGroups.length)) {
      const parts = [];
      if (missingUsers.length) parts.push(`users ${missingUsers.join(', ')}`);
      if (missingGroups.length) parts.push(`groups ${missingGroups.join(', ')}`);
      throw new CmError('transfer.missing_owners', `the new host lacks ${parts.join(' and ')}; nothing was written`, {
        hint: 'step 2 creates them: run `CMDEPLOY_STAGES=install,configure scripts/cmdeploy run --ssh-host NEW` from the relay checkout (cmmigrate run does it), then run the same command again',
        details: { users: missingUsers, groups: missingGroups },
      });
    }
    this.begun = true;
  }

  /** Check that the entry's directory was announced in this stream, closing finished dirs. */
  private async placeInTree(rel: string, abs: string, root: ResolvedRoot): Promise<void> {
    if (rel === root.rel) {
      if (!this.announced.has(root.rel)) throw wireError(`root /${rel} was not announced`);
      while (this.stack.length) await this.finishDir(this.stack.pop()!);
      await ensureParents(this.opts.cfg, rel);
      this.rootsWritten.add(root);
      return;
    }
    while (this.stack.length && !rel.startsWith(this.stack[this.stack.length - 1].rel + '/')) {
      await this.finishDir(this.stack.pop()!);
    }
    const top = this.stack[this.stack.length - 1];
    if (!top || path.posix.dirname(rel) !== top.rel) {
      throw wireError(`/${rel} arrived without its directory before it; refused`);
    }
    void abs;
  }

  private owner(root: ResolvedRoot, uname: string | undefined, gname: string | undefined, rel: string): { uid: number; gid: number } {
    const rule = this.opts.owners[root.name];
    const user = rule?.user ?? uname ?? '';
    const group = rule?.group ?? gname ?? '';
    if (!NAME_RE.test(user) || !NAME_RE.test(group)) throw wireError(`/${rel}: bad owner ${JSON.stringify(user)}:${JSON.stringify(group)}`);
    let uid = this.opts.identity.uid(user);
    let gid = this.opts.identity.gid(group);
    if (uid === undefined || gid === undefined) {
      if (this.opts.phase === 'final') {
        throw new CmError('transfer.missing_owners', `the new host has no ${uid === undefined ? 'user ' + user : 'group ' + group} (for /${rel})`, {
          hint: 'run step 2 (cmdeploy install,configure) on the new host, then run the same command again',
        });
      }
      if (uid === undefined) this.defaulted.add(user);
      if (gid === undefined) this.defaulted.add(group);
      uid ??= 0;
      gid ??= 0;
    }
    return { uid, gid };
  }

  private async directory(rel: string, abs: string, frame: DirFrame): Promise<void> {
    let st;
    try {
      st = await fs.lstat(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (st && !st.isDirectory()) {
      if (!st.isSymbolicLink()) throw typeConflict(rel, 'a directory');
      await fs.unlink(abs); // a symlink is replaced, never followed
      st = undefined;
    }
    if (!st) await fs.mkdir(abs, { mode: 0o700 });
    this.stack.push(frame);
    this.summary.dirs++;
  }

  private async finishDir(f: DirFrame): Promise<void> {
    await fs.chown(f.abs, f.uid, f.gid);
    await fs.chmod(f.abs, f.mode);
    const t = utimesSeconds(f.mtimeNs);
    await fs.utimes(f.abs, t, t);
  }

  private tmpName(abs: string): string {
    const tmp = path.join(path.dirname(abs), TMP_PREFIX + crypto.randomBytes(8).toString('hex'));
    this.currentTmp = tmp;
    return tmp;
  }

  private async file(rel: string, abs: string, root: ResolvedRoot, entry: TarEntry, m: { uid: number; gid: number; mode: number; mtimeNs: bigint }, leader: boolean): Promise<void> {
    const tmp = this.tmpName(abs);
    const fd = await fs.open(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
    const hash = crypto.createHash('sha256');
    let size = 0;
    try {
      for await (const data of entry as AsyncIterable<Buffer>) {
        hash.update(data);
        size += data.length;
        let off = 0;
        while (off < data.length) {
          const { bytesWritten } = await fd.write(data, off, data.length - off);
          off += bytesWritten;
        }
      }
      if (size !== entry.header.size) throw wireError(`/${rel}: size header says ${entry.header.size}, got ${size} bytes`);
      await fd.chown(m.uid, m.gid);
      await fd.chmod(m.mode);
      const t = utimesSeconds(m.mtimeNs);
      await fd.utimes(t, t);
    } finally {
      await fd.close();
    }
    this.pending = { rel, abs, tmp, sha256: hash.digest('hex'), leader };
    this.currentTmp = null;
    this.summary.bytes += size;
    const p = this.progress.get(root.rel);
    if (p) {
      p.files++;
      p.bytes += size;
      this.opts.onProgress?.(p);
    }
  }

  /** The digest of the file before this entry has arrived: commit or discard it. */
  private async settlePending(pax: Record<string, string>): Promise<void> {
    const p = this.pending;
    const digest = pax[PAX_SHA256];
    const torn = pax[PAX_TORN] === '1';
    if (!p) {
      if (digest !== undefined || torn) throw wireError('a digest for no file');
      return;
    }
    if (pax[PAX_SHA256_PATH] !== p.rel) throw wireError(`/${p.rel}: its digest did not follow it`);
    if (torn) {
      await fs.rm(p.tmp, { force: true });
      this.pending = null;
      if (this.opts.phase === 'final') {
        throw new CmError('transfer.source_changed', `/${p.rel} changed while the final pass read it`, {
          hint: 'mail must be stopped on the old host during the final pass; then run the same command again',
        });
      }
      return;
    }
    if (digest !== p.sha256) {
      await fs.rm(p.tmp, { force: true });
      this.pending = null;
      throw new CmError('transfer.digest_mismatch', `/${p.rel}: SHA-256 of the received data does not match the sender's; the file was not written`, {
        hint: 'the data was damaged on the way or the sender is faulty; run the same command again, and check the network and both hosts\' disks if it recurs',
      });
    }
    await this.renameIntoPlace(p.tmp, p.abs, p.rel);
    this.pending = null;
    this.summary.files++;
    if (p.leader) this.leaders.add(p.rel);
  }

  private async renameIntoPlace(tmp: string, abs: string, rel: string): Promise<void> {
    try {
      await fs.rename(tmp, abs);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'EEXIST') throw typeConflict(rel, 'not a directory');
      throw err;
    }
    this.currentTmp = null;
  }

  private async hardlink(rel: string, abs: string, root: ResolvedRoot, linkname: string): Promise<void> {
    const target = checkWirePath(linkname, 'hard-link target');
    if (!this.leaders.has(target) || !rootOf(this.opts.roots, target)) {
      throw new CmError('wire.bad_link', `refused hard link /${rel} -> /${target}: the target was not written by this stream`, {
        hint: 'hard links may only point at files sent earlier in the same pass',
      });
    }
    const tmp = this.tmpName(abs);
    await fs.link(path.join(this.opts.cfg.root, target), tmp);
    await this.renameIntoPlace(tmp, abs, rel);
    this.summary.hardlinks++;
    void root;
  }

  private async symlink(rel: string, abs: string, root: ResolvedRoot, target: string, m: { uid: number; gid: number; mtimeNs: bigint }): Promise<void> {
    if (!target || target.includes('\0') || Buffer.byteLength(target) > 4096) throw wireError(`/${rel}: bad symlink target`);
    const tmp = this.tmpName(abs);
    await fs.symlink(target, tmp);
    await fs.lchown(tmp, m.uid, m.gid);
    const t = utimesSeconds(m.mtimeNs);
    await fs.lutimes(tmp, t, t);
    await this.renameIntoPlace(tmp, abs, rel);
    this.summary.symlinks++;
    void root;
  }

  private async fifo(rel: string, abs: string, root: ResolvedRoot, m: { uid: number; gid: number; mode: number; mtimeNs: bigint }): Promise<void> {
    const tmp = this.tmpName(abs);
    // Node has no mkfifo; the system's will do.
    await execFileP('mkfifo', ['-m', '600', tmp]);
    await fs.chown(tmp, m.uid, m.gid);
    await fs.chmod(tmp, m.mode);
    const t = utimesSeconds(m.mtimeNs);
    await fs.utimes(tmp, t, t);
    await this.renameIntoPlace(tmp, abs, rel);
    this.summary.fifos++;
    void root;
  }

  async finish(): Promise<void> {
    if (this.pending) throw wireError(`/${this.pending.rel}: the stream ended before its digest`);
    if (!this.ended) throw wireError('the stream ended early, without its end entry');
    while (this.stack.length) await this.finishDir(this.stack.pop()!);
    this.summary.ownersDefaulted = [...this.defaulted].sort();
    // Durability: one syncfs per root's filesystem rather than an fsync per file.
    for (const root of this.rootsWritten) {
      await execFileP('sync', ['-f', root.abs]);
    }
  }

  async cleanup(): Promise<void> {
    const tmps = [this.pending?.tmp, this.currentTmp].filter((t): t is string => !!t);
    this.pending = null;
    this.currentTmp = null;
    await Promise.all(tmps.map((t) => fs.rm(t, { force: true })));
  }
}

function typeConflict(rel: string, want: string): CmError {
  return new CmError('transfer.type_conflict', `/${rel} on the new host is in the way: the source has ${want} there`, {
    hint: `move /${rel} aside on the new host, then run the same command again`,
  });
}

async function drain(entry: TarEntry): Promise<void> {
  for await (const _ of entry as AsyncIterable<Buffer>) void _;
}
