/**
 * The packed listing (agent/wire/packed-entries.ts, protocol 2) for the receiver's fuzzer: a
 * listing's entries packed by the sender's own PackedWriter into `ListBatch.packed`, then
 * damaged as bytes (flipped, cut, extended, length fields and varints that lie, entries
 * dropped or repeated, the message split so that its owner names are missing), as a broken
 * or hostile sender could send them. test/support/fuzz-pull.ts feeds them to the receiver.
 */
import type { ListBatch, ListEntry } from '../../proto';
import { PackedWriter, type PackedEntryInput } from '../../agent/wire/packed-entries';
import type { Rng } from './rng';

const PACKED_TYPES = new Set(['file', 'dir', 'symlink', 'fifo']);
const INT64 = 2n ** 63n;

function bigintOf(s: string): bigint | undefined {
  try {
    return /^-?\d+$/.test(s) ? BigInt(s) : undefined;
  } catch {
    return undefined;
  }
}

/** `e` as the sender packs it, or undefined where the packed form cannot carry it (the sender would not list it so). */
export function packable(e: ListEntry): PackedEntryInput | undefined {
  const [dev, ino, more] = (e.ino ?? '').split(':');
  const devN = bigintOf(dev ?? '');
  const inoN = bigintOf(ino ?? '');
  const mtime = bigintOf(e.mtime_ns ?? '0');
  const size = Number(e.size ?? 0);
  const nlink = Number(e.nlink ?? 0);
  const mode = e.mode ?? 0;
  const strings = [e.path ?? '', e.link ?? '', e.leader ?? '', e.user ?? '', e.group ?? ''];
  const fits =
    PACKED_TYPES.has(e.type ?? '') &&
    more === undefined &&
    devN !== undefined && devN >= 0n && inoN !== undefined && inoN >= 0n &&
    mtime !== undefined && mtime >= -INT64 && mtime < INT64 &&
    Number.isSafeInteger(size) && size >= 0 &&
    Number.isSafeInteger(nlink) && nlink >= 0 &&
    Number.isInteger(mode) && mode >= 0 && mode <= 0xffff &&
    strings.every((s) => Buffer.byteLength(s) <= 0xffff);
  if (!fits) return undefined;
  return { path: e.path ?? '', type: e.type!, size: BigInt(size), mtimeNs: mtime!, mode, user: e.user ?? '', group: e.group ?? '', link: e.link ?? '', dev: devN!, ino: inoN!, leader: e.leader ?? '', nlink: BigInt(nlink) };
}

/** One message's packed bytes and where each entry starts (with its path's length in bytes). */
function pack(entries: PackedEntryInput[]): { bytes: Buffer; starts: { at: number; pathBytes: number }[] } {
  const w = new PackedWriter();
  const starts: { at: number; pathBytes: number }[] = [];
  for (const e of entries) {
    starts.push({ at: w.bytes, pathBytes: Buffer.byteLength(e.path) });
    w.add(e);
  }
  return { bytes: w.take(), starts };
}

/** What the damage was, for the figures. */
export type PackedDamage = 'none' | 'flip' | 'cut' | 'extend' | 'length' | 'byte' | 'entries' | 'varint' | 'split' | 'both';

/**
 * `entries` packed as the sender packs them, the packable ones (others keep their original
 * form, `fallback`), then damaged in one way, or not at all (about one time in ten): the
 * batches that replace the listing's entries batch.
 */
export function damagedPacked(r: Rng, entries: ListEntry[], fallback: ListEntry[]): { batches: ListBatch[]; damage: PackedDamage } {
  const inputs = entries.map((e, k) => packable(e) ?? packable(fallback[k])!);
  const { bytes, starts } = pack(inputs);
  const b = Buffer.from(bytes);
  const at = (): number => r.int(0, Math.max(0, b.length - 1));
  const entry = (): { at: number; pathBytes: number } => r.pick(starts);
  const one = (packed: Buffer, damage: PackedDamage): { batches: ListBatch[]; damage: PackedDamage } => ({ batches: [{ packed }], damage });
  switch (r.int(0, 9)) {
    case 0:
      for (let k = r.int(1, 8); k > 0; k--) b[at()] ^= 1 << r.int(0, 7);
      return one(b, 'flip');
    case 1:
      return one(b.subarray(0, r.int(0, b.length - 1)), 'cut');
    case 2: {
      const tail = r.chance(0.5) ? Buffer.from(r.str('\0\x01\x7f\x80\xff abc/', r.int(1, 64)), 'latin1') : b.subarray(0, r.int(1, b.length));
      return one(Buffer.concat([b, tail]), 'extend');
    }
    case 3: {
      // A u16 length (a path's, or anywhere) that lies.
      const off = r.chance(0.6) ? entry().at : Math.min(at(), b.length - 2);
      const left = b.length - off - 2;
      b.writeUInt16LE(r.pick([0, 1, 0xffff, left + 1, Math.max(0, left - 1), left]) & 0xffff, off);
      return one(b, 'length');
    }
    case 4: {
      // A type code, owner ref or varint byte with a value the decoder must check.
      const e = entry();
      const off = r.chance(0.5) ? e.at + 2 + e.pathBytes : at();
      b[off] = r.pick([0, 1, 3, 4, 5, 0x7f, 0x80, 0xfe, 0xff]);
      return one(b, 'byte');
    }
    case 5: {
      // An entry dropped or repeated: the owner-name table no longer matches, or a path comes twice.
      const k = r.int(0, starts.length - 1);
      const from = starts[k].at;
      const to = k + 1 < starts.length ? starts[k + 1].at : b.length;
      const out = r.chance(0.5) ? Buffer.concat([b.subarray(0, from), b.subarray(to)]) : Buffer.concat([b.subarray(0, to), b.subarray(from, to), b.subarray(to)]);
      return one(out, 'entries');
    }
    case 6: {
      // The size varint made longer: redundant continuation bytes, or beyond 64 bits.
      const e = entry();
      const off = e.at + 2 + e.pathBytes + 1;
      const extra = r.pick([Buffer.from([0x80, 0x80]), Buffer.alloc(9, 0xff), Buffer.alloc(12, 0x80), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])]);
      return one(Buffer.concat([b.subarray(0, off), extra, b.subarray(off)]), 'varint');
    }
    case 7: {
      // Split in two messages: at an entry boundary the second refers to owner names it never
      // defined (each message has a table of its own); at a random byte both halves are torn.
      const cut = r.chance(0.5) && starts.length > 1 ? starts[r.int(1, starts.length - 1)].at : r.int(1, Math.max(1, b.length - 1));
      return { batches: [{ packed: b.subarray(0, cut) }, { packed: b.subarray(cut) }], damage: 'split' };
    }
    case 8:
      // Entries both packed and unpacked in one batch: refused as such.
      return { batches: [{ packed: b, entries: fallback.slice(0, 1) }], damage: 'both' };
    default:
      // Undamaged, in one message or, as the sender does past its batch size, in two that each stand alone.
      if (starts.length > 1 && r.chance(0.5)) {
        const k = r.int(1, inputs.length - 1);
        return { batches: [{ packed: pack(inputs.slice(0, k)).bytes }, { packed: pack(inputs.slice(k)).bytes }], damage: 'none' };
      }
      return one(b, 'none');
  }
}
