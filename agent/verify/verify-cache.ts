/**
 * The last digest of each root, kept so that a quick verify looks again only at what the
 * change journal says changed since (issue 25): the root's record lines as the digest
 * sent them, the journal position taken before that digest walked, and what the lines do
 * not show (the sockets left out, the hard-link groups by inode).
 *
 * Files: `<state>/verify-cache/<root>.lines` (the lines, in walk order), `<root>.links`
 * (one line per hard-linked file: its `dev:ino` and path, as a JSON array) and
 * `<root>.json` (the rest, with the sizes of the other two). A new cache first removes the
 * old `.json`, then puts the new files in place (fsync, rename), then its `.json`: after a
 * kill anywhere in between there is no cache, or one whose files do not have the sizes it
 * names, and the next quick verify walks in full. Only a quick verify that has changes to
 * look at reads the links file; memory holds the links only then.
 */
import { createHash } from 'node:crypto';
import * as fsSync from 'node:fs';
import * as path from 'node:path';
import type { RootName } from '../../proto';
import { LineReader } from '../fs/line-reader';

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
  /** Size of the links file, and the hard-linked paths in it. */
  linkBytes: number;
  links: number;
}

/** The cache's files of a root. */
function filesOf(stateDir: string, root: string): { dir: string; lines: string; links: string; state: string } {
  const dir = path.join(stateDir, DIR);
  return { dir, lines: path.join(dir, `${root}.lines`), links: path.join(dir, `${root}.links`), state: path.join(dir, `${root}.json`) };
}

/** What a root's lines depend on beside the tree: the owner names, the owner rule, where the root is. */
export function cacheFingerprint(identityDigest: string | undefined, owner: { user: string; group: string } | undefined, rootRel: string, runtimeParents: Iterable<string>): string {
  return createHash('sha256')
    .update(JSON.stringify([identityDigest ?? '', owner ?? null, rootRel, [...runtimeParents].sort()]))
    .digest('hex')
    .slice(0, 32);
}

/** The cached state of a root whose lines file is there with the size it names; null otherwise. */
export function readVerifyCache(stateDir: string, root: RootName): { state: VerifyCacheState; lines: string; links: string } | null {
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
      Number.isSafeInteger(s.linkBytes) &&
      Number.isSafeInteger(s.links);
    if (!ok || fsSync.statSync(f.lines).size !== s.bytes || fsSync.statSync(f.links).size !== s.linkBytes) return null;
    return { state: s, lines: f.lines, links: f.links };
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
  private readonly tmpLinks: string;
  private fd: number | null = null;
  private linksFd: number | null = null;
  private linkBuf: string[] = [];
  private readonly hash = createHash('sha256');
  private bytes = 0;
  private linkBytes = 0;
  private links = 0;

  constructor(stateDir: string, root: RootName) {
    this.f = filesOf(stateDir, root);
    this.tmp = `${this.f.lines}.tmp-${process.pid}`;
    this.tmpLinks = `${this.f.links}.tmp-${process.pid}`;
  }

  /** A hard-linked file: its `dev:ino` and path (in walk order, or any order). */
  link(key: string, p: string): void {
    this.linkBuf.push(JSON.stringify([key, p]));
    this.links++;
    if (this.linkBuf.length >= 1024) this.flushLinks();
  }

  private flushLinks(): void {
    if (this.linksFd === null) {
      fsSync.mkdirSync(this.f.dir, { recursive: true, mode: 0o700 });
      this.linksFd = fsSync.openSync(this.tmpLinks, 'w', 0o600);
    }
    if (!this.linkBuf.length) return;
    const text = Buffer.from(this.linkBuf.join('\n') + '\n', 'utf8');
    this.linkBuf = [];
    for (let off = 0; off < text.length; ) off += fsSync.writeSync(this.linksFd, text, off);
    this.linkBytes += text.length;
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
  commit(state: Omit<VerifyCacheState, 'bytes' | 'v' | 'linkBytes' | 'links'>): void {
    if (this.fd === null) this.write(Buffer.alloc(0));
    this.flushLinks();
    for (const fd of [this.fd!, this.linksFd!]) {
      fsSync.fsyncSync(fd);
      fsSync.closeSync(fd);
    }
    this.fd = null;
    this.linksFd = null;
    fsSync.rmSync(this.f.state, { force: true });
    fsSync.renameSync(this.tmp, this.f.lines);
    fsSync.renameSync(this.tmpLinks, this.f.links);
    writeState(this.f, { v: 1, ...state, bytes: this.bytes, linkBytes: this.linkBytes, links: this.links });
    const d = fsSync.openSync(this.f.dir, 'r');
    try {
      fsSync.fsyncSync(d);
    } finally {
      fsSync.closeSync(d);
    }
  }

  /** Drop what was written (a digest that stopped). */
  close(): void {
    for (const [fd, file] of [
      [this.fd, this.tmp],
      [this.linksFd, this.tmpLinks],
    ] as const) {
      if (fd === null) continue;
      fsSync.closeSync(fd);
      fsSync.rmSync(file, { force: true });
    }
    this.fd = null;
    this.linksFd = null;
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

/**
 * The hard-link groups of a cache's links file, by `dev:ino`, each with its paths; null when
 * it holds more than `max` paths (a quick verify then walks in full) or a line is no link.
 */
export function readLinks(file: string, max: number): Map<string, string[]> | null {
  const groups = new Map<string, string[]>();
  let n = 0;
  const lines = new LineReader(file);
  try {
    for (let line = lines.next(); line !== null; line = lines.next()) {
      if (!line) continue;
      if (++n > max) return null;
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        return null;
      }
      if (!Array.isArray(v) || typeof v[0] !== 'string' || typeof v[1] !== 'string') return null;
      const [key, p] = v as [string, string];
      const g = groups.get(key);
      if (g) g.push(p);
      else groups.set(key, [p]);
    }
  } finally {
    lines.close();
  }
  return groups;
}
