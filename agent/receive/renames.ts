/**
 * Rename detection for the merge: the entries of this host that the source no longer has,
 * indexed so that a listed file can be recognised as one of them under a new name. Reading
 * or flagging a message renames it (`X:2,` → `X:2,S`, `new/X` → `cur/X:2,`); carried as a
 * new file plus a delete, Dovecot would show the user a duplicate for a while, and the data
 * would cross the wire again.
 */
import * as path from 'node:path';
import type { ListEntry__Output } from '../../proto';
import { us } from '../fs/walk';

/** An entry of this host that the source no longer has: only what renames and deletes need. */
export interface Gone {
  rel: string;
  abs: string;
  type: string;
  size: number;
  mtimeUs: bigint;
  /** An earlier pass put it here and nobody changed it since. */
  ours: boolean;
  /** The source inode an earlier pass recorded for it. */
  si: string;
  /** A listed file took it over (a rename). */
  consumed: boolean;
}

/** The gone entries of one root, in walk order, with their Maildir and source-inode indexes. */
export class GoneIndex {
  /** Every gone entry, in walk order. */
  readonly all: Gone[] = [];
  private readonly byKey = new Map<string, Gone>();
  private readonly byIno = new Map<string, Gone>();

  add(g: Gone): void {
    this.all.push(g);
    if (g.type !== 'file') return;
    const key = maildirKey(g.rel);
    if (key && !this.byKey.has(key)) this.byKey.set(key, g);
    if (g.si && g.ours && !this.byIno.has(g.si)) this.byIno.set(g.si, g);
  }

  /** A gone file that a listed one is the renamed form of: same Maildir base name or source inode. */
  findRename(s: ListEntry__Output): Gone | undefined {
    const key = maildirKey(s.path);
    const byKey = key ? this.byKey.get(key) : undefined;
    const byIno = s.ino ? this.byIno.get(s.ino) : undefined;
    // A rename keeps size and mtime; an inode number alone may have been reused.
    for (const g of [byKey, byIno]) {
      if (g && !g.consumed && g.type === 'file' && g.size === Number(s.size) && g.mtimeUs === us(BigInt(s.mtime_ns))) return g;
    }
    return undefined;
  }
}

/** For a message in `X/cur/` or `X/new/`: X and its base name (the part before `:2,`). */
function maildirKey(rel: string): string | undefined {
  const folder = maildirFolder(rel);
  if (!folder) return undefined;
  const name = path.posix.basename(rel);
  return `${folder}\0${name.split(':')[0]}`;
}

/** For a message in `X/cur/` or `X/new/`: the Maildir folder X. */
export function maildirFolder(rel: string): string | undefined {
  const dir = path.posix.dirname(rel);
  const b = path.posix.basename(dir);
  return b === 'cur' || b === 'new' ? path.posix.dirname(dir) : undefined;
}
