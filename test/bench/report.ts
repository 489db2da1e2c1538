/**
 * The bench's results: medians, ratios against the peers of the same group, the printed
 * table and the facts of the machine it ran on.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import { REPO } from '../support/harness';

export interface CaseResult {
  name: string;
  /** Cases of one group copy the same thing and are compared with each other. */
  group: string;
  /** What ran, in words. */
  what: string;
  /** Wall seconds of each run, in run order. */
  seconds: number[];
  median: number;
  /** For cmmigrate's case of a group: its median divided by each peer's. */
  ratios: Record<string, number>;
  /** Peak RSS (VmHWM) of each agent in MiB, the highest over the runs (cmmigrate cases). */
  peakRssMiB?: { old: number; new: number };
  /** CPU seconds (user + system) each agent used during each run (cmmigrate cases). */
  agentCpuSeconds?: { old: number; new: number }[];
  /** Each run's agent CPU per entry the pass decided on, in µs (final and unchanged cases). */
  agentCpuMicrosPerEntry?: { old: number; new: number; entries: number }[];
  /** Each run's agent CPU seconds per GiB of content sent (initial cases). */
  agentCpuSecondsPerGiB?: { old: number; new: number }[];
  /** CPU seconds that other processes on the machine used during each run. */
  foreignCpuSeconds: number[];
  /** tar and rsync: seconds of a `sync -f` of the target right after each run (not in `seconds`). */
  flushSeconds?: number[];
  /** What cmmigrate reported for its last run (files, bytes, renamed, deleted, ...). */
  summary?: Record<string, unknown>;
}

export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** cmmigrate's cases (the others are its peers): `*-cmmigrate`, and the final pass with its quick verify. */
export function isOurs(name: string): boolean {
  return name.endsWith('-cmmigrate') || name === 'final-quick-verify';
}

/** Fill in each case's median, and each cmmigrate case's ratio to every peer of its group. */
export function computeRatios(cases: CaseResult[]): void {
  for (const c of cases) c.median = median(c.seconds);
  for (const c of cases) {
    c.ratios = {};
    if (!isOurs(c.name)) continue;
    for (const peer of cases) {
      if (!isOurs(peer.name) && peer.group === c.group && peer.median > 0) c.ratios[peer.name] = c.median / peer.median;
    }
  }
}

/** The agents' median CPU per entry (µs) or per GiB (s), whichever the case has. */
function cpuCell(c: CaseResult): string {
  const both = (xs: { old: number; new: number }[], unit: string, digits: number): string => `${median(xs.map((x) => x.old)).toFixed(digits)} / ${median(xs.map((x) => x.new)).toFixed(digits)} ${unit}`;
  if (c.agentCpuMicrosPerEntry?.length) return both(c.agentCpuMicrosPerEntry, 'µs/entry', 1);
  if (c.agentCpuSecondsPerGiB?.length) return both(c.agentCpuSecondsPerGiB, 's/GiB', 2);
  return '';
}

/** Seconds with three significant digits or so. */
export const fmtS = (s: number): string => (s >= 100 ? s.toFixed(0) : s >= 10 ? s.toFixed(1) : s >= 1 ? s.toFixed(2) : s.toFixed(3));

/** A Markdown table: case, median, each run, ratios, agents' peak RSS. */
export function formatTable(cases: CaseResult[]): string {
  const rows: string[][] = [
    ['case', 'what', 'median s', 'runs s', 'then sync -f s', 'ratio (cmmigrate / peer)', 'peak RSS old/new MiB', 'agents CPU old/new'],
    ...cases.map((c) => [
      c.name,
      c.what.replace(/\|/g, '\\|'),
      fmtS(c.median),
      c.seconds.map(fmtS).join(', '),
      c.flushSeconds ? fmtS(median(c.flushSeconds)) : '',
      Object.entries(c.ratios)
        .map(([peer, r]) => `${r.toFixed(2)}× ${peer}`)
        .join(', '),
      c.peakRssMiB ? `${c.peakRssMiB.old} / ${c.peakRssMiB.new}` : '',
      cpuCell(c),
    ]),
  ];
  const widths = rows[0].map((_, k) => Math.max(...rows.map((r) => r[k].length)));
  const line = (r: string[]): string => `| ${r.map((cell, k) => cell.padEnd(widths[k])).join(' | ')} |`;
  return [line(rows[0]), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

export interface Machine {
  nproc: number;
  memTotalMiB: number;
  cpuModel: string;
  node: string;
  kernel: string;
  tar: string;
  rsync: string;
  ssh: string;
}

/** The first line a command prints (on stdout, or on stderr as `ssh -V` does). */
function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0].trim() || 'unknown';
}

export function machineFacts(): Machine {
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    nproc: os.availableParallelism(),
    memTotalMiB: Math.round(Number(/MemTotal:\s+(\d+) kB/.exec(meminfo)?.[1] ?? 0) / 1024),
    cpuModel: /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1].trim() ?? os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    tar: firstLine('tar', ['--version']),
    rsync: firstLine('rsync', ['--version']),
    ssh: firstLine('ssh', ['-V']),
  };
}

/** Which code was measured: the commit, and the files changed since. */
export function gitState(): { commit: string; changed: string[] } {
  const git = (args: string[]): string => spawnSync('git', args, { cwd: REPO, encoding: 'utf8' }).stdout?.trim() ?? '';
  return { commit: git(['rev-parse', 'HEAD']) || 'unknown', changed: git(['status', '--porcelain']).split('\n').filter(Boolean) };
}
