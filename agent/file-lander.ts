/**
 * Writes received files to their temp names off the event loop. On a disk, open() of a new
 * file, write() and the attribute calls can each block for a millisecond or more; made
 * synchronously they stopped the receiver's main thread (TLS, HTTP/2, tar parsing, hashing)
 * for a quarter of an initial copy. Here each file's calls go through libuv's thread pool,
 * several files at once, so that their waits overlap with each other and with the stream.
 * How much is in flight is bounded (files and bytes held), so memory stays bounded and the
 * sender is slowed down, not outrun.
 *
 * A file written here is complete under its temp name (owner, mode, times set, closed);
 * renaming it into place is the caller's, in order (fetch-reader.ts).
 */
import { constants as C } from 'node:fs';
import * as fsCb from 'node:fs';
import { promisify } from 'node:util';
import { utimesSeconds } from './walk';

const open = promisify(fsCb.open);
function write(fd: number, b: Buffer, off: number, len: number): Promise<number> {
  return new Promise((resolve, reject) => fsCb.write(fd, b, off, len, null, (err, n) => (err ? reject(err) : resolve(n))));
}
const fchown = promisify(fsCb.fchown);
const fchmod = promisify(fsCb.fchmod);
const futimes = promisify(fsCb.futimes);
const close = promisify(fsCb.close);

/** Files being written at once; libuv's pool has 4 threads, more files keep it fed. */
export const FILES_IN_FLIGHT = 16;
/** Bytes received and not yet written, at most (one file's piece may go over). */
export const BYTES_IN_FLIGHT = 16 * 1024 * 1024;

/** What a landed file gets besides its data. */
export interface FileAttrs {
  uid: number;
  gid: number;
  mode: number;
  mtimeNs: bigint;
}

/** One file being written to its temp name; see the module comment. */
export class LandingFile {
  /** Resolves once the temp file is complete and closed; rejects with the failure. */
  readonly written: Promise<void>;
  /** Set once `written` settled. */
  done = false;
  failed: unknown = null;
  private readonly pieces: Buffer[] = [];
  private ended = false;
  private wake: (() => void) | null = null;
  private attrs: FileAttrs | null = null;
  /** Set by cancel(). */
  cancelled = false;

  constructor(
    private readonly pool: LanderPool,
    readonly tmp: string,
  ) {
    this.written = this.run().then(
      () => {
        this.done = true;
      },
      (err: unknown) => {
        this.done = true;
        this.failed = err;
        this.pool.release(this.pieces.reduce((n, b) => n + b.length, 0));
        this.pieces.length = 0;
        throw err;
      },
    );
    // Whoever reads `failed` reports it; no unhandled rejection meanwhile.
    this.written.catch(() => undefined);
  }

  /** Queue a piece of the file's data. */
  push(b: Buffer): void {
    if (this.failed || this.cancelled) return;
    this.pieces.push(b);
    this.pool.hold(b.length);
    this.poke();
  }

  /** All data was pushed: set the attributes and close. */
  end(attrs: FileAttrs): void {
    this.attrs = attrs;
    this.ended = true;
    this.poke();
  }

  /** Stop: no more data comes; the temp file is closed as it is (the caller removes it). */
  cancel(): void {
    this.cancelled = true;
    this.ended = true;
    this.pool.release(this.pieces.reduce((n, b) => n + b.length, 0));
    this.pieces.length = 0;
    this.poke();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async run(): Promise<void> {
    await this.pool.slot();
    try {
      if (this.cancelled) throw new Error('cancelled');
      const fd = await open(this.tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
      try {
        for (;;) {
          const b = this.pieces.shift();
          if (b) {
            let off = 0;
            while (off < b.length) off += await write(fd, b, off, b.length - off);
            this.pool.release(b.length);
            continue;
          }
          if (this.ended) break;
          await new Promise<void>((r) => (this.wake = r));
        }
        if (this.cancelled) throw new Error('cancelled');
        const a = this.attrs!;
        await fchown(fd, a.uid, a.gid);
        await fchmod(fd, a.mode);
        const t = utimesSeconds(a.mtimeNs);
        await futimes(fd, t, t);
      } finally {
        await close(fd);
      }
    } finally {
      this.pool.free();
    }
  }
}

/** The bounds shared by the files of one Fetch call. */
export class LanderPool {
  private files = 0;
  private bytes = 0;
  private slotWaiters: (() => void)[] = [];
  private byteWaiters: (() => void)[] = [];

  /** Wait until a file may start (FILES_IN_FLIGHT). */
  slot(): Promise<void> {
    if (this.files < FILES_IN_FLIGHT) {
      this.files++;
      return Promise.resolve();
    }
    return new Promise((r) => this.slotWaiters.push(r));
  }

  /** A file finished: the next waiting one starts. */
  free(): void {
    const w = this.slotWaiters.shift();
    if (w) w();
    else this.files--;
  }

  /** Whether a new file would have to wait for a slot. */
  get full(): boolean {
    return this.files >= FILES_IN_FLIGHT;
  }

  hold(n: number): void {
    this.bytes += n;
  }

  release(n: number): void {
    this.bytes -= n;
    if (this.bytes <= BYTES_IN_FLIGHT) for (const w of this.byteWaiters.splice(0)) w();
  }

  /** Wait while more than BYTES_IN_FLIGHT is held. */
  async room(): Promise<void> {
    while (this.bytes > BYTES_IN_FLIGHT) await new Promise<void>((r) => this.byteWaiters.push(r));
  }
}
