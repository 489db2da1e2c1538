/**
 * The change journal (agent/journal/, issue 25) records every kind of change under its
 * roots with the right path and scope, tells the agent's own changes from others', is
 * up to date when sync() returns, keeps odd names intact, and stays within its bounds.
 * Real files on a private tmpfs, changed by real processes.
 */
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeJournal } from '../agent/journal/journal';
import { after, brief, changes, full, mountTmpfs, sh, startJournal } from './support/journal-fixture';

let tmp: { dir: string; unmount: () => Promise<void> };
let mail: string;
let dkim: string;
let cert: string;
let state: string;
let j: ChangeJournal;

beforeAll(async () => {
  tmp = await mountTmpfs('cmm-journal-changes-');
  mail = path.join(tmp.dir, 'home/vmail/mail');
  dkim = path.join(tmp.dir, 'etc/dkimkeys');
  cert = path.join(tmp.dir, 'etc/ssl/certs/mailserver.pem');
  state = path.join(tmp.dir, 'var/lib/cmmigrate');
  for (const d of ['u/cur', 'u/new', 'u/tmp']) await fs.mkdir(path.join(mail, d), { recursive: true });
  await fs.mkdir(dkim, { recursive: true });
  await fs.mkdir(path.dirname(cert), { recursive: true });
  await fs.writeFile(cert, 'cert 1\n');
  // A folder with thousands of messages, renamed in one of the tests.
  const folder = path.join(mail, 'u/.Big/cur');
  await fs.mkdir(folder, { recursive: true });
  for (let i = 0; i < 3000; i++) fsSync.writeFileSync(path.join(folder, `${1700000000 + i}.M${i}P1.host:2,S`), 'x');
  j = await startJournal({ mailboxes: mail, dkimkeys: dkim, 'ssl-cert': cert }, state);
}, 30_000);

afterAll(async () => {
  await j?.close();
  await tmp?.unmount();
});

