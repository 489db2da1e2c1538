/**
 * Faults during a pass, each followed by a rerun that finishes and a verify that passes,
 * with no torn file, no temp file and no message twice in a maildir (issue 7).
 *
 * The old agent sits behind a fault proxy (test/support/fault-proxy.ts) that counts the
 * bytes it sends and holds them at an exact count: that is where a kill lands, so every
 * kill point is deterministic. Each round first changes the old tree (seeded relay
 * activity: flag renames, moves, deliveries, expunges, a new and a removed address) and
 * replaces one big message, so that every pass, initial or final, has megabytes to move.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { duplicateMessages, expectIntact, knownContents, MAIL, planVia, reportFigure, startController, tornFiles } from './support/fault-checks';
import { startFaultProxy, type FaultProxy } from './support/fault-proxy';
import { findTempFiles, setupMigration, type CliResult, type Migration } from './support/harness';
import { relayActivity } from './support/relay-activity';

const MIB = 1024 * 1024;
/** The big message each round adds: most of a pass's bytes. */
const BIG = 6 * MIB;
/** A pass whose peer died or stalled must end within this. */
const FAIL_WITHIN_MS = 30_000;
const STALL_SECONDS = 3;

type Victim = 'old' | 'new' | 'controller';
type Phase = 'initial' | 'final';

interface KillPoint {
  phase: Phase;
  victim: Victim;
  /** Bytes from the old agent after which the kill lands. */
  afterBytes: number;
}

const POINTS: KillPoint[] = [];
for (const phase of ['initial', 'final'] as const) {
  const at = phase === 'initial' ? [4_000, 0.3 * BIG, 0.65 * BIG, 0.95 * BIG] : [20_000, 0.15 * BIG, 0.5 * BIG, 0.85 * BIG];
  for (const victim of ['old', 'new', 'controller'] as const) for (const b of at) POINTS.push({ phase, victim, afterBytes: Math.round(b) });
}

/** Deterministic content for the big message of round `n`. */
function bigData(n: number): Buffer {
  const b = Buffer.alloc(BIG);
  for (let i = 0; i < BIG; i += 4) b.writeUInt32LE((Math.imul(i, 2654435761) ^ n) >>> 0, i);
  return b;
}

