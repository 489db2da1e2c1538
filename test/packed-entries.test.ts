/**
 * The listing's packed entries (protocol 2) read back as what protobuf gave the merge, to
 * the last bit of their 64-bit fields; anything malformed is a wire.protocol error. The
 * walk's lstat gives exactly what fs.lstatSync gives, and the spill file of a listing too
 * big to keep in memory leaves no name behind.
 */
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lstatBig, lstatIsFast, splitNs, STAT, statNumbers, timeBefore, timeText } from '../agent/fs/fast-lstat';
import { loadIdentity } from '../agent/fs/identity';
import { announceAndList } from '../agent/send/listing';
import { PackedWriter, unpackEntries, type PackedEntryInput } from '../agent/wire/packed-entries';
import type { ResolvedRoot } from '../agent/fs/paths';
import { CmError } from '../proto';

const base: PackedEntryInput = {
  path: 'home/vmail/mail/x/cur/1',
  type: 'file',
  size: 12n,
  mtimeNs: 1_700_000_000_123_456_789n,
  mode: 0o600,
  user: 'vmail',
  group: 'vmail',
  link: '',
  dev: 2049n,
  ino: 1234n,
  leader: '',
  nlink: 1n,
};

describe('packed entries', () => {
  it('read back field by field, 64-bit values and odd names included', () => {
    const inputs: PackedEntryInput[] = [
      base,
      { ...base, path: 'home/vmail/mail/dir', type: 'dir', size: 0n, mode: 0o2775, user: 'root', group: 'www-data', nlink: 3n },
      { ...base, path: 'home/vmail/mail/ü/😀 name\nx', type: 'symlink', size: 0n, link: '../ö', user: '1234', group: 'vmail' },
      { ...base, path: 'home/vmail/mail/big', size: 2n ** 53n + 1n, ino: 2n ** 64n - 1n, dev: 2n ** 63n, nlink: 2n, leader: 'home/vmail/mail/x/cur/1' },
      { ...base, path: 'home/vmail/mail/old', mtimeNs: -1n, type: 'fifo', size: 0n },
      { ...base, path: 'home/vmail/mail/max', mtimeNs: 2n ** 63n - 1n, size: 127n, ino: 128n, nlink: 16384n },
    ];
    const w = new PackedWriter();
    for (const e of inputs) w.add(e);
    expect(w.count).toBe(inputs.length);
    const out = unpackEntries(w.take());
    expect(w.count).toBe(0);
    expect(out).toEqual(
      inputs.map((e) => ({
        path: e.path,
        type: e.type,
        size: String(e.size),
        mtime_ns: String(e.mtimeNs),
        mode: e.mode,
        user: e.user,
        group: e.group,
        link: e.link,
        ino: `${e.dev}:${e.ino}`,
        leader: e.leader,
        nlink: String(e.nlink),
      })),
    );
    // Each message stands alone: its owner names start anew.
    w.add(base);
    expect(unpackEntries(w.take())[0].user).toBe('vmail');
  });

  it('grows its buffer for long names', () => {
    const w = new PackedWriter();
    const long = 'home/vmail/mail/' + 'é'.repeat(3000);
    for (let i = 0; i < 100; i++) w.add({ ...base, path: `${long}${i}`, link: long });
    const out = unpackEntries(w.take());
    expect(out.length).toBe(100);
    expect(out[99].path).toBe(`${long}99`);
  });

  it('refuses what is malformed as wire.protocol', () => {
    const w = new PackedWriter();
    w.add(base);
    const good = w.take();
    const refused = (b: Buffer): void => {
      let err: unknown;
      try {
        unpackEntries(b);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CmError);
      expect((err as CmError).code).toBe('wire.protocol');
    };
    for (let n = 1; n < good.length; n++) refused(good.subarray(0, n));
    const badType = Buffer.from(good);
    badType[2 + base.path.length] = 9;
    refused(badType);
    // An owner ref to a name not defined before it.
    const at = 2 + base.path.length + 1 + 1 + 10;
    const badRef = Buffer.from(good);
    expect(badRef[at]).toBe(0);
    badRef[at] = 5;
    refused(badRef);
    refused(Buffer.concat([good, Buffer.from([0xff])]));
  });
});

