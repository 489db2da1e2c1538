/**
 * Random changes to a relay tree, from a seed: what a relay and its operator do between two
 * passes, and the shapes a change journal must not miss (issue 25): files created, written,
 * deleted and renamed across directories, Maildir folders renamed with everything in them,
 * files rewritten in place with their size and mtime kept, modes, owners and times changed,
 * hard links gained and lost, symlinks retargeted, FIFOs made and removed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { Rng } from './rng';

export interface MutationOptions {
  /** How many changes. */
  count: number;
  /** Also rewrite files in place with size and mtime restored (a full walk cannot see these). Default true. */
  sameSizeRewrites?: boolean;
  /** uids of two users that exist on both hosts by name (chown between them). */
  uids?: [number, number];
}

interface Tree {
  files: string[];
  dirs: string[];
  symlinks: string[];
  fifos: string[];
}

function scan(root: string, rels: string[]): Tree {
  const t: Tree = { files: [], dirs: [], symlinks: [], fifos: [] };
  const walk = (abs: string): void => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch {
      return;
    }
    if (st.isDirectory()) {
      t.dirs.push(abs);
      for (const n of fs.readdirSync(abs).sort()) walk(path.join(abs, n));
    } else if (st.isFile()) t.files.push(abs);
    else if (st.isSymbolicLink()) t.symlinks.push(abs);
    else if (st.isFIFO()) t.fifos.push(abs);
  };
  for (const r of rels) walk(path.join(root, r));
  return t;
}

/** Float seconds that fs.utimes turns into exactly the microsecond of `ns`. */
function seconds(ns: bigint): number {
  const us = ns / 1000n;
  return Number(us / 1_000_000n) + (Number(us % 1_000_000n) + 0.5) / 1e6;
}

/** The kinds of change, for the log of what a seed did. */
export type MutationKind =
  | 'create'
  | 'append'
  | 'delete'
  | 'rename'
  | 'rename-dir'
  | 'same-size-rewrite'
  | 'chmod'
  | 'chown'
  | 'utimes'
  | 'link'
  | 'unlink-link'
  | 'symlink-retarget'
  | 'fifo'
  | 'mkdir';

