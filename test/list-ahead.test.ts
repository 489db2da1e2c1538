/**
 * The sender's listing walks a tree once, keeping the first entries in memory and the rest
 * in a spill file of its state dir (issue 13): wherever that cut falls, the listing is the
 * same as the one of a plain walk; a full state dir stops it with a clear error.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadIdentity } from '../agent/fs/identity';
import type { ResolvedRoot } from '../agent/fs/paths';
import { announceAndList, type ListedEntry, type ListEnd } from '../agent/send/listing';
import type { CmError } from '../proto';

async function collect(roots: ResolvedRoot[], root: string, keep?: number): Promise<{ announced: unknown; items: (ListedEntry | ListEnd)[] }> {
  const listing = await announceAndList(roots, 'initial', await loadIdentity(root), undefined, keep);
  const items: (ListedEntry | ListEnd)[] = [];
  for await (const i of listing.entries) items.push(i);
  return { announced: listing.announced, items };
}

describe('announce and list', () => {
  let dir: string;
  let roots: ResolvedRoot[];

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-list-ahead-'));
    await fs.mkdir(path.join(dir, 'etc'));
    await fs.writeFile(path.join(dir, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
    await fs.writeFile(path.join(dir, 'etc/group'), 'root:x:0:\n');
    const mail = path.join(dir, 'home/vmail/mail/d');
    for (const a of ['a', 'b', 'c']) {
      for (const sub of ['cur', 'new', 'tmp']) await fs.mkdir(path.join(mail, a, sub), { recursive: true });
      for (let i = 0; i < 3; i++) await fs.writeFile(path.join(mail, a, 'cur', `m${i}:2,S`), `${a}${i}\n`);
      await fs.writeFile(path.join(mail, a, 'password'), 'x');
    }
    await fs.link(path.join(mail, 'a/cur/m0:2,S'), path.join(mail, 'b/new/m0'));
    await fs.link(path.join(mail, 'a/cur/m0:2,S'), path.join(mail, 'c/new/m0'));
    await fs.symlink('../a', path.join(mail, 'b/link'));
    await fs.mkdir(path.join(dir, 'etc/dkimkeys'));
    await fs.writeFile(path.join(dir, 'etc/dkimkeys/opendkim.private'), 'k');
    roots = [
      { name: 'mailboxes', rel: 'home/vmail/mail', abs: path.join(dir, 'home/vmail/mail'), optional: false },
      { name: 'dkim', rel: 'etc/dkimkeys', abs: path.join(dir, 'etc/dkimkeys'), optional: false },
    ] as ResolvedRoot[];
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('announces each root\'s entries, owners, and its files and bytes with a hard-linked file counted once', async () => {
    const { announced, items } = await collect(roots, dir);
    const mail = (announced as { name: string; files: number; bytes: number; entries: number; users: string[]; groups: string[] }[])[0];
    const listed = items.filter((i): i is ListedEntry => 'path' in i && i.path.startsWith('home/'));
    expect(mail.entries).toBe(listed.length);
    // 3 mailboxes x (3 messages + password) + the two further links of a/cur/m0:2,S, which are not counted again.
    expect(mail.files).toBe(12);
    const sizes = listed.filter((e) => e.type === 'file' && !e.leader).reduce((n, e) => n + Number(e.size), 0);
    expect(mail.bytes).toBe(sizes);
    expect(mail.bytes).toBe(3 * (3 * 3 + 1));
    expect(mail.users).toEqual(['root']);
    expect(mail.groups).toEqual(['root']);
  });

  it('lists the same entries wherever the kept part ends', async () => {
    const whole = await collect(roots, dir);
    expect(whole.items.filter((i) => 'path' in i).length).toBeGreaterThan(30);
    expect(whole.items.filter((i) => 'path' in i && i.leader).length).toBe(2);
    for (let keep = 0; keep <= whole.items.length; keep++) {
      const cut = await collect(roots, dir, keep);
      expect(cut.announced, `keep ${keep}`).toEqual(whole.announced);
      expect(cut.items, `keep ${keep}`).toEqual(whole.items);
    }
  });

  it('a full state dir stops the listing with a clear error before anything is sent', async () => {
    const spill = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-spill-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', spill]);
    try {
      // Fill it, so the spill file's first write finds no room.
      await fs.writeFile(path.join(spill, 'filler'), Buffer.alloc(256 * 1024)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOSPC') throw err;
      });
      const listing = announceAndList(roots, 'initial', await loadIdentity(dir), undefined, 0, spill);
      await expect(listing).rejects.toMatchObject({ code: 'transfer.disk_full' });
      const err = (await listing.catch((e: unknown) => e)) as CmError;
      expect(err.message).toContain(spill);
      expect(err.hint).toContain('--state-dir');
      expect((await fs.readdir(spill)).filter((f) => f !== 'filler')).toEqual([]);
    } finally {
      execFileSync('umount', ['-l', spill]);
      await fs.rm(spill, { recursive: true, force: true });
    }
  });
});
