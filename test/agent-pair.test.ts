/**
 * The agent pair end to end: two real agent processes on loopback with separate roots
 * whose etc/passwd give the relay's users different ids, the real controller CLI, real
 * TLS, real files. The trees are compared here entry by entry, independently of verify.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALL_ROOT_PATHS, findTempFiles, setupMigration, type Migration } from './support/harness';
import { diffSnapshots, snapshotTree } from './support/tree-snapshot';

const BIG = 110 * 1024 * 1024;
const LONG_NAME = 'x'.repeat(200) + '-Ünïcødé-📨';

async function extras(oldRoot: string): Promise<void> {
  const w = async (rel: string, data: string | Buffer, mode: number, uid = 0, gid = 0): Promise<void> => {
    const p = path.join(oldRoot, rel);
    await fs.mkdir(path.dirname(p), { recursive: true });
    await fs.writeFile(p, data);
    await fs.chown(p, uid, gid);
    await fs.chmod(p, mode);
  };
  await w('etc/ssl/certs/mailserver.pem', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n', 0o644);
  await w('etc/ssl/private/mailserver.key', '-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n', 0o600);
  // setuid + setgid on a file, an empty file, a long non-ASCII name, a symlink with an odd target
  await w('var/spool/postfix/saved/suid-test', 'x', 0o6755);
  await w('var/spool/postfix/saved/empty', '', 0o640);
  await w(`var/spool/postfix/saved/${LONG_NAME}`, 'long', 0o600);
  await fs.symlink('../does/not/exist/ \u00e9', path.join(oldRoot, 'var/spool/postfix/saved/dangling'));
  // mtimes with sub-second parts after our writes
  const t = 1_760_000_000.123456;
  for (const rel of ['var/spool/postfix/saved/suid-test', 'var/spool/postfix/saved/empty', `var/spool/postfix/saved/${LONG_NAME}`]) {
    await fs.utimes(path.join(oldRoot, rel), t, t);
  }
  await fs.lutimes(path.join(oldRoot, 'var/spool/postfix/saved/dangling'), t, t);
  await fs.utimes(path.join(oldRoot, 'var/spool/postfix/saved'), t, t);
}

describe('agent pair: a whole relay, host to host', () => {
  let m: Migration;
  beforeAll(async () => {
    m = await setupMigration({ tree: { addresses: 6, messagesPerAddress: 10, bigFiles: [BIG] }, prepare: extras });
  }, 180_000);
  afterAll(async () => {
    await m?.close();
  });

  it('initial copies the mailboxes and reports a JSON summary', async () => {
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'initial', '--json']);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.files).toBeGreaterThan(50);
    expect(s.bytes).toBeGreaterThan(BIG);
    expect(typeof s.seconds).toBe('number');
    expect(s.sockets_skipped).toBe(0);
    // hard links went as links: content bytes equal the generator's (each inode once)
    const mb = await snapshotTree(m.oldRoot, ['/home/vmail/mail']);
    let once = 0;
    for (const e of mb.values()) if (e.type === 'file' && (!e.hardlinkGroup || e.hardlinkGroup === e.path)) once += e.size;
    expect(s.bytes).toBe(once);
    expect(s.hardlinks).toBeGreaterThan(0);
    await expect(fs.stat(path.join(m.newRoot, 'etc/dkimkeys'))).rejects.toThrow();
  }, 180_000);

  it('final carries every root; verify passes; the trees are identical entry by entry', async () => {
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'final', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.sockets_skipped).toBe(1);
    expect(s.fifos).toBe(2);

    const v = await m.cli(['verify', '--plan', m.plan]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stderr).toContain('matches');

    const a = await snapshotTree(m.oldRoot, ALL_ROOT_PATHS, { skipSockets: true });
    const b = await snapshotTree(m.newRoot, ALL_ROOT_PATHS, { skipSockets: true });
    expect(a.size).toBeGreaterThan(100);
    expect(diffSnapshots(a, b)).toEqual([]);
    expect(await findTempFiles(m.newRoot)).toEqual([]);
  }, 180_000);

  it('keeps owner names while the numeric ids differ', async () => {
    const mbox = (await fs.readdir(path.join(m.oldRoot, 'home/vmail/mail/mail.example.org')))[0];
    const rel = `home/vmail/mail/mail.example.org/${mbox}/password`;
    const [so, sn] = await Promise.all([fs.lstat(path.join(m.oldRoot, rel)), fs.lstat(path.join(m.newRoot, rel))]);
    expect(so.uid).toBe(5000);
    expect(sn.uid).toBe(7000); // vmail on the new host
    const spoolPublic = 'var/spool/postfix/public';
    const [po, pn] = await Promise.all([fs.lstat(path.join(m.oldRoot, spoolPublic)), fs.lstat(path.join(m.newRoot, spoolPublic))]);
    expect(pn.mode & 0o7777).toBe(0o2710);
    expect(po.gid).toBe(5003);
    expect(pn.gid).toBe(7003); // postdrop
  });

  it('keeps hard links as one inode, FIFOs, setuid/setgid/sticky bits, symlinks, odd names; skips sockets', async () => {
    const snap = await snapshotTree(m.newRoot, ['/home/vmail/mail']);
    const linked = [...snap.values()].filter((e) => e.hardlinkGroup && e.hardlinkGroup !== e.path);
    expect(linked.length).toBeGreaterThan(0);
    for (const e of linked.slice(0, 5)) {
      const [x, y] = await Promise.all([fs.lstat(path.join(m.newRoot, e.path)), fs.lstat(path.join(m.newRoot, e.hardlinkGroup!))]);
      expect(x.ino).toBe(y.ino);
    }
    const st = (rel: string) => fs.lstat(path.join(m.newRoot, rel));
    expect((await st('var/spool/postfix/public/pickup')).isFIFO()).toBe(true);
    expect((await st('var/spool/postfix/maildrop')).mode & 0o7777).toBe(0o1730);
    expect((await st('var/spool/postfix/saved/suid-test')).mode & 0o7777).toBe(0o6755);
    expect((await st('var/spool/postfix/saved/empty')).size).toBe(0);
    expect(await fs.readFile(path.join(m.newRoot, `var/spool/postfix/saved/${LONG_NAME}`), 'utf8')).toBe('long');
    expect(await fs.readlink(path.join(m.newRoot, 'var/spool/postfix/saved/dangling'))).toBe('../does/not/exist/ \u00e9');
    expect((await st('var/spool/postfix/saved/suid-test')).mtimeMs).toBeCloseTo(1_760_000_000_123.456, 2);
    await expect(st('var/spool/postfix/private/smtp')).rejects.toThrow(/ENOENT/);
    const live = await fs.readlink(path.join(m.newRoot, 'var/lib/acme/live/mail.example.org'));
    expect(live.startsWith('../')).toBe(true);
    expect((await st('etc/ssl/private/mailserver.key')).mode & 0o777).toBe(0o600);
  });

  it('verify names the path and what differs', async () => {
    const mbox = (await fs.readdir(path.join(m.newRoot, 'home/vmail/mail/mail.example.org')))[0];
    const rel = `home/vmail/mail/mail.example.org/${mbox}/dovecot-uidlist`;
    const file = path.join(m.newRoot, rel);
    const st = await fs.stat(file);
    const buf = await fs.readFile(file);
    buf[0] ^= 1;
    await fs.writeFile(file, buf);
    await fs.utimes(file, st.atime, st.mtime);
    await fs.chmod(path.join(m.newRoot, 'etc/dkimkeys/opendkim.private'), 0o640);
    const v = await m.cli(['verify', '--plan', m.plan, '--json']);
    expect(v.code).toBe(1);
    const out = JSON.parse(v.stdout);
    expect(out.ok).toBe(false);
    expect(out.differences).toBe(2);
    const byPath = Object.fromEntries(out.first.map((d: { path: string; what: string }) => [d.path, d.what]));
    expect(byPath['/' + rel]).toContain('content differs');
    expect(byPath['/etc/dkimkeys/opendkim.private']).toContain('mode 0600 != 0640');

    // A final pass repairs both, and verify passes again.
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'final']);
    expect(r.code, r.stderr).toBe(0);
    expect((await m.cli(['verify', '--plan', m.plan])).code).toBe(0);
  }, 180_000);

  // Issue 15.8: a change behind cmmigrate's back that keeps size and mtime to the nanosecond.
  it('a byte changed on the new host with its exact mtime kept: a pass without the journal keeps it, verify and verify --quick name it, a pass with the journal puts it right', async () => {
    const mbox = (await fs.readdir(path.join(m.newRoot, 'home/vmail/mail/mail.example.org')))[0];
    const rel = `home/vmail/mail/mail.example.org/${mbox}/dovecot-uidlist`;
    const file = path.join(m.newRoot, rel);
    const before = await fs.stat(file, { bigint: true });
    const buf = await fs.readFile(file);
    buf[0] ^= 1;
    await fs.writeFile(file, buf);
    execFileSync('touch', ['-m', '-d', `@${before.mtimeNs / 1_000_000_000n}.${String(before.mtimeNs % 1_000_000_000n).padStart(9, '0')}`, file]);
    const after = await fs.stat(file, { bigint: true });
    expect(after.mtimeNs).toBe(before.mtimeNs);
    expect(after.size).toBe(before.size);

    // A pass that walks trusts size and mtime (as rsync does without --checksum): it keeps the file.
    const r = await m.cli(['sync', '--plan', m.plan, '--phase', 'final', '--json', '--no-journal']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.files).toBe(0);
    expect((await fs.readFile(file))[0]).toBe(buf[0]);

    // Verify reads the content: exactly this path differs, by content only; the quick
    // verify sees the ctime the write moved and reads it too.
    for (const extra of [[], ['--quick']]) {
      const v = await m.cli(['verify', '--plan', m.plan, '--json', ...extra]);
      expect(v.code, v.stderr).toBe(1);
      const out = JSON.parse(v.stdout);
      expect(out.first).toEqual([{ path: '/' + rel, what: 'content differs' }]);
    }

    // The repair: remove the damaged copy; the next pass carries the old host's again.
    await fs.rm(file);
    const again = await m.cli(['sync', '--plan', m.plan, '--phase', 'final', '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).files).toBe(1);
    expect((await m.cli(['verify', '--plan', m.plan])).code).toBe(0);

    // With the change journal, a pass sees the write itself (issue 25): the same damage is put
    // right by the next pass, with no verify needed to find it.
    const st = await fs.stat(file, { bigint: true });
    const good = await fs.readFile(file);
    const bad = Buffer.from(good);
    bad[0] ^= 1;
    await fs.writeFile(file, bad);
    execFileSync('touch', ['-m', '-d', `@${st.mtimeNs / 1_000_000_000n}.${String(st.mtimeNs % 1_000_000_000n).padStart(9, '0')}`, file]);
    const fixed = await m.cli(['sync', '--plan', m.plan, '--phase', 'final', '--json']);
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(JSON.parse(fixed.stdout).files).toBe(1);
    expect((await fs.readFile(file)).equals(good)).toBe(true);
  }, 180_000);
});
