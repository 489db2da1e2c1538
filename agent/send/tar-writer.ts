/**
 * The sender's Fetch answer (the counterpart of fetch-reader.ts): the content of the
 * regular files the receiver asks for, as a pax tar stream in the order asked, cut into
 * chunks by chunker.ts. Each file is read once, hashed as it is read, and followed by its
 * SHA-256 in the pax header of the next entry (wire-format.ts).
 *
 * Live (initial) passes tolerate files that vanish or change while read: they are reported
 * and left for the final pass. Strict (final) passes fail, naming the path.
 */
import * as crypto from 'node:crypto';
import { constants as C, type BigIntStats } from 'node:fs';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as tar from 'tar-stream';
import { CHUNK_MAX_BYTES, CmError, type Phase } from '../../proto';
import { chunks, IdleGate } from './chunker';
import { nameOr, type Identity } from '../fs/identity';
import { strictChange } from './listing';
import { checkWirePath, rootOf, type ResolvedRoot } from '../fs/paths';
import { CONTROL_NAME, PAX_CONTROL, PAX_SHA256, PAX_SHA256_PATH, PAX_SKIPPED, PAX_TORN, paxTime, type FetchWant } from '../wire/wire-format';

export type { FetchWant } from '../wire/wire-format';

type HeaderArg = Partial<tar.Header> & { name: string; pax?: Record<string, string> };

/** One Fetch answer. */
export interface FetchOptions {
  roots: ResolvedRoot[];
  phase: Phase;
  identity: Identity;
  /** The receiver's wants, in the order it will read the answers. */
  wants: AsyncIterable<FetchWant>;
  signal?: AbortSignal;
  onWarning?: (msg: string, fields: Record<string, unknown>) => void;
  /**
   * A file went out whole and unchanged while it was read (its ctime too): its digest and
   * the stat it was read under, for the digest records of a quick verify.
   */
  onDigest?: (rel: string, st: BigIntStats, sha256: string) => void;
}

/** Files up to this size are read whole before their header goes out. */
const SMALL_FILE = 1024 * 1024;
const READ_BLOCK = 1024 * 1024;
/** How far reading may run ahead of the consumer of the stream, in bytes. */
const AHEAD_LIMIT = 4 * CHUNK_MAX_BYTES;
const LIVE_RETRIES = 3;

type SendResult = 'sent' | 'vanished' | 'changed' | 'torn';

/**
 * The content of the wanted files as a tar stream, in chunks ready to send. For each want
 * exactly one entry goes out, in order: the file, or a control entry `skipped` (live pass:
 * it vanished or kept changing). A file that changed while its data went out is followed
 * by `torn` instead of its digest. When no want is at hand, a `digest` control entry
 * carries the last file's digest; `end` closes the stream. Errors are thrown from the
 * iterator.
 */
export async function* fetchTar(opts: FetchOptions): AsyncGenerator<Buffer> {
  const w = new TarWriter(opts);
  const producer = w.run();
  let end;
  try {
    end = yield* chunks(w.pack, (n) => w.taken(n), w.gate);
  } finally {
    if (!w.done) w.stop();
  }
  await producer;
  if (w.error) throw w.error;
  if (end.error) throw end.error;
  if (end.rest) yield end.rest;
}

/** Writes the answer's entries into a tar pack, no further ahead of its reader than AHEAD_LIMIT. */
class TarWriter {
  readonly pack = tar.pack();
  /** Open while the writer waits for the receiver's next want. */
  readonly gate = new IdleGate();
  done = false;
  error: unknown = null;
  private produced = 0;
  private consumed = 0;
  private wake: (() => void) | null = null;
  private readonly strict: boolean;
  /** The pax keys of the last file's digest, for the next entry's header. */
  private prev: Record<string, string> = {};
  private readonly dirsChecked = new Set<string>();

  constructor(private readonly opts: FetchOptions) {
    this.strict = opts.phase === 'final';
  }

  /** The reader took `n` bytes of the pack's output. */
  taken(n: number): void {
    this.consumed += n;
    const w = this.wake;
    if (w) {
      this.wake = null;
      w();
    }
  }

