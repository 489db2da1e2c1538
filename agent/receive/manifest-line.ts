/**
 * A manifest record as one line of text, both ways. The writer puts the keys in one fixed
 * order (the order JSON.stringify gives the record), so the reader takes a line apart by
 * position in the common case, without JSON.parse and its objects; any other line (keys in
 * another order, an escape in a string) goes through JSON.parse, so every line an earlier
 * release wrote stays readable.
 */

/** One entry of a root's manifest: what a pass put on this host. */
export interface ManifestRecord {
  /** Path relative to --root. */
  p: string;
  /** Type: file, dir, symlink, fifo. */
  t: string;
  /** Size (files). */
  s: number;
  /** The target's mtime in microseconds, as written. */
  m: string;
  /** The target's inode, as written. */
  i: string;
  /** The source's dev:ino, to recognise a file the source renamed. */
  si: string;
}

/**
 * A record as one JSON line, the same text as JSON.stringify(rec) gives (the keys in this
 * order), without walking an object per entry: type, mtime and inode are plain words or digits.
 */
export function manifestLine(r: ManifestRecord): string {
  return `{"p":${JSON.stringify(r.p)},"t":${JSON.stringify(r.t)},"s":${r.s},"m":${JSON.stringify(r.m)},"i":${JSON.stringify(r.i)},"si":${JSON.stringify(r.si)}}`;
}

/** A manifest record read back, with the line it came from: an unchanged entry's record is that line again. */
export interface StoredRecord extends ManifestRecord {
  line: string;
}

const DIGITS = /^(0|[1-9]\d{0,15})$/;

/**
 * The record of one line; null for a line that is not a record (torn by a kill). The fast
 * path reads the fixed layout manifestLine writes; anything else is parsed as JSON.
 */
export function parseManifestLine(line: string): StoredRecord | null {
  // No backslash: no string needs unescaping, and no quote inside a string ends it early.
  if (line.startsWith('{"p":"') && line.indexOf('\\') === -1) {
    const a = line.indexOf('"', 6);
    if (a !== -1 && line.startsWith('","t":"', a)) {
      const b = line.indexOf('"', a + 7);
      if (b !== -1 && line.startsWith('","s":', b)) {
        const c = line.indexOf(',', b + 6);
        const size = c === -1 ? '' : line.slice(b + 6, c);
        if (DIGITS.test(size) && line.startsWith(',"m":"', c)) {
          const d = line.indexOf('"', c + 6);
          if (d !== -1 && line.startsWith('","i":"', d)) {
            const e = line.indexOf('"', d + 7);
            if (e !== -1 && line.startsWith('","si":"', e)) {
              const f = line.indexOf('"', e + 8);
              if (f === line.length - 2 && line.charCodeAt(f + 1) === 125 /* } */) {
                return { p: line.slice(6, a), t: line.slice(a + 7, b), s: Number(size), m: line.slice(c + 6, d), i: line.slice(d + 7, e), si: line.slice(e + 8, f), line };
              }
            }
          }
        }
      }
    }
  }
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (!v || typeof v !== 'object') return null;
  const r = v as ManifestRecord;
  return { p: r.p, t: r.t, s: r.s, m: r.m, i: r.i, si: r.si, line };
}

const HEAD = Buffer.from('{"p":"');

/**
 * The path of a manifest line given as bytes, decoding only the path: the fixed layout
 * without escapes by position, any other line through parseManifestLine; null for a line
 * that is no record.
 */
export function manifestPathOf(line: Buffer): string | null {
  if (line.length > HEAD.length && line.compare(HEAD, 0, HEAD.length, 0, HEAD.length) === 0) {
    for (let q = HEAD.length; q < line.length; q++) {
      const c = line[q];
      if (c === 0x5c) break;
      // The path's end, with the type's key after it: the fixed layout. Its last byte is the record's closing brace.
      if (c === 0x22) {
        if (line[q + 1] === 0x2c && line[q + 2] === 0x22 && line[q + 3] === 0x74 && line[line.length - 1] === 0x7d) return line.toString('utf8', HEAD.length, q);
        break;
      }
    }
  }
  return parseManifestLine(line.toString('utf8'))?.p ?? null;
}

const SI = Buffer.from(',"si":"');

/**
 * The path and the source's dev:ino of a manifest line given as bytes (manifestPathOf),
 * decoding only those two; null for a line that is no record.
 */
export function manifestLinkOf(line: Buffer): { p: string; si: string } | null {
  const p = manifestPathOf(line);
  if (p === null) return null;
  const at = line.lastIndexOf(SI);
  if (at !== -1 && line[line.length - 1] === 0x7d && line[line.length - 2] === 0x22) {
    let plain = true;
    for (let i = at + SI.length; i < line.length - 2; i++) if (line[i] === 0x22 || line[i] === 0x5c) plain = false;
    if (plain) return { p, si: line.toString('utf8', at + SI.length, line.length - 2) };
  }
  const rec = parseManifestLine(line.toString('utf8'));
  return rec ? { p: rec.p, si: rec.si } : null;
}
