/**
 * The receiver's journal of what a pass wrote (agent/receive/manifest.ts): a record appended after
 * the pass was stopped (an action the executor had under way, a hard link or a rename it
 * awaited) still reaches the disk, so the next pass knows the file as one cmmigrate wrote.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManifestReader, ManifestWriter, type ManifestRecord } from '../agent/receive/manifest';
import { manifestLine, manifestLinkOf, manifestPathOf, parseManifestLine } from '../agent/receive/manifest-line';
import { comparePaths } from '../proto';

let dir: string | undefined;
afterEach(async () => {
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
  dir = undefined;
});

const rec = (p: string): ManifestRecord => ({ p, t: 'file', s: 1, m: '1', i: '1', si: '1' });

describe('ManifestWriter', () => {
  it('writes a record appended after close, in an interrupted pass, to its journal at once', async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-manifest-'));
    const w = new ManifestWriter(dir, 'mailboxes');
    w.append(rec('home/vmail/mail/a'));
    w.close();
    w.append(rec('home/vmail/mail/b'));
    // No flush, no commit: what is on disk is what a killed agent would leave.
    const r = await ManifestReader.open(dir, 'mailboxes');
    try {
      expect((await r.at('home/vmail/mail/a'))?.p).toBe('home/vmail/mail/a');
      expect((await r.at('home/vmail/mail/b'))?.p).toBe('home/vmail/mail/b');
    } finally {
      r.close();
    }
  });
});

describe('ManifestReader after a killed pass', () => {
  // A pass killed after it put a new copy of a file in place leaves two records of the path:
  // the committed manifest's (the old copy's inode) and its journal's (the new one's).
  // The one that describes the file there must hold, whatever order the directory lists
  // the files in; otherwise the next pass takes the file for one it did not write, keeps
  // no record of it, and never deletes it when the source does.
  const p = 'home/vmail/mail/a/maildirsize';
  const line = (i: string): string => manifestLine({ p, t: 'file', s: 5, m: '7', i, si: '9' }) + '\n';

  for (const journalName of ['mailboxes.pass-1796000000000-1.jsonl', 'mailboxes.aaa-pass.jsonl', 'mailboxes.zzz-pass.jsonl']) {
    it(`takes the record of the inode that is there, and else the newer one (journal ${journalName})`, async () => {
      dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-manifest-'));
      await fsp.writeFile(path.join(dir, 'mailboxes.manifest.jsonl'), line('100'));
      await fsp.writeFile(path.join(dir, journalName), line('200'));
      for (const [ino, want] of [[200, '200'], [100, '100'], [undefined, '200'], [300, '200']] as const) {
        const r = await ManifestReader.open(dir, 'mailboxes');
        try {
          expect(r.clean).toBe(false);
          expect(r.at(p, ino)?.i, `inode ${ino}`).toBe(want);
        } finally {
          r.close();
        }
      }
    });
  }
});

describe('ManifestWriter following the committed manifest', () => {
  const paths = ['home/vmail/mail', 'home/vmail/mail/a', 'home/vmail/mail/b', 'home/vmail/mail/c'];
  const committed = async (recs: ManifestRecord[]): Promise<string> => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-manifest-'));
    const file = path.join(dir, 'mailboxes.manifest.jsonl');
    await fsp.writeFile(file, recs.map((r) => manifestLine(r)).join('\n') + '\n');
    await fsp.writeFile(path.join(dir, 'mailboxes.manifest.extra.jsonl'), '');
    return file;
  };
  /** One pass: `keep` says, per path, to keep its record (true), leave it out (false) or append a fresh one (a record). */
  const pass = async (keep: (p: string) => boolean | ManifestRecord): Promise<{ w: ManifestWriter; r: ManifestReader }> => {
    const r = await ManifestReader.open(dir!, 'mailboxes');
    const w = new ManifestWriter(dir!, 'mailboxes');
    w.follow(r);
    for (const p of paths) {
      const ours = r.at(p);
      const k = keep(p);
      if (k === true && ours && !w.keepSame(r.ordinalOf(ours))) w.appendKept(ours.line);
      else if (typeof k === 'object') w.append(k);
    }
    return { w, r };
  };

  it('leaves the manifest as it is when every record is kept, writing no journal', async () => {
    const file = await committed(paths.map(rec));
    const before = await fsp.stat(file);
    const { w, r } = await pass(() => true);
    await w.commit();
    r.close();
    const after = await fsp.stat(file);
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
    expect((await fsp.readdir(dir!)).sort()).toEqual(['mailboxes.manifest.extra.jsonl', 'mailboxes.manifest.jsonl']);
  });

  it('writes the records kept so far before anything else, in order, and commits as a writer that never followed', async () => {
    await committed(paths.map(rec));
    const fresh = { ...rec('home/vmail/mail/b'), s: 7 };
    const { w, r } = await pass((p) => (p === 'home/vmail/mail/b' ? fresh : true));
    await w.commit();
    r.close();
    const lines = (await fsp.readFile(path.join(dir!, 'mailboxes.manifest.jsonl'), 'utf8')).trim().split('\n');
    expect(lines).toEqual([rec(paths[0]), rec(paths[1]), fresh, rec(paths[3])].map((x) => manifestLine(x)));
  });

  it('drops a record that was not kept: a gap or a record left at the end is written out', async () => {
    for (const left of ['home/vmail/mail/a', 'home/vmail/mail/c']) {
      await committed(paths.map(rec));
      const { w, r } = await pass((p) => p !== left);
      await w.commit();
      r.close();
      const lines = (await fsp.readFile(path.join(dir!, 'mailboxes.manifest.jsonl'), 'utf8')).trim().split('\n');
      expect(lines).toEqual(paths.filter((p) => p !== left).map((p) => manifestLine(rec(p))));
      await fsp.rm(dir!, { recursive: true, force: true });
    }
  });

  it('a pass stopped while following leaves the committed manifest and no journal', async () => {
    const file = await committed(paths.map(rec));
    const text = await fsp.readFile(file, 'utf8');
    const { w, r } = await pass(() => true);
    w.close();
    r.close();
    expect(await fsp.readFile(file, 'utf8')).toBe(text);
    expect((await fsp.readdir(dir!)).sort()).toEqual(['mailboxes.manifest.extra.jsonl', 'mailboxes.manifest.jsonl']);
  });

  it('follows a manifest whose records are split between its main and extra files, in walk order', async () => {
    const file = await committed([paths[0], paths[2]].map(rec));
    const extra = path.join(dir!, 'mailboxes.manifest.extra.jsonl');
    await fsp.writeFile(extra, [paths[1], paths[3]].map((p) => manifestLine(rec(p))).join('\n') + '\n');
    const before = await fsp.stat(file);
    let { w, r } = await pass(() => true);
    await w.commit();
    r.close();
    expect((await fsp.stat(file)).ino).toBe(before.ino);
    expect((await fsp.readdir(dir!)).sort()).toEqual(['mailboxes.manifest.extra.jsonl', 'mailboxes.manifest.jsonl']);
    const fresh = { ...rec(paths[3]), s: 9 };
    ({ w, r } = await pass((p) => (p === paths[3] ? fresh : true)));
    await w.commit();
    r.close();
    const lines = (await fsp.readFile(file, 'utf8')).trim().split('\n');
    expect(lines).toEqual([rec(paths[0]), rec(paths[1]), rec(paths[2]), fresh].map((x) => manifestLine(x)));
    expect(await fsp.readFile(extra, 'utf8')).toBe('');
  });

  it('does not follow a manifest beside a journal of an interrupted pass', async () => {
    await committed(paths.map(rec));
    await fsp.writeFile(path.join(dir!, 'mailboxes.pass-1-1.jsonl'), manifestLine(rec('home/vmail/mail/z')) + '\n');
    const r = await ManifestReader.open(dir!, 'mailboxes');
    expect(r.followable).toBeNull();
    r.close();
  });
});

