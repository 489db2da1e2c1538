/**
 * The sending side of a pass, in two calls the receiver drives:
 *
 * - `announceAndList`: the roots' entries in walk order, metadata only, after an announcement of
 *   every root (presence, totals, the owner names it uses) so that the receiver can refuse
 *   a pass before it writes anything. Hard links name the first listed path of their inode.
 * - `fetchTar`: the content of the regular files the receiver asks for, as a pax tar
 *   stream in the order asked, cut into chunks of 256 KiB to 1 MiB. Each file is read once,
 *   hashed as it is read, and followed by its SHA-256 (in the pax header of the next entry).
 *
 * Live (initial) passes tolerate files that vanish or change while read: they are reported
 * and left for the final pass. Strict (final) passes fail, naming the path. Sockets are
 * skipped and counted; device nodes stop the pass before anything is sent.
 */
import * as crypto from 'node:crypto';
import { constants as C, type BigIntStats } from 'node:fs';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as tar from 'tar-stream';
import { CHUNK_MAX_BYTES, CHUNK_MIN_BYTES, CmError, type Phase } from '../proto';
import { nameOr, type Identity } from './identity';
import { checkWirePath, rootOf, type ResolvedRoot } from './paths';
import { paxTime, walkRoot, type WalkEntry } from './walk';
import { CONTROL_NAME, PAX_CONTROL, PAX_SHA256, PAX_SHA256_PATH, PAX_SKIPPED, PAX_TORN } from './wire-format';

type HeaderArg = Partial<tar.Header> & { name: string; pax?: Record<string, string> };

export interface RootAnnouncement {
  name: string;
  rel: string;
  present: boolean;
  files: number;
  bytes: number;
  entries: number;
  users: string[];
  groups: string[];
}

export interface ListedEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'fifo';
  size: number;
  mtime_ns: string;
  mode: number;
  user: string;
  group: string;
  link: string;
  ino: string;
  leader: string;
  nlink: number;
}

export interface ListEnd {
  sockets_skipped: number;
  vanished: number;
  vanished_paths: string[];
}

const REPORT_LIMIT = 1000;

function strictChange(rel: string, what: string): CmError {
  return new CmError('transfer.source_changed', `/${rel} ${what} while the final pass read it`, {
    hint: 'mail must be stopped on the old host during the final pass (step 3: cmdeploy run --disable-mail); stop what still writes there, then run the same command again',
  });
}

function deviceNode(rel: string): CmError {
  return new CmError('transfer.device_node', `/${rel} is a device node; cmmigrate never copies device nodes`, {
    hint: 'remove it from the relay\'s state on the old host, then run the same command again',
  });
}

/** The roots a final pass cannot do without. */
export function checkRequiredRoots(phase: Phase, roots: ResolvedRoot[], announced: RootAnnouncement[]): void {
  const missing = announced.filter((a) => !a.present && !roots.find((r) => r.name === a.name)!.optional);
  if (missing.length > 0 && phase === 'final') {
    throw new CmError('transfer.source_root_missing', `the source has no ${missing.map((m) => '/' + m.rel).join(', ')}`, {
      hint: 'check the agent\'s --root on the old host; a relay deployed by cmdeploy has all of these',
    });
  }
}

/** Entries that the announcing walk keeps for the listing, at most: up to this many, one walk does. */
const LIST_AHEAD = 32_768;

/** Turns one root's walk into listed entries: hard-link leaders, sockets, vanished entries. */
class RootLister {
  readonly end: ListEnd = { sockets_skipped: 0, vanished: 0, vanished_paths: [] };
  private readonly leaders = new Map<string, { rel: string; left: bigint }>();

  constructor(
    private readonly strict: boolean,
    private readonly identity: Identity,
    private readonly onWarning?: (msg: string, fields: Record<string, unknown>) => void,
  ) {}

  readonly vanished = (rel: string): void => {
    if (this.strict) throw strictChange(rel, 'vanished');
    this.end.vanished++;
    if (this.end.vanished_paths.length < REPORT_LIMIT) this.end.vanished_paths.push('/' + rel);
    this.onWarning?.('source entry vanished during a live pass; the final pass settles it', { path: '/' + rel });
  };

