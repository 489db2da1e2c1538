/**
 * Disk full on the new host: the new agent's root is a small tmpfs. A pass that runs out of
 * space fails with an error naming the host and the path, leaves what earlier files
 * committed intact and no temp file, and resumes once space is freed (a filler file
 * deleted, or the filesystem grown).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectIntact, knownContents, MAIL, reportFigure, tornFiles } from './support/fault-checks';
import { findTempFiles, setupMigration, type Migration } from './support/harness';
import { writeIdentity } from './support/relay-tree';

const MIB = 1024 * 1024;

describe('disk full on the new host', () => {
  let m: Migration;
  let mounted = '';
  beforeAll(async () => {
    m = await setupMigration({
      tree: { addresses: 3, messagesPerAddress: 5, bigFiles: [6 * MIB, 6 * MIB, 6 * MIB] },
      prepare: async (oldRoot) => {
        const newRoot = path.join(path.dirname(oldRoot), 'new');
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=32m,mode=0755', 'tmpfs', newRoot]);
        mounted = newRoot;
        await writeIdentity(newRoot, 7000);
      },
    });
  }, 60_000);
  afterAll(async () => {
    await m?.old.stop();
    await m?.new.stop();
    if (mounted) execFileSync('umount', ['-l', mounted]);
    await m?.close();
  });

  async function fill(bytes: number): Promise<string> {
    const filler = path.join(m.newRoot, 'filler');
    await fs.writeFile(filler, Buffer.alloc(bytes, 1));
    return filler;
  }

  async function fails(phase: string): Promise<string> {
    const known = await knownContents([m.oldRoot, m.newRoot]);
    const before = await committedMail();
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', phase], 30_000);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('[transfer.disk_full]');
    expect(r.stderr).toContain(`new host ${os.hostname()}`);
    expect(r.stderr).toMatch(new RegExp(`/${MAIL}/\\S+`));
    expect(r.stderr).not.toContain('internal.unexpected');
    expect(await tornFiles(m.newRoot, known)).toEqual([]);
    expect(await findTempFiles(m.newRoot)).toEqual([]);
    // What was committed before is still there, unchanged.
    const after = await committedMail();
    for (const [p, size] of before) expect(after.get(p), p).toBe(size);
    return r.stderr;
  }

  async function committedMail(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const walk = async (d: string): Promise<void> => {
      for (const n of await fs.readdir(d).catch(() => [] as string[])) {
        const p = path.join(d, n);
        const st = await fs.lstat(p);
        if (st.isDirectory()) await walk(p);
        else if (st.isFile()) out.set(path.relative(m.newRoot, p), st.size);
      }
    };
    await walk(path.join(m.newRoot, MAIL));
    return out;
  }

  it('the initial pass fails naming host and path; deleting a filler file lets a rerun finish', async () => {
    const filler = await fill(20 * MIB);
    const err = await fails('initial');
    await fs.rm(filler);
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'initial'], 30_000);
    expect(r.code, r.stderr).toBe(0);
    const fin = await m.cli(['sync', '--plan', m.plan, '--phase', 'final'], 30_000);
    expect(fin.code, fin.stderr).toBe(0);
    await expectIntact(m);
    reportFigure('disk-full', { phase: 'initial', freed: 'filler deleted', error: err.split('\n').find((l) => l.includes('disk_full')) ?? '' });
  });

  it('the final pass fails when the disk fills again; growing the filesystem lets a rerun finish', async () => {
    for (let i = 0; i < 3; i++) {
      const p = path.join(m.oldRoot, MAIL, 'mail.example.org');
      const addr = (await fs.readdir(p)).sort()[i];
      const f = path.join(p, addr, 'cur', `1775300000.M${i}P9.full,S=${5 * MIB},W=${5 * MIB}:2,S`);
      await fs.writeFile(f, Buffer.alloc(5 * MIB, 65 + i));
      const dir = await fs.stat(path.dirname(f));
      await fs.chown(f, dir.uid, dir.gid);
    }
    const free = Number(execFileSync('df', ['-B1', '--output=avail', m.newRoot]).toString().trim().split('\n')[1]);
    await fill(Math.max(0, free - 8 * MIB));
    const err = await fails('final');
    execFileSync('mount', ['-o', 'remount,size=96m', m.newRoot]);
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'final'], 30_000);
    expect(r.code, r.stderr).toBe(0);
    await expectIntact(m);
    reportFigure('disk-full', { phase: 'final', freed: 'tmpfs grown', error: err.split('\n').find((l) => l.includes('disk_full')) ?? '' });
  });
});
