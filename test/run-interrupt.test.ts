/**
 * Ctrl-C during `cmmigrate run` (issue 11): the first SIGINT stops the step under way
 * cleanly (the journal records it as interrupted) and the exit status is 130; a rerun
 * continues at the interrupted step. The second Ctrl-C is in interrupt.test.ts.
 */
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { CONTROLLER_CLI } from './support/harness';
import { setupRehearsal, type Rehearsal } from './support/rehearsal';

const TIMEOUT = 300_000;
let r: Rehearsal | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

/** Starts `run`, sends SIGINT once step 5 runs (it waits for DNS), and returns how it ended. */
async function interruptAtStep5(r: Rehearsal): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const child = spawn(process.execPath, [CONTROLLER_CLI, 'run', '--plan', 'plan.toml', '--yes', '--dns-interval', '0.2'], { cwd: r.dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.on('data', (d) => (stdout += d));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const deadline = Date.now() + 180_000;
  while (r.journal()?.steps?.['5']?.state !== 'running' || !stderr.includes('waiting for')) {
    if (child.exitCode !== null) throw new Error(`run exited with ${child.exitCode} before step 5 ran: ${stderr}`);
    if (Date.now() > deadline) throw new Error('step 5 never ran');
    await new Promise((res) => setTimeout(res, 20));
  }
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await exited;
  clearTimeout(timer);
  return { code, stderr, stdout };
}

describe('Ctrl-C during run', () => {
  it(
    'SIGINT stops the step under way cleanly: exit 130, the journal says interrupted; a rerun continues there',
    async () => {
      r = await setupRehearsal();
      const once = await interruptAtStep5(r);
      expect(once.code, once.stderr).toBe(130);
      const step5 = r.journal().steps['5'];
      expect(step5.state).toBe('failed');
      expect(step5.error.code).toBe('step.interrupted');
      expect(once.stderr).toContain('[step.interrupted]');
      expect(once.stderr).toContain('next: run cmmigrate run --plan plan.toml');

      const stop = r.autoSwitchDns(300);
      const fin = await r.run(['run', '--plan', 'plan.toml', '--yes', '--dns-interval', '0.2'], TIMEOUT);
      stop();
      expect(fin.code, fin.stderr).toBe(0);
      expect(fin.stderr).not.toContain('==> Step 4/6');
      expect(fin.stderr).toContain('==> Step 5/6');
      expect(r.journal().steps['6'].state).toBe('done');
    },
    TIMEOUT,
  );
});