describe('the change journal records', () => {
  it('a file created by another process, and its directory', async () => {
    const from = await j.sync();
    const { list } = await after(j, 'mailboxes', from, () => sh('printf hello > u/new/m1', mail));
    expect(list).toEqual(['entry u/new', 'entry u/new/m1']);
  });

  it('a write, chmod, chown and utimes of a file as an entry each', async () => {
    await sh('printf a > u/cur/w; printf a > u/cur/c; printf a > u/cur/o; printf a > u/cur/t', mail);
    const from = await j.sync();
    const { list } = await after(j, 'mailboxes', from, () =>
      sh('printf more >> u/cur/w; chmod 600 u/cur/c; chown 1234:1234 u/cur/o; touch -m -d 2001-02-03 u/cur/t', mail),
    );
    expect(list).toEqual(['entry u/cur/c', 'entry u/cur/o', 'entry u/cur/t', 'entry u/cur/w']);
  });

  it('an unlink, a rename within and one across directories, with both names', async () => {
    await sh('printf a > u/cur/gone; printf a > u/cur/old; printf a > u/new/moving', mail);
    const from = await j.sync();
    const { list } = await after(j, 'mailboxes', from, () => sh('rm u/cur/gone; mv u/cur/old u/cur/old:2,S; mv u/new/moving u/cur/moving:2,', mail));
    expect(list).toEqual(['entry u/cur', 'entry u/cur/gone', 'entry u/cur/moving:2,', 'entry u/cur/old', 'entry u/cur/old:2,S', 'entry u/new', 'entry u/new/moving']);
  });

  it('a directory renamed with thousands of entries as a subtree under both names, and nothing inside', async () => {
    const from = await j.sync();
    const { list } = await after(j, 'mailboxes', from, () => sh('mv u/.Big u/.Renamed', mail));
    expect(list).toEqual(['entry u', 'subtree u/.Big', 'subtree u/.Renamed']);
  });

  it('a directory made or removed as a subtree', async () => {
    const from = await j.sync();
    const { list } = await after(j, 'mailboxes', from, () => sh('mkdir -p v/cur && printf x > v/cur/1 && rmdir u/tmp', mail));
    expect(list).toEqual(['entry ', 'entry u', 'subtree u/tmp', 'subtree v']);
  });

  it('a hard link, a symlink retargeted and a fifo', async () => {
    await sh('printf a > u/cur/linked; ln -s first u/cur/link', mail);
    const from = await j.sync();
    const { list } = await after(j, 'mailboxes', from, () => sh('ln u/cur/linked u/cur/linked2; ln -sfn second u/cur/link; mkfifo u/cur/fifo', mail));
    // ln -sfn makes the new link under a temp name and renames it over the old one.
    const names = fsSync.readdirSync(path.join(mail, 'u/cur'));
    const temp = list.filter((l) => !names.includes(l.slice('entry u/cur/'.length)) && l !== 'entry u/cur');
    expect(temp.length).toBeLessThanOrEqual(1);
    expect(list.filter((l) => !temp.includes(l))).toEqual(['entry u/cur', 'entry u/cur/fifo', 'entry u/cur/link', 'entry u/cur/linked2']);
    expect(fsSync.readlinkSync(path.join(mail, 'u/cur/link'))).toBe('second');
  });

  it('a root that is a file, replaced by a rename, as the root itself', async () => {
    const from = await j.sync();
    const { list } = await after(j, 'ssl-cert', from, () => sh('printf "cert 2" > mailserver.pem.new && mv mailserver.pem.new mailserver.pem', path.dirname(cert)));
    expect(list).toEqual(['entry ']);
    // A sibling of the file root is no change of it.
    const from2 = await j.sync();
    expect((await after(j, 'ssl-cert', from2, () => sh('printf x > other.pem', path.dirname(cert)))).list).toEqual([]);
  });

  it('a root inside another (passdb.sqlite in a mailboxes dir of /home/vmail) for both', async () => {
    const vmail = path.join(tmp.dir, 'nest/vmail');
    await fs.mkdir(path.join(vmail, 'u'), { recursive: true });
    await fs.writeFile(path.join(vmail, 'passdb.sqlite'), 'db');
    const n = await startJournal({ mailboxes: vmail, passdb: path.join(vmail, 'passdb.sqlite') }, state);
    try {
      const from = await n.sync();
      await sh('printf more >> passdb.sqlite; : > u/m', vmail);
      await n.sync();
      expect(brief(changes(n.changesSince('passdb', from)))).toEqual(['entry ']);
      expect(brief(changes(n.changesSince('mailboxes', from)))).toEqual(['entry passdb.sqlite', 'entry u', 'entry u/m']);
    } finally {
      await n.close();
    }
  });

  it('a root that is a symlink as an entry of its directory, not as what it points to', async () => {
    const priv = path.join(tmp.dir, 'etc/ssl/private');
    await fs.mkdir(priv, { recursive: true });
    await fs.mkdir(path.join(priv, 'target-dir'));
    await fs.symlink('target-dir', path.join(priv, 'mailserver.key'));
    const k = await startJournal({ 'ssl-key': path.join(priv, 'mailserver.key') }, state);
    try {
      const from = await k.sync();
      await sh(': > target-dir/inside', priv);
      await k.sync();
      expect(changes(k.changesSince('ssl-key', from))).toEqual([]);
      const { list } = await after(k, 'ssl-key', from, () => sh('ln -sfn other.key mailserver.key', priv));
      expect(list).toEqual(['entry ']);
    } finally {
      await k.close();
    }
  });

  it('each root apart, and nothing outside the roots', async () => {
    const from = await j.sync();
    await sh('printf k > key.private; printf x > ../outside', dkim);
    await j.sync();
    expect(brief(changes(j.changesSince('dkimkeys', from)))).toEqual(['entry ', 'entry key.private']);
    expect(brief(changes(j.changesSince('mailboxes', from)))).toEqual([]);
  });
});

