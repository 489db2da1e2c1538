/**
 * The tree walk that sender, verifier and later passes share: one lstat per entry, never
 * following symlinks, in walk order (proto/order.ts), holding at most one directory's
 * names and a small batch of stats at a time.
 */
import type { BigIntStats } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { compareNames } from '../proto';
import type { ResolvedRoot } from './paths';

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'device';

export interface WalkEntry {
  /** Host path without the leading slash: 'home/vmail/mail/x/cur/1'. */
  rel: string;
  abs: string;
  st: BigIntStats;
  type: EntryType;
}

export function typeOf(st: BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return 'device';
}

export interface WalkOptions {
  /** Called for an entry that vanished between readdir and lstat (a live relay). */
  onVanished?: (rel: string) => void;
}

const STAT_BATCH = 128;

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Walk one root; yields nothing when the root is absent. */
export async function* walkRoot(root: ResolvedRoot, opts: WalkOptions = {}): AsyncGenerator<WalkEntry> {
  let st: BigIntStats;
  try {
    st = await fs.lstat(root.abs, { bigint: true });
  } catch (err) {
    if (isGone(err)) return;
    throw err;
  }
  const entry: WalkEntry = { rel: root.rel, abs: root.abs, st, type: typeOf(st) };
  yield entry;
  if (entry.type === 'dir') yield* walkDir(root.rel, root.abs, opts);
}

async function* walkDir(rel: string, abs: string, opts: WalkOptions): AsyncGenerator<WalkEntry> {
  let names: string[];
  try {
    names = await fs.readdir(abs);
  } catch (err) {
    if (isGone(err)) {
      opts.onVanished?.(rel);
      return;
    }
    throw err;
  }
  names.sort(compareNames);
  for (let i = 0; i < names.length; i += STAT_BATCH) {
    const batch = names.slice(i, i + STAT_BATCH);
    const stats = await Promise.all(
      batch.map((n) =>
        fs.lstat(path.join(abs, n), { bigint: true }).catch((err: unknown) => {
          if (isGone(err)) return null;
          throw err;
        }),
      ),
    );
    for (let j = 0; j < batch.length; j++) {
      const childRel = `${rel}/${batch[j]}`;
      const cst = stats[j];
      if (!cst) {
        opts.onVanished?.(childRel);
        continue;
      }
      const child: WalkEntry = { rel: childRel, abs: path.join(abs, batch[j]), st: cst, type: typeOf(cst) };
      yield child;
      if (child.type === 'dir') yield* walkDir(childRel, child.abs, opts);
    }
  }
}

/** An mtime in nanoseconds as pax writes it: "seconds.nanoseconds". */
export function paxTime(ns: bigint): string {
  const sec = ns / 1_000_000_000n;
  const frac = ns % 1_000_000_000n;
  return `${sec}.${frac.toString().padStart(9, '0')}`;
}

/** Parse a pax time ("1775324677", "1775324677.5", "…123456789") into nanoseconds. */
export function parsePaxTime(s: string): bigint | undefined {
  const m = /^(\d{1,12})(?:\.(\d{1,9}))?$/.exec(s);
  if (!m) return undefined;
  const frac = (m[2] ?? '').padEnd(9, '0');
  return BigInt(m[1]) * 1_000_000_000n + BigInt(frac);
}

/**
 * The float seconds to pass to fs.utimes so that the file gets exactly the microsecond of
 * `ns`: libuv truncates to microseconds, and float error could land one below.
 */
export function utimesSeconds(ns: bigint): number {
  const us = ns / 1000n;
  const sec = us / 1_000_000n;
  const rest = us % 1_000_000n;
  return Number(sec) + (Number(rest) + 0.5) / 1e6;
}
