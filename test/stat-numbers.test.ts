/**
 * The merge's stat fields as numbers (agent/fs/stat-numbers.ts) are exactly what the BigInt
 * fields of fs.lstatSync give, on real entries both through fast-lstat (the walk's stats)
 * and through fs.lstatSync itself; listed mtimes and recorded decimals compare as the
 * BigInt arithmetic and String() they replace.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lstatBig, lstatIsFast } from '../agent/fs/fast-lstat';
import { gidOf, inoOf, isDecimalOf, listedMtimeUs, mtimeUsOf, permOf, sizeOf, uidOf } from '../agent/fs/stat-numbers';

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const exact = (v: bigint): number | bigint => (v <= SAFE ? Number(v) : v);

let dir: string;
const entries: string[] = [];

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cmm-statnum-'));
  const f = path.join(dir, 'f');
  fs.writeFileSync(f, 'x'.repeat(1234));
  fs.chmodSync(f, 0o4751);
  fs.utimesSync(f, 1_700_000_000.123456, 1_700_000_000.987654);
  const old = path.join(dir, 'old');
  fs.writeFileSync(old, '');
  fs.utimesSync(old, 1, 1);
  const far = path.join(dir, 'far');
  fs.writeFileSync(far, '');
  fs.utimesSync(far, 9_100_000_000.5, 9_100_000_000.5); // past 2^53 µs: the BigInt way
  fs.symlinkSync('f', path.join(dir, 'l'));
  fs.mkdirSync(path.join(dir, 'd'), { mode: 0o1777 });
  entries.push(dir, f, old, far, path.join(dir, 'l'), path.join(dir, 'd'), '/');
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('stat numbers', () => {
  it('give what fs.lstatSync gives, through fast-lstat and through fs.lstatSync', () => {
    expect(typeof lstatIsFast()).toBe('boolean');
    for (const p of entries) {
      const want = fs.lstatSync(p, { bigint: true });
      for (const st of [lstatBig(p)!, want]) {
        expect(permOf(st), p).toBe(Number(want.mode & 0o7777n));
        expect(uidOf(st), p).toBe(Number(want.uid));
        expect(gidOf(st), p).toBe(Number(want.gid));
        expect(inoOf(st), p).toBe(exact(want.ino));
        expect(sizeOf(st), p).toBe(exact(want.size));
        expect(mtimeUsOf(st), p).toBe(exact(want.mtimeNs / 1000n));
      }
    }
    expect(typeof mtimeUsOf(fs.lstatSync(path.join(dir, 'far'), { bigint: true }))).toBe('bigint');
  });

  it('read a listed mtime as BigInt arithmetic does, and refuse what is not 1 to 21 digits', () => {
    const cases = ['0', '999', '1000', '1700000000123456789', '001700000000123456789', '9007199254740991999', '9007199254740992000', '9007199254740993999', '999999999999999999999', '18446744073709551615'];
    for (const ns of cases) expect(listedMtimeUs(ns), ns).toBe(exact(BigInt(ns) / 1000n));
    for (const bad of ['', '-1', '1.5', '1e9', ' 1', '1'.repeat(22), 'x']) expect(listedMtimeUs(bad), bad).toBeUndefined();
  });

  it('compare a decimal as String() would', () => {
    const values: (number | bigint)[] = [0, 7, 10, 1234567, Number.MAX_SAFE_INTEGER, 2n ** 60n, 1_700_000_000_123_456];
    for (const v of values) {
      const s = String(v);
      expect(isDecimalOf(s, v), s).toBe(true);
      for (const other of ['', '0' + s, s + '0', s.slice(1), s.slice(0, -1) + ((Number(s.at(-1)) + 1) % 10), ' ' + s]) {
        expect(isDecimalOf(other, v), `${JSON.stringify(other)} for ${s}`).toBe(other === s);
      }
    }
  });
});
