/**
 * The controller killed (SIGKILL) at every step of `cmmigrate run`, one after the other in
 * one move (issues 5 and 7): each rerun continues where the journal says, no cmdeploy call
 * is ever one a move does not make, effects are repeated only where that is safe (a cmdeploy
 * run killed before its mark), and the move ends verified with nothing torn or left over.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { reportFigure } from './support/fault-checks';
import { CONTROLLER_CLI, findTempFiles } from './support/harness';
import { setupRehearsal, type Rehearsal } from './support/rehearsal';
import { unitState } from './support/standin-relay';

const TIMEOUT = 300_000;
let r: Rehearsal | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

const STEPS = ['preflight', '1', '2', '3', '4', '5', '6'] as const;

/**
 * Starts `run` and SIGKILLs it the moment the journal shows `step` in `state`: the journal
 * directory is watched, so the kill follows the journal's rename within a turn of the event
 * loop, long before a step (which talks to agents, DNS or cmdeploy) can end. Returns the
 * step's state as the killed run left it.
 */
async function killAt(r: Rehearsal, step: string, state: 'running' | 'done'): Promise<string> {
  // Step 2 runs beside step 1: the runs killed during step 1 may have finished it already.
  if (r.journal()?.steps?.[step]?.state === 'done') return `${step}:done before`;
  const child = spawn(process.execPath, [CONTROLLER_CLI, 'run', '--plan', 'plan.toml', '--yes', '--dns-interval', '0.2'], { cwd: r.dir, stdio: 'ignore' });
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const dir = path.join(r.dir, '.cmmigrate');
  fs.mkdirSync(dir, { recursive: true });
  await new Promise<void>((resolve, reject) => {
    const deadline = setTimeout(() => finish(new Error(`step ${step} never got ${state}`)), 120_000);
    const watcher = fs.watch(dir, () => check());
    const poll = setInterval(() => check(), 5);
    function finish(err?: Error): void {
      clearTimeout(deadline);
      clearInterval(poll);
      watcher.close();
      if (err) reject(err);
      else resolve();
    }
    function check(): void {
      let s: string | undefined;
      try {
        s = r.journal()?.steps?.[step]?.state;
      } catch {
        return; // between the temp file and its rename
      }
      if (s === state) {
        child.kill('SIGKILL');
        finish();
      } else if (state === 'running' && s === 'done') finish(new Error(`step ${step} was done before the kill could land while it ran`));
      else if (child.exitCode !== null) finish(new Error(`run exited with ${child.exitCode} before step ${step} was ${state}: ${JSON.stringify(r.journal()?.steps)}`));
    }
  });
  await exited;
  return `${step}:${r.journal().steps[step].state}`;
}

describe('the controller killed during run', () => {
  it(
    'at the start and at the end of every step, and the move still finishes, verified',
    async () => {
      r = await setupRehearsal({ tree: { addresses: 12, messagesPerAddress: 10 } });
      const points: string[] = [];
      for (const step of STEPS) {
        points.push(await killAt(r, step, 'running'));
        // Step 5 waits for the records while they are not switched: the kill above landed in
        // that wait; now they switch (an error here fails the test), and step 5 can end.
        if (step === '5') await r.switchDns();
        if (step !== '6') points.push(await killAt(r, step, 'done'));
      }
      // Killed 13 times; the run that follows finishes.
      expect(points).toHaveLength(13);
      // Each kill landed in the state it was aimed at: a step killed while it ran stays
      // running. Only step 2, which runs beside step 1, may have been done before its turn.
      const aimed = STEPS.flatMap((st) => (st === '6' ? [`${st}:running`] : [`${st}:running`, `${st}:done`]));
      expect(points.map((p, i) => (p.startsWith('2:') && p === '2:done before' ? aimed[i] : p))).toEqual(aimed);
      expect(points.filter((p) => p.endsWith('done before')).every((p) => p.startsWith('2:'))).toBe(true);
      const fin = await r.run(['run', '--plan', 'plan.toml', '--yes', '--dns-interval', '0.2'], TIMEOUT);
      expect(fin.code, fin.stderr).toBe(0);
      expect(Object.values(r.journal().steps).map((s) => (s as { state: string }).state)).toEqual(STEPS.map(() => 'done'));

      // Every cmdeploy call was one a move makes, each action at most twice (once more
      // only when a kill came between the call and its mark), in the procedure's order.
      const calls = r.calls();
      for (const c of calls) expect(c.verdict, JSON.stringify(c)).toBe('ok');
      const actions = calls.map((c) => c.action);
      for (const a of ['preconfigure', 'disable-mail', 'activate'] as const) {
        const n = actions.filter((x) => x === a).length;
        expect(n, a).toBeGreaterThanOrEqual(1);
        expect(n, a).toBeLessThanOrEqual(2);
      }
      expect(actions).not.toContain('enable-mail');
      expect(actions.lastIndexOf('preconfigure')).toBeLessThan(actions.indexOf('disable-mail'));
      expect(actions.lastIndexOf('disable-mail')).toBeLessThan(actions.indexOf('activate'));

      for (const u of ['postfix', 'dovecot', 'opendkim']) expect(unitState(r.newHostState, u), u).toBe('active');
      for (const u of ['postfix', 'dovecot']) expect(unitState(r.oldHostState, u), u).toBe('inactive');
      const verify = await r.run(['verify', '--plan', 'plan.toml'], TIMEOUT);
      expect(verify.code, verify.stderr).toBe(0);
      expect(await findTempFiles(r.newRoot)).toEqual([]);
      reportFigure('run-kills', { points: points.length, at: points.join(' ') });
    },
    TIMEOUT,
  );
});
