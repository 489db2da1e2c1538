/**
 * Final sync that sends only what changed: an initial pass, hours of relay activity on the
 * old host (relay-activity.ts), then a final pass that must move renamed Maildir messages
 * without their content, send new and changed files whole, delete what vanished on the
 * source (only what an earlier pass put there), and keep what others wrote on the new host.
 * Two real agents on loopback, the real CLI; trees compared entry by entry.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { relayActivity, type ActivityReport } from './support/relay-activity';
import { ALL_ROOT_PATHS, findTempFiles, setupMigration, type CliResult, type Migration } from './support/harness';
import { diffSnapshots, readIdentity, snapshotTree, type EntrySnapshot } from './support/tree-snapshot';

const MAIL = '/home/vmail/mail';
const DOMAIN_DIR = `${MAIL}/mail.example.org`;
/** What a pass may send beyond the changed files' content: nothing, give or take a block. */
const OVERHEAD = 4096;
/** Every pass here takes a second or two; a CLI still running after this is stuck. */
const CLI_TIMEOUT = 20_000;

interface SyncJson {
  files: number;
  bytes: number;
  renamed: number;
  deleted: number;
  unchanged: number;
  hardlinks: number;
  kept_extraneous: number;
  kept_paths: string[];
  vanished: number;
  deletes_skipped: boolean;
  dry_run: boolean;
}

/** Content bytes of the regular files of a snapshot, each inode once. */
function contentBytes(snap: Map<string, EntrySnapshot>, keep: (p: string) => boolean = () => true): number {
  let n = 0;
  for (const e of snap.values()) {
    if (e.type === 'file' && keep(e.path) && (!e.hardlinkGroup || e.hardlinkGroup === e.path)) n += e.size;
  }
  return n;
}

