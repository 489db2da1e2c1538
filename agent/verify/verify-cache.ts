/**
 * The last digest of each root, kept so that a quick verify looks again only at what the
 * change journal says changed since (issue 25): the root's record lines as the digest
 * sent them, the journal position taken before that digest walked, and what the lines do
 * not show (the sockets left out, the hard-link groups by inode).
 *
 * Files: `<state>/verify-cache/<root>.lines` (the lines, in walk order) and
 * `<root>.json` (the rest, with the size and SHA-256 of the lines file). A new cache first
 * removes the old `.json`, then puts the new lines in place (fsync, rename), then its
 * `.json`: after a kill anywhere in between there is no cache, or one whose lines file does
 * not have the size it names, and the next quick verify walks in full.
 */
import { createHash } from 'node:crypto';
import * as fsSync from 'node:fs';
import * as path from 'node:path';
import type { RootName } from '../../proto';

const DIR = 'verify-cache';

/** A root's cached digest, as its `.json` holds it. */
export interface VerifyCacheState {
  v: 1;
  /** The journal position taken before the digest walked: its changes after it are what to look at again. */
  epoch: string;
  seq: number;
  /** What else the lines depend on: owner names and rules, the root's place (cacheFingerprint). */
  fingerprint: string;
  entries: number;
  /** Regular files with a digest of their own (not the other names of a hard-linked file). */
  files: number;
  sha256: string;
  /** Size of the lines file. */
  bytes: number;
  /** Sockets, which have no line (the transfer leaves them out) but are counted. */
  sockets: string[];
  /** Hard-link groups: `dev:ino` and every path of the group in the root, in walk order. */
  groups: [string, string[]][];
}

/** The cache's files of a root. */
function filesOf(stateDir: string, root: string): { dir: string; lines: string; state: string } {
  const dir = path.join(stateDir, DIR);
  return { dir, lines: path.join(dir, `${root}.lines`), state: path.join(dir, `${root}.json`) };
}

/** What a root's lines depend on beside the tree: the owner names, the owner rule, where the root is. */
export function cacheFingerprint(identityDigest: string | undefined, owner: { user: string; group: string } | undefined, rootRel: string, runtimeParents: Iterable<string>): string {
  return createHash('sha256')
    .update(JSON.stringify([identityDigest ?? '', owner ?? null, rootRel, [...runtimeParents].sort()]))
    .digest('hex')
    .slice(0, 32);
}

/** The cached state of a root whose lines file is there with the size it names; null otherwise. */
export function readVerifyCache(stateDir: string, root: RootName): { state: VerifyCacheState; lines: string } | null {
  const f = filesOf(stateDir, root);
  try {
    const s = JSON.parse(fsSync.readFileSync(f.state, 'utf8')) as VerifyCacheState;
    const ok =
      s &&
      s.v === 1 &&
      typeof s.epoch === 'string' &&
      Number.isSafeInteger(s.seq) &&
      typeof s.fingerprint === 'string' &&
      Number.isSafeInteger(s.entries) &&
      Number.isSafeInteger(s.files) &&
      typeof s.sha256 === 'string' &&
      Number.isSafeInteger(s.bytes) &&
      Array.isArray(s.sockets) &&
      s.sockets.every((x) => typeof x === 'string') &&
      Array.isArray(s.groups) &&
      s.groups.every((g) => Array.isArray(g) && typeof g[0] === 'string' && Array.isArray(g[1]) && g[1].every((x) => typeof x === 'string'));
    if (!ok || fsSync.statSync(f.lines).size !== s.bytes) return null;
    return { state: s, lines: f.lines };
  } catch {
    return null;
  }
}

/** Remove a root's cache (a digest that cannot keep one, so that no stale one is used). */
export function dropVerifyCache(stateDir: string, root: RootName): void {
  fsSync.rmSync(filesOf(stateDir, root).state, { force: true });
}

/** The same cache from a later journal position (nothing changed in between): its `.json` replaced. */
export function moveVerifyCache(stateDir: string, root: RootName, state: VerifyCacheState): void {
  const f = filesOf(stateDir, root);
  writeState(f, state);
}

function writeState(f: ReturnType<typeof filesOf>, state: VerifyCacheState): void {
  const tmpState = `${f.state}.tmp-${process.pid}`;
  const fd = fsSync.openSync(tmpState, 'w', 0o600);
  try {
    fsSync.writeSync(fd, JSON.stringify(state));
    fsSync.fsyncSync(fd);
  } finally {
    fsSync.closeSync(fd);
  }
  fsSync.renameSync(tmpState, f.state);
}

/** Writes a root's new cache beside the old one, which stays usable until `commit`. */
export class VerifyCacheWriter {
  private readonly f: ReturnType<typeof filesOf>;
  private readonly tmp: string;
  private fd: number | null = null;
  private readonly hash = createHash('sha256');
  private bytes = 0;

  constructor(stateDir: string, root: RootName) {
    this.f = filesOf(stateDir, root);
    this.tmp = `${this.f.lines}.tmp-${process.pid}`;
  }

  /** Append lines (each ending in a newline), as the digest sends them. */
  write(lines: Buffer): void {
    if (this.fd === null) {
      fsSync.mkdirSync(this.f.dir, { recursive: true, mode: 0o700 });
      this.fd = fsSync.openSync(this.tmp, 'w', 0o600);
    }
    let off = 0;
    while (off < lines.length) off += fsSync.writeSync(this.fd, lines, off);
    this.hash.update(lines);
    this.bytes += lines.length;
  }

  /** Make the written lines the root's cache, described by `state` (its bytes filled in here). */
  commit(state: Omit<VerifyCacheState, 'bytes' | 'v'>): void {
    if (this.fd === null) this.write(Buffer.alloc(0));
    fsSync.fsyncSync(this.fd!);
    fsSync.closeSync(this.fd!);
    this.fd = null;
    fsSync.rmSync(this.f.state, { force: true });
    fsSync.renameSync(this.tmp, this.f.lines);
    writeState(this.f, { v: 1, ...state, bytes: this.bytes });
    const d = fsSync.openSync(this.f.dir, 'r');
    try {
      fsSync.fsyncSync(d);
    } finally {
      fsSync.closeSync(d);
    }
  }

  /** Drop what was written (a digest that stopped). */
  close(): void {
    if (this.fd === null) return;
    fsSync.closeSync(this.fd);
    this.fd = null;
    fsSync.rmSync(this.tmp, { force: true });
  }
}

/**
 * The path of a record line (proto/verify-record.ts: a JSON array, the path first) and where
 * the path's JSON string ends; the fast way when the path has no escape.
 */
export function pathOfLine(line: string): { path: string; end: number } | null {
  if (line.startsWith('["')) {
    const q = line.indexOf('"', 2);
    const bs = line.indexOf('\\', 2);
    if (q !== -1 && (bs === -1 || bs > q)) return { path: line.slice(2, q), end: q + 1 };
  }
  try {
    const a = JSON.parse(line) as unknown;
    if (!Array.isArray(a) || typeof a[0] !== 'string') return null;
    const json = JSON.stringify(a[0]);
    return line.startsWith('[' + json) ? { path: a[0], end: 1 + json.length } : null;
  } catch {
    return null;
  }
}
