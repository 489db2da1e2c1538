/**
 * The scope of a journal-driven walk (agent/fs/walk-scope.ts): which paths it covers, what
 * it reads, its bound in walk order, and that it goes over the wire and back unchanged —
 * both agents must walk exactly the same scope, or an entry one of them skipped would look
 * gone to the other.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { comparePaths } from '../proto';
import { TreeWalk } from '../agent/fs/walk';
import { WalkScope, type ScopedPath } from '../agent/fs/walk-scope';
import { Rng } from './support/rng';

const ROOT = 'home/vmail/mail';

/** What a scope covers, by its definition: the path itself or a directory on its way, a direct entry of a `children` path, anything below a `subtree`. */
function coversByDefinition(paths: ScopedPath[], rel: string): boolean {
  if (rel === ROOT) return true;
  return paths.some((p) => {
    if (p.path === rel) return true;
    if (p.path.startsWith(rel + '/')) return true; // rel is on the way to p
    if (p.scope === 'subtree' && rel.startsWith(p.path + '/')) return true;
    if (p.scope === 'children' && path.posix.dirname(rel) === p.path) return true;
    return false;
  });
}

describe('a walk scope', () => {
  const paths: ScopedPath[] = [
    { path: `${ROOT}/d/a@x/cur/1`, scope: 'entry' },
    { path: `${ROOT}/d/a@x/new`, scope: 'children' },
    { path: `${ROOT}/d/b@x/.Folder`, scope: 'subtree' },
    { path: `${ROOT}/d/b@x/.Folder/cur/9`, scope: 'entry', content: true },
    { path: `${ROOT}/d/c@x`, scope: 'entry' },
  ];
  const scope = new WalkScope(ROOT, paths);

  it('covers what its definition says, for every path asked in walk order', () => {
    const rng = new Rng(7);
    const parts = ['d', 'a@x', 'b@x', 'c@x', 'cur', 'new', '.Folder', '1', '2', '9', 'x'];
    const asked = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      let p = ROOT;
      for (let n = rng.int(0, 5); n > 0; n--) p += '/' + rng.pick(parts);
      asked.add(p);
    }
    const sorted = [...asked].sort(comparePaths);
    const wrong = sorted.filter((p) => scope.covers(p) !== coversByDefinition(paths, p));
    expect(wrong).toEqual([]);
    expect(scope.covers('home/vmail/mailbox/x')).toBe(false);
    expect(scope.covers(`${ROOT}/d/a@x/new/7`)).toBe(true);
    expect(scope.covers(`${ROOT}/d/a@x/new/7/deeper`)).toBe(false);
  });

  it('bounds what it covers: every covered path sorts before its bound or lies below it', () => {
    const last = scope.last;
    expect(last).toBe(`${ROOT}/d/c@x`);
    const under = new WalkScope(ROOT, [{ path: `${ROOT}/z`, scope: 'children' }, { path: `${ROOT}/z/sub/y`, scope: 'entry' }]);
    expect(under.last).toBe(`${ROOT}/z`);
    expect(under.lastCoversBelow).toBe(true);
    // An entry's bound covers nothing below it; an empty scope only the root itself.
    const entry = new WalkScope(ROOT, [{ path: `${ROOT}/d`, scope: 'entry' }]);
    expect([entry.last, entry.lastCoversBelow]).toEqual([`${ROOT}/d`, false]);
    expect(entry.covers(`${ROOT}/d/x`)).toBe(false);
    const empty = new WalkScope(ROOT, []);
    expect([empty.last, empty.lastCoversBelow]).toEqual([ROOT, false]);
    expect(empty.covers(`${ROOT}/x`)).toBe(false);
  });

  it('says where data was written, also below a covering subtree', () => {
    expect(scope.contentChanged(`${ROOT}/d/b@x/.Folder/cur/9`)).toBe(true);
    expect(scope.contentChanged(`${ROOT}/d/a@x/cur/1`)).toBe(false);
  });

  it('is the same scope after its paths cross the wire', () => {
    const again = new WalkScope(ROOT, scope.paths());
    expect(again.paths()).toEqual(scope.paths());
    expect(again.contentChanged(`${ROOT}/d/b@x/.Folder/cur/9`)).toBe(true);
    for (const p of [`${ROOT}/d/a@x/new/q`, `${ROOT}/d/b@x/.Folder/x/y`, `${ROOT}/d/c@x/cur`, `${ROOT}/d`]) expect(again.covers(p)).toBe(scope.covers(p));
  });

  it('walks only what it covers, on real files, and a scoped path that is not there is no error', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cmm-scope-'));
    try {
      const mk = (rel: string, file = true): void => {
        const abs = path.join(dir, rel);
        fs.mkdirSync(file ? path.dirname(abs) : abs, { recursive: true });
        if (file) fs.writeFileSync(abs, 'x');
      };
      for (const f of ['d/a@x/cur/1', 'd/a@x/cur/2', 'd/a@x/new/5', 'd/a@x/new/6', 'd/b@x/.Folder/cur/9', 'd/b@x/.Folder/new/8', 'd/b@x/cur/3', 'd/c@x/cur/4', 'e/f']) mk(`${ROOT}/${f}`);
      const root = { name: 'mailboxes' as const, rel: ROOT, abs: path.join(dir, ROOT), optional: false };
      const seen: string[] = [];
      const w = new TreeWalk(root, { scope, onVanished: (r) => seen.push(`vanished ${r}`) });
      for (let b = w.take(100); b.length; b = w.take(100)) for (const e of b) seen.push(e.rel.slice(ROOT.length + 1) || '.');
      expect(seen).toEqual(['.', 'd', 'd/a@x', 'd/a@x/cur', 'd/a@x/cur/1', 'd/a@x/new', 'd/a@x/new/5', 'd/a@x/new/6', 'd/b@x', 'd/b@x/.Folder', 'd/b@x/.Folder/cur', 'd/b@x/.Folder/cur/9', 'd/b@x/.Folder/new', 'd/b@x/.Folder/new/8', 'd/c@x']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