  /** The reader went away: stop reading files. */
  stop(): void {
    this.pack.destroy();
    const w = this.wake;
    if (w) w();
  }

  /** Answer every want, then the end entry; never rejects (the failure is in `error`). */
  async run(): Promise<void> {
    try {
      await this.answer();
    } catch (err) {
      this.error = err;
      this.pack.destroy(err instanceof Error ? err : new Error(String(err)));
    }
    this.done = true;
  }

  private async answer(): Promise<void> {
    const it = this.opts.wants[Symbol.asyncIterator]();
    for (;;) {
      // The last file's digest rides on the next entry. When no want is at hand, send it
      // on its own and let the chunker send what it holds: the receiver may be waiting for
      // exactly these bytes before it asks for more.
      const next = it.next();
      let ready = false;
      void next.then(() => (ready = true), () => (ready = true));
      await new Promise<void>((r) => setImmediate(r));
      if (!ready) {
        if (Object.keys(this.prev).length) await this.control('digest');
        this.gate.set(true);
      }
      const n = await next;
      this.gate.set(false);
      if (n.done) break;
      await this.waitForConsumer();
      await this.sendWanted(n.value);
    }
    await this.control('end');
    this.pack.finalize();
  }

  /** One want: the file, or what a live pass says instead. */
  private async sendWanted(w: FetchWant): Promise<void> {
    const rel = await this.checkWant(w);
    const abs = rootAbs(this.opts.roots, rel);
    for (let attempt = 0; ; ) {
      const r = await this.sendFileOnce(rel, abs, w);
      if (r === 'sent') return;
      if (r === 'vanished') return this.skipped(rel, 'vanished');
      if (r === 'torn') {
        // Its data went out already; the next header carries "torn" and the receiver drops it.
        if (this.strict) throw strictChange(rel, 'changed');
        this.opts.onWarning?.('source file changed while read during a live pass; left for the final pass', { path: '/' + rel });
        return;
      }
      if (++attempt >= LIVE_RETRIES || this.strict) return this.skipped(rel, 'changed');
    }
  }

  private async waitForConsumer(): Promise<void> {
    const { signal } = this.opts;
    while (this.produced - this.consumed > AHEAD_LIMIT && !signal?.aborted && !this.done) {
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    if (signal?.aborted) throw new CmError('transfer.cancelled', 'the receiver went away');
  }

  private add(header: HeaderArg, body?: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.produced += 1536 + (body?.length ?? 0);
      this.pack.entry(header, body ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    });
  }

  private takePrev(): Record<string, string> {
    const p = this.prev;
    this.prev = {};
    return p;
  }

  private control(kind: string, extra: Record<string, string> = {}): Promise<void> {
    return this.add({ name: CONTROL_NAME, type: 'file', size: 0, mode: 0o600, mtime: new Date(0), pax: { ...this.takePrev(), [PAX_CONTROL]: kind, ...extra } });
  }

  private async skipped(rel: string, why: string): Promise<void> {
    if (this.strict) throw strictChange(rel, why);
    this.opts.onWarning?.(`source file ${why} during a live pass; left for the final pass`, { path: '/' + rel });
    await this.control('skipped', { [PAX_SKIPPED]: rel });
  }

  /** Refuse a want outside the roots, or under a parent that is not a real directory. */
  private async checkWant(w: FetchWant): Promise<string> {
    const rel = checkWirePath(w.path, 'wanted path');
    if (!rootOf(this.opts.roots, rel)) {
      throw new CmError('agent.path_outside_root', `refused to send /${rel}: outside the roots of this pass`, {
        hint: 'an agent serves only its allowlisted roots',
      });
    }
    const dir = path.posix.dirname(rel);
    if (!this.dirsChecked.has(dir) && dir !== '.') {
      const abs = path.join(rootAbs(this.opts.roots, rel), '..');
      const real = realpathOrNull(abs);
      if (real !== null && real !== path.resolve(abs)) {
        throw new CmError('agent.path_outside_root', `refused to send /${rel}: a directory on its way is a symlink`, {
          hint: 'cmmigrate never follows symlinks on the source',
        });
      }
      if (this.dirsChecked.size > 1024) this.dirsChecked.clear();
      this.dirsChecked.add(dir);
    }
    return rel;
  }