function parseSummary(r: CliResult): SyncJson {
  expect(r.code, r.stderr).toBe(0);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as SyncJson;
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('incremental final sync', () => {
  let m: Migration;
  let act: ActivityReport;
  /** Content bytes of the roots that only the final phase carries. */
  let otherRootsBytes = 0;

  const sync = (phase: 'initial' | 'final', ...extra: string[]): Promise<CliResult> => m.cli(['sync', '--plan', m.plan, '--phase', phase, ...extra], CLI_TIMEOUT);
  const verify = (...extra: string[]): Promise<CliResult> => m.cli(['verify', '--plan', m.plan, ...extra], CLI_TIMEOUT);
  const snapshots = async (): Promise<[Map<string, EntrySnapshot>, Map<string, EntrySnapshot>]> =>
    Promise.all([snapshotTree(m.oldRoot, ALL_ROOT_PATHS, { skipSockets: true }), snapshotTree(m.newRoot, ALL_ROOT_PATHS, { skipSockets: true })]);
  /** The new host's vmail ids (they differ from the old host's). */
  const newVmail = async (): Promise<{ uid: number; gid: number }> => {
    const ids = await readIdentity(m.newRoot);
    const find = (x: Map<number, string>): number => [...x].find(([, n]) => n === 'vmail')![0];
    return { uid: find(ids.users), gid: find(ids.groups) };
  };

  beforeAll(async () => {
    m = await setupMigration({ tree: { addresses: 8, messagesPerAddress: 14 } });
    const old = await snapshotTree(m.oldRoot, ALL_ROOT_PATHS, { skipSockets: true });
    otherRootsBytes = contentBytes(old, (p) => !p.startsWith(MAIL + '/') && p !== MAIL);
  }, 120_000);
  afterAll(async () => {
    await m?.close();
  });

  it('initial pass copies the mailboxes', async () => {
    const s = parseSummary(await sync('initial', '--json'));
    expect(s.files).toBeGreaterThan(100);
    expect(s.renamed).toBe(0);
    expect(s.deleted).toBe(0);
  }, 60_000);

  it('--dry-run lists every new, changed, renamed and deleted entry and changes nothing', async () => {
    act = await relayActivity({ root: m.oldRoot, seed: 3 });
    expect(act.renamed.length).toBe(10);
    expect(act.removedAddresses.length).toBe(1);

    const before = await snapshotTree(m.newRoot, ['/']);
    const r = await sync('final', '--dry-run');
    expect(r.code, r.stderr).toBe(0);
    const lines = new Set(r.stdout.split('\n'));
    const missing: string[] = [];
    const has = (line: string): void => {
      if (!lines.has(line)) missing.push(line);
    };
    const changedLine = (p: string): void => {
      const re = new RegExp(`^>f\\.\\S+\\s+${escape(p)}$`);
      if (![...lines].some((l) => re.test(l))) missing.push(`>f.(what) ${p}`);
    };
    for (const x of act.renamed) has(`renamed   ${x.from} -> ${x.to}`);
    for (const x of act.deleted) has(`*deleting ${x.path}`);
    for (const x of act.added) has(`>f+++++++ ${x.path}`);
    for (const x of [...act.appended, ...act.rewritten, ...act.touched]) changedLine(x.path);
    for (const x of act.newAddresses) {
      has(`>f+++++++ ${x.path}/`);
      for (const f of x.files) has(`>f+++++++ ${f.path}`);
    }
    for (const x of act.removedAddresses) for (const e of x.entries) has(`*deleting ${e}`);
    expect(missing, `lines missing from the dry run's output:\n${r.stdout}`).toEqual([]);
    // Renamed messages are renames, never a new file plus a delete.
    for (const x of act.renamed) {
      expect(lines.has(`>f+++++++ ${x.to}`)).toBe(false);
      expect(lines.has(`*deleting ${x.from}`)).toBe(false);
    }
    expect([...lines].filter((l) => l.startsWith('kept'))).toEqual([]);

    const after = await snapshotTree(m.newRoot, ['/']);
    // The agent's sync cookies come and go in its own state dir: the relay's state stays as it was.
    expect(diffSnapshots(before, after, { ignore: (p) => p === '/var/lib/cmmigrate/journal' })).toEqual([]);
    expect(await findTempFiles(m.newRoot)).toEqual([]);
  }, 60_000);

  it('final pass renames moved messages in place, sends only changed content, deletes what vanished', async () => {
    const s = parseSummary(await sync('final', '--json'));
    const removedEntries = act.removedAddresses.reduce((n, x) => n + x.entries.length, 0);
    const expected = act.changedBytes + otherRootsBytes;
    console.log(
      `final pass after activity: bytes ${s.bytes} (changed content ${act.changedBytes}: added ${act.addedBytes}, appended ${act.appendedBytes} ` +
        `of ${act.appended.length} files, new address ${act.newAddresses[0].bytes}; other roots ${otherRootsBytes}), files ${s.files}, ` +
        `renamed ${s.renamed}, deleted ${s.deleted}, unchanged ${s.unchanged}`,
    );
    expect.soft(s.renamed, 'renamed').toBe(act.renamed.length);
    expect.soft(s.bytes, 'content bytes sent').toBeLessThanOrEqual(expected + OVERHEAD);
    expect.soft(s.bytes, 'content bytes sent').toBeGreaterThanOrEqual(act.addedBytes + act.appendedBytes + otherRootsBytes);
    expect.soft(s.deleted, 'deleted: the expunged messages and every entry of the removed address').toBe(act.deleted.length + removedEntries);
    expect.soft(s.kept_extraneous, `kept: ${s.kept_paths.join(', ')}`).toBe(0);
    expect(s.unchanged).toBeGreaterThan(0);
    expect(s.vanished).toBe(0);
    expect(s.deletes_skipped).toBe(false);

    const v = await verify();
    expect(v.code, v.stderr).toBe(0);
    const [a, b] = await snapshots();
    expect(diffSnapshots(a, b)).toEqual([]);
    expect(await findTempFiles(m.newRoot)).toEqual([]);
    // Nothing is left of the removed address, and no renamed message kept its old name.
    for (const x of act.removedAddresses) await expect(fs.lstat(path.join(m.newRoot, x.path))).rejects.toThrow(/ENOENT/);
    for (const x of act.renamed) await expect(fs.lstat(path.join(m.newRoot, x.from))).rejects.toThrow(/ENOENT/);
  }, 60_000);

  it('a pass with nothing changed sends nothing', async () => {
    const s = parseSummary(await sync('final', '--json'));
    expect(s.bytes).toBe(0);
    expect(s.files).toBe(0);
    expect(s.renamed).toBe(0);
    expect(s.deleted).toBe(0);
    // After a committed pass, the change journals of both hosts say nothing changed: the
    // pass looks at no entry of the mailboxes at all (issue 25).
    const mail = (s as unknown as { walks: { root: string; scoped: boolean; paths: number }[] }).walks.find((w) => w.root === 'mailboxes');
    expect(mail).toEqual({ root: 'mailboxes', scoped: true, paths: 0, reason: '' });
    const full = parseSummary(await sync('final', '--json', '--no-journal'));
    expect(full.files).toBe(0);
    expect(full.unchanged).toBeGreaterThan(100);
  }, 60_000);

  it('keeps files that another process wrote on the new host, reports them, and honours --max-delete', async () => {
    const vmail = await newVmail();
    // Activity on the old host with several deletes.
    const addresses = (await fs.readdir(path.join(m.oldRoot, DOMAIN_DIR))).sort();
    const act2 = await relayActivity({
      root: m.oldRoot,
      seed: 4,
      flagRenames: 2,
      moves: 1,
      newMessages: 2,
      deletedMessages: 4,
      appendedLogs: 1,
      logins: 0,
      newAddresses: 0,
      removedAddresses: 0,
    });
    // On the new host: a message delivered there (postfix started too early), and a copied
    // message that something changed there, whose source counterpart the activity expunged.
    const foreign = `${DOMAIN_DIR}/${addresses[1]}/new/1775030000.M1P4242.newhost,S=5,W=5`;
    await fs.writeFile(path.join(m.newRoot, foreign), 'hello', { mode: 0o600 });
    await fs.chown(path.join(m.newRoot, foreign), vmail.uid, vmail.gid);
    const modified = act2.deleted[0].path;
    await fs.appendFile(path.join(m.newRoot, modified), 'X-Changed-On-New-Host: 1\n');
    const modifiedContent = await fs.readFile(path.join(m.newRoot, modified));
    const pending = act2.deleted.slice(1).map((d) => d.path);

    const dry = await sync('final', '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    const lines = dry.stdout.split('\n');
    expect(lines.filter((l) => l.startsWith('kept')).sort()).toEqual(
      [foreign, modified].sort().map((p) => `kept      ${p} (only on the new host, not put there by cmmigrate)`),
    );
    for (const p of pending) expect(lines).toContain(`*deleting ${p}`);
    expect(lines).not.toContain(`*deleting ${modified}`);
    expect(lines).not.toContain(`*deleting ${foreign}`);

    // --max-delete 1 with three deletes pending: the pass fails before deleting more than one.
    const limited = await sync('final', '--max-delete', '1', '--json');
    expect(limited.signal, 'the CLI did not end by itself').toBe(null);
    expect(limited.code).not.toBe(0);
    expect(limited.stderr).toContain('[transfer.max_delete]');
    expect(JSON.parse(limited.stdout.trim().split('\n').pop()!)).toMatchObject({ event: 'error', code: 'transfer.max_delete' });
    const stillThere = (await Promise.all(pending.map((p) => fs.lstat(path.join(m.newRoot, p)).then(() => true, () => false)))).filter(Boolean).length;
    expect(stillThere).toBeGreaterThanOrEqual(pending.length - 1);

    // Without the limit it goes through; the foreign and the modified file stay, reported.
    const s = parseSummary(await sync('final', '--json'));
    expect(s.kept_extraneous).toBeGreaterThanOrEqual(2);
    expect(s.kept_paths).toEqual(expect.arrayContaining([foreign, modified]));
    expect(await fs.readFile(path.join(m.newRoot, foreign), 'utf8')).toBe('hello');
    expect(await fs.readFile(path.join(m.newRoot, modified))).toEqual(modifiedContent);
    for (const p of pending) await expect(fs.lstat(path.join(m.newRoot, p))).rejects.toThrow(/ENOENT/);
    expect(await findTempFiles(m.newRoot)).toEqual([]);

    // verify names exactly those two paths.
    const v = await verify('--json');
    expect(v.code).toBe(1);
    const out = JSON.parse(v.stdout.trim().split('\n').pop()!);
    expect(out.differences, JSON.stringify(out.first)).toBe(2);
    expect(out.first.map((d: { path: string }) => d.path).sort()).toEqual([foreign, modified].sort());
    const [a, b] = await snapshots();
    expect(diffSnapshots(a, b)).toEqual([foreign, modified].sort().map((p) => `${p}: missing on a`));

    // The operator removes them; a final pass settles the directories; verify passes.
    await fs.rm(path.join(m.newRoot, foreign));
    await fs.rm(path.join(m.newRoot, modified));
    const s2 = parseSummary(await sync('final', '--json'));
    expect(s2.bytes).toBe(0);
    expect(s2.kept_extraneous).toBe(0);
    const v2 = await verify();
    expect(v2.code, v2.stderr).toBe(0);
  }, 90_000);

  it('hard-linked messages: a rename by one recipient and a delivery to several send no extra content', async () => {
    const act3 = await relayActivity({
      root: m.oldRoot,
      seed: 5,
      linked: 'only',
      flagRenames: 1,
      moves: 1,
      newMessages: 0,
      sharedMessages: 1,
      deletedMessages: 0,
      appendedLogs: 0,
      logins: 0,
      newAddresses: 0,
      removedAddresses: 0,
    });
    expect(act3.renamed.every((x) => x.linked)).toBe(true);
    expect(act3.added[0].links.length).toBeGreaterThan(0);
    const s = parseSummary(await sync('final', '--json'));
    console.log(`hard-linked activity: bytes ${s.bytes} (changed content ${act3.changedBytes}, of it the shared message ${act3.addedBytes}), renamed ${s.renamed}, hardlinks ${s.hardlinks}`);
    expect(s.bytes).toBeLessThanOrEqual(act3.changedBytes);
    const [a, b] = await snapshots();
    expect(diffSnapshots(a, b)).toEqual([]);
    const v = await verify();
    expect(v.code, v.stderr).toBe(0);
  }, 60_000);

  it('a delivered message that reuses an expunged message\'s inode and size gets its own content', async () => {
    // ext4 hands a freed inode to the next file created: expunge, then deliver a message of
    // the same size. The source's dev:ino now names a different message.
    const addr = (await fs.readdir(path.join(m.oldRoot, DOMAIN_DIR))).sort()[2];
    const cur = path.join(m.oldRoot, DOMAIN_DIR, addr, 'cur');
    let victim: string | undefined;
    for (const n of (await fs.readdir(cur)).sort()) {
      const st = await fs.lstat(path.join(cur, n));
      const copy = await fs.readFile(path.join(m.newRoot, DOMAIN_DIR, addr, 'cur', n)).catch(() => null);
      if (st.isFile() && st.nlink === 1 && copy?.equals(await fs.readFile(path.join(cur, n)))) {
        victim = n;
        break;
      }
    }
    expect(victim).toBeDefined();
    const vst = await fs.stat(path.join(cur, victim!));
    const oldContent = await fs.readFile(path.join(cur, victim!));
    const fresh = Buffer.from(oldContent.map((x) => x ^ 0x5a));
    const name = `1775030100.M2P4343.mail,S=${fresh.length},W=${fresh.length}`;
    const target = path.join(m.oldRoot, DOMAIN_DIR, addr, 'new', name);
    // What ext4 does when it hands the freed inode to the next delivery, made certain: the
    // expunged message's inode gets the new message's content and name.
    await fs.writeFile(path.join(cur, victim!), fresh);
    await fs.rename(path.join(cur, victim!), target);
    expect((await fs.stat(target)).ino).toBe(vst.ino);
    await fs.chown(target, vst.uid, vst.gid);
    await fs.utimes(target, 1_775_030_100.25, 1_775_030_100.25);

    const s = parseSummary(await sync('final', '--json'));
    const got = await fs.readFile(path.join(m.newRoot, DOMAIN_DIR, addr, 'new', name));
    expect(got.equals(oldContent), 'the new message arrived with the content of the expunged one (its old copy was moved into its place)').toBe(false);
    expect(got.equals(fresh)).toBe(true);
    expect(s.renamed).toBe(0);
    const [a, b] = await snapshots();
    expect(diffSnapshots(a, b)).toEqual([]);
  }, 60_000);
});