describe('faults between and inside passes', () => {
  let m: Migration;
  let proxy: FaultProxy;
  let plan: string;
  let round = 0;
  let bigPath: string | null = null;

  beforeAll(async () => {
    m = await setupMigration({ tree: { addresses: 5, messagesPerAddress: 6, seed: 7 }, agentArgs: ['--stall-timeout', String(STALL_SECONDS)] });
    const [host, port] = m.oldAddress.split(':');
    proxy = await startFaultProxy({ listenHost: host, targetHost: host, targetPort: Number(port) });
    plan = await planVia(m, 'via-proxy.toml', proxy.address);
    const first = await m.cli(['sync', '--plan', plan, '--phase', 'initial'], 60_000);
    expect(first.code, first.stderr).toBe(0);
  }, 90_000);
  afterAll(async () => {
    await proxy?.close();
    await m?.close();
  });

  /** What a file on the new host may hold during the coming pass. */
  let known = new Set<string>();

  /** Change the old tree as hours of relay use would, and swap the big message. */
  async function addWork(): Promise<void> {
    round++;
    await relayActivity({ root: m.oldRoot, seed: 100 + round, newAddresses: round % 3 === 0 ? 1 : 0, removedAddresses: round % 4 === 0 ? 1 : 0 });
    if (bigPath) await fs.rm(bigPath, { force: true });
    const mail = path.join(m.oldRoot, MAIL, 'mail.example.org');
    const addr = (await fs.readdir(mail)).sort()[round % 3];
    bigPath = path.join(mail, addr, 'cur', `${1775100000 + round}.M${round}P77.faults,S=${BIG},W=${BIG}:2,S`);
    await fs.writeFile(bigPath, bigData(round));
    await fs.chown(bigPath, (await fs.stat(path.dirname(bigPath))).uid, (await fs.stat(path.dirname(bigPath))).gid);
    known = await knownContents([m.oldRoot, m.newRoot]);
  }

  const sync = (phase: Phase): Promise<CliResult> => m.cli(['sync', '--plan', plan, '--phase', phase, '--json'], 60_000);

  /** Start a pass, stop the proxy at `afterBytes`, then kill `victim`; resolves with the pass's result. */
  async function killAt(p: KillPoint): Promise<CliResult> {
    const reached = proxy.holdAfter(p.afterBytes).then(() => 'reached' as const);
    const run = startController(['sync', '--plan', plan, '--phase', p.phase, '--json'], m.dir);
    const first = await Promise.race([reached, run.done.then(() => 'ended' as const)]);
    if (first === 'ended') {
      const r = await run.done;
      throw new Error(`the ${p.phase} pass ended (exit ${r.code}) before ${p.afterBytes} bytes; stderr:\n${r.stderr}`);
    }
    // A pass ends by its cancellation, or (one that looks only at what changed can be that
    // quick) by finishing before the controller's death reaches the agent.
    const pullsEnded = (): number => m.new.log().split('\n').filter((l) => l.includes('"method":"Pull"') && /call cancelled by the peer|call failed|"msg":"pulled"/.test(l)).length;
    const endedBefore = pullsEnded();
    if (p.victim === 'controller') run.child.kill('SIGKILL');
    else {
      m[p.victim].child.kill('SIGKILL');
      // What was in flight goes on; the dead end's close reaches the other side.
      await new Promise((res) => m[p.victim as 'old' | 'new'].child.once('exit', res));
      proxy.release();
    }
    const t0 = Date.now();
    const r = await run.done;
    proxy.release();
    if (p.victim === 'controller') {
      expect(r.signal).toBe('SIGKILL');
      // The new agent must stop the pass of a controller that went away, and soon.
      while (pullsEnded() === endedBefore && Date.now() - t0 < FAIL_WITHIN_MS) await new Promise((res) => setTimeout(res, 20));
      expect(pullsEnded(), `the new agent went on with the pass of a dead controller:\n${m.new.log().slice(-2000)}`).toBeGreaterThan(endedBefore);
    } else {
      expect(r.signal, `the CLI hung after the ${p.victim} agent died`).toBeNull();
      expect(r.code, r.stdout).not.toBe(0);
      expect(r.stderr, 'a pass whose peer died must say it lost the connection').toMatch(/\[connect\.[a-z_]+\]/);
      expect(Date.now() - t0).toBeLessThan(FAIL_WITHIN_MS);
      await m.restart(p.victim);
    }
    return r;
  }

  /** After a fault: nothing torn now; a rerun (and for an initial pass, the final pass) finishes; all intact. */
  async function recover(phase: Phase): Promise<void> {
    expect(await tornFiles(m.newRoot, known)).toEqual([]);
    expect(await duplicateMessages(m.newRoot)).toEqual([]);
    const again = await sync(phase);
    expect(again.code, again.stderr).toBe(0);
    let last = again;
    if (phase === 'initial') {
      last = await sync('final');
      expect(last.code, last.stderr).toBe(0);
    }
    const s = JSON.parse(last.stdout.trim().split('\n').pop()!);
    expect(s.kept_paths, 'files only on the new host that cmmigrate does not know it put there').toEqual([]);
    await expectIntact(m, plan);
  }

  it(`SIGKILL of the old agent, the new agent and the controller at ${POINTS.length} points of the initial and final passes`, async () => {
    for (const p of POINTS) {
      await addWork();
      const r = await killAt(p);
      const why = r.stderr.match(/\[[a-z_.]+\]/)?.[0] ?? r.signal ?? '';
      console.log(`${p.phase} pass, ${p.victim} killed after ${p.afterBytes} B: ${why}`);
      await recover(p.phase);
    }
    reportFigure('kills', {
      points: POINTS.length,
      initial: POINTS.filter((p) => p.phase === 'initial').length,
      final: POINTS.filter((p) => p.phase === 'final').length,
      old: POINTS.filter((p) => p.victim === 'old').length,
      new: POINTS.filter((p) => p.victim === 'new').length,
      controller: POINTS.filter((p) => p.victim === 'controller').length,
      result: 'verified',
    });
  }, 900_000);

  it.each([
    ['during the listing', 'initial', 3_000],
    ['in the middle of a big file', 'final', Math.round(0.5 * BIG)],
  ] as const)('the connection between the agents cut %s: the pass fails at once, a rerun resumes', async (_what, phase, afterBytes) => {
    await addWork();
    const reached = proxy.holdAfter(afterBytes);
    const run = m.cli(['sync', '--plan', plan, '--phase', phase], 60_000);
    await reached;
    const t0 = Date.now();
    proxy.cut();
    const r = await run;
    expect(r.signal).toBeNull();
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/\[connect\.(lost|unavailable|failed)\]/);
    expect(Date.now() - t0).toBeLessThan(FAIL_WITHIN_MS);
    await recover(phase);
    reportFigure('cut', { phase, afterBytes, failedInMs: Date.now() - t0 });
  }, 60_000);

  it.each([
    ['during the listing', 'initial', 3_000],
    ['in the middle of a big file', 'final', Math.round(0.4 * BIG)],
  ] as const)(`a stalled peer %s: the pass fails within the --stall-timeout of ${STALL_SECONDS} s, a rerun resumes`, async (_what, phase, afterBytes) => {
    await addWork();
    const reached = proxy.holdAfter(afterBytes);
    const run = m.cli(['sync', '--plan', plan, '--phase', phase], 60_000);
    await reached;
    const t0 = Date.now();
    const r = await run;
    const ms = Date.now() - t0;
    proxy.release();
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('[connect.stalled]');
    expect(r.stderr).toContain(proxy.address);
    // Not before the stall timeout (t0 is taken once the proxy holds the data, a little
    // after the stall began, so a second of slack), and not long after it on a loaded machine.
    expect(ms).toBeGreaterThanOrEqual((STALL_SECONDS - 1) * 1000);
    expect(ms).toBeLessThan(STALL_SECONDS * 1000 + 20_000);
    await recover(phase);
    reportFigure('stall', { phase, afterBytes, failedInMs: ms });
  }, 60_000);

  it('a source file that changes while the strict final pass reads it: an error naming it, nothing torn, a rerun takes the new content', async () => {
    await addWork();
    const size = 7 * BIG;
    const mail = path.join(m.oldRoot, MAIL, 'mail.example.org');
    const addr = (await fs.readdir(mail)).sort()[1];
    const rel = path.join(MAIL, 'mail.example.org', addr, 'cur', `1775200000.M1P88.faults,S=${size},W=${size}:2,S`);
    const abs = path.join(m.oldRoot, rel);
    await fs.writeFile(abs, Buffer.concat(Array.from({ length: 7 }, (_, i) => bigData(2000 + i))));
    const dir = await fs.stat(path.dirname(abs));
    await fs.chown(abs, dir.uid, dir.gid);
    known = await knownContents([m.oldRoot, m.newRoot]);
    const reached = proxy.holdAfter(2 * MIB);
    const run = m.cli(['sync', '--plan', plan, '--phase', 'final'], 60_000);
    await reached;
    // A writer changes the message far beyond what the sender can have read yet.
    const fh = await fs.open(abs, 'r+');
    await fh.write(Buffer.from('changed while read'), 0, 18, size - 4096);
    await fh.close();
    known = new Set([...known, ...(await knownContents([m.oldRoot]))]);
    proxy.release();
    const r = await run;
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('[transfer.source_changed]');
    expect(r.stderr).toContain(`/${rel}`);
    expect(await tornFiles(m.newRoot, known)).toEqual([]);
    await expect(fs.stat(path.join(m.newRoot, rel))).rejects.toThrow(/ENOENT/);
    expect(await findTempFiles(m.newRoot)).toEqual([]);
    await recover('final');
    await fs.rm(abs);
    reportFigure('source-changed', { bytes: size, result: 'refused, then verified' });
  }, 60_000);

  it('the checks themselves see a torn file and a duplicate message', async () => {
    // Guard against checks that pass vacuously: damage the copy and look.
    known = await knownContents([m.oldRoot, m.newRoot]);
    expect(await tornFiles(m.newRoot, known)).toEqual([]);
    const mail = path.join(m.newRoot, MAIL, 'mail.example.org');
    const addr = (await fs.readdir(mail)).sort()[0];
    const cur = path.join(mail, addr, 'cur');
    const names = await fs.readdir(cur);
    const stats = await Promise.all(names.map((n) => fs.stat(path.join(cur, n))));
    const msg = names.find((n, i) => n.includes(':2,') && stats[i].nlink === 1 && stats[i].size > 100)!;
    const saved = await fs.readFile(path.join(cur, msg));
    await fs.truncate(path.join(cur, msg), 10);
    await fs.writeFile(path.join(mail, addr, 'new', msg.replace(/:2,.*$/, '')), '');
    try {
      expect(await tornFiles(m.newRoot, known)).toEqual([path.relative(m.newRoot, path.join(cur, msg))]);
      expect((await duplicateMessages(m.newRoot)).length).toBe(1);
    } finally {
      await fs.writeFile(path.join(cur, msg), saved);
      await fs.rm(path.join(mail, addr, 'new', msg.replace(/:2,.*$/, '')));
    }
  });
});
