/**
 * What the benches read of an agent process from /proc, where other work on the machine does
 * not inflate it: peak RSS and CPU seconds; and how many entries a pass decided on.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';

/** The process's peak resident set (VmHWM), in MiB. */
export async function peakRssMiB(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

/** CPU seconds (user + system) a process has used so far. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
}
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** The entries a pass decided on, from its `--json` summary. */
export function passEntries(out: Record<string, unknown>): number {
  return ['files', 'dirs', 'symlinks', 'hardlinks', 'fifos', 'renamed', 'deleted', 'unchanged'].reduce((n, k) => n + (Number(out[k]) || 0), 0);
}
