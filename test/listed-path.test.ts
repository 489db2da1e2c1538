/**
 * The merge's one-pass check of listed paths (agent/receive/listed-path.ts) decides as
 * checkWirePath (agent/fs/paths.ts) does, error text included, on edge cases and on paths
 * drawn from a seeded alphabet of the characters that matter.
 */
import { describe, expect, it } from 'vitest';
import { checkListedPath } from '../agent/receive/listed-path';
import { checkWirePath } from '../agent/fs/paths';

const outcome = (f: () => string): string => {
  try {
    return 'ok ' + f();
  } catch (err) {
    return 'err ' + (err as Error).message;
  }
};

const same = (p: string): void => {
  expect(outcome(() => checkListedPath(p, 'listed path')), JSON.stringify(p)).toBe(outcome(() => checkWirePath(p, 'listed path')));
};

describe('checkListedPath', () => {
  it('decides the edge cases as checkWirePath', () => {
    const edge = ['', '/', 'a', 'a/', '/a', 'a//b', 'a/./b', 'a/../b', '.', '..', '...', 'a/.b', 'a/..b', 'a/b.', 'a\0b', 'ä/b', 'a/😀', 'x'.repeat(255), 'x'.repeat(256), `a/${'x'.repeat(255)}`, `a/${'x'.repeat(256)}`, `${'abcdefgh/'.repeat(455)}x`, `${'abcdefgh/'.repeat(455)}xy`, `${'abcdefgh/'.repeat(456)}`, 'home/vmail/mail/example.org/a@example.org/cur/1700000000.M1P2.host,S=123:2,S'];
    const fast = edge.filter((p) => outcome(() => checkListedPath(p, 'listed path')).startsWith('ok'));
    expect(fast.length).toBeGreaterThan(5);
    for (const p of edge) same(p);
  });

  it('decides seeded random paths as checkWirePath', () => {
    let seed = 13;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const alphabet = ['a', 'b', '.', '/', '\0', 'é', ':', ',', ' '];
    const differ: string[] = [];
    let accepted = 0;
    for (let k = 0; k < 5000; k++) {
      let p = '';
      const len = rand(12);
      for (let i = 0; i < len; i++) p += alphabet[rand(alphabet.length)];
      const want = outcome(() => checkWirePath(p, 'listed path'));
      if (outcome(() => checkListedPath(p, 'listed path')) !== want) differ.push(p);
      if (want.startsWith('ok')) accepted++;
    }
    expect(differ).toEqual([]);
    expect(accepted).toBeGreaterThan(100);
  });
});