  /** The listed form of a walked entry, or null (a socket, or gone meanwhile). */
  async entry(e: WalkEntry): Promise<ListedEntry | null> {
    if (e.type === 'socket') {
      this.end.sockets_skipped++;
      return null;
    }
    if (e.type === 'device') throw deviceNode(e.rel);
    const uid = Number(e.st.uid);
    const gid = Number(e.st.gid);
    const ino = `${e.st.dev}:${e.st.ino}`;
    let leader = '';
    if (e.type === 'file' && e.st.nlink > 1n) {
      const l = this.leaders.get(ino);
      if (l) {
        leader = l.rel;
        if (--l.left <= 0n) this.leaders.delete(ino);
      } else this.leaders.set(ino, { rel: e.rel, left: e.st.nlink - 1n });
    }
    let link = '';
    if (e.type === 'symlink') {
      try {
        link = fsSync.readlinkSync(e.abs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          this.vanished(e.rel);
          return null;
        }
        throw err;
      }
    }
    return {
      path: e.rel,
      type: e.type,
      size: e.type === 'file' ? Number(e.st.size) : 0,
      mtime_ns: String(e.st.mtimeNs),
      mode: Number(e.st.mode & 0o7777n),
      user: nameOr(uid, this.identity.userName(uid)),
      group: nameOr(gid, this.identity.groupName(gid)),
      link,
      ino,
      leader,
      nlink: Number(e.st.nlink),
    };
  }
}

export interface Listing {
  /** Every root: presence, totals, and the owner names it uses. */
  announced: RootAnnouncement[];
  /** Every entry of the roots in walk order, each root's entries followed by its end record. */
  entries: AsyncGenerator<ListedEntry | ListEnd>;
}

/**
 * Announce the roots, then list them. The walk that counts for the announcement keeps the
 * first LIST_AHEAD entries it lists, so a tree of that size is walked once; beyond it the
 * listing walks again from where the kept entries stop. Sockets are left out and counted;
 * a device node stops the pass.
 */
export async function announceAndList(
  roots: ResolvedRoot[],
  phase: Phase,
  identity: Identity,
  onWarning?: (msg: string, fields: Record<string, unknown>) => void,
  keep = LIST_AHEAD,
): Promise<Listing> {
  const strict = phase === 'final';
  const announced: RootAnnouncement[] = [];
  let kept: (ListedEntry | ListEnd | null)[] = [];
  let resume: { index: number; after: string | undefined; lister: RootLister } | null = null;
  for (const [index, root] of roots.entries()) {
    const users = new Set<string>();
    const groups = new Set<string>();
    const seen = new Set<string>();
    let files = 0;
    let bytes = 0;
    let entries = 0;
    let present = false;
    const keeping = resume === null;
    const lister = new RootLister(strict, identity, onWarning);
    let lastKept: string | undefined;
    // Vanished entries count where they are listed: here while keeping, else in the second walk.
    const onVanished = (rel: string): void => {
      if (keeping && resume === null) lister.vanished(rel);
    };
    for await (const e of walkRoot(root, { onVanished })) {
      present = true;
      if (e.type === 'device') throw deviceNode(e.rel);
      if (keeping && resume === null) {
        if (kept.length < keep) {
          const listed = await lister.entry(e);
          if (listed) kept.push(listed);
          lastKept = e.rel;
        } else resume = { index, after: lastKept, lister };
      }
      if (e.type === 'socket') continue;
      entries++;
      users.add(nameOr(Number(e.st.uid), identity.userName(Number(e.st.uid))));
      groups.add(nameOr(Number(e.st.gid), identity.groupName(Number(e.st.gid))));
      if (e.type === 'file') {
        if (e.st.nlink > 1n) {
          const key = `${e.st.dev}:${e.st.ino}`;
          if (seen.has(key)) continue;
          seen.add(key);
        }
        files++;
        bytes += Number(e.st.size);
      }
    }
    if (keeping && resume === null) kept.push(lister.end);
    announced.push({ name: root.name, rel: root.rel, present, files, bytes, entries, users: [...users].sort(), groups: [...groups].sort() });
  }
  const rest = resume as { index: number; after: string | undefined; lister: RootLister } | null;
  const entries = async function* (): AsyncGenerator<ListedEntry | ListEnd> {
    for (let i = 0; i < kept.length; i++) {
      const item = kept[i]!;
      kept[i] = null; // gone out: let it go
      yield item;
    }
    kept = [];
    if (!rest) return;
    for (let i = rest.index; i < roots.length; i++) {
      const resuming = i === rest.index;
      const lister = resuming ? rest.lister : new RootLister(strict, identity, onWarning);
      for await (const e of walkRoot(roots[i], { onVanished: lister.vanished, after: resuming ? rest.after : undefined })) {
        const listed = await lister.entry(e);
        if (listed) yield listed;
      }
      yield lister.end;
    }
  };
  return { announced, entries: entries() };
}

