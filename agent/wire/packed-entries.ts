/**
 * The listing's entries packed into one `bytes` field per List message (ListBatch.packed,
 * protocol 2): the sender writes each entry straight into a buffer instead of building an
 * object per entry for protobuf, with its 64-bit fields taken from the stat as they are;
 * the receiver reads them back into the ListEntry objects that the merge consumes.
 *
 * One entry, little-endian:
 *   u16 path length, path (UTF-8) · u8 type (file, dir, symlink, fifo) · varint size ·
 *   i64 mtime_ns · u16 mode · varint user ref · varint group ref · u16 link length, link ·
 *   varint dev · varint ino · u16 leader length, leader · varint nlink
 * An owner ref is 0 for a name that follows (u16 length, UTF-8) and becomes the next entry
 * of the message's name table, or 1 + its index there. Varints are unsigned LEB128, up to
 * 64 bits. Each message stands alone: its name table starts empty.
 */
import type { ListEntry__Output } from '../../proto';
import { wireError } from './wire-format';

const TYPES = ['file', 'dir', 'symlink', 'fifo'] as const;
const TYPE_CODE: Record<string, number> = { file: 0, dir: 1, symlink: 2, fifo: 3 };
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** Longest string field: paths and symlink targets stay far below (PATH_MAX is 4096). */
const MAX_STRING = 0xffff;

/** What one entry carries, as the sender has it from its walk. */
export interface PackedEntryInput {
  path: string;
  type: string;
  /** Counts as numbers where exact (below 2^53), else as BigInts. */
  size: bigint | number;
  mtimeNs: bigint;
  mode: number;
  user: string;
  group: string;
  link: string;
  dev: bigint | number;
  ino: bigint | number;
  leader: string;
  nlink: bigint | number;
}

/** The sender's side: entries appended to a buffer that a message takes whole. */
export class PackedWriter {
  private buf = Buffer.allocUnsafe(64 * 1024);
  private off = 0;
  /** Entries in the message being built. */
  count = 0;
  private names = new Map<string, number>();

  /** Bytes in the message being built. */
  get bytes(): number {
    return this.off;
  }

  /** Append one entry. */
  add(e: PackedEntryInput): void {
    const type = TYPE_CODE[e.type];
    if (type === undefined) throw new Error(`cannot pack an entry of type ${e.type}`);
    // Worst case: three bytes per UTF-16 unit of each string, plus the fixed fields.
    this.reserve(3 * (e.path.length + e.link.length + e.leader.length + e.user.length + e.group.length) + 80);
    this.string(e.path);
    this.buf[this.off++] = type;
    this.varint(e.size);
    this.buf.writeBigInt64LE(e.mtimeNs, this.off);
    this.off += 8;
    this.buf.writeUInt16LE(e.mode, this.off);
    this.off += 2;
    this.name(e.user);
    this.name(e.group);
    this.string(e.link);
    this.varint(e.dev);
    this.varint(e.ino);
    this.string(e.leader);
    this.varint(e.nlink);
    this.count++;
  }

  /** The message's bytes, copied out: the writer starts a new message. */
  take(): Buffer {
    const out = Buffer.allocUnsafeSlow(this.off);
    this.buf.copy(out, 0, 0, this.off);
    this.reset();
    return out;
  }

  /** The message's bytes as a view that the next add overwrites (to write them out at once). */
  peek(): Buffer {
    return this.buf.subarray(0, this.off);
  }

  /** Start a new message, reusing the buffer. */
  reset(): void {
    this.off = 0;
    this.count = 0;
    this.names.clear();
  }

  private reserve(n: number): void {
    if (this.off + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.off + n));
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }

  private string(s: string): void {
    const n = s.length === 0 ? 0 : this.buf.write(s, this.off + 2, 'utf8');
    if (n > MAX_STRING) throw new Error(`a listed name of ${n} bytes is too long to pack`);
    this.buf.writeUInt16LE(n, this.off);
    this.off += 2 + n;
  }

  private name(s: string): void {
    const i = this.names.get(s);
    if (i !== undefined) {
      this.varint(i + 1);
      return;
    }
    this.names.set(s, this.names.size);
    this.buf[this.off++] = 0;
    this.string(s);
  }

  private varint(v: bigint | number): void {
    const { buf } = this;
    if (typeof v === 'bigint') {
      if (v < 0n) throw new Error('cannot pack a negative count');
      if (v > SAFE) {
        while (v >= 128n) {
          buf[this.off++] = Number(v & 127n) | 128;
          v >>= 7n;
        }
        buf[this.off++] = Number(v);
        return;
      }
      v = Number(v);
    }
    while (v >= 128) {
      buf[this.off++] = (v % 128) | 128;
      v = Math.floor(v / 128);
    }
    buf[this.off++] = v;
  }
}

/** The receiver's side: one message's entries as the merge takes them. Anything malformed is a wire.protocol error. */
export function unpackEntries(packed: Buffer): ListEntry__Output[] {
  const out: ListEntry__Output[] = [];
  const names: string[] = [];
  let off = 0;
  const end = packed.length;
  const bad = (what: string): never => {
    throw wireError(`the sender's packed listing is malformed (${what} at byte ${off} of ${end})`);
  };
  const need = (n: number): void => {
    if (off + n > end) bad('truncated');
  };
  const string = (): string => {
    need(2);
    const n = packed.readUInt16LE(off);
    off += 2;
    if (n === 0) return '';
    need(n);
    const s = packed.toString('utf8', off, off + n);
    off += n;
    return s;
  };
  /** A varint as its decimal string. */
  const varint = (): string => {
    let n = 0;
    let mul = 1;
    for (let i = 0; i < 7; i++) {
      need(1);
      const b = packed[off++];
      n += (b & 127) * mul;
      if (b < 128) return String(n);
      mul *= 128;
    }
    // Beyond 49 bits: the rest as a BigInt, up to 64 bits.
    let big = BigInt(n);
    let shift = 49n;
    for (;;) {
      need(1);
      const b = packed[off++];
      big += BigInt(b & 127) << shift;
      if (b < 128) break;
      shift += 7n;
      if (shift > 63n) bad('a varint longer than 64 bits');
    }
    if (big >= 1n << 64n) bad('a varint beyond 64 bits');
    return String(big);
  };
  const name = (): string => {
    need(1);
    const ref = packed[off];
    if (ref === 0) {
      off++;
      const s = string();
      names.push(s);
      return s;
    }
    const i = Number(varint()) - 1;
    if (i >= names.length) bad('an owner name not defined before');
    return names[i];
  };
  while (off < end) {
    const path = string();
    need(1);
    const type = TYPES[packed[off++]];
    if (type === undefined) bad(`entry type ${packed[off - 1]}`);
    const size = varint();
    need(10);
    const mtime_ns = String(packed.readBigInt64LE(off));
    const mode = packed.readUInt16LE(off + 8);
    off += 10;
    const user = name();
    const group = name();
    const link = string();
    const dev = varint();
    const ino = varint();
    const leader = string();
    const nlink = varint();
    out.push({ path, type, size, mtime_ns, mode, user, group, link, ino: `${dev}:${ino}`, leader, nlink });
  }
  return out;
}