describe('manifest lines', () => {
  const recs: ManifestRecord[] = [
    { p: 'home/vmail/mail/example.org/a@example.org/cur/1700000000.M1P2.host:2,S', t: 'file', s: 1234, m: '1700000000123456', i: '98765', si: '2049:12345' },
    { p: 'home/vmail/mail/x/"quoted"\\back\nslash', t: 'file', s: 0, m: '0', i: '1', si: '1:1' },
    { p: 'home/vmail/mail/ünïcødé/😀', t: 'dir', s: 0, m: '1', i: '18446744073709551615', si: '' },
    { p: 'home/vmail/mail/big', t: 'file', s: 2 ** 40, m: '1', i: '2', si: '3:4' },
  ];

  it('reads back what it writes, by position or as JSON, and gives the line itself', () => {
    for (const r of recs) {
      const line = manifestLine(r);
      expect(line).toBe(JSON.stringify(r));
      expect(parseManifestLine(line)).toEqual({ ...r, line });
    }
  });

  it('reads a line written in another key order or spacing (an earlier release) as JSON', () => {
    const r = recs[0];
    const other = JSON.stringify({ si: r.si, i: r.i, m: r.m, s: r.s, t: r.t, p: r.p });
    expect(parseManifestLine(other)).toEqual({ ...r, line: other });
    const spaced = JSON.stringify(r, null, 1).replace(/\n/g, '');
    expect(parseManifestLine(spaced)).toEqual({ ...r, line: spaced });
  });

  it('refuses every torn prefix of a line (a pass killed mid-write)', () => {
    for (const r of recs) {
      const line = manifestLine(r);
      for (let n = 1; n < line.length; n++) expect(parseManifestLine(line.slice(0, n))).toBeNull();
    }
  });

  it('reads a manifest of the current release (JSON.stringify of each record) across files', async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-manifest-'));
    const sorted = recs.slice().sort((a, b) => comparePaths(a.p, b.p));
    await fsp.writeFile(path.join(dir, 'mailboxes.manifest.jsonl'), sorted.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const r = await ManifestReader.open(dir, 'mailboxes');
    try {
      expect(r.clean).toBe(true);
      for (const want of sorted) expect(r.at(want.p)).toEqual({ ...want, line: JSON.stringify(want) });
    } finally {
      r.close();
    }
  });
});

