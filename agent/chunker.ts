/**
 * Cuts a byte stream (the tar writer's output) into the messages of a Fetch answer:
 * at least CHUNK_MIN_BYTES and at most CHUNK_MAX_BYTES each, except that a partial chunk
 * goes out when the stream has had nothing more for a moment, because the receiver may be
 * waiting for exactly this data before it asks for more.
 */
import { CHUNK_MAX_BYTES, CHUNK_MIN_BYTES } from '../proto';

/** How long a partial chunk waits for more data before it goes out anyway. */
const FLUSH_IDLE_MS = 2;

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
 * writer's read-ahead limit). The last partial chunk is returned, not yielded: the caller
 * sends it only if the writer finished without an error.
 */
export async function* chunks(src: ByteSource, onTaken: (bytes: number) => void): AsyncGenerator<Buffer, ChunkEnd> {
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
    onTaken(piece.length);
    pending.push(piece);
    pendingBytes += piece.length;
    if (pendingBytes >= CHUNK_MIN_BYTES) {
      const all = take();
      for (let off = 0; off < all.length; off += CHUNK_MAX_BYTES) yield all.subarray(off, Math.min(all.length, off + CHUNK_MAX_BYTES));
    }
  }
  return { error, rest: pendingBytes > 0 ? take() : null };
}
