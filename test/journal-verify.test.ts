/**
 * A quick verify from the change journals (issue 25, point 6): each agent keeps the lines
 * of its last digest of a root and looks again only at what its journal says changed
 * since. On one relay and its copy, after random changes on either host (creates, deletes,
 * renames of files and directories, hard links gained and lost, in-place rewrites with the
 * mtime restored, chmod, chown, symlinks, FIFOs), two quick verifies in a row give each
 * host the same root digests as a full verify, which walks and reads everything; and every
 * way the journal cannot vouch for a root ends in a full walk, named. All on a private
 * tmpfs, so that the journals see this test's writes and not the rest of the suite's.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cmmigrate, freePort, startAgentProcess, type AgentProcess, type CliResult } from './support/harness';
import { generateRelayTree, writeIdentity } from './support/relay-tree';
import { Rng } from './support/rng';
import { mutateTree } from './support/tree-mutator';

const MUTATED = ['/home/vmail/mail', '/etc/dkimkeys', '/var/lib/acme'];
const SEEDS = Number(process.env.JOURNAL_SEEDS ?? 3);
const ROUNDS = Number(process.env.JOURNAL_ROUNDS ?? 2);
const CLI_TIMEOUT = 60_000;

interface HostWalk {
  scoped: boolean;
  paths: number;
  reason: string;
}
interface RootJson {
  root: string;
  entries: { old: number; new: number };
  sha256: { old: string; new: string };
  match: boolean;
  walk: { old: HostWalk; new: HostWalk };
}
interface VerifyJson {
  ok: boolean;
  differences: number;
  first: { path: string; what: string }[];
  roots: RootJson[];
  read?: number;
  from_records?: number;
}

function verifyOf(r: CliResult): VerifyJson {
  expect([0, 1], r.stderr + r.stdout).toContain(r.code);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as VerifyJson;
}

describe('a quick verify from the change journals', () => {
  let dir: string;
  let plan: string;
  const agents: AgentProcess[] = [];
  const roots = { old: '', new: '' };
  const verify = async (...extra: string[]): Promise<VerifyJson> => verifyOf(await cmmigrate(['verify', '--plan', plan, '--json', ...extra], { cwd: dir, timeoutMs: CLI_TIMEOUT }));
  const sync = async (): Promise<void> => {
    const r = await cmmigrate(['sync', '--plan', plan, '--phase', 'final', '--json'], { cwd: dir, timeoutMs: CLI_TIMEOUT });
    expect(r.code, r.stderr).toBe(0);
  };
  const mail = (v: VerifyJson): RootJson => v.roots.find((r) => r.root === 'mailboxes')!;

  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-jverify-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512m', 'tmpfs', dir]);
    roots.old = path.join(dir, 'old');
    roots.new = path.join(dir, 'new');
    await generateRelayTree({ root: roots.old, seed: 5, addresses: 6, messagesPerAddress: 12, uidBase: 5000 });
    await writeIdentity(roots.new, 7000);
    const [po, pn] = [await freePort('127.0.0.2'), await freePort('127.0.0.3')];
    plan = path.join(dir, 'plan.toml');
    const init = await cmmigrate(['init', '--plan', plan, '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3', '--old-agent', `127.0.0.2:${po}`, '--new-agent', `127.0.0.3:${pn}`]);
    expect(init.code, init.stderr).toBe(0);
    const tls = path.join(dir, '.cmmigrate', 'tls');
    agents.push(await startAgentProcess({ listen: `127.0.0.2:${po}`, root: roots.old, tlsDir: path.join(tls, 'old') }));
    agents.push(await startAgentProcess({ listen: `127.0.0.3:${pn}`, root: roots.new, tlsDir: path.join(tls, 'new') }));
    await sync();
    await sync();
  }, 120_000);

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    execFileSync('umount', ['-l', dir]);
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('starts from a full walk, then looks only at what changed', async () => {
    const first = await verify('--quick');
    expect(first.ok, JSON.stringify(first.first)).toBe(true);
    // A cache from an earlier test of this file may be there; without one the walk says why.
    for (const side of ['old', 'new'] as const) {
      const w = mail(first).walk[side];
      if (!w.scoped) expect(w.reason).toMatch(/^journal: /);
    }
    const second = await verify('--quick');
    expect(second.ok).toBe(true);
    expect(mail(second).walk).toEqual({ old: { scoped: true, paths: 0, reason: '' }, new: { scoped: true, paths: 0, reason: '' } });
    expect(mail(second).sha256).toEqual(mail(first).sha256);
    // Nothing changed: no file read, every digest from the cache.
    expect(second.read, JSON.stringify(second.roots.map((r) => [r.root, r.walk]))).toBe(0);
    expect(second.from_records).toBeGreaterThan(100);
  });

  it('names a byte changed on the new host after the final pass, with its size and mtime kept', async () => {
    await sync();
    expect((await verify('--quick')).ok).toBe(true);
    const cur = path.join(roots.new, 'home/vmail/mail');
    const victim = findFile(cur);
    const before = fs.statSync(victim, { bigint: true });
    const fd = fs.openSync(victim, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, 0);
    b[0] ^= 0x01;
    fs.writeSync(fd, b, 0, 1, 0);
    fs.closeSync(fd);
    fs.utimesSync(victim, seconds(before.atimeNs), seconds(before.mtimeNs));
    const v = await verify('--quick');
    expect(v.ok).toBe(false);
    expect(mail(v).walk.new.scoped).toBe(true);
    expect(v.first.map((d) => d.path)).toContain('/' + path.relative(roots.new, victim));
    expect(v.first.find((d) => d.path === '/' + path.relative(roots.new, victim))?.what).toMatch(/content/);
    // Put the byte back: the hosts match again, and the quick verify sees that too.
    const fd2 = fs.openSync(victim, 'r+');
    b[0] ^= 0x01;
    fs.writeSync(fd2, b, 0, 1, 0);
    fs.closeSync(fd2);
    fs.utimesSync(victim, seconds(before.atimeNs), seconds(before.mtimeNs));
    const back = await verify('--quick');
    expect(back.ok, JSON.stringify(back.first)).toBe(true);
    expect(mail(back).walk.new.scoped).toBe(true);
  });

  it('walks in full, and says why, when the journal lost track (its helper killed)', async () => {
    await sync();
    expect((await verify('--quick')).ok).toBe(true);
    const helper = Number(execFileSync('pgrep', ['-P', String(agents[1].child.pid), 'python3'], { encoding: 'utf8' }).trim().split('\n')[0]);
    process.kill(helper, 'SIGKILL');
    // A change the dead helper cannot see: only a full walk finds it.
    const victim = findFile(path.join(roots.new, 'etc/dkimkeys'));
    const before = fs.statSync(victim, { bigint: true });
    fs.appendFileSync(victim, 'x');
    const v = await verify('--quick');
    expect(v.ok).toBe(false);
    for (const r of v.roots) {
      if (!r.entries.new) continue;
      expect(r.walk.new.scoped, r.root).toBe(false);
      expect(r.walk.new.reason, r.root).toMatch(/journal: /);
    }
    expect(v.first.map((d) => d.path)).toContain('/' + path.relative(roots.new, victim));
    // The next one starts from the full walk's cache, in the journal's new epoch.
    fs.truncateSync(victim, Number(before.size));
    fs.utimesSync(victim, seconds(before.atimeNs), seconds(before.mtimeNs));
    const again = await verify('--quick');
    expect(again.ok).toBe(true);
    expect(mail(again).walk.new.scoped).toBe(true);
  });
  it('looks at every name of a hard-linked file that changed under one of them', async () => {
    const mailRoot = path.join(roots.old, 'home/vmail/mail');
    const curs = (fs.readdirSync(mailRoot, { recursive: true }) as string[]).filter((p) => path.basename(p) === 'cur').sort();
    expect(curs.length).toBeGreaterThan(1);
    const a = path.join(mailRoot, curs[0], 'm-link-b');
    const b = path.join(mailRoot, curs[1], 'm-link-c');
    fs.writeFileSync(a, 'one message to two users\n');
    fs.linkSync(a, b);
    await sync();
    await verify('--quick');
    const same = async (what: string): Promise<void> => {
      const quick = await verify('--quick');
      const full = await verify();
      expect(mail(quick).walk.old.scoped, `${what}: ${mail(quick).walk.old.reason}`).toBe(true);
      expect(mail(quick).sha256.old, what).toBe(mail(full).sha256.old);
    };
    await same('after the sync');
    // Written through the second name: the first name's line carries the new digest too.
    fs.appendFileSync(b, 'more\n');
    await same('written through one name');
    // A new name that sorts first becomes the group's first path, on every other line.
    fs.linkSync(a, path.join(mailRoot, curs[0], 'm-link-a'));
    await same('a new first name');
    // The first name gone: the next one leads.
    fs.unlinkSync(path.join(mailRoot, curs[0], 'm-link-a'));
    await same('the first name gone');
    fs.unlinkSync(a);
    await same('down to one name');
    fs.unlinkSync(b);
    await sync();
  });

  it('walks in full, and says why, when a digest cache is damaged: its size kept, a line made no record', async () => {
    await sync();
    expect((await verify('--quick')).ok).toBe(true);
    const cache = path.join(roots.new, 'var/lib/cmmigrate/verify-cache/mailboxes.lines');
    const text = fs.readFileSync(cache);
    const second = text.indexOf(10) + 1;
    text.fill(0x7a, second, second + 8);
    fs.writeFileSync(cache, text);
    // A change to look at (and none to find): a file written to and put back as it was.
    const victim = findFile(path.join(roots.new, 'home/vmail/mail'));
    const before = fs.statSync(victim, { bigint: true });
    fs.appendFileSync(victim, 'x');
    fs.truncateSync(victim, Number(before.size));
    fs.utimesSync(victim, seconds(before.atimeNs), seconds(before.mtimeNs));
    const v = await verify('--quick');
    expect(v.ok, JSON.stringify(v.first)).toBe(true);
    expect(mail(v).walk.new).toMatchObject({ scoped: false, reason: expect.stringMatching(/digest cache of mailboxes has a line that is no record/) });
    // The full walk left a sound cache: the next one is scoped again.
    expect(mail(await verify('--quick')).walk.new.scoped).toBe(true);
  });

  it('gives each host the digests a full verify gives, after random changes on either host, two quick verifies in a row', async () => {
    await verify('--quick');
    const uids: [number, number] = [5000, 5002];
    let scoped = 0;
    let checks = 0;
    const notScoped: string[] = [];
    for (let seed = 1; seed <= SEEDS; seed++) {
      const rng = new Rng(seed * 104729);
      for (let round = 0; round < ROUNDS; round++) {
        const did: string[] = [];
        for (const step of [0, 1]) {
          did.push(...mutateTree(roots.old, MUTATED, rng, { count: 12, uids, sameSizeRewrites: true }));
          // The new host changed behind cmmigrate's back too (uids of its own: 7000, 7002).
          if (rng.int(0, 1) === 1) did.push(...mutateTree(roots.new, MUTATED, rng, { count: 6, uids: [7000, 7002], sameSizeRewrites: true }));
          const quick = await verify('--quick');
          if (step === 1) {
            const full = await verify();
            const what = `seed ${seed} round ${round}:\n${did.join('\n')}\nquick: ${JSON.stringify(quick.roots)}`;
            for (const r of full.roots) {
              const q = quick.roots.find((x) => x.root === r.root)!;
              expect(q.sha256, `${r.root}\n${what}`).toEqual(r.sha256);
              expect(q.entries, `${r.root}\n${what}`).toEqual(r.entries);
              if (!r.entries.old || !r.entries.new) continue;
              checks++;
              if (q.walk.old.scoped && q.walk.new.scoped) scoped++;
              else notScoped.push(`${r.root}: ${q.walk.old.reason} / ${q.walk.new.reason}`);
            }
            expect(quick.differences, what).toBe(full.differences);
          }
        }
        // The next round starts from the same trees on both hosts.
        await sync();
      }
    }
    // Most roots must have come from the journals: a hard-linked file with names nobody
    // knows (a link made and a name renamed between two digests) may force a walk.
    expect(scoped, notScoped.join('\n')).toBeGreaterThan(checks / 2);
  }, 300_000);

});

/** A time in nanoseconds as utimes takes it, to the microsecond verify compares. */
const seconds = (ns: bigint): number => Number(ns / 1000n / 1_000_000n) + (Number((ns / 1000n) % 1_000_000n) + 0.5) / 1e6;

/** The first regular file under `dir`, in name order. */
function findFile(dir: string): string {
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = path.join(dir, e.name);
    if (e.isFile()) return p;
    if (e.isDirectory()) {
      try {
        return findFile(p);
      } catch {
        /* nothing here */
      }
    }
  }
  throw new Error(`no file under ${dir}`);
}
