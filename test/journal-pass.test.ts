/**
 * A final pass that looks only at what the change journals named (issue 25) against one
 * that walks everything: on copies of one relay, after the same random changes, both end
 * with the old host's tree, and with the same manifest. One old agent serves two new
 * agents: new1 keeps a journal, new2 runs with --no-journal. All on a private tmpfs, so
 * that the journals see this test's writes and not the rest of the suite's.
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
import { diffSnapshots, snapshotTree } from './support/tree-snapshot';
import { mutateTree } from './support/tree-mutator';

const ROOTS = ['/home/vmail/mail', '/etc/dkimkeys', '/var/lib/acme', '/var/spool/postfix'];
const MUTATED = ['/home/vmail/mail', '/etc/dkimkeys', '/var/lib/acme'];
const SEEDS = Number(process.env.JOURNAL_SEEDS ?? 3);
const ROUNDS = Number(process.env.JOURNAL_ROUNDS ?? 3);
const CLI_TIMEOUT = 60_000;

interface Walk {
  root: string;
  scoped: boolean;
  paths: number;
  reason: string;
}

function summaryOf(r: CliResult): { walks: Walk[]; files: number; renamed: number; deleted: number } {
  expect(r.code, r.stderr + r.stdout).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** A manifest's records without this host's inode numbers (which differ between the two new hosts) and directory times. */
function manifestOf(stateDir: string): string[] {
  const out: string[] = [];
  for (const name of fs.readdirSync(stateDir).sort()) {
    if (!name.endsWith('.jsonl')) continue;
    for (const line of fs.readFileSync(path.join(stateDir, name), 'utf8').split('\n')) {
      if (!line) continue;
      const r = JSON.parse(line) as Record<string, unknown>;
      delete r.i;
      // A directory's record keeps its mtime as the pass found it, before the pass set it;
      // nothing reads it, and a full walk refreshes it one pass later than a scoped one.
      if (r.t === 'dir') delete r.m;
      out.push(JSON.stringify(r));
    }
  }
  return out.sort();
}