describe('a manifest line read as bytes (manifestPathOf, manifestLinkOf)', () => {
  it('gives the path and source inode parseManifestLine gives, for plain and escaped paths, and null for a torn line', () => {
    const paths = ['home/vmail/mail/a/cur/1.M1P1:2,S', 'home/vmail/mail/ünï/cur/x', 'etc/"quoted"/f', 'etc/back\\slash', 'etc/tab\there', 'etc/,"t":"trap'];
    for (const p of paths) {
      const r: ManifestRecord = { p, t: 'file', s: 12, m: '1700000000000000', i: '42', si: '2049:77' };
      const line = manifestLine(r);
      const bytes = Buffer.from(line, 'utf8');
      expect(manifestPathOf(bytes), line).toBe(parseManifestLine(line)!.p);
      expect(manifestLinkOf(bytes), line).toEqual({ p, si: '2049:77' });
      // Keys in another order (an older writer): the same, through JSON.parse.
      const other = Buffer.from(JSON.stringify({ si: r.si, p: r.p, t: r.t, s: r.s, m: r.m, i: r.i }));
      expect(manifestLinkOf(other), line).toEqual({ p, si: '2049:77' });
      // Torn by a kill: no record.
      expect(manifestPathOf(bytes.subarray(0, bytes.length - 3)), line).toBeNull();
      expect(manifestLinkOf(bytes.subarray(0, bytes.length - 3)), line).toBeNull();
    }
  });
});