  private header(rel: string, st: BigIntStats): HeaderArg {
    const uid = Number(st.uid);
    const gid = Number(st.gid);
    return {
      name: rel,
      type: 'file',
      mode: Number(st.mode & 0o7777n),
      mtime: new Date(Number(st.mtimeMs)),
      size: Number(st.size),
      pax: {
        ...this.takePrev(),
        uname: nameOr(uid, this.opts.identity.userName(uid)),
        gname: nameOr(gid, this.opts.identity.groupName(gid)),
        mtime: paxTime(st.mtimeNs),
      },
    };
  }

  /**
   * Read and send one file: 'sent', or what happened to it on a live relay. Small files
   * are read with synchronous calls: from the page cache that costs microseconds, where
   * each asynchronous call costs a trip through the thread pool.
   */
  private async sendFileOnce(rel: string, abs: string, w: FetchWant): Promise<SendResult> {
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
    let settled = false;
    try {
      st = fsSync.fstatSync(fd, { bigint: true });
      if (!st.isFile()) return 'vanished';
      if (this.strict && (Number(st.size) !== w.size || st.mtimeNs !== w.mtimeNs)) throw strictChange(rel, 'changed since it was listed');
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
        else {
          body = buf.subarray(0, n);
          settled = after.ctimeNs === st.ctimeNs;
        }
      }
    } finally {
      fsSync.closeSync(fd);
    }
    if (changed) return 'changed';
    if (body) {
      const sha256 = crypto.createHash('sha256').update(body).digest('hex');
      await this.add(this.header(rel, st), body);
      this.prev = { [PAX_SHA256]: sha256, [PAX_SHA256_PATH]: rel };
      if (settled) this.opts.onDigest?.(rel, st, sha256);
      return 'sent';
    }
    return this.sendLarge(rel, abs, st);
  }

  /** A large file: streamed in blocks, asynchronously. */
  private async sendLarge(rel: string, abs: string, st: BigIntStats): Promise<SendResult> {
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
      const { sha256, complete } = await this.streamLarge(this.header(rel, st), fh, Number(st.size));
      const after = await fh.stat({ bigint: true });
      if (!complete || after.size !== st.size || after.mtimeNs !== st.mtimeNs) {
        this.prev = { [PAX_TORN]: '1', [PAX_SHA256_PATH]: rel };
        return 'torn';
      }
      this.prev = { [PAX_SHA256]: sha256, [PAX_SHA256_PATH]: rel };
      if (after.ctimeNs === st.ctimeNs) this.opts.onDigest?.(rel, st, sha256);
      return 'sent';
    } finally {
      await fh.close();
    }
  }

  /** A large file's data under its header, in blocks, padded if it shrank. */
  private async streamLarge(header: HeaderArg, fd: fs.FileHandle, size: number): Promise<{ sha256: string; complete: boolean }> {
    const hash = crypto.createHash('sha256');
    let complete = true;
    let streamError: Error | null = null;
    await new Promise<void>((resolve, reject) => {
      const entry = this.pack.entry(header, (err) => (err ? reject(err) : resolve()));
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
          this.produced += n;
          if (!entry.write(buf)) await new Promise<void>((r) => entry.once('drain', () => r()));
          await this.waitForConsumer();
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
}

/** realpath(3) on the main thread: a few microseconds on cached directories, where the promise API costs a pool trip per directory. */
function realpathOrNull(p: string): string | null {
  try {
    return fsSync.realpathSync.native(p);
  } catch {
    return null;
  }
}

function rootAbs(roots: ResolvedRoot[], rel: string): string {
  const root = rootOf(roots, rel)!;
  return path.join(root.abs, rel.slice(root.rel.length));
}
