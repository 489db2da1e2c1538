/**
 * An lstat for the walk that keeps nanosecond times without what Node's BigIntStats costs
 * per call: Node 18 and 20 build it eagerly, 22 BigInts (four of them by BigInt division)
 * and 4 Dates per entry, a good part of the walk's garbage. This takes the numbers of
 * Node's own fs binding (seconds and nanoseconds apart, both exact in a double) and hands
 * out BigInts only for the fields that are read.
 *
 * The binding is Node's internal API, so it is used only on the majors whose signature is
 * known and tested here (18, 20), and only after a probe on a real path gave exactly what
 * fs.lstatSync gives; otherwise, and for an inode number beyond 2^53, fs.lstatSync does.
 */
import type { BigIntStats } from 'node:fs';
import * as fsSync from 'node:fs';
import * as util from 'node:util';

const S_IFMT = 0o170000;
const NS = 1_000_000_000n;

/** A BigIntStats from the binding's numbers; BigInts are made when a field is read. */
class NumberStats implements BigIntStats {
  /**
   * The binding's numbers, copied (the binding reuses its array), in the order of Node's fs
   * binding. A plain array of doubles lives on the heap; a Float64Array copy of this size gets
   * a backing store of its own outside it, which cost more than the lstat itself.
   */
  readonly n: number[];

  constructor(a: Float64Array) {
    this.n = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15], a[16], a[17]];
  }

  private big(i: number): bigint {
    return BigInt(this.n[i]);
  }

  private ns(i: number): bigint {
    return BigInt(this.n[i]) * NS + BigInt(this.n[i + 1]);
  }

  get dev(): bigint {
    return this.big(0);
  }
  get mode(): bigint {
    return this.big(1);
  }
  get nlink(): bigint {
    return this.big(2);
  }
  get uid(): bigint {
    return this.big(3);
  }
  get gid(): bigint {
    return this.big(4);
  }
  get rdev(): bigint {
    return this.big(5);
  }
  get blksize(): bigint {
    return this.big(6);
  }
  get ino(): bigint {
    return this.big(7);
  }
  get size(): bigint {
    return this.big(8);
  }
  get blocks(): bigint {
    return this.big(9);
  }
  get atimeNs(): bigint {
    return this.ns(10);
  }
  get mtimeNs(): bigint {
    return this.ns(12);
  }
  get ctimeNs(): bigint {
    return this.ns(14);
  }
  get birthtimeNs(): bigint {
    return this.ns(16);
  }
  get atimeMs(): bigint {
    return this.atimeNs / 1_000_000n;
  }
  get mtimeMs(): bigint {
    return this.mtimeNs / 1_000_000n;
  }
  get ctimeMs(): bigint {
    return this.ctimeNs / 1_000_000n;
  }
  get birthtimeMs(): bigint {
    return this.birthtimeNs / 1_000_000n;
  }
  get atime(): Date {
    return new Date(Number(this.atimeMs));
  }
  get mtime(): Date {
    return new Date(Number(this.mtimeMs));
  }
  get ctime(): Date {
    return new Date(Number(this.ctimeMs));
  }
  get birthtime(): Date {
    return new Date(Number(this.birthtimeMs));
  }
  isFile(): boolean {
    return (this.n[1] & S_IFMT) === 0o100000;
  }
  isDirectory(): boolean {
    return (this.n[1] & S_IFMT) === 0o040000;
  }
  isSymbolicLink(): boolean {
    return (this.n[1] & S_IFMT) === 0o120000;
  }
  isFIFO(): boolean {
    return (this.n[1] & S_IFMT) === 0o010000;
  }
  isSocket(): boolean {
    return (this.n[1] & S_IFMT) === 0o140000;
  }
  isBlockDevice(): boolean {
    return (this.n[1] & S_IFMT) === 0o060000;
  }
  isCharacterDevice(): boolean {
    return (this.n[1] & S_IFMT) === 0o020000;
  }
}

type Lstat = (p: string) => BigIntStats | undefined;

/** Node's lstat, without the throw for a missing entry. */
const plain: Lstat = (p) => fsSync.lstatSync(p, { bigint: true, throwIfNoEntry: false });

interface FsBinding {
  lstat(p: string, bigint: boolean, req: undefined, last: unknown): Float64Array | undefined;
}

