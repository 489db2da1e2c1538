/**
 * Ctrl-C in the controller (issue 11), with a child that is slow to stop: an `ssh` on the
 * PATH that ignores SIGTERM stands for a connection that hangs (the real ssh cannot be made
 * to). The first SIGINT aborts the operation, which stops ssh (SIGTERM, SIGKILL after the
 * grace period) and exits 130 with the interruption reported; a second SIGINT during that
 * stop exits 130 at once.
 */
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cmmigrate, CONTROLLER_CLI } from './support/harness';

let dir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cmm-interrupt-'));
  const bin = path.join(dir, 'bin');
  await fsp.mkdir(bin);
  // Ignores SIGTERM and SIGINT, as a hung connection may; only SIGKILL ends it.
  await fsp.writeFile(path.join(bin, 'ssh'), "#!/bin/sh\ntrap '' TERM INT\nwhile :; do sleep 0.1; done\n", { mode: 0o755 });
  const init = await cmmigrate(['init', '--plan', path.join(dir, 'plan.toml'), '--domain', 'mail.example.org', '--old', '127.0.0.2', '--new', '127.0.0.3']);
  expect(init.code, init.stderr).toBe(0);
}, 60_000);
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

/** `install-agent old` with the hanging ssh; SIGINT `signals` times once ssh runs; how it ended and how long that took. */
async function interrupt(signals: number): Promise<{ code: number | null; stderr: string; ms: number }> {
  const env = { ...process.env, PATH: `${path.join(dir, 'bin')}:${process.env.PATH}` };
  const child = spawn(process.execPath, [CONTROLLER_CLI, 'install-agent', 'old', '--plan', 'plan.toml'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const deadline = Date.now() + 60_000;
  while (!stderr.includes('[$ ssh')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`install-agent never ran ssh: ${stderr}`);
    await new Promise((res) => setTimeout(res, 20));
  }
  await new Promise((res) => setTimeout(res, 300));
  child.kill('SIGINT');
  const sent = Date.now();
  if (signals > 1) {
    while (!stderr.includes('stopping cleanly') && Date.now() - sent < 10_000) await new Promise((res) => setTimeout(res, 10));
    child.kill('SIGINT');
  }
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await exited;
  clearTimeout(timer);
  return { code, stderr, ms: Date.now() - sent };
}

describe('Ctrl-C', () => {
  it('the first stops the operation and its child, then exits 130 and says it was interrupted', async () => {
    const r = await interrupt(1);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain('stopping cleanly');
    expect(r.stderr).toMatch(/error: cmmigrate install-agent: .*interrupted \[step\.interrupted\]/);
    // ssh ignored SIGTERM: it took the grace period and SIGKILL.
    expect(r.ms).toBeGreaterThanOrEqual(4_000);
  }, 120_000);

  it('a second exits 130 at once, without waiting for the child to stop', async () => {
    const r = await interrupt(2);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain('interrupted; run the same command again to continue');
    expect(r.stderr).not.toContain('error: cmmigrate install-agent');
    expect(r.ms).toBeLessThan(4_000);
  }, 120_000);
});