/** Apply `count` random changes below `root` (host paths `rels`); returns what was done, for a failure's message. */
export function mutateTree(root: string, rels: string[], rng: Rng, opts: MutationOptions): string[] {
  const done: string[] = [];
  let seq = 0;
  const kinds: MutationKind[] = ['create', 'create', 'append', 'delete', 'rename', 'rename', 'chmod', 'chown', 'utimes', 'link', 'unlink-link', 'symlink-retarget', 'fifo', 'mkdir', 'rename-dir'];
  if (opts.sameSizeRewrites !== false) kinds.push('same-size-rewrite', 'same-size-rewrite');
  for (let i = 0; i < opts.count; i++) {
    const t = scan(root, rels);
    const kind = rng.pick(kinds);
    const file = t.files.length ? rng.pick(t.files) : null;
    const dir = rng.pick(t.dirs.filter((d) => !d.endsWith('/tmp')));
    // Within a file's own root: a relay has no hard links between its roots.
    const dirsOfRoot = (f: string): string[] => {
      const own = rels.map((r) => path.join(root, r)).find((r) => f.startsWith(r + '/'))!;
      return t.dirs.filter((d) => (d === own || d.startsWith(own + '/')) && !d.endsWith('/tmp'));
    };
    const name = (): string => `m${Date.now() % 100000}.${process.pid}.${++seq}.${rng.int(0, 1e6)}`;
    try {
      switch (kind) {
        case 'create': {
          const p = path.join(dir, name());
          fs.writeFileSync(p, Buffer.alloc(rng.int(0, 5000), rng.int(0, 255)));
          done.push(`create ${p}`);
          break;
        }
        case 'append':
          if (!file) break;
          fs.appendFileSync(file, 'more\n');
          done.push(`append ${file}`);
          break;
        case 'delete':
          if (!file) break;
          fs.unlinkSync(file);
          done.push(`delete ${file}`);
          break;
        case 'rename': {
          if (!file) break;
          const to = rng.chance(0.5) ? path.join(path.dirname(file), path.basename(file) + (rng.chance(0.5) ? ':2,S' : 'x')) : path.join(rng.pick(dirsOfRoot(file)), path.basename(file));
          if (fs.existsSync(to)) break;
          fs.renameSync(file, to);
          done.push(`rename ${file} -> ${to}`);
          break;
        }
        case 'rename-dir': {
          // A folder with what is in it (thousands of entries in a real Maildir).
          const cands = t.dirs.filter((d) => path.basename(d).startsWith('.') || /@/.test(path.basename(d)));
          if (!cands.length) break;
          const from = rng.pick(cands);
          const to = path.join(path.dirname(from), path.basename(from) + 'R' + ++seq);
          fs.renameSync(from, to);
          done.push(`rename-dir ${from} -> ${to}`);
          break;
        }
        case 'same-size-rewrite': {
          if (!file) break;
          const st = fs.statSync(file, { bigint: true });
          if (st.size === 0n) break;
          const fd = fs.openSync(file, 'r+');
          const b = Buffer.alloc(1);
          fs.readSync(fd, b, 0, 1, 0);
          b[0] = b[0] ^ 0x5a;
          fs.writeSync(fd, b, 0, 1, 0);
          fs.closeSync(fd);
          // Back to the microsecond it had (the trees' times are whole microseconds).
          fs.utimesSync(file, seconds(st.atimeNs), seconds(st.mtimeNs));
          done.push(`same-size-rewrite ${file}`);
          break;
        }
        case 'chmod':
          if (!file) break;
          fs.chmodSync(file, rng.pick([0o600, 0o640, 0o644, 0o660]));
          done.push(`chmod ${file}`);
          break;
        case 'chown':
          if (!file || !opts.uids) break;
          fs.lchownSync(file, rng.pick(opts.uids), fs.lstatSync(file).gid);
          done.push(`chown ${file}`);
          break;
        case 'utimes': {
          if (!file) break;
          const s = 1_775_000_000 + rng.int(0, 1e6);
          fs.utimesSync(file, s, s + rng.micros() / 1e6);
          done.push(`utimes ${file}`);
          break;
        }
        case 'link': {
          if (!file) break;
          const p = path.join(rng.pick(dirsOfRoot(file)), name());
          fs.linkSync(file, p);
          done.push(`link ${file} -> ${p}`);
          break;
        }
        case 'unlink-link': {
          const linked = t.files.filter((f) => fs.lstatSync(f).nlink > 1);
          if (!linked.length) break;
          const f = rng.pick(linked);
          fs.unlinkSync(f);
          done.push(`unlink-link ${f}`);
          break;
        }
        case 'symlink-retarget': {
          if (!t.symlinks.length) break;
          const l = rng.pick(t.symlinks);
          const target = fs.readlinkSync(l);
          fs.unlinkSync(l);
          fs.symlinkSync(target.endsWith('x') ? target.slice(0, -1) : target + 'x', l);
          done.push(`symlink-retarget ${l}`);
          break;
        }
        case 'fifo': {
          if (t.fifos.length && rng.chance(0.5)) {
            const f = rng.pick(t.fifos);
            fs.unlinkSync(f);
            done.push(`rm-fifo ${f}`);
          } else {
            const p = path.join(dir, `fifo${++seq}`);
            execFileSync('mkfifo', ['-m', '0620', p]);
            done.push(`mkfifo ${p}`);
          }
          break;
        }
        case 'mkdir': {
          const p = path.join(dir, `.Folder${++seq}`);
          fs.mkdirSync(path.join(p, 'cur'), { recursive: true, mode: 0o700 });
          fs.writeFileSync(path.join(p, 'cur', name()), 'x'.repeat(rng.int(1, 300)));
          done.push(`mkdir ${p}`);
          break;
        }
      }
    } catch (err) {
      done.push(`${kind} failed: ${(err as Error).message}`);
    }
  }
  return done;
}
