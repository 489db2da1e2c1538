/**
 * proto/child-run.ts, the one child-process runner of cmdeploy, ssh and the agent's host
 * operations (issue 11): real processes through /bin/sh.
 */
import { readFileSync, rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runChild } from '../proto/child-run';

const sh = (script: string, opts: Parameters<typeof runChild>[2] = {}) => runChild('/bin/sh', ['-c', script], opts);

/** Whether a process with this pid still runs (a zombie nobody reaped yet does not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX]/.test(stat);
  } catch {
    return false;
  }
}

describe('runChild', () => {
  it('returns the exit code and both outputs, and feeds stdin', async () => {
    const r = await sh('read line; echo "got $line"; echo oops >&2; exit 3', { input: 'hello\n' });
    expect(r).toMatchObject({ code: 3, signal: null, stdout: 'got hello\n', stderr: 'oops\n', timedOut: false, aborted: false, truncated: false });
    expect(r.output).toBe('got hello\noops\n');
  });

  it('does not wait for a grandchild that keeps the pipes open after the child exited', async () => {
    const started = Date.now();
    const r = await sh('sleep 30 & echo $!; exit 0', { pipeGraceMs: 200 });
    expect(r.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    const grandchild = Number(r.stdout.trim());
    expect(grandchild).toBeGreaterThan(0);
    process.kill(grandchild, 'SIGKILL');
  });

  it('a timeout stops the child and what it started (its process group)', async () => {
    const pidFile = `/tmp/cmm-child-run-${process.pid}-${Date.now()}`;
    const r = await sh(`sleep 30 & echo $! > ${pidFile}; wait`, { timeoutMs: 300, killGraceMs: 500 });
    expect(r.timedOut).toBe(true);
    expect(r.code === null ? r.signal : r.code).toBeTruthy();
    const grandchild = Number(readFileSync(pidFile, 'utf8').trim());
    rmSync(pidFile);
    await new Promise((res) => setTimeout(res, 200));
    expect(alive(grandchild)).toBe(false);
  });

  it('an abort stops a child that ignores SIGTERM, with SIGKILL after the grace period', async () => {
    const ac = new AbortController();
    const r = runChild('/bin/sh', ['-c', "trap '' TERM; echo ready; while :; do sleep 0.1; done"], {
      signal: ac.signal,
      killGraceMs: 300,
      onOutput: () => ac.abort(),
    });
    const res = await r;
    expect(res.aborted).toBe(true);
    expect(res.signal).toBe('SIGKILL');
  });

  it('an already aborted signal stops the child at once', async () => {
    const ac = new AbortController();
    ac.abort();
    const r = await sh('sleep 30', { signal: ac.signal });
    expect(r.aborted).toBe(true);
    expect(r.seconds).toBeLessThan(10);
  });

  it('keeps only the last bytes of a large output', async () => {
    const r = await sh('i=0; while [ $i -lt 2000 ]; do echo "line $i"; i=$((i+1)); done', { maxOutputBytes: 100 });
    expect(r.code).toBe(0);
    expect(r.truncated).toBe(true);
    expect(r.stdout.length).toBeLessThanOrEqual(100);
    expect(r.stdout.endsWith('line 1999\n')).toBe(true);
  });

  it('rejects with the errno error when the program does not exist', async () => {
    await expect(runChild('/nonexistent/cmm-no-such-program', [])).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
