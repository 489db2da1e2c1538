/**
 * The receiver's journal of what a pass wrote (agent/manifest.ts): a record appended after
 * the pass was stopped (an action the executor had under way, a hard link or a rename it
 * awaited) still reaches the disk, so the next pass knows the file as one cmmigrate wrote.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManifestReader, ManifestWriter, type ManifestRecord } from '../agent/manifest';
import { manifestLine, parseManifestLine } from '../agent/manifest-line';
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
