/**
 * The stat fields that the receiver's merge compares, read as plain numbers instead of a
 * BigInt per field: on a pass where nothing changed, BigInts made only to be compared (and
 * a nanosecond time built from three of them, then divided) were a good part of the
 * merge's garbage. Every value here is exact: a number where the field fits below 2^53
 * (device and inode numbers, size, mode, ids, and a time in microseconds until the year
 * 2255), a BigInt beyond that. The same value is always the same kind, so `===` compares
 * exactly either way.
 *
 * fast-lstat.ts's statNumbers gives the fs binding's numbers where the walk has them (it
 * takes fs.lstatSync instead when an inode or device number would not fit a double); those
 * numbers are read straight. Any other BigIntStats (fs.lstatSync's)
 * goes through its BigInt fields. test/stat-numbers.test.ts holds both ways to fs.lstatSync.
 */
import type { BigIntStats } from 'node:fs';
import { STAT, statNumbers as numbersOf } from './fast-lstat';

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** A BigInt as the exact value of this module: a number below 2^53. */
function exact(v: bigint): number | bigint {
  return v <= SAFE && v >= -SAFE ? Number(v) : v;
}

/** The permission bits (with setuid, setgid, sticky). */
export function permOf(st: BigIntStats): number {
  const n = numbersOf(st);
  return (n ? n[STAT.mode] : Number(st.mode)) & 0o7777;
}

/** The device number. */
export function devOf(st: BigIntStats): number | bigint {
  const n = numbersOf(st);
  return n ? n[STAT.dev] : exact(st.dev);
}

/** The number of hard links. */
export function nlinkOf(st: BigIntStats): number {
  const n = numbersOf(st);
  return n ? n[STAT.nlink] : Number(st.nlink);
}

/** The owner's user id. */
export function uidOf(st: BigIntStats): number {
  const n = numbersOf(st);
  return n ? n[STAT.uid] : Number(st.uid);
}

/** The owner's group id. */
export function gidOf(st: BigIntStats): number {
  const n = numbersOf(st);
  return n ? n[STAT.gid] : Number(st.gid);
}

/** The inode number. */
export function inoOf(st: BigIntStats): number | bigint {
  const n = numbersOf(st);
  return n ? n[STAT.ino] : exact(st.ino);
}

/** The size in bytes. */
export function sizeOf(st: BigIntStats): number | bigint {
  const n = numbersOf(st);
  return n ? n[STAT.size] : exact(st.size);
}

/** The mtime in whole microseconds (the precision that times are compared and recorded at). */
export function mtimeUsOf(st: BigIntStats): number | bigint {
  const n = numbersOf(st);
  if (n) {
    const sec = n[STAT.mtimeSec];
    const nsec = n[STAT.mtimeSec + 1];
    // Whole seconds and nanoseconds below 10^9, both exact; their sum in µs only below 2^53.
    if (sec >= 0 && sec < 9e9) return sec * 1e6 + Math.floor(nsec / 1000);
  }
  return exact(st.mtimeNs / 1000n);
}

/**
 * A listed mtime (nanoseconds as 1 to 21 decimal digits) in whole microseconds, as
 * mtimeUsOf gives a time: undefined when it is not such digits. One pass over the
 * characters, without a BigInt or a substring when the value fits a double.
 */
export function listedMtimeUs(ns: string): number | bigint | undefined {
  const len = ns.length;
  if (len === 0 || len > 21) return undefined;
  const cut = len - 3;
  let us = 0;
  for (let i = 0; i < len; i++) {
    const d = ns.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return undefined;
    if (i < cut) us = us * 10 + d;
  }
  // Up to 15 digits of microseconds are below 2^53; past that the sum may have rounded.
  if (cut <= 15 || us <= Number.MAX_SAFE_INTEGER) return us;
  return exact(BigInt(ns) / 1000n);
}

/**
 * Whether `s` is the decimal text of `v`, as String(v) would write it, without making that
 * string: a manifest's recorded inode or time against a stat's number.
 */
export function isDecimalOf(s: string, v: number | bigint): boolean {
  if (typeof v === 'bigint') return s === String(v);
  if (!(v >= 0 && v <= Number.MAX_SAFE_INTEGER && Number.isInteger(v))) return s === String(v);
  let i = s.length;
  if (i === 0) return false;
  let rest: number = v;
  for (;;) {
    const d = rest % 10;
    if (s.charCodeAt(--i) !== 48 + d) return false;
    rest = (rest - d) / 10;
    if (rest === 0) return i === 0;
    if (i === 0) return false;
  }
}
