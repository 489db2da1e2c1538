/**
 * The tree walk (agent/walk.ts) takes each entry's lstat by name from inside its directory,
 * as fts(3) does: it must give what lstat of the whole path gives, in walk order, and hand
 * the process its own working directory back at the end of every batch, also when a
 * directory vanishes under it.
 */
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResolvedRoot } from '../agent/paths';
import { TreeWalk, type WalkEntry } from '../agent/walk';
import { comparePaths } from '../proto';

describe('the tree walk', () => {
  let dir: string;
  let root: ResolvedRoot;
  const start = process.cwd();

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-walk-'));
    const mail = path.join(dir, 'home/vmail/mail');
    for (const a of ['a', 'b', 'c', 'd']) {
      for (const sub of ['cur', 'new', 'tmp']) await fs.mkdir(path.join(mail, a, sub), { recursive: true });
      for (let i = 0; i < 40; i++) await fs.writeFile(path.join(mail, a, 'cur', `m${i}:2,S`), `${a}${i}`.repeat(i + 1));
    }
    await fs.symlink('../a', path.join(mail, 'b/link'));
    await fs.link(path.join(mail, 'a/cur/m0:2,S'), path.join(mail, 'c/new/m0'));
    root = { name: 'mailboxes', rel: 'home/vmail/mail', abs: mail, optional: false } as ResolvedRoot;
  });
  afterAll(async () => {
    process.chdir(start);
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('gives every entry in walk order with the stat of its whole path, and the working directory back after each batch', () => {
    const w = new TreeWalk(root);
    const all: WalkEntry[] = [];
    for (let batch = w.take(7); batch.length > 0; batch = w.take(7)) {
      expect(process.cwd()).toBe(start);
      all.push(...batch);
    }
    expect(all.length).toBe(1 + 4 * (1 + 3 + 40) + 2);
    for (let i = 1; i < all.length; i++) expect(comparePaths(all[i - 1].rel, all[i].rel)).toBeLessThan(0);
    for (const e of all) {
      const want = fsSync.lstatSync(e.abs, { bigint: true });
      expect(e.abs).toBe(path.join(dir, e.rel));
      for (const f of ['dev', 'ino', 'size', 'mode', 'mtimeNs'] as const) expect(e.st[f], `${e.rel} ${f}`).toBe(want[f]);
    }
  });

  it('reports a directory that vanished under it, and still gives the working directory back', async () => {
    const gone: string[] = [];
    const w = new TreeWalk(root, { onVanished: (rel) => gone.push(rel) });
    // Into d/cur, whose names are read; then d/cur goes before they are all taken.
    let seen = 0;
    for (let batch = w.take(5); batch.length > 0; batch = w.take(5)) {
      expect(process.cwd()).toBe(start);
      seen += batch.length;
      if (batch.some((e) => e.rel.endsWith('/d/cur/m10:2,S'))) await fs.rm(path.join(root.abs, 'd/cur'), { recursive: true });
    }
    expect(gone.length).toBeGreaterThan(0);
    expect(gone.every((g) => g.startsWith('home/vmail/mail/d/cur/'))).toBe(true);
    expect(seen).toBeLessThan(1 + 4 * (1 + 3 + 40) + 2);
  });

  it('gives the working directory back when the one it was started in went meanwhile', async () => {
    const gone = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-walk-home-'));
    process.chdir(gone);
    try {
      const w = new TreeWalk({ ...root, abs: path.join(dir, 'home/vmail/mail/a') } as ResolvedRoot);
      const first = w.take(3);
      expect(first.length).toBe(3);
      await fs.rm(gone, { recursive: true });
      let n = first.length;
      for (let batch = w.take(50); batch.length > 0; batch = w.take(50)) n += batch.length;
      expect(n).toBe(1 + 3 + 40);
      expect(process.cwd()).toBe('/');
    } finally {
      process.chdir(start);
    }
  });
});
