/**
 * Resume: a pass interrupted by SIGKILL of either agent restarts without resending the
 * files it had committed, leaves no temp files once a rerun succeeds, and ends with trees
 * that verify. The tree holds big messages so that each kill lands mid-pass: the test
 * watches the new root and kills when it holds a given share of the data.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALL_ROOT_PATHS, findTempFiles, setupMigration, TMP_PREFIX, type AgentProcess, type CliResult, type Migration } from './support/harness';
import { diffSnapshots, snapshotTree } from './support/tree-snapshot';

const MIB = 1024 * 1024;
const MAIL = '/home/vmail/mail';
/** Six big messages, one per address: about 190 MiB, a pass of a second or two on loopback. */
const BIG = [24, 36, 28, 40, 32, 30].map((n) => n * MIB);
/** A pass takes seconds; a CLI running longer than this is stuck. */
const CLI_TIMEOUT = 30_000;
/** A pass whose agent was killed should end at once. */
const KILLED_TIMEOUT = 45_000;

interface TargetState {
  /** Content bytes of committed (non-temp) regular files, each inode once. */
  committed: number;
  /** Committed files: path -> inode. */
  inodes: Map<string, number>;
  /** Temp files: path -> size. */
  temps: Map<string, number>;
}

/** What the new root holds right now below `host` paths; entries may vanish while we look. */
async function targetState(root: string, hosts: string[] = [MAIL]): Promise<TargetState> {
  const s: TargetState = { committed: 0, inodes: new Map(), temps: new Map() };
  const seen = new Set<number>();
  const walk = async (abs: string, host: string): Promise<void> => {
    let st;
    try {
      st = await fs.lstat(abs);
    } catch {
      return; // renamed or removed while we looked
    }
    if (st.isDirectory()) {
      let names: string[] = [];
      try {
        names = await fs.readdir(abs);
      } catch {
        return;
      }
      await Promise.all(names.map((n) => walk(path.join(abs, n), `${host}/${n}`)));
    } else if (st.isFile()) {
      if (path.basename(abs).startsWith(TMP_PREFIX)) s.temps.set(host, st.size);
      else {
        s.inodes.set(host, st.ino);
        if (!seen.has(st.ino)) s.committed += st.size;
        seen.add(st.ino);
      }
    }
  };
  for (const h of hosts) await walk(path.join(root, h), h);
  return s;
}

/** Files committed in `before` that are there in `after` with another inode: written again. */
function rewritten(before: TargetState, after: TargetState): string[] {
  return [...before.inodes].filter(([p, ino]) => after.inodes.has(p) && after.inodes.get(p) !== ino).map(([p]) => p);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const maxTemp = (s: TargetState): number => Math.max(0, ...s.temps.values());

/** Whether the agent process is still running `ms` from now. */
async function survives(a: AgentProcess, ms = 500): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) {
    if (a.child.exitCode !== null || a.child.signalCode !== null) return false;
  }
  return true;
}

/** The other agent must outlive its peer's death; if it did not, say so and restart it so the test goes on. */
async function expectSurvivor(m: Migration, side: 'old' | 'new'): Promise<void> {
  const alive = await survives(m[side]);
  expect.soft(alive, `the ${side} agent died when its peer was killed; its log ends:\n${m[side].log().slice(-1500)}`).toBe(true);
  if (!alive) await m.restart(side);
}

interface KilledRun {
  r: CliResult;
  /** The target when the kill was sent. */
  at: TargetState;
}

/**
 * Run a sync and SIGKILL one agent once `when` holds for the new root; waits for the CLI.
 * Fails the test if the pass ends before that.
 */
async function syncAndKill(m: Migration, args: string[], side: 'old' | 'new', when: (s: TargetState) => boolean): Promise<KilledRun> {
  let finished = false;
  const run = m.cli(args, KILLED_TIMEOUT).finally(() => (finished = true));
  let at: TargetState | undefined;
  while (!finished) {
    const s = await targetState(m.newRoot);
    if (when(s)) {
      m[side].child.kill('SIGKILL');
      at = s;
      break;
    }
    await sleep(3);
  }
  const r = await run;
  if (!at) throw new Error(`the pass ended (exit ${r.code}) before the kill point was reached; stderr:\n${r.stderr}`);
  return { r, at };
}

