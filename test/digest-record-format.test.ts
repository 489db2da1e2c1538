/**
 * The digest records' line format (agent/verify/digest-records.ts): writers put the keys in one
 * order, path last, which readers take apart without a JSON parse; a line of another key
 * order (what agents before wrote) still reads through JSON.parse, and anything else is no
 * record, so its file ends there and the files it would have covered are read again.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DigestReader, DigestWriter, digestRecord, parseRecord, recordText, type DigestRecord } from '../agent/verify/digest-records';

const rec = (p: string): DigestRecord => ({ p, d: '2049', i: '123456', s: '4096', m: '1700000000123456789', c: '1700000001987654321', h: 'ab'.repeat(32) });

describe('digest record lines', () => {
  it('read back what they were written from, for plain and awkward paths', () => {
    for (const p of ['home/vmail/mail/x/cur/1:2,S', 'a "quoted" name', 'back\\slash', 'tab\tand\nnewline', 'ünïcode/✓', 'ends with brace}', '"', '\\', '']) {
      const line = recordText(rec(p));
      expect(JSON.parse(line)).toEqual(rec(p)); // still one JSON object per line
      expect(parseRecord(line)).toEqual(rec(p));
    }
  });

  it("read a line of another key order through JSON.parse (an older agent's records)", () => {
    const r = rec('x/a');
    expect(parseRecord(JSON.stringify(r))).toEqual(r);
    expect(parseRecord(JSON.stringify({ p: r.p, d: r.d, i: r.i, s: r.s, m: r.m, c: r.c, h: r.h }))).toEqual(r);
  });

  it('take no torn or foreign line for a record', () => {
    const line = recordText(rec('x/"a"}'));
    for (let cut = 1; cut < line.length; cut++) expect(parseRecord(line.slice(0, cut)), line.slice(0, cut)).toBeNull();
    expect(parseRecord('{"p":"x/a"}')).toBeNull();
    expect(parseRecord('[1,2]')).toBeNull();
    expect(parseRecord('null')).toBeNull();
    expect(parseRecord(recordText(rec('x/a')).replace('"d":"2049"', '"d":2049'))).toBeNull();
  });
});

describe('digest records across formats', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cmm-digest-format-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('hold from a set an older agent wrote, and a writer copies a hit line as it is', () => {
    const f = path.join(dir, 'f');
    fs.writeFileSync(f, 'one');
    const st = fs.lstatSync(f, { bigint: true });
    const state = path.join(dir, 'state');
    fs.mkdirSync(path.join(state, 'digests'), { recursive: true });
    const old = digestRecord('x/f', st, 'cd'.repeat(32));
    const set = path.join(state, 'digests', 'mailboxes.jsonl');
    fs.writeFileSync(set, JSON.stringify(old) + '\n'); // `p` first, as agents before wrote
    const later = Date.now() / 1000 + 5;
    fs.utimesSync(set, later, later);
    const r = DigestReader.open(state, 'mailboxes');
    expect(r.sha256('x/f', st)).toBe(old.h);
    expect(r.hitLine).toBeNull(); // not in the writers' layout: written anew
    r.close();

    const w = new DigestWriter(state, 'mailboxes');
    w.append(old);
    w.commit();
    fs.utimesSync(set, later, later);
    const r2 = DigestReader.open(state, 'mailboxes');
    expect(r2.sha256('x/f', st)).toBe(old.h);
    expect(r2.hitLine).toBe(recordText(old));
    r2.close();
  });
});