describe('a final pass from the change journals', () => {
  let dir: string;
  let plan1: string;
  let plan2: string;
  const agents: AgentProcess[] = [];
  const roots = { old: '', new1: '', new2: '' };

  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-jpass-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512m', 'tmpfs', dir]);
    for (const k of ['old', 'new1', 'new2'] as const) roots[k] = path.join(dir, k);
    await generateRelayTree({ root: roots.old, seed: 11, addresses: 6, messagesPerAddress: 12, uidBase: 5000 });
    await writeIdentity(roots.new1, 7000);
    await writeIdentity(roots.new2, 7000);
    const [po, p1, p2] = [await freePort('127.0.0.2'), await freePort('127.0.0.3'), await freePort('127.0.0.3')];
    plan1 = path.join(dir, 'plan1.toml');
    const init = await cmmigrate(['init', '--plan', plan1, '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3', '--old-agent', `127.0.0.2:${po}`, '--new-agent', `127.0.0.3:${p1}`]);
    expect(init.code, init.stderr).toBe(0);
    plan2 = path.join(dir, 'plan2.toml');
    await fsp.writeFile(plan2, (await fsp.readFile(plan1, 'utf8')).replace(`127.0.0.3:${p1}`, `127.0.0.3:${p2}`));
    const tls = path.join(dir, '.cmmigrate', 'tls');
    agents.push(await startAgentProcess({ listen: `127.0.0.2:${po}`, root: roots.old, tlsDir: path.join(tls, 'old') }));
    agents.push(await startAgentProcess({ listen: `127.0.0.3:${p1}`, root: roots.new1, tlsDir: path.join(tls, 'new') }));
    agents.push(await startAgentProcess({ listen: `127.0.0.3:${p2}`, root: roots.new2, tlsDir: path.join(tls, 'new'), extra: ['--no-journal'] }));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    execFileSync('umount', ['-l', dir]);
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const sync = (plan: string, ...extra: string[]): Promise<CliResult> => cmmigrate(['sync', '--plan', plan, '--phase', 'final', '--json', ...extra], { cwd: dir, timeoutMs: CLI_TIMEOUT });

  it('ends with the same trees and manifests as a full walk, over many seeds of random changes', async () => {
    const first1 = summaryOf(await sync(plan1));
    summaryOf(await sync(plan2));
    // The first pass has no earlier one to start from.
    expect(first1.walks.find((w) => w.root === 'mailboxes')).toMatchObject({ scoped: false, reason: expect.stringContaining('no earlier pass') });
    // The first pass made the roots on the new hosts, which the next pass cannot take on trust.
    summaryOf(await sync(plan1));
    summaryOf(await sync(plan2));
    const uids: [number, number] = [5000, 5002]; // vmail and postfix on the old host (relay-tree.ts)
    let scopedRounds = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const rng = new Rng(seed * 7919);
      for (let round = 0; round < ROUNDS; round++) {
        const did = mutateTree(roots.old, MUTATED, rng, { count: 20, uids, sameSizeRewrites: false });
        const s1 = summaryOf(await sync(plan1));
        summaryOf(await sync(plan2));
        const mail = s1.walks.find((w) => w.root === 'mailboxes')!;
        if (mail.scoped) scopedRounds++;
        if (process.env.JOURNAL_DEBUG) console.log(JSON.stringify(s1.walks));
        const [o, n1, n2] = await Promise.all([roots.old, roots.new1, roots.new2].map((r) => snapshotTree(r, ROOTS, { skipSockets: true })));
        const what = `seed ${seed} round ${round}: ${JSON.stringify(s1.walks)}\n${did.join('\n')}`;
        // The plan forces owners per root (mailboxes: vmail), so the old tree's owners may differ.
        expect(diffSnapshots(o, n1, { ignoreOwners: true }), what).toEqual([]);
        expect(diffSnapshots(n2, n1), what).toEqual([]);
        expect(manifestOf(path.join(roots.new1, 'var/lib/cmmigrate')), what).toEqual(manifestOf(path.join(roots.new2, 'var/lib/cmmigrate')));
      }
    }
    // Most rounds must have used the journals: a hard link outside the changes may force a walk now and then.
    expect(scopedRounds).toBeGreaterThan((SEEDS * ROUNDS) / 2);
  });

  it('carries a file rewritten in place with its size and mtime kept, which a full walk keeps stale', async () => {
    const victim = path.join(roots.old, 'etc/dkimkeys/opendkim.private');
    if (!fs.existsSync(victim)) {
      // The random changes above removed it: both new hosts get it first.
      fs.writeFileSync(victim, 'a key that the random changes above removed\n');
      summaryOf(await sync(plan1));
      summaryOf(await sync(plan2));
    }
    const before = fs.statSync(victim, { bigint: true });
    const fd = fs.openSync(victim, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, 10);
    b[0] ^= 0x01;
    fs.writeSync(fd, b, 0, 1, 10);
    fs.closeSync(fd);
    const sec = (ns: bigint): number => Number(ns / 1000n / 1_000_000n) + (Number((ns / 1000n) % 1_000_000n) + 0.5) / 1e6;
    fs.utimesSync(victim, sec(before.atimeNs), sec(before.mtimeNs));
    expect(fs.statSync(victim, { bigint: true }).mtimeNs / 1000n).toBe(before.mtimeNs / 1000n);
    const s1 = summaryOf(await sync(plan1));
    expect(s1.walks.find((w) => w.root === 'dkimkeys')?.scoped).toBe(true);
    summaryOf(await sync(plan2));
    const rel = 'etc/dkimkeys/opendkim.private';
    const want = fs.readFileSync(victim);
    expect(fs.readFileSync(path.join(roots.new1, rel)).equals(want)).toBe(true);
    // rsync and any walk by size and mtime keep the stale copy.
    expect(fs.readFileSync(path.join(roots.new2, rel)).equals(want)).toBe(false);
  });

  it('names a change made on the new host behind its back, and puts the old host\'s version back', async () => {
    // A file of the DKIM root on both hosts (the random changes above may have moved any).
    const name = fs.readdirSync(path.join(roots.new1, 'etc/dkimkeys')).find((n) => fs.lstatSync(path.join(roots.new1, 'etc/dkimkeys', n)).isFile() && fs.lstatSync(path.join(roots.new1, 'etc/dkimkeys', n)).size > 0)!;
    const rel = `etc/dkimkeys/${name}`;
    const target = path.join(roots.new1, rel);
    const st = fs.statSync(target, { bigint: true });
    // A foreign writer: another process, same size, mtime put back.
    execFileSync('python3', ['-c', `import os\nfd=os.open(${JSON.stringify(target)}, os.O_WRONLY)\nos.pwrite(fd, b'Z', 0)\nos.close(fd)\nos.utime(${JSON.stringify(target)}, ns=(${st.atimeNs}, ${st.mtimeNs}))`]);
    const s1 = summaryOf(await sync(plan1));
    expect(s1.walks.find((w) => w.root === 'dkimkeys')).toMatchObject({ scoped: true });
    expect(fs.readFileSync(target).equals(fs.readFileSync(path.join(roots.old, rel)))).toBe(true);
  });
});