/** The binding's lstat in the calling convention of this Node major, or null. */
function bindingLstat(): Lstat | null {
  const major = Number(process.versions.node.split('.')[0]);
  if (major !== 18 && major !== 20) return null;
  let b: FsBinding;
  try {
    b = (process as unknown as { binding(name: string): FsBinding }).binding('fs');
  } catch {
    return null;
  }
  if (typeof b?.lstat !== 'function') return null;
  const numbers =
    major === 18
      ? (p: string): Float64Array | undefined => {
          // Node 18 reports errors in a context object instead of throwing.
          const ctx: { errno?: number; syscall?: string } = {};
          const a = b.lstat(p, false, undefined, ctx);
          if (ctx.errno === undefined) return a;
          const code = util.getSystemErrorName(ctx.errno);
          if (code === 'ENOENT') return undefined;
          throw Object.assign(new Error(`${code}: lstat '${p}'`), { errno: ctx.errno, code, syscall: ctx.syscall ?? 'lstat', path: p });
        }
      : (p: string): Float64Array | undefined => b.lstat(p, false, undefined, false);
  return (p) => {
    const a = numbers(p);
    if (a === undefined) return undefined;
    // A double holds an inode number exactly only up to 2^53.
    if (a[7] > Number.MAX_SAFE_INTEGER || a[0] > Number.MAX_SAFE_INTEGER) return plain(p);
    return new NumberStats(a);
  };
}

const FIELDS = ['dev', 'ino', 'mode', 'nlink', 'uid', 'gid', 'rdev', 'size', 'blocks', 'atimeNs', 'mtimeNs', 'ctimeNs', 'birthtimeNs'] as const;

/** Whether `fast` gives what fs.lstatSync gives, on / and on a path that does not exist. */
function agrees(fast: Lstat): boolean {
  try {
    const want = plain('/');
    const got = fast('/');
    if (want === undefined || got === undefined) return false;
    for (const f of FIELDS) if (want[f] !== got[f]) return false;
    if (!got.isDirectory() || got.isFile() || got.isSymbolicLink()) return false;
    return fast(`/\u0001cmmigrate-probe-absent-${process.pid}`) === undefined;
  } catch {
    return false;
  }
}

let chosen: Lstat | null = null;

/**
 * lstat `p` as a BigIntStats (nanosecond times), or undefined when it does not exist; other
 * errors throw as fs.lstatSync's do. The first call checks the fast way against
 * fs.lstatSync and keeps the one to use.
 */
export function lstatBig(p: string): BigIntStats | undefined {
  if (chosen === null) {
    const fast = bindingLstat();
    chosen = fast && agrees(fast) ? fast : plain;
  }
  return chosen(p);
}

/** Where each field sits in `statNumbers`' array (the order of Node's fs binding). */
export const STAT = { dev: 0, mode: 1, nlink: 2, uid: 3, gid: 4, ino: 7, size: 8, mtimeSec: 12 } as const;

/**
 * A stat's fields as plain numbers, without a BigInt made per field read, when lstatBig
 * took them from the binding: all exact (dev and ino were checked below 2^53 there; the
 * times are left out, as nanoseconds since the epoch are not). Undefined for a stat of
 * fs.lstatSync's, whose fields are read as BigInts.
 */
export function statNumbers(st: BigIntStats): readonly number[] | undefined {
  return st instanceof NumberStats ? st.n : undefined;
}

/** Where the seconds of each time sit in the binding's array; its nanoseconds follow. */
const TIME_AT = { mtime: STAT.mtimeSec, ctime: 14 } as const;

/**
 * A stat's mtime or ctime in nanoseconds since the epoch as decimal text, what
 * String(st.mtimeNs) gives, without the BigInts when the binding's numbers are at hand.
 */
export function timeText(st: BigIntStats, which: keyof typeof TIME_AT): string {
  if (st instanceof NumberStats) {
    const sec = st.n[TIME_AT[which]];
    const nsec = st.n[TIME_AT[which] + 1];
    if (sec > 0) return `${sec}${nsec < 100_000_000 ? String(nsec).padStart(9, '0') : nsec}`;
  }
  return String(which === 'mtime' ? st.mtimeNs : st.ctimeNs);
}

/** A time in nanoseconds since the epoch, also as whole seconds (floored) and the nanoseconds past them. */
export interface SplitNs {
  sec: number;
  nsec: number;
  big: bigint;
}

/** Whether a stat's mtime or ctime is before `ns`, without BigInts where the binding's numbers are at hand. */
export function timeBefore(st: BigIntStats, which: keyof typeof TIME_AT, ns: SplitNs): boolean {
  if (st instanceof NumberStats) {
    const sec = st.n[TIME_AT[which]];
    return sec < ns.sec || (sec === ns.sec && st.n[TIME_AT[which] + 1] < ns.nsec);
  }
  return (which === 'mtime' ? st.mtimeNs : st.ctimeNs) < ns.big;
}

/** A time in nanoseconds as timeBefore takes it. */
export function splitNs(big: bigint): SplitNs {
  const NSB = 1_000_000_000n;
  let sec = big / NSB;
  let nsec = big % NSB;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NSB;
  }
  return { sec: Number(sec), nsec: Number(nsec), big };
}

/** Whether lstatBig takes the fast way on this Node (for tests and the bench). */
export function lstatIsFast(): boolean {
  lstatBig('/');
  return chosen !== plain;
}
