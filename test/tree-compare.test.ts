/**
 * The controller's merge of two verify listings (controller/tree-compare.ts): whatever the
 * batches' sizes, each differing path is named once, in walk order, and every root's
 * digests are paired, also when one listing runs out early.
 */
import { describe, expect, it } from 'vitest';
import { compareListings } from '../controller/tree-compare';
import { CmError, parseVerifyLine, verifyLineOf, type RootDigest__Output, type VerifyBatch__Output, type VerifyFields } from '../proto';

const entry = (path: string, over: Partial<VerifyFields> = {}): VerifyFields => ({ path, type: 'file', size: '3', mode: 0o600, user: 'vmail', group: 'vmail', mtime_us: '1700000000000000', sha256: 'a'.repeat(64), link: '', hardlink: '', ...over });
const done = (root: string, entries: number, sha256: string, present = true): RootDigest__Output => ({ root, present, entries: String(entries), sha256, sockets_skipped: '0', from_records: '1', read: '2', scoped: false, paths: '0', walk_reason: '' });

/** A listing in batches of `size` entries, with an empty batch thrown in, each root's end on its last batch. */
async function* listing(roots: { entries: VerifyFields[]; done: RootDigest__Output }[], size: number): AsyncGenerator<VerifyBatch__Output> {
  const lines = (es: VerifyFields[]): Buffer => Buffer.from(es.map((e) => verifyLineOf(e) + '\n').join(''));
  for (const r of roots) {
    yield { lines: Buffer.alloc(0), root_done: null };
    for (let i = 0; i < r.entries.length; i += size) {
      const last = i + size >= r.entries.length;
      yield { lines: lines(r.entries.slice(i, i + size)), root_done: last ? r.done : null };
    }
    if (r.entries.length === 0) yield { lines: Buffer.alloc(0), root_done: r.done };
  }
}

describe('compareListings', () => {
  const oldRoots = [
    { entries: [entry('m/a'), entry('m/b'), entry('m/c', { mode: 0o644 }), entry('m/d'), entry('m/e')], done: done('mailboxes', 5, 'x') },
    { entries: [], done: done('acme', 0, 'e', false) },
    { entries: [entry('k/1'), entry('k/2')], done: done('dkimkeys', 2, 'k') },
  ];
  const newRoots = [
    { entries: [entry('m/a'), entry('m/c'), entry('m/d', { sha256: 'b'.repeat(64) }), entry('m/e'), entry('m/f')], done: done('mailboxes', 5, 'y') },
    { entries: [], done: done('acme', 0, 'e', false) },
    { entries: [entry('k/1'), entry('k/2')], done: done('dkimkeys', 2, 'k') },
  ];
  const expected = [
    { path: '/m/b', what: 'missing on the new host' },
    { path: '/m/c', what: 'mode 0644 != 0600' },
    { path: '/m/d', what: 'content differs' },
    { path: '/m/f', what: 'only on the new host' },
  ];

  for (const [a, b] of [
    [1, 1],
    [2, 3],
    [256, 1],
  ]) {
    it(`names each difference once whatever the batches (${a} and ${b} entries per batch)`, async () => {
      const cmp = await compareListings(listing(oldRoots, a), listing(newRoots, b));
      expect(cmp.first).toEqual(expected);
      expect(cmp.differences).toBe(4);
      expect(cmp.roots.map((r) => [r.root, r.match, r.entries.old, r.entries.new, r.fromRecords.old, r.read.new])).toEqual([
        ['mailboxes', false, 5, 5, 1, 2],
        ['acme', true, 0, 0, 1, 2],
        ['dkimkeys', true, 2, 2, 1, 2],
      ]);
    });
  }

  it('counts past the kept differences, and names what only one listing has when the other ends early', async () => {
    const cmp = await compareListings(listing(oldRoots, 2), listing(newRoots.slice(0, 1), 2), 2);
    expect(cmp.first).toEqual(expected.slice(0, 2));
    expect(cmp.differences).toBe(6); // the four, and dkimkeys' two entries missing on the new host
    expect(cmp.roots.map((r) => r.root)).toEqual(['mailboxes']);
  });

  it('refuses a listing whose lines are not records, or whose batch ends inside a line, naming the agent', async () => {
    async function* raw(text: string): AsyncGenerator<VerifyBatch__Output> {
      yield { lines: Buffer.from(text), root_done: done('mailboxes', 1, 'x') };
    }
    const good = verifyLineOf(entry('m/a')) + '\n';
    for (const bad of ['{"not":"a record"}\n', '["m/a","file"]\n', good.slice(0, -1)]) {
      const err = await compareListings(raw(good), raw(bad)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CmError);
      expect((err as CmError).code).toBe('wire.protocol');
      expect((err as CmError).message).toMatch(/the new agent/);
    }
  });

  it('refuses a listing that does not end exactly the roots asked, naming the agent', async () => {
    const asked = ['mailboxes', 'acme', 'dkimkeys'];
    const ok = await compareListings(listing(oldRoots, 3), listing(oldRoots, 2), 20, asked);
    expect(ok.roots.map((r) => r.root)).toEqual(asked);
    for (const [side, roots] of [['old', oldRoots.slice(0, 1)], ['new', [...oldRoots].reverse()]] as const) {
      const err = await compareListings(side === 'old' ? listing(roots, 2) : listing(oldRoots, 2), side === 'new' ? listing(roots, 2) : listing(oldRoots, 2), 20, asked).catch((e: unknown) => e);
      expect(err, side).toBeInstanceOf(CmError);
      expect((err as CmError).code).toBe('wire.protocol');
      expect((err as CmError).message).toMatch(new RegExp(`the ${side} agent .*answered for roots`));
    }
  });
});

describe('verify record lines', () => {
  it('are the JSON array of the fields, one line whatever the path holds, and read back as the same fields', () => {
    for (const path of ['m/a', 'm/"quoted" \\ back', 'm/new\nline\ttab', 'm/ünï €', 'm/\u{1F600}', 'm/\u0001ctl']) {
      const e = entry(path, { link: path, hardlink: path, user: 'vm"ail', group: 'grüp' });
      const line = verifyLineOf(e);
      expect(line).toBe(JSON.stringify([e.path, e.type, e.size, e.mode, e.user, e.group, e.mtime_us, e.sha256, e.link, e.hardlink]));
      expect(line).not.toMatch(/\n/);
      expect(parseVerifyLine(line)).toEqual(e);
    }
    expect(parseVerifyLine('["a","file","1","x","u","g","0","","",""]')).toBeNull();
  });
});
