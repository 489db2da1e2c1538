/**
 * A file's lines, read synchronously in blocks: the agent's own state files (the manifest,
 * the digest records) are local and read in order, one line at a time per file.
 */
import * as fsSync from 'node:fs';

/** The lines of a file, read synchronously in blocks: a manifest is local and read in order. */
export class LineReader {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private fd: number | null;

  constructor(file: string) {
    this.fd = fsSync.openSync(file, 'r');
  }

  /** The file's mtime in nanoseconds, read from the open descriptor (before any line is read). */
  mtimeNs(): bigint {
    if (this.fd === null) throw new Error('LineReader: closed');
    return fsSync.fstatSync(this.fd, { bigint: true }).mtimeNs;
  }

  /**
   * The next line's bytes without its newline, or null at the end: a view of what was read,
   * which stays as it is after later calls (each block is a buffer of its own).
   */
  nextBytes(): Buffer | null {
    for (;;) {
      const nl = this.buf.indexOf(10, this.pos);
      if (nl !== -1) {
        const line = this.buf.subarray(this.pos, nl);
        this.pos = nl + 1;
        return line;
      }
      if (this.fd === null) {
        if (this.pos >= this.buf.length) return null;
        const line = this.buf.subarray(this.pos); // a last line without newline: torn
        this.pos = this.buf.length;
        return line;
      }
      this.fill();
    }
  }

  /** The next line without its newline, or null at the end. */
  next(): string | null {
    for (;;) {
      const nl = this.buf.indexOf(10, this.pos);
      if (nl !== -1) {
        const line = this.buf.toString('utf8', this.pos, nl);
        this.pos = nl + 1;
        return line;
      }
      if (this.fd === null) {
        if (this.pos >= this.buf.length) return null;
        const line = this.buf.toString('utf8', this.pos); // a last line without newline: torn
        this.pos = this.buf.length;
        return line;
      }
      this.fill();
    }
  }

  /** Read the next block after what is left of the current one, into a new buffer. */
  private fill(): void {
    const rest = this.buf.length - this.pos;
    const chunk = Buffer.allocUnsafe(Math.max(READ_BLOCK, 2 * rest));
    this.buf.copy(chunk, 0, this.pos);
    const n = fsSync.readSync(this.fd!, chunk, rest, chunk.length - rest, null);
    if (n === 0) this.close();
    this.buf = chunk.subarray(0, rest + n);
    this.pos = 0;
  }

  close(): void {
    if (this.fd !== null) fsSync.closeSync(this.fd);
    this.fd = null;
  }
}

const READ_BLOCK = 64 * 1024;

/**
 * The next JSON record of `lines`, skipping empty lines; null at the end, and at a line that
 * does not parse: a torn last line of a killed pass makes the rest of that file unusable, so
 * the reader is closed there.
 */
export function nextRecord<T>(lines: LineReader): T | null {
  for (;;) {
    const line = lines.next();
    if (line === null) return null;
    if (!line) continue;
    try {
      return JSON.parse(line) as T;
    } catch {
      lines.close();
      return null;
    }
  }
}