describe('the walk\'s lstat', () => {
  it('gives what fs.lstatSync gives, and undefined for nothing', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-lstat-'));
    try {
      await fs.writeFile(path.join(dir, 'f'), 'x');
      await fs.symlink('f', path.join(dir, 'l'));
      await fs.link(path.join(dir, 'f'), path.join(dir, 'h'));
      const t = new Date('2001-02-03T04:05:06.789Z');
      await fs.utimes(path.join(dir, 'f'), t, t);
      for (const p of [dir, path.join(dir, 'f'), path.join(dir, 'l'), '/dev/null']) {
        const want = fsSync.lstatSync(p, { bigint: true });
        const got = lstatBig(p)!;
        for (const f of ['dev', 'ino', 'mode', 'nlink', 'uid', 'gid', 'size', 'mtimeNs', 'ctimeNs', 'atimeNs', 'mtimeMs'] as const) expect(got[f], `${p} ${f}`).toBe(want[f]);
        expect(got.mtime.getTime()).toBe(want.mtime.getTime());
        for (const m of ['isFile', 'isDirectory', 'isSymbolicLink', 'isFIFO', 'isSocket', 'isCharacterDevice', 'isBlockDevice'] as const) expect(got[m](), `${p} ${m}`).toBe(want[m]());
      }
      // The numbers and time texts the listing, the verify and the records read instead of BigInts.
      const times: [string, number][] = [['f', 981173106.789], ['zero', 0], ['before1970', -12.000000001], ['tiny', 1.000000007], ['frac', 1700000000.05]];
      for (const [name, sec] of times) {
        await fs.writeFile(path.join(dir, name), name);
        await fs.utimes(path.join(dir, name), sec, sec);
      }
      for (const name of [...times.map(([n]) => n), 'l', 'h']) {
        const p = path.join(dir, name);
        const want = fsSync.lstatSync(p, { bigint: true });
        const got = lstatBig(p)!;
        const n = statNumbers(got);
        if (lstatIsFast()) expect(n, name).toBeDefined();
        if (n) for (const f of ['dev', 'mode', 'nlink', 'uid', 'gid', 'ino', 'size'] as const) expect(BigInt(n[STAT[f]]), `${name} ${f}`).toBe(want[f]);
        for (const st of [got, want]) {
          expect(timeText(st, 'mtime'), name).toBe(String(want.mtimeNs));
          expect(timeText(st, 'ctime'), name).toBe(String(want.ctimeNs));
          for (const d of [-1n, 0n, 1n, 1_000_000_000n]) {
            expect(timeBefore(st, 'mtime', splitNs(want.mtimeNs + d)), `${name} ${d}`).toBe(want.mtimeNs < want.mtimeNs + d);
            expect(timeBefore(st, 'ctime', splitNs(want.ctimeNs + d)), `${name} ${d}`).toBe(want.ctimeNs < want.ctimeNs + d);
          }
        }
      }
      expect(statNumbers(fsSync.lstatSync(dir, { bigint: true }))).toBeUndefined();
      expect(lstatBig(path.join(dir, 'gone'))).toBeUndefined();
      expect(() => lstatBig(path.join(dir, 'f', 'x'))).toThrow(expect.objectContaining({ code: 'ENOTDIR' }));
      // Node 20, the one these tests run on, takes the fast way.
      if (process.versions.node.startsWith('20.')) expect(lstatIsFast()).toBe(true);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the listing\'s spill file', () => {
  let dir: string;
  let roots: ResolvedRoot[];
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-spill-'));
    await fs.mkdir(path.join(dir, 'etc'));
    await fs.writeFile(path.join(dir, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
    await fs.writeFile(path.join(dir, 'etc/group'), 'root:x:0:\n');
    const mail = path.join(dir, 'home/vmail/mail/d/a/cur');
    await fs.mkdir(mail, { recursive: true });
    for (let i = 0; i < 1500; i++) await fs.writeFile(path.join(mail, `m${i}`), 'x');
    roots = [{ name: 'mailboxes', rel: 'home/vmail/mail', abs: path.join(dir, 'home/vmail/mail'), optional: false }] as ResolvedRoot[];
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('has no name while the listing runs, and a leftover name goes at the next listing', async () => {
    const state = path.join(dir, 'state');
    await fs.mkdir(state);
    await fs.writeFile(path.join(state, 'list-spill.1.1'), 'left by a killed agent');
    const listing = await announceAndList(roots, 'initial', await loadIdentity(dir), undefined, 0, state);
    expect(await fs.readdir(state)).toEqual([]);
    let n = 0;
    for await (const e of listing.entries) if ('path' in e) n++;
    expect(n).toBe(1500 + 4);
    // A listing that stops early lets its file go as well.
    const fds = (): number => fsSync.readdirSync('/proc/self/fd').length;
    const before = fds();
    const again = await announceAndList(roots, 'initial', await loadIdentity(dir), undefined, 0, state);
    const open = fds();
    expect(open).toBe(before + 1);
    expect((await again.runs.next()).done).toBe(false);
    again.close();
    expect(fds()).toBeLessThan(open);
  });
});
