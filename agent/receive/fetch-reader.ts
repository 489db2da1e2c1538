/**
 * The receiving end of a Fetch call (the counterpart of tar-writer.ts): it sends the
 * receiver's wants in batches, reads the answering tar stream in order, writes each file
 * to a hidden temp file and renames it into place once its size and SHA-256 (which come
 * with the next entry) match. A file the sender skipped or saw torn never lands.
 */
import * as crypto from 'node:crypto';
import { constants as C } from 'node:fs';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as tar from 'tar-stream';
import { CmError, RERUN } from '../../proto';
import { diskFull, renameIntoPlace, tmpName } from '../fs/landing';
import { utimesSeconds } from '../fs/walk';
import { CONTROL_NAME, PAX_CONTROL, PAX_SHA256, PAX_SHA256_PATH, PAX_SKIPPED, PAX_TORN, parsePaxTime, wireError, type FetchWant } from '../wire/wire-format';

/** The wire side of a Fetch call, as the receiver sees it. */
export interface FetchChannel {
  send(wants: FetchWant[]): void;
  end(): void;
  /** The tar stream of the answers. */
  data: AsyncIterable<Buffer>;
}

/** What the reader tells the pass it serves. */
export interface FetchReaderHooks {
  /** Data arrived: the pass is not stalled. */
  onActivity(): void;
  /** The reader is about to wait for data: put what was applied on record first. */
  beforeWait(): void;
  /** A file landed with a matching digest: its stat in place, for the digest records of a quick verify. */
  onLanded?(rel: string, st: fsSync.BigIntStats, sha256: string): void;
}

/** A received file: what landed. */
export interface Received {
  size: number;
  mtimeNs: bigint;
  ino: string;
}

/** Owner ids for the names a file's header carries. */
export type OwnerOf = (user: string, group: string) => { uid: number; gid: number };

type TarEntry = AsyncIterable<Buffer> & { header: tar.Header };

const WANT_BATCH = 256;

export class FetchReader {
  wireBytes = 0;
  private readonly entries: AsyncIterator<TarEntry>;
  private peeked: TarEntry | null = null;
  /** The file written to its temp name, waiting for its digest; `landed` records it once in place. */
  private pending: { rel: string; abs: string; tmp: string; sha256: string; landed?: () => void } | null = null;
  /** A failure after the last file landed, thrown by the next call so that its record comes first. */
  private deferred: unknown = null;
  private currentTmp: string | null = null;
  private batch: FetchWant[] = [];
  private ended = false;
  private feedError: unknown = null;
  private lastTorn: string | null = null;

  private readonly extract: ReturnType<typeof tar.extract>;

  constructor(
    private readonly ch: FetchChannel,
    private readonly hooks: FetchReaderHooks,
  ) {
    const extract = tar.extract();
    this.extract = extract;
    const self = this;
    // A header it cannot parse destroys the entry being read too, which then reports only
    // "Stream was destroyed": keep the reason.
    extract.on('error', (err: unknown) => {
      if (!self.feedError) self.feedError = translateTarError(err);
    });
    (async () => {
      for await (const data of ch.data) {
        self.wireBytes += data.length;
        self.hooks.onActivity();
        if (!extract.write(data)) await new Promise<void>((res) => extract.once('drain', () => res()));
      }
      (extract as unknown as { end(): void }).end();
    })().catch((err: unknown) => {
      self.feedError = err;
      extract.destroy(err instanceof Error ? err : new Error(String(err)));
    });
    this.entries = (extract as unknown as AsyncIterable<TarEntry>)[Symbol.asyncIterator]();
  }

  /** Stop: whatever waits for the stream gets `err`. */
  abort(err: unknown): void {
    if (!this.feedError) this.feedError = err;
    this.extract.destroy(err instanceof Error ? err : new Error(String(err)));
  }

  /** Ask for a file; wants go out in batches, and before the reader waits for data. */
  want(w: FetchWant): void {
    this.batch.push(w);
    if (this.batch.length >= WANT_BATCH) this.flush();
  }

  private flush(): void {
    if (!this.batch.length) return;
    this.ch.send(this.batch);
    this.batch = [];
  }

