/**
 * The digests passes record for a quick verify (agent/verify/digest-records.ts): a record holds
 * only while device, inode, size, mtime and ctime are all as recorded, and only for a file
 * older than the records file (the racy case of git's index); records are read back in walk
 * order from the committed set and from a killed pass's journal.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DigestReader, DigestWriter, digestRecord } from '../agent/verify/digest-records';

let dir: string;
let state: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cmm-digests-'));
  state = path.join(dir, 'state');
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const st = (p: string) => fs.lstatSync(p, { bigint: true });
const SHA = (c: string) => c.repeat(64);

function file(name: string, data: string, mtimeS = 1_700_000_000): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, data);
  fs.utimesSync(p, mtimeS, mtimeS);
  return p;
}

/** Move the records file's stamp well after every file's ctime, as a pass that ends later would. */
function stampLater(root: string): void {
  const f = path.join(state, 'digests', `${root}.jsonl`);
  const later = Date.now() / 1000 + 5;
  fs.utimesSync(f, later, later);
}

describe('digest records', () => {
  it('give the recorded digest while the file is as recorded, in walk order', () => {
    const a = file('a', 'one');
    const b = file('b', 'two');
    const w = new DigestWriter(state, 'mailboxes');
    w.append(digestRecord('x/a', st(a), SHA('a')));
    w.append(digestRecord('x/b', st(b), SHA('b')));
    w.commit();
    stampLater('mailboxes');
    const r = DigestReader.open(state, 'mailboxes');
    expect(r.sha256('x/a', st(a))).toBe(SHA('a'));
    expect(r.sha256('x/b', st(b))).toBe(SHA('b'));
    expect(r.hits).toBe(2);
    r.close();
  });

  it('do not hold once a byte changed behind our back with the mtime restored: ctime moved', async () => {
    const a = file('a', 'one');
    const before = st(a);
    const w = new DigestWriter(state, 'mailboxes');
    w.append(digestRecord('x/a', before, SHA('a')));
    w.commit();
    stampLater('mailboxes');
    await new Promise((r) => setTimeout(r, 20)); // past the filesystem's clock tick
    fs.writeFileSync(a, 'One');
    fs.utimesSync(a, before.atime, new Date(Number(before.mtimeMs)));
    const after = st(a);
    expect(after.mtimeNs).toBe(before.mtimeNs);
    expect(after.size).toBe(before.size);
    expect(after.ctimeNs).not.toBe(before.ctimeNs);
    const r = DigestReader.open(state, 'mailboxes');
    expect(r.sha256('x/a', after)).toBeUndefined();
    r.close();
  });

  it('do not hold for a file whose ctime is not older than the records file (racy)', () => {
    const a = file('a', 'one');
    const w = new DigestWriter(state, 'mailboxes');
    w.append(digestRecord('x/a', st(a), SHA('a')));
    w.commit();
    // The records file written in the same clock tick as the file changed: set its stamp to
    // the file's ctime exactly, which is what a coarse clock produces.
    const f = path.join(state, 'digests', 'mailboxes.jsonl');
    const ctime = st(a).ctime;
    fs.utimesSync(f, ctime, ctime);
    const r = DigestReader.open(state, 'mailboxes');
    expect(r.sha256('x/a', st(a))).toBeUndefined();
    r.close();
  });

  it('do not hold for another inode, size or device at the same path', () => {
    const a = file('a', 'one');
    const rec = digestRecord('x/a', st(a), SHA('a'));
    const w = new DigestWriter(state, 'mailboxes');
    w.append({ ...rec, i: String(BigInt(rec.i) + 1n) });
    w.commit();
    stampLater('mailboxes');
    const r = DigestReader.open(state, 'mailboxes');
    expect(r.sha256('x/a', st(a))).toBeUndefined();
    r.close();
  });

  it("count a killed pass's journal, newer records winning, and drop records given out of order", () => {
    const a = file('a', 'one');
    const b = file('b', 'two');
    const w1 = new DigestWriter(state, 'mailboxes');
    w1.append(digestRecord('x/a', st(a), SHA('1')));
    w1.commit();
    const w2 = new DigestWriter(state, 'mailboxes');
    w2.append(digestRecord('x/b', st(b), SHA('b')));
    w2.append(digestRecord('x/a', st(a), SHA('2'))); // out of walk order: dropped
    w2.close(); // killed: no commit
    for (const f of fs.readdirSync(path.join(state, 'digests'))) {
      const later = Date.now() / 1000 + 5;
      fs.utimesSync(path.join(state, 'digests', f), later, later);
    }
    const r = DigestReader.open(state, 'mailboxes');
    expect(r.sha256('x/a', st(a))).toBe(SHA('1'));
    expect(r.sha256('x/b', st(b))).toBe(SHA('b'));
    r.close();
    // A committed pass replaces every older file of the root.
    const w3 = new DigestWriter(state, 'mailboxes');
    w3.append(digestRecord('x/b', st(b), SHA('3')));
    w3.commit();
    expect(fs.readdirSync(path.join(state, 'digests'))).toEqual(['mailboxes.jsonl']);
  });

  it('keep a torn last line out', () => {
    const a = file('a', 'one');
    const w = new DigestWriter(state, 'mailboxes');
    w.append(digestRecord('x/a', st(a), SHA('a')));
    w.commit();
    const f = path.join(state, 'digests', 'mailboxes.jsonl');
    fs.appendFileSync(f, '{"p":"x/b","d":"1"');
    stampLater('mailboxes');
    const r = DigestReader.open(state, 'mailboxes');
    expect(r.sha256('x/a', st(a))).toBe(SHA('a'));
    expect(r.at('x/b')).toBeUndefined();
    r.close();
  });
});