describe('events read after their directory moved or went (the helper behind)', () => {
  /** Run `cmd` while the helper is stopped, so that its events are read only afterwards. */
  async function behind(cmd: string): Promise<void> {
    const pid = j.status().pid!;
    process.kill(pid, 'SIGSTOP');
    try {
      await sh(cmd, mail);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  }

  it('a directory removed with changes in it: its events do not resolve, its removal covers them', async () => {
    await sh('mkdir -p gone/sub && : > gone/sub/f', mail);
    const from = await j.sync();
    await behind('printf x >> gone/sub/f && : > gone/sub/g && rm -rf gone');
    await j.sync();
    const cs = changes(j.changesSince('mailboxes', from));
    // A file written below it is still named, as data written (a covering subtree does not say so).
    expect(cs.filter((c) => c.path.startsWith('gone/')).every((c) => c.content && c.scope === 'entry')).toBe(true);
    expect(brief(cs.filter((c) => !c.path.startsWith('gone/')))).toEqual(['entry ', 'subtree gone']);
  });

  it('a directory renamed after changes in it: both names as subtrees', async () => {
    await sh('mkdir -p before/cur', mail);
    const from = await j.sync();
    await behind(': > before/cur/x && mv before after && : > after/cur/y');
    await j.sync();
    expect(brief(changes(j.changesSince('mailboxes', from)))).toEqual(['entry ', 'subtree after', 'subtree before']);
  });
});

describe('own and foreign changes', () => {
  it('leaves out own changes up to ignoreOwnUpTo, and never a foreign one', async () => {
    await sh('printf a > u/cur/mine; printf a > u/cur/theirs', mail);
    const from = await j.sync();
    await fs.writeFile(path.join(mail, 'u/cur/mine'), 'written by the agent');
    await sh('printf b >> u/cur/theirs', mail);
    const pos = await j.sync();
    expect(brief(changes(j.changesSince('mailboxes', from)))).toEqual(['entry u/cur/mine (own)', 'entry u/cur/theirs']);
    expect(brief(changes(j.changesSince('mailboxes', from, { ignoreOwnUpTo: pos.seq })))).toEqual(['entry u/cur/theirs']);
    // An own change after ignoreOwnUpTo counts again.
    await fs.chmod(path.join(mail, 'u/cur/mine'), 0o640);
    await j.sync();
    expect(brief(changes(j.changesSince('mailboxes', from, { ignoreOwnUpTo: pos.seq })))).toEqual(['entry u/cur/mine (own)', 'entry u/cur/theirs']);
  });

  it('counts a foreign change of a path the agent also wrote', async () => {
    const from = await j.sync();
    await fs.writeFile(path.join(mail, 'u/cur/both'), 'agent');
    await sh('printf relay >> u/cur/both', mail);
    await fs.writeFile(path.join(mail, 'u/cur/both'), 'agent again');
    const pos = await j.sync();
    // The directory saw only the agent's create; the file a foreign write too.
    expect(brief(changes(j.changesSince('mailboxes', from, { ignoreOwnUpTo: pos.seq })))).toEqual(['entry u/cur/both']);
  });
});

describe('sync', () => {
  it('returns only once every change made before it is in the journal', async () => {
    await fs.mkdir(path.join(mail, 'burst'));
    const from = await j.sync();
    // 2,000 files by another process, then at once a sync: the last file must be there.
    await sh('cd burst && i=0; while [ $i -lt 2000 ]; do : > f$i; i=$((i+1)); done', mail);
    await j.sync();
    const list = changes(j.changesSince('mailboxes', from));
    expect(list.length).toBe(2001);
    expect(list.map((c) => c.path)).toContain('burst/f1999');
  });

  it('rejects when its signal aborts', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(j.sync(ac.signal)).rejects.toThrow('stop');
  });
});

describe('odd names', () => {
  it('round-trip tabs, newlines, percent signs and bytes that are not UTF-8, as fs names them', async () => {
    const dir = path.join(mail, 'odd');
    await fs.mkdir(dir);
    const from = await j.sync();
    const raw = [Buffer.from('tab\there'), Buffer.from('new\nline'), Buffer.from('per%cent%09%0A%25'), Buffer.from([0x6c, 0x61, 0x74, 0xe9, 0x31]), Buffer.from('ünï cödé \\ x')];
    for (const n of raw) fsSync.writeFileSync(Buffer.concat([Buffer.from(dir + '/'), n]), 'x');
    await j.sync();
    const got = changes(j.changesSince('mailboxes', from)).map((c) => c.path);
    const names = fsSync.readdirSync(dir).map((n) => `odd/${n}`);
    expect(got.filter((p) => p !== 'odd').sort()).toEqual(names.sort());
    expect(got).toContain('odd/tab\there');
    expect(got).toContain('odd/new\nline');
    expect(got).toContain('odd/per%cent%09%0A%25');
    expect(got).toContain('odd/lat\ufffd1');
  });
});