  /** The next entry of the answer stream, settling the pending file with its header. */
  private async next(): Promise<TarEntry> {
    // The file settled by the last entry is in place now; its record must be on disk before
    // this entry's data is awaited, or a kill meanwhile leaves a file no pass owns.
    this.hooks.beforeWait();
    if (this.peeked) {
      const e = this.peeked;
      this.peeked = null;
      return e;
    }
    this.flush();
    let n: IteratorResult<TarEntry>;
    try {
      n = await this.entries.next();
    } catch (err) {
      throw this.feedError ?? translateTarError(err);
    }
    if (n.done) throw this.feedError ?? wireError('the sender\'s file stream ended early');
    await this.settle((n.value.header.pax ?? {}) as Record<string, string>);
    return n.value;
  }

  private async settle(pax: Record<string, string>): Promise<void> {
    const p = this.pending;
    const digest = pax[PAX_SHA256];
    const torn = pax[PAX_TORN] === '1';
    if (!p) {
      if (digest !== undefined || torn) throw wireError('a digest for no file');
      return;
    }
    if (pax[PAX_SHA256_PATH] !== p.rel) throw wireError(`/${p.rel}: its digest did not follow it`);
    this.pending = null;
    if (torn) {
      await fs.rm(p.tmp, { force: true });
      this.lastTorn = p.rel;
      return;
    }
    if (digest !== p.sha256) {
      await fs.rm(p.tmp, { force: true });
      throw new CmError('transfer.digest_mismatch', `/${p.rel}: SHA-256 of the received data does not match the sender's; the file was not written`, {
        hint: `the data was damaged on the way or the sender is faulty; run ${RERUN}, and check the network and both hosts' disks if it recurs`,
      });
    }
    await renameIntoPlace(p.tmp, p.abs, p.rel);
    // Its record at once, with no turn of the event loop since the rename: a kill or a
    // cancelled call between the two would leave a file that no pass owns.
    p.landed?.();
    if (this.hooks.onLanded) this.hooks.onLanded(p.rel, fsSync.lstatSync(p.abs, { bigint: true }), p.sha256);
  }

  /**
   * Receive the file just asked for: its content into place, or null when the sender
   * skipped it (it vanished or kept changing during a live pass).
   */
  async receive(rel: string, abs: string, owner: OwnerOf, record?: (r: Received) => void): Promise<Received | null> {
    if (this.deferred) throw this.deferred;
    try {
      return await this.receiveOne(rel, abs, owner, record);
    } catch (err) {
      // Name the file the stream broke on.
      if (err instanceof CmError && err.code === 'wire.protocol' && !err.message.includes(`/${rel}`)) {
        throw new CmError(err.code, `while receiving /${rel}: ${err.message}`, { hint: err.hint, cause: err });
      }
      throw err;
    }
  }

