/**
 * The passes and verifies `run` adds to the published procedure (issue 13): catch-up passes
 * after the initial copy while mail still runs, step 4's quick verify, and the full verify
 * once mail is back on, each recorded in the journal and shown by `status`; Ctrl-C during
 * the full verify leaves the move done and that verify pending, and `cmmigrate verify` then
 * records it.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CONTROLLER_CLI } from './support/harness';
import { setupRehearsal, type Rehearsal } from './support/rehearsal';

const TIMEOUT = 300_000;
let r: Rehearsal | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

describe('run: catch-up passes, quick and full verify', () => {
  it('catches up until a pass changes under 1 %, verifies quick in step 4 and fully after step 6, all in the journal and status', async () => {
    r = await setupRehearsal({ tree: { addresses: 6, messagesPerAddress: 8 } });
    await r.switchDns();
    // --catch-up-until 0: the time criterion always holds, so what stops the catch-up is
    // the 1 % rule: the initial pass changed everything, the catch-up after it nothing.
    const run = await r.run(['run', '--plan', 'plan.toml', '--yes', '--dns-interval', '0.2', '--catch-up-until', '0', '--json'], TIMEOUT);
    expect(run.code, run.stderr).toBe(0);
    const j = r.journal();
    expect(j.passes.map((p: { step: string; phase: string }) => `${p.step}:${p.phase}`)).toEqual(['1:initial', '1:catch-up', '3:catch-up', '4:final']);
    expect(j.passes[1].files).toBe(0);
    expect(j.verify.quick).toMatchObject({ state: 'done', differences: 0 });
    expect(j.verify.quick.from_records).toBeGreaterThan(0);
    expect(j.verify.full).toMatchObject({ state: 'done', differences: 0 });
    expect(j.verify.full.entries).toBe(j.verify.quick.entries);
    const events = run.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(events.filter((e) => e.event === 'sync').map((e) => e.pass)).toEqual(['initial', 'catch-up', 'catch-up', 'final']);
    // Step 3's catch-up ran after step 2 made the relay's users: the final pass inside the
    // outage looks only at what the change journals named (issue 25).
    const final = events.find((e) => e.event === 'sync' && e.pass === 'final');
    expect(final.walks.find((w: { root: string }) => w.root === 'mailboxes')).toMatchObject({ scoped: true });
    expect(events.filter((e) => e.event === 'verify').map((e) => (e.quick ? 'quick' : e.after === '6' ? 'full' : '?'))).toEqual(['quick', 'full']);
    // Step 3 left both agents their digests, mail still on: step 4's verify looked only at
    // what changed since, on both hosts.
    const quick = events.find((e) => e.event === 'verify' && e.quick);
    expect(quick.walks.find((w: { root: string }) => w.root === 'mailboxes')).toMatchObject({ old: { scoped: true }, new: { scoped: true } });
    const status = await r.run(['status', '--plan', 'plan.toml'], TIMEOUT);
    expect(status.stdout).toMatch(/pass 2 +catch-up/);
    expect(status.stdout).toMatch(/verify quick +hosts identical.*digests from records/);
    expect(status.stdout).toMatch(/verify full +hosts identical/);
  }, TIMEOUT);

  it('--no-catch-up makes none; Ctrl-C during the full verify leaves the move done and the verify pending, which verify then records', async () => {
    r = await setupRehearsal({ tree: { addresses: 6, messagesPerAddress: 8, bigFiles: [200 * 1024 * 1024] } });
    await r.switchDns();
    const child = spawn(process.execPath, [CONTROLLER_CLI, 'run', '--plan', 'plan.toml', '--yes', '--dns-interval', '0.2', '--no-catch-up'], { cwd: r.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    // Interrupt as soon as the journal shows the full verify running.
    const dir = path.join(r.dir, '.cmmigrate');
    for (;;) {
      let state: string | undefined;
      try {
        state = r.journal()?.verify?.full?.state;
      } catch {
        /* between temp file and rename */
      }
      if (state === 'running') break;
      if (child.exitCode !== null) throw new Error(`run ended (${child.exitCode}) before the full verify: ${stderr}`);
      await new Promise((res) => setTimeout(res, 5));
    }
    expect(fs.existsSync(dir)).toBe(true);
    child.kill('SIGINT');
    expect(await exited, stderr).toBe(130);
    const j = r.journal();
    expect(j.steps['6'].state).toBe('done');
    expect(j.passes.map((p: { phase: string }) => p.phase)).toEqual(['initial', 'final']);
    expect(j.verify.full.state).toBe('pending');
    expect(stderr).toContain('cmmigrate verify --plan');
    const status = await r.run(['status', '--plan', 'plan.toml'], TIMEOUT);
    expect(status.stdout).toMatch(/verify full +pending \(run cmmigrate verify --plan/);
    const v = await r.run(['verify', '--plan', 'plan.toml'], TIMEOUT);
    expect(v.code, v.stderr).toBe(0);
    expect(r.journal().verify.full).toMatchObject({ state: 'done', differences: 0 });
  }, TIMEOUT);
});
