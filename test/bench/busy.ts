/**
 * How much CPU other work on the machine took while a case ran: the CPU time of every
 * process that is not the bench or one of its descendants (kernel threads left out, as
 * they mostly do the bench's own I/O). Processes that start and end between two samples
 * are missed; long-running neighbours, which are what skews a benchmark, are not.
 * Also: the bench's own descendants, to end what a signal interrupted.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

interface Proc {
  ppid: number;
  ticks: number;
}

function readProcs(): Map<number, Proc> {
  const procs = new Map<number, Proc>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state ppid ... utime stime: comm may hold spaces and parentheses.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    procs.set(Number(name), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) });
  }
  return procs;
}

/** Every process below `self` (children, grandchildren, ...), each before its own children. */
export function descendants(self = process.pid): number[] {
  const procs = readProcs();
  const out: number[] = [];
  const walk = (parent: number): void => {
    for (const [pid, p] of procs) {
      if (p.ppid === parent) {
        out.push(pid);
        walk(pid);
      }
    }
  };
  walk(self);
  return out;
}

/** CPU ticks of each process outside `self`'s tree, now. */
export function foreignTicks(self = process.pid): Map<number, number> {
  const procs = readProcs();
  const ours = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
      if (p === self) return true;
      p = procs.get(p)?.ppid ?? 0;
    }
    return false;
  };
  const out = new Map<number, number>();
  for (const [pid, p] of procs) {
    if (pid === 2 || p.ppid === 2 || ours(pid)) continue;
    out.set(pid, p.ticks);
  }
  return out;
}

/** CPU seconds that processes outside the bench used between two samples. */
export function foreignSeconds(before: Map<number, number>, after: Map<number, number>): number {
  let ticks = 0;
  for (const [pid, t] of after) {
    const d = t - (before.get(pid) ?? 0);
    ticks += d >= 0 ? d : t; // a reused pid
  }
  return ticks / TICKS;
}
