import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateRelayTree, RELAY_USERS, type RelayTreeStats } from './support/relay-tree';
import { diffSnapshots, snapshotTree, type EntrySnapshot } from './support/tree-snapshot';

const MAIL = '/home/vmail/mail';
const DOMAIN = 'mail.example.org';
const RELAY_PATHS = [
  MAIL,
  '/etc/dkimkeys',
  '/var/lib/acme',
  '/var/spool/postfix',
  '/etc/chatmail-nocreate',
  '/home/vmail/passdb.sqlite',
];

describe('generateRelayTree', () => {
  const temps: string[] = [];
  // a and b: same seed and uidBase; c: same seed, other uidBase.
  let a: string, b: string, c: string;
  let statsA: RelayTreeStats, statsB: RelayTreeStats, statsC: RelayTreeStats;
  let snapA: Map<string, EntrySnapshot>;

  const tempRoot = async (): Promise<string> => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-'));
    temps.push(dir);
    return dir;
  };
  const entries = (snap: Map<string, EntrySnapshot>, test: (e: EntrySnapshot) => boolean): EntrySnapshot[] =>
    [...snap.values()].filter(test);

  beforeAll(async () => {
    [a, b, c] = await Promise.all([tempRoot(), tempRoot(), tempRoot()]);
    statsA = await generateRelayTree({ root: a, seed: 7 });
    statsB = await generateRelayTree({ root: b, seed: 7 });
    statsC = await generateRelayTree({ root: c, seed: 7, uidBase: 7000 });
    snapA = await snapshotTree(a, RELAY_PATHS);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(temps.map((dir) => fs.rm(dir, { recursive: true, force: true })));
  });

  it('writes the same tree twice from the same seed', async () => {
    expect(statsB).toEqual(statsA);
    expect(statsA.addresses).toBe(20);
    expect(snapA.size).toBeGreaterThan(400);
    const snapB = await snapshotTree(b, RELAY_PATHS);
    expect(diffSnapshots(snapA, snapB)).toEqual([]);
  });

  it('refuses a root that is not empty', async () => {
    await expect(generateRelayTree({ root: a })).rejects.toThrow(/is not empty/);
  });

  it('gives the relay users other ids with another uidBase, and the same names', async () => {
    expect(statsC).toEqual(statsA);
    const mailbox = path.join(MAIL, DOMAIN);
    expect((await fs.lstat(path.join(a, mailbox))).uid).toBe(5000);
    expect((await fs.lstat(path.join(c, mailbox))).uid).toBe(7000);
    const dkimA = await fs.lstat(path.join(a, '/etc/dkimkeys/opendkim.private'));
    const dkimC = await fs.lstat(path.join(c, '/etc/dkimkeys/opendkim.private'));
    expect(dkimC.uid).not.toBe(dkimA.uid);
    const passwd = await fs.readFile(path.join(c, 'etc/passwd'), 'utf8');
    for (const user of RELAY_USERS) expect(passwd).toMatch(new RegExp(`^${user}:x:70\\d\\d:`, 'm'));
    expect(passwd).toMatch(/^www-data:x:33:33:/m);

    const snapC = await snapshotTree(c, RELAY_PATHS);
    expect(diffSnapshots(snapA, snapC)).toEqual([]);
    expect(snapC.get(mailbox)).toMatchObject({ user: 'vmail', group: 'vmail', mode: 0o700 });
  });

  it('owns every mailbox entry by vmail, dirs 0700 and files 0600', () => {
    const mail = entries(snapA, (e) => e.path.startsWith(MAIL + '/'));
    expect(mail.length).toBeGreaterThan(400);
    for (const e of mail) {
      expect(e, e.path).toMatchObject({ user: 'vmail', group: 'vmail', mode: e.type === 'dir' ? 0o700 : 0o600 });
    }
  });

  it('gives messages the mtime their name says, to the microsecond', () => {
    const messages = entries(snapA, (e) => e.type === 'file' && /\/(cur|new)\/\d+\.M\d+P/.test(e.path));
    expect(messages.length).toBeGreaterThan(300);
    for (const e of messages) {
      const [, sec, usec] = /\/(\d+)\.M(\d+)P[^/]*$/.exec(e.path)!;
      expect(e.mtimeUs, e.path).toBe(BigInt(sec) * 1_000_000n + BigInt(usec));
      expect(e.size, e.path).toBe(Number(/,S=(\d+)/.exec(e.path)![1]));
    }
    expect(messages.some((e) => e.mtimeUs % 1_000_000n !== 0n)).toBe(true);
    expect(messages.some((e) => e.path.includes('/new/') && !e.path.includes(':2,'))).toBe(true);
    for (const flags of [':2,', ':2,S', ':2,RS']) expect(messages.some((e) => e.path.endsWith(flags))).toBe(true);
  });

  it('hard-links messages across addresses', async () => {
    const linked = entries(snapA, (e) => e.hardlinkGroup !== undefined);
    expect(linked.length).toBeGreaterThan(0);
    expect(statsA.hardlinks).toBeGreaterThan(0);
    const addressOf = (p: string): string => p.slice(MAIL.length + 1).split('/')[1];
    const acrossAddresses = linked.find((e) => addressOf(e.path) !== addressOf(e.hardlinkGroup!));
    expect(acrossAddresses).toBeDefined();
    const one = await fs.lstat(path.join(a, acrossAddresses!.path));
    const other = await fs.lstat(path.join(a, acrossAddresses!.hardlinkGroup!));
    expect(one.ino).toBe(other.ino);
    expect(one.nlink).toBeGreaterThan(1);
  });

  it('lays out the Postfix spool with FIFOs, a socket, sticky and setgid dirs', async () => {
    const spool = path.join(a, '/var/spool/postfix');
    const maildrop = await fs.lstat(path.join(spool, 'maildrop'));
    expect(maildrop.mode & 0o7777).toBe(0o1730);
    const pub = await fs.lstat(path.join(spool, 'public'));
    expect(pub.mode & 0o7777).toBe(0o2710);
    for (const fifo of ['pickup', 'qmgr']) {
      const st = await fs.lstat(path.join(spool, 'public', fifo));
      expect(st.isFIFO()).toBe(true);
      expect(st.mode & 0o7777).toBe(0o622);
    }
    expect((await fs.lstat(path.join(spool, 'private/smtp'))).isSocket()).toBe(true);
    expect(snapA.get('/var/spool/postfix/public/pickup')).toMatchObject({ type: 'fifo', user: 'postfix', group: 'postdrop' });
    expect(snapA.get('/var/spool/postfix/maildrop')).toMatchObject({ user: 'postfix', group: 'postdrop' });
    expect(snapA.get('/var/spool/postfix/active')).toMatchObject({ type: 'dir', mode: 0o700, user: 'postfix' });
    expect(snapA.get('/var/spool/postfix/pid')).toMatchObject({ mode: 0o755, user: 'root' });
    expect(entries(snapA, (e) => e.path.startsWith('/var/spool/postfix/deferred/A/') && e.type === 'file').length).toBeGreaterThan(0);
    expect(snapA.get('/etc/dkimkeys/opendkim.private')).toMatchObject({ mode: 0o600, user: 'opendkim' });

    const withoutSockets = await snapshotTree(a, ['/var/spool/postfix'], { skipSockets: true });
    expect(withoutSockets.has('/var/spool/postfix/private/smtp')).toBe(false);
    expect(withoutSockets.has('/var/spool/postfix/public/qmgr')).toBe(true);
  });

  it('links acme live/ names with relative symlinks into certs/', async () => {
    for (const name of [DOMAIN, `mta-sts.${DOMAIN}`, `www.${DOMAIN}`]) {
      const live = path.join(a, '/var/lib/acme/live', name);
      const target = await fs.readlink(live);
      expect(target).toMatch(/^\.\.\/certs\/[a-z2-7]+$/);
      expect((await fs.stat(path.join(live, 'fullchain'))).isFile()).toBe(true);
      expect(snapA.get(`/var/lib/acme/live/${name}`)).toMatchObject({ type: 'symlink', link: target, user: 'root' });
    }
  });

  it('has non-ASCII and over-100-byte folder names', () => {
    const folders = entries(snapA, (e) => e.type === 'dir' && /^\.[^/]+$/.test(path.posix.basename(e.path)));
    const names = folders.map((e) => path.posix.basename(e.path));
    expect(names.some((n) => /[^\x00-\x7f]/.test(n))).toBe(true);
    expect(names.some((n) => Buffer.byteLength(n) > 100)).toBe(true);
    expect(names).toContain('.Привет');
  });

  it('reports a changed mode, a changed byte and a removed file by path', async () => {
    const files = entries(snapA, (e) => e.type === 'file' && e.path.includes('/cur/') && e.hardlinkGroup === undefined);
    const [chmodded, edited, removed] = files.map((e) => e.path);
    await fs.chmod(path.join(b, chmodded), 0o644);

    const abs = path.join(b, edited);
    const mtimeUs = (await fs.stat(abs, { bigint: true })).mtimeNs / 1000n;
    const fh = await fs.open(abs, 'r+');
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, 100);
    one[0] ^= 0xff;
    await fh.write(one, 0, 1, 100);
    await fh.close();
    // Put the mtime back (to the µs: libuv truncates float seconds) so only the content differs.
    const t = Number(mtimeUs / 1_000_000n) + (Number(mtimeUs % 1_000_000n) + 0.5) / 1e6;
    await fs.utimes(abs, t, t);

    await fs.rm(path.join(b, removed));
    const diff = diffSnapshots(snapA, await snapshotTree(b, RELAY_PATHS), {
      ignore: (p) => p === path.posix.dirname(removed), // its directory's mtime changed too
    });
    expect(diff).toContain(`${chmodded}: mode 0600 != 0644`);
    expect(diff.filter((line) => line.startsWith(`${edited}: `))).toEqual([expect.stringMatching(/sha256/)]);
    expect(diff).toContain(`${removed}: missing on b`);
    expect(diff).toHaveLength(3);
  });
});