function summaryOf(r: CliResult): { bytes: number; files: number; vanished: number; kept_extraneous: number; deleted: number } {
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** Content bytes of every root, each inode once. */
async function treeBytes(root: string): Promise<number> {
  const snap = await snapshotTree(root, ALL_ROOT_PATHS, { skipSockets: true });
  let n = 0;
  for (const e of snap.values()) if (e.type === 'file' && (!e.hardlinkGroup || e.hardlinkGroup === e.path)) n += e.size;
  return n;
}

async function expectSameTrees(m: Migration): Promise<void> {
  const v = await m.cli(['verify', '--plan', m.plan], CLI_TIMEOUT);
  expect(v.code, v.stderr).toBe(0);
  const [a, b] = await Promise.all([snapshotTree(m.oldRoot, ALL_ROOT_PATHS, { skipSockets: true }), snapshotTree(m.newRoot, ALL_ROOT_PATHS, { skipSockets: true })]);
  expect(diffSnapshots(a, b)).toEqual([]);
}

describe('resume after the sending agent is killed', () => {
  let m: Migration;
  let mailBytes = 0;
  beforeAll(async () => {
    m = await setupMigration({ tree: { addresses: 6, messagesPerAddress: 8, bigFiles: BIG } });
    mailBytes = (await targetState(m.oldRoot)).committed;
  }, 60_000);
  afterAll(async () => {
    await m?.close();
  });

  it('three kills of the old agent mid-pass; each rerun resends nothing committed; the last completes', async () => {
    const args = ['sync', '--plan', m.plan, '--phase', 'initial', '--json'];
    const points: { name: string; when: (s: TargetState, prev: TargetState) => boolean }[] = [
      { name: 'after some files landed', when: (s) => s.committed >= 0.15 * mailBytes },
      { name: 'in the middle of a big file', when: (s, prev) => s.committed > prev.committed + MIB && maxTemp(s) >= 8 * MIB },
      { name: 'late in the pass', when: (s) => s.committed >= 0.7 * mailBytes },
    ];
    let landed = 0;
    const log: string[] = [];
    let prev = await targetState(m.newRoot);
    for (const p of points) {
      const k = await syncAndKill(m, args, 'old', (s) => p.when(s, prev));
      expect.soft(k.r.signal, `the CLI hung after the old agent died (${p.name}); stderr:\n${k.r.stderr}`).toBe(null);
      expect(k.r.code).not.toBe(0);
      await expectSurvivor(m, 'new');
      await m.restart('old');
      const now = await targetState(m.newRoot);
      expect(rewritten(prev, now), `files committed before were written again by the pass killed ${p.name}`).toEqual([]);
      // The receiver outlived the sender: it removed the temp file of the message it was writing.
      expect([...now.temps.keys()]).toEqual([]);
      landed += now.committed - prev.committed;
      log.push(`killed ${p.name}: ${(now.committed / MIB).toFixed(1)} MiB committed (kill at ${(k.at.committed / MIB).toFixed(1)} MiB, temp ${(maxTemp(k.at) / MIB).toFixed(1)} MiB), ${now.temps.size} temp files left, exit ${k.r.code}${k.r.signal ? ' ' + k.r.signal : ''}: ${k.r.stderr.trim().split('\n').filter((l) => l.includes('error')).join(' ')}`);
      prev = now;
    }
    expect(prev.committed).toBeGreaterThanOrEqual(0.7 * mailBytes);

    const last = summaryOf(await m.cli(args, CLI_TIMEOUT));
    const after = await targetState(m.newRoot);
    expect(rewritten(prev, after)).toEqual([]);
    expect(await findTempFiles(m.newRoot)).toEqual([]);
    const fin = summaryOf(await m.cli(['sync', '--plan', m.plan, '--phase', 'final', '--json'], CLI_TIMEOUT));
    const total = landed + last.bytes + fin.bytes;
    const tree = await treeBytes(m.oldRoot);
    log.push(`rerun: ${(last.bytes / MIB).toFixed(1)} MiB; final: ${fin.bytes} B; over all runs ${(total / MIB).toFixed(1)} MiB of a ${(tree / MIB).toFixed(1)} MiB tree (${(total / tree).toFixed(3)}x)`);
    console.log(log.join('\n'));
    expect(total).toBeLessThanOrEqual(1.1 * tree);
    expect(await findTempFiles(m.newRoot)).toEqual([]);
    await expectSameTrees(m);
  }, 90_000);
});

describe('resume after the receiving agent is killed', () => {
  let m: Migration;
  let mailBytes = 0;
  beforeAll(async () => {
    m = await setupMigration({ tree: { addresses: 6, messagesPerAddress: 8, bigFiles: BIG, seed: 2 } });
    mailBytes = (await targetState(m.oldRoot)).committed;
  }, 60_000);
  afterAll(async () => {
    await m?.close();
  });

  it('a final pass killed on the new host mid-file resumes, removes the temp file, and later passes still own what it wrote', async () => {
    const args = ['sync', '--plan', m.plan, '--phase', 'final', '--json'];
    const k = await syncAndKill(m, args, 'new', (s) => s.committed >= 0.3 * mailBytes && maxTemp(s) >= 4 * MIB);
    expect(k.r.signal, 'the CLI hung after the new agent died').toBe(null);
    expect(k.r.code).not.toBe(0);
    await expectSurvivor(m, 'old');
    await m.restart('new');
    const before = await targetState(m.newRoot);
    expect(before.temps.size, 'the kill should leave the temp file of the big message it was writing').toBeGreaterThan(0);

    const s = summaryOf(await m.cli(args, CLI_TIMEOUT));
    const after = await targetState(m.newRoot);
    expect(rewritten(before, after)).toEqual([]);
    expect(await findTempFiles(m.newRoot)).toEqual([]);
    const tree = await treeBytes(m.oldRoot);
    const total = before.committed + s.bytes;
    console.log(
      `new agent killed at ${(k.at.committed / MIB).toFixed(1)} MiB committed, temp ${(maxTemp(k.at) / MIB).toFixed(1)} MiB; ` +
        `rerun ${(s.bytes / MIB).toFixed(1)} MiB; over both runs ${(total / MIB).toFixed(1)} MiB of ${(tree / MIB).toFixed(1)} MiB (${(total / tree).toFixed(3)}x)`,
    );
    expect(total).toBeLessThanOrEqual(1.1 * tree);
    await expectSameTrees(m);

    // What the killed pass committed counts as put there by cmmigrate: when the source
    // expunges those messages, the next pass deletes them instead of keeping them as foreign.
    const gone = [...before.inodes.keys()].filter((p) => /,S=\d{8},/.test(p));
    expect(gone.length).toBeGreaterThan(0);
    for (const p of gone) await fs.rm(path.join(m.oldRoot, p));
    const s2 = summaryOf(await m.cli(args, CLI_TIMEOUT));
    expect(s2.kept_extraneous, `kept: ${JSON.stringify((s2 as { kept_paths?: string[] }).kept_paths)}`).toBe(0);
    expect(s2.deleted).toBe(gone.length);
    await expectSameTrees(m);
  }, 90_000);
});