export interface FetchWant {
  path: string;
  size: number;
  mtimeNs: bigint;
}

export interface FetchOptions {
  roots: ResolvedRoot[];
  phase: Phase;
  identity: Identity;
  /** The receiver's wants, in the order it will read the answers. */
  wants: AsyncIterable<FetchWant>;
  signal?: AbortSignal;
  onWarning?: (msg: string, fields: Record<string, unknown>) => void;
}

/** Files up to this size are read whole before their header goes out. */
const SMALL_FILE = 1024 * 1024;
const READ_BLOCK = 1024 * 1024;
/** How far reading may run ahead of the consumer of the stream, in bytes. */
const AHEAD_LIMIT = 4 * CHUNK_MAX_BYTES;
const LIVE_RETRIES = 3;


/**
 * The content of the wanted files as a tar stream, in chunks ready to send. For each want
 * exactly one entry goes out, in order: the file, or a control entry `skipped` (live pass:
 * it vanished or kept changing). A file that changed while its data went out is followed
 * by `torn` instead of its digest. When no want is at hand, a `digest` control entry
 * carries the last file's digest; `end` closes the stream. Errors are thrown from the
 * iterator.
 */
export async function* fetchTar(opts: FetchOptions): AsyncGenerator<Buffer> {
  const pack = tar.pack();
  let produced = 0;
  let consumed = 0;
  let wake: (() => void) | null = null;
  let producerError: unknown = null;
  let producerDone = false;
  const strict = opts.phase === 'final';
  let prev: Record<string, string> = {};
  const dirsChecked = new Set<string>();

  const waitForConsumer = async (): Promise<void> => {
    while (produced - consumed > AHEAD_LIMIT && !opts.signal?.aborted && !producerDone) {
      await new Promise<void>((resolve) => (wake = resolve));
    }
    if (opts.signal?.aborted) throw new CmError('transfer.cancelled', 'the receiver went away');
  };
  const add = (header: HeaderArg, body?: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      produced += 1536 + (body?.length ?? 0);
      pack.entry(header, body ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    });
  // eslint-disable-next-line prefer-const
  let control: (kind: string, extra?: Record<string, string>) => Promise<void>;
  const skipped = async (rel: string, why: string): Promise<void> => {
    if (strict) throw strictChange(rel, why);
    opts.onWarning?.(`source file ${why} during a live pass; left for the final pass`, { path: '/' + rel });
    await control('skipped', { [PAX_SKIPPED]: rel });
  };
  const takePrev = (): Record<string, string> => {
    const p = prev;
    prev = {};
    return p;
  };

  /** Refuse a want outside the roots, or under a parent that is not a real directory. */
  const checkWant = async (w: FetchWant): Promise<string> => {
    const rel = checkWirePath(w.path, 'wanted path');
    if (!rootOf(opts.roots, rel)) {
      throw new CmError('agent.path_outside_root', `refused to send /${rel}: outside the roots of this pass`, {
        hint: 'an agent serves only its allowlisted roots',
      });
    }
    const dir = path.posix.dirname(rel);
    if (!dirsChecked.has(dir) && dir !== '.') {
      const abs = path.join(rootAbs(opts.roots, rel), '..');
      const real = await fs.realpath(abs).catch(() => null);
      if (real !== null && real !== path.resolve(abs)) {
        throw new CmError('agent.path_outside_root', `refused to send /${rel}: a directory on its way is a symlink`, {
          hint: 'cmmigrate never follows symlinks on the source',
        });
      }
      if (dirsChecked.size > 1024) dirsChecked.clear();
      dirsChecked.add(dir);
    }
    return rel;
  };

  control = (kind: string, extra: Record<string, string> = {}): Promise<void> =>
    add({ name: CONTROL_NAME, type: 'file', size: 0, mode: 0o600, mtime: new Date(0), pax: { ...takePrev(), [PAX_CONTROL]: kind, ...extra } });

  const producer = (async () => {
    const it = opts.wants[Symbol.asyncIterator]();
    for (;;) {
      // The last file's digest rides on the next entry. When no want is at hand, send it
      // on its own: the receiver may be waiting for it before it asks for more.
      const next = it.next();
      if (Object.keys(prev).length) {
        let ready = false;
        void next.then(() => (ready = true), () => (ready = true));
        await new Promise<void>((r) => setImmediate(r));
        if (!ready) await control('digest');
      }
      const n = await next;
      if (n.done) break;
      const w = n.value;
      await waitForConsumer();
      const rel = await checkWant(w);
      const abs = rootAbs(opts.roots, rel);
      let attempt = 0;
      for (;;) {
        const r = await sendFileOnce(rel, abs, w, strict);
        if (r === 'sent') break;
        if (r === 'vanished') {
          await skipped(rel, 'vanished');
          break;
        }
        if (r === 'torn') {
          // Its data went out already; the next header carries "torn" and the receiver drops it.
          if (strict) throw strictChange(rel, 'changed');
          opts.onWarning?.('source file changed while read during a live pass; left for the final pass', { path: '/' + rel });
          break;
        }
        if (++attempt >= LIVE_RETRIES || strict) {
          await skipped(rel, 'changed');
          break;
        }
      }
    }
    await control('end');
    pack.finalize();
  })().then(
    () => {
      producerDone = true;
    },
    (err) => {
      producerError = err;
      producerDone = true;
      pack.destroy(err instanceof Error ? err : new Error(String(err)));
    },
  );

  /** Read and send one file: 'sent', or what happened to it on a live relay. */
  /**
   * Read and send one file: 'sent', or what happened to it on a live relay. Small files
   * are read with synchronous calls: from the page cache that costs microseconds, where
   * each asynchronous call costs a trip through the thread pool.
   */
  async function sendFileOnce(rel: string, abs: string, w: FetchWant, strictPass: boolean): Promise<'sent' | 'vanished' | 'changed' | 'torn'> {
    let fd: number;
    try {
      fd = fsSync.openSync(abs, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENOTDIR') return 'vanished';
      throw new CmError('transfer.source_unreadable', `cannot read /${rel} on the old host: ${(err as Error).message}`, { cause: err });
    }
    let st: BigIntStats;
    let body: Buffer | null = null;
    let changed = false;
    try {
      st = fsSync.fstatSync(fd, { bigint: true });
      if (!st.isFile()) return 'vanished';
      if (strictPass && (Number(st.size) !== w.size || st.mtimeNs !== w.mtimeNs)) throw strictChange(rel, 'changed since it was listed');
      if (st.size <= BigInt(SMALL_FILE)) {
        const size = Number(st.size);
        const buf = Buffer.allocUnsafe(size + 1);
        let n = 0;
        while (n < buf.length) {
          const r = fsSync.readSync(fd, buf, n, buf.length - n, n);
          if (r === 0) break;
          n += r;
        }
        const after = fsSync.fstatSync(fd, { bigint: true });
        if (n !== size || after.size !== st.size || after.mtimeNs !== st.mtimeNs) changed = true;
        else body = buf.subarray(0, n);
      }
    } finally {
      fsSync.closeSync(fd);
    }
    if (changed) return 'changed';
    const header = (): HeaderArg => {
      const uid = Number(st.uid);
      const gid = Number(st.gid);
      return {
        name: rel,
        type: 'file',
        mode: Number(st.mode & 0o7777n),
        mtime: new Date(Number(st.mtimeMs)),
        size: Number(st.size),
        pax: {
          ...takePrev(),
          uname: nameOr(uid, opts.identity.userName(uid)),
          gname: nameOr(gid, opts.identity.groupName(gid)),
          mtime: paxTime(st.mtimeNs),
        },
      };
    };
    if (body) {
      const sha256 = crypto.createHash('sha256').update(body).digest('hex');
      await add(header(), body);
      prev = { [PAX_SHA256]: sha256, [PAX_SHA256_PATH]: rel };
      return 'sent';
    }
    // A large file: streamed in blocks, asynchronously.
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(abs, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENOTDIR') return 'vanished';
      throw err;
    }
    try {
      const now = await fh.stat({ bigint: true });
      if (!now.isFile() || now.ino !== st.ino || now.size !== st.size || now.mtimeNs !== st.mtimeNs) return 'changed';
      const { sha256, complete } = await streamLarge(header(), fh, Number(st.size));
      const after = await fh.stat({ bigint: true });
      if (!complete || after.size !== st.size || after.mtimeNs !== st.mtimeNs) {
        prev = { [PAX_TORN]: '1', [PAX_SHA256_PATH]: rel };
        return 'torn';
      }
      prev = { [PAX_SHA256]: sha256, [PAX_SHA256_PATH]: rel };
      return 'sent';
    } finally {
      await fh.close();
    }
  }

  /** A large file's data under its header, in blocks, padded if it shrank. */
  async function streamLarge(header: HeaderArg, fd: fs.FileHandle, size: number): Promise<{ sha256: string; complete: boolean }> {
    const hash = crypto.createHash('sha256');
    let complete = true;
    let streamError: Error | null = null;
    await new Promise<void>((resolve, reject) => {
      const entry = pack.entry(header, (err) => (err ? reject(err) : resolve()));
      (async () => {
        let off = 0;
        while (off < size) {
          const want = Math.min(READ_BLOCK, size - off);
          const buf = Buffer.allocUnsafe(want);
          let n = 0;
          if (complete) n = (await fd.read(buf, 0, want, off)).bytesRead;
          if (n < want) {
            complete = false;
            buf.fill(0, n);
            n = want;
          }
          hash.update(buf);
          off += n;
          produced += n;
          if (!entry.write(buf)) await new Promise<void>((r) => entry.once('drain', () => r()));
          await waitForConsumer();
        }
        (entry as unknown as { end(): void }).end();
      })().catch((err) => {
        streamError = err;
        entry.on('error', () => undefined); // reported through streamError, not as an uncaught event
        entry.destroy(err);
      });
    });
    if (streamError) throw streamError;
    return { sha256: hash.digest('hex'), complete };
  }

  // The pack's output, cut into chunks. A chunk goes out when it reaches the minimum size,
  // or when the pack has had nothing more for a moment: the receiver may be waiting for
  // exactly this data before it asks for more.
  const queue: (Buffer | null)[] = [];
  let notify: (() => void) | null = null;
  let packError: unknown = null;
  const wakeConsumer = (): void => {
    const n = notify;
    notify = null;
    n?.();
  };
  pack.on('data', (b: unknown) => {
    queue.push(b as Buffer);
    wakeConsumer();
  });
  pack.on('end', () => {
    queue.push(null);
    wakeConsumer();
  });
  pack.on('error', (err: unknown) => {
    packError = err;
    queue.push(null);
    wakeConsumer();
  });
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const take = (): Buffer => {
    const out = Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return out;
  };
  try {
    for (;;) {
      if (queue.length === 0) {
        const idle = await new Promise<boolean>((resolve) => {
          notify = () => resolve(false);
          if (pendingBytes > 0) setTimeout(() => resolve(true), FLUSH_IDLE_MS);
        });
        notify = null;
        if (idle && queue.length === 0) {
          yield take();
          continue;
        }
        if (queue.length === 0) continue;
      }
      const piece = queue.shift()!;
      if (piece === null) break;
      consumed += piece.length;
      const w = wake as (() => void) | null;
      if (w) {
        wake = null;
        w();
      }
      pending.push(piece);
      pendingBytes += piece.length;
      if (pendingBytes >= CHUNK_MIN_BYTES) {
        const all = take();
        for (let off = 0; off < all.length; off += CHUNK_MAX_BYTES) yield all.subarray(off, Math.min(all.length, off + CHUNK_MAX_BYTES));
      }
    }
  } finally {
    if (!producerDone) {
      pack.destroy();
      const w = wake as (() => void) | null;
      if (w) w();
    }
  }
  await producer;
  if (producerError) throw producerError;
  if (packError) throw packError;
  if (pendingBytes > 0) yield take();
}

/** How long a partial chunk waits for more data before it goes out anyway. */
const FLUSH_IDLE_MS = 2;

function rootAbs(roots: ResolvedRoot[], rel: string): string {
  const root = rootOf(roots, rel)!;
  return path.join(root.abs, rel.slice(root.rel.length));
}
