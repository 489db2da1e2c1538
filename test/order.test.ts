/** Walk order: the fast comparisons agree with the definition on random and tricky paths. */
import { describe, expect, it } from 'vitest';
import { compareNames, comparePaths } from '../proto/order';

function reference(a: string, b: string): number {
  const pa = a.split('/');
  const pb = b.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const c = Buffer.compare(Buffer.from(pa[i]), Buffer.from(pb[i]));
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}

describe('walk order', () => {
  it('matches component-wise UTF-8 byte order', () => {
    const alphabet = ['a', 'b', '.', '-', '0', ':', ',', 'é', 'ü', '\u{e000}', '\u{ffff}', '😀', '𝄞', '/'];
    let seed = 1;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const paths: string[] = ['a', 'a/b', 'a.b', 'a/b.c', 'a-b', 'ab', 'a/ab', 'a/a/b', 'cur/x:2,', 'cur/x:2,S', 'cur', 'new'];
    for (let i = 0; i < 400; i++) {
      let s = '';
      const len = 1 + rnd(6);
      for (let j = 0; j < len; j++) s += alphabet[rnd(alphabet.length)];
      s = s.replace(/\/+/g, '/').replace(/^\/|\/$/g, '') || 'x';
      paths.push(s);
    }
    for (const a of paths) {
      for (const b of paths.slice(0, 80)) {
        expect(Math.sign(comparePaths(a, b)), `${a} vs ${b}`).toBe(Math.sign(reference(a, b)));
      }
    }
    const names = paths.filter((p) => !p.includes('/'));
    for (const a of names) for (const b of names) expect(Math.sign(compareNames(a, b))).toBe(Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
  });

  it('puts a directory before its contents and Maildir cur/ before new/', () => {
    const sorted = ['x/new/1', 'x/cur/1:2,S', 'x', 'x/cur', 'x/cur/1:2,', 'x/new', 'x.y', 'x/dovecot-uidlist'].sort(comparePaths);
    expect(sorted).toEqual(['x', 'x/cur', 'x/cur/1:2,', 'x/cur/1:2,S', 'x/dovecot-uidlist', 'x/new', 'x/new/1', 'x.y']);
  });
});