  private async receiveOne(rel: string, abs: string, owner: OwnerOf, record?: (r: Received) => void): Promise<Received | null> {
    let e = await this.next();
    const ctl = (x: TarEntry): string | undefined => ((x.header.pax ?? {}) as Record<string, string>)[PAX_CONTROL];
    while (ctl(e) === 'digest') {
      await this.drain(e);
      e = await this.next();
    }
    const pax = (e.header.pax ?? {}) as Record<string, string>;
    if (ctl(e) === 'skipped') {
      await this.drain(e);
      if (e.header.name !== CONTROL_NAME || pax[PAX_SKIPPED] !== rel) throw wireError(`expected /${rel}, the sender skipped ${JSON.stringify(pax[PAX_SKIPPED])}`);
      return null;
    }
    if (ctl(e) !== undefined) throw wireError(`expected /${rel}, got a ${ctl(e)} entry`);
    const name = e.header.name.replace(/\/$/, '');
    if (name !== rel) throw wireError(`expected /${rel}, the sender sent ${JSON.stringify(name)}`);
    if (e.header.type !== 'file') {
      if (e.header.type === 'character-device' || e.header.type === 'block-device') {
        throw new CmError('wire.device_node', `refused /${rel}: device nodes are never written`, { hint: 'the sender must not send device nodes; nothing was written for this entry' });
      }
      throw wireError(`/${rel}: expected a file, got ${String(e.header.type)}`);
    }
    const mtimeNs = parsePaxTime(pax.mtime ?? '');
    if (mtimeNs === undefined) throw wireError(`/${rel}: missing or bad mtime`);
    const { uid, gid } = owner(pax.uname ?? '', pax.gname ?? '');
    const tmp = tmpName(abs);
    this.currentTmp = tmp;
    // Synchronous calls: a few microseconds each on the page cache, where a trip through
    // the thread pool costs tens; the socket buffers meanwhile.
    const fd = fsSync.openSync(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
    const hash = crypto.createHash('sha256');
    let size = 0;
    let ino = '';
    try {
      for await (const data of e) {
        hash.update(data);
        size += data.length;
        let off = 0;
        while (off < data.length) off += fsSync.writeSync(fd, data, off, data.length - off);
      }
      if (size !== e.header.size) throw wireError(`/${rel}: size header says ${e.header.size}, got ${size} bytes`);
      fsSync.fchownSync(fd, uid, gid);
      fsSync.fchmodSync(fd, e.header.mode & 0o7777);
      const t = utimesSeconds(mtimeNs);
      fsSync.futimesSync(fd, t, t);
      ino = String(fsSync.fstatSync(fd, { bigint: true }).ino);
    } catch (err) {
      fsSync.closeSync(fd);
      await fs.rm(tmp, { force: true });
      this.currentTmp = null;
      // The stream was destroyed under us: the reason is the error that destroyed it.
      throw diskFull(this.feedError ?? translateTarError(err), '/' + rel);
    }
    fsSync.closeSync(fd);
    this.currentTmp = null;
    this.pending = { rel, abs, tmp, sha256: hash.digest('hex'), landed: record && (() => record({ size, mtimeNs, ino })) };
    // Its digest comes with the next entry: the next file, or a digest the sender sends
    // when it has nothing more to send.
    this.peeked = await this.next();
    if (ctl(this.peeked) === 'digest') {
      const landed = this.lastTorn !== rel;
      try {
        await this.drain(this.peeked);
      } catch (err) {
        // The file is in place already: its record must be written before anything fails,
        // or the next pass takes it for one cmmigrate did not write. The next call fails.
        if (!landed) throw err;
        this.deferred = err;
      }
      this.peeked = null;
    }
    if (this.lastTorn === rel) return null; // it changed while read: dropped, left for the final pass
    return { size, mtimeNs, ino };
  }

  /** Read an entry to its end; a stream destroyed meanwhile reports why. */
  private async drain(entry: TarEntry): Promise<void> {
    try {
      await drain(entry);
    } catch (err) {
      throw this.feedError ?? translateTarError(err);
    }
  }

  /** After the last want: the end of the stream. */
  async finish(): Promise<void> {
    if (this.deferred) throw this.deferred;
    this.flush();
    this.ch.end();
    this.ended = true;
    let e = await this.next();
    while (((e.header.pax ?? {}) as Record<string, string>)[PAX_CONTROL] === 'digest') {
      await this.drain(e);
      e = await this.next();
    }
    if (((e.header.pax ?? {}) as Record<string, string>)[PAX_CONTROL] !== 'end') throw wireError(`unexpected entry ${JSON.stringify(e.header.name)} after the last file`);
    await this.drain(e);
    const n = await this.entries.next().catch((err) => {
      throw this.feedError ?? translateTarError(err);
    });
    if (!n.done) throw wireError('entries after the end of the stream');
    if (this.feedError) throw this.feedError;
  }

  /** After a failure: remove the temp files of this call and end it. */
  async cleanup(): Promise<void> {
    const tmps = [this.pending?.tmp, this.currentTmp].filter((t): t is string => !!t);
    this.pending = null;
    this.currentTmp = null;
    await Promise.all(tmps.map((t) => fs.rm(t, { force: true })));
    if (!this.ended) {
      this.ended = true;
      try {
        this.ch.end();
      } catch {
        /* already closed */
      }
    }
  }
}

function translateTarError(err: unknown): unknown {
  if (err instanceof CmError) return err;
  const msg = (err as Error)?.message ?? String(err);
  if (/Unexpected end of data|Invalid tar header|size mismatch|unknown format|Invalid|Header exceeds max size/i.test(msg)) return wireError(`bad tar stream: ${msg}`, err);
  return err;
}

async function drain(entry: TarEntry): Promise<void> {
  for await (const _ of entry) void _;
}
