/**
 * Cuts a byte stream (the tar writer's output) into the messages of a Fetch answer:
 * at least CHUNK_MIN_BYTES and at most CHUNK_MAX_BYTES each. Only two messages may be
 * shorter: the last one, and one sent while the writer waits for the receiver to name more
 * files (the receiver may be waiting for exactly these bytes, e.g. the last file's digest,
 * before it asks for more). The writer says when it waits through an IdleGate; no timer
 * decides, so a slow disk never cuts a message short.
 */
import { CHUNK_MAX_BYTES, CHUNK_MIN_BYTES } from '../../proto';

/** Set by the writer while it waits for the receiver; the chunker then sends what it holds. */
export class IdleGate {
  private waiting = false;
  private listener: (() => void) | null = null;

  /** Whether the writer is waiting for the receiver now. */
  get idle(): boolean {
    return this.waiting;
  }

  /** The writer starts (true) or stops (false) waiting for the receiver. */
  set(waiting: boolean): void {
    this.waiting = waiting;
    if (waiting) this.listener?.();
  }

  /** The chunker's wake-up; one listener. */
  listen(fn: () => void): void {
    this.listener = fn;
  }
}

/** The stream events the chunker listens to (a tar-stream pack). */
export interface ByteSource {
  on(event: 'data', fn: (b: unknown) => void): unknown;
  on(event: 'end', fn: () => void): unknown;
  on(event: 'error', fn: (err: unknown) => void): unknown;
}

/** How the source ended: its error, and the partial chunk not yet yielded. */
export interface ChunkEnd {
  error: unknown;
  rest: Buffer | null;
}

/**
 * The chunks of `src` until it ends; `onTaken` counts every piece read from it (the
 * writer's read-ahead limit); while `gate` is idle, whatever is held goes out. The last
 * partial chunk is returned, not yielded: the caller sends it only if the writer finished
 * without an error.
 */
export async function* chunks(src: ByteSource, onTaken: (bytes: number) => void, gate: IdleGate): AsyncGenerator<Buffer, ChunkEnd> {
  const queue: (Buffer | null)[] = [];
  let notify: (() => void) | null = null;
  let error: unknown = null;
  const wake = (): void => {
    const n = notify;
    notify = null;
    n?.();
  };
  src.on('data', (b: unknown) => {
    queue.push(b as Buffer);
    wake();
  });
  src.on('end', () => {
    queue.push(null);
    wake();
  });
  src.on('error', (err: unknown) => {
    error = err;
    queue.push(null);
    wake();
  });
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const take = (): Buffer => {
    const out = Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return out;
  };
  gate.listen(wake);
  for (;;) {
    if (queue.length === 0) {
      if (pendingBytes > 0 && gate.idle) {
        yield take();
        continue;
      }
      await new Promise<void>((resolve) => (notify = resolve));
      continue;
    }
    const piece = queue.shift()!;
    if (piece === null) break;
    onTaken(piece.length);
    pending.push(piece);
    pendingBytes += piece.length;
    if (pendingBytes >= CHUNK_MIN_BYTES) {
      // Whole CHUNK_MAX_BYTES messages while more than that is held; a remainder shorter
      // than CHUNK_MIN_BYTES waits for more bytes.
      const all = take();
      let off = 0;
      for (; all.length - off > CHUNK_MAX_BYTES; off += CHUNK_MAX_BYTES) yield all.subarray(off, off + CHUNK_MAX_BYTES);
      const tail = all.subarray(off);
      if (tail.length >= CHUNK_MIN_BYTES) yield tail;
      else {
        pending.push(tail);
        pendingBytes = tail.length;
      }
    }
  }
  gate.listen(() => undefined);
  return { error, rest: pendingBytes > 0 ? take() : null };
}