describe('bounds and forgetting', () => {
  it('folds a busy directory into children, and a root over the total into full', async () => {
    const b = await startJournal({ mailboxes: mail, dkimkeys: dkim }, state, { maxEntries: 100, maxPerDir: 10 });
    try {
      await fs.mkdir(path.join(mail, 'busy'));
      const from = await b.sync();
      await sh('cd busy && for i in 1 2 3 4 5 6 7 8 9 10 11 12; do : > m$i; done; mkdir sub', mail);
      await b.sync();
      // Twelve files and a new directory: the files fold, the directory keeps its subtree.
      expect(brief(changes(b.changesSince('mailboxes', from)))).toEqual(['children busy', 'subtree busy/sub']);
      // An earlier position than the fold gets the fold; a later one sees single entries again only after forget.
      await sh('i=0; while [ $i -lt 150 ]; do mkdir -p spread/d$i; : > spread/d$i/f; i=$((i+1)); done', mail);
      const pos = await b.sync();
      expect(full(b.changesSince('mailboxes', from))).toMatch(/more than 100 changed paths held \(the memory bound\); mailboxes is walked in full/);
      // The other root is unaffected.
      expect(changes(b.changesSince('dkimkeys', from))).toEqual([]);
      await sh(': > spread/d0/g', mail);
      await b.sync();
      expect(brief(changes(b.changesSince('mailboxes', pos)))).toEqual(['entry spread/d0', 'entry spread/d0/g']);
      expect(b.status().entries).toBeLessThanOrEqual(100);
    } finally {
      await b.close();
    }
  });

  it('forgets what a committed position covers, and says so for an earlier one', async () => {
    const from = await j.sync();
    await sh(': > u/cur/f1', mail);
    const pos = await j.sync();
    await sh(': > u/cur/f2', mail);
    await j.sync();
    j.forget('mailboxes', pos);
    expect(brief(changes(j.changesSince('mailboxes', pos)))).toEqual(['entry u/cur', 'entry u/cur/f2']);
    expect(full(j.changesSince('mailboxes', from))).toMatch(/forgotten/);
    expect(j.status().roots.find((r) => r.name === 'mailboxes')!.entries).toBe(2);
  });

  it('lets go of its own writes a committed pass accounted for, and keeps others\' made meanwhile', async () => {
    const start = await j.sync();
    // This process is the agent here: its writes are its own; the shell's are foreign.
    for (let i = 0; i < 50; i++) await fs.writeFile(path.join(mail, 'u/cur', `own${i}`), 'x');
    await sh(': > u/cur/theirs', mail);
    const end = await j.sync();
    const before = j.status().roots.find((r) => r.name === 'mailboxes')!.entries;
    const answer = brief(changes(j.changesSince('mailboxes', start, { ignoreOwnUpTo: end.seq })));
    expect(answer).toContain('entry u/cur/theirs');
    expect(answer.filter((a) => a.includes('/own'))).toEqual([]);
    j.forget('mailboxes', start, end.seq);
    const held = j.status().roots.find((r) => r.name === 'mailboxes')!.entries;
    expect(held).toBeLessThan(before - 40);
    // The next pass's question gets the same answer as before the journal let go.
    expect(brief(changes(j.changesSince('mailboxes', start, { ignoreOwnUpTo: end.seq })))).toEqual(answer);
  });

  it('keeps what another reader still asks for (a digest cache\'s hold), own writes included', async () => {
    const held = await j.sync();
    j.hold('verify', 'mailboxes', held);
    const start = await j.sync();
    for (let i = 0; i < 5; i++) await fs.writeFile(path.join(mail, 'u/cur', `pass${i}`), 'x');
    await sh(': > u/cur/other', mail);
    const end = await j.sync();
    // A pass commits and lets go of what it accounted for, its own writes above all.
    j.forget('mailboxes', start, end.seq);
    const answer = brief(changes(j.changesSince('mailboxes', held)));
    expect(answer).toContain('entry u/cur/other');
    for (let i = 0; i < 5; i++) expect(answer).toContain(`entry u/cur/pass${i} (own)`);
    // Let go of the hold: the next forget drops them, and that position gets full.
    j.hold('verify', 'mailboxes', null);
    j.forget('mailboxes', start, end.seq);
    expect(full(j.changesSince('mailboxes', held))).toMatch(/forgotten/);
  });

  it('records own writes only while a reader holds a position (ownEvents when-held), from the cookie of sync({ hold }) on', async () => {
    const d = await startJournal({ mailboxes: mail }, path.join(tmp.dir, 'state-held'), { ownEvents: 'when-held' });
    try {
      const from = await d.sync();
      await fs.writeFile(path.join(mail, 'u/cur', 'mine-unheld'), 'x');
      await sh(': > u/cur/theirs-unheld', mail);
      const held = await d.sync(undefined, { hold: 'verify' });
      await fs.writeFile(path.join(mail, 'u/cur', 'mine-held'), 'x');
      await d.sync();
      // A pass asks without its own writes: the same answer as from a journal that kept them.
      expect(brief(changes(d.changesSince('mailboxes', from)))).toEqual(['entry u/cur', 'entry u/cur/mine-held (own)', 'entry u/cur/theirs-unheld']);
      expect(brief(changes(d.changesSince('mailboxes', held)))).toEqual(['entry u/cur (own)', 'entry u/cur/mine-held (own)']);
    } finally {
      await d.close();
    }
  });
});

describe('on the ordinary disk', () => {
  it('records a change under a root in /tmp', async () => {
    const base = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-journal-disk-'));
    await fs.mkdir(path.join(base, 'mail/x'), { recursive: true });
    const d = await startJournal({ mailboxes: path.join(base, 'mail') }, path.join(base, 'state'));
    try {
      const from = await d.sync();
      await sh('printf 1 > x/one', path.join(base, 'mail'));
      await d.sync();
      expect(brief(changes(d.changesSince('mailboxes', from)))).toEqual(['entry x', 'entry x/one']);
    } finally {
      await d.close();
      await fs.rm(base, { recursive: true, force: true });
    }
  });
});
