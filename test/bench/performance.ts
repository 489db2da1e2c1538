/**
 * The performance figures of docs/performance.md, made from the JSON that real runs of
 * `npm run bench` and `npm run scale` wrote, so that no figure there is typed by hand:
 *   node dist-test/test/bench/performance.js --doc docs/performance.md bench-results/a.json ...
 * copies the given result files into test/bench/results/ (replacing those there) and writes
 * the text between the page's two markers. test/readme-figures.test.ts makes the text
 * again from test/bench/results/ and fails when the page differs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO } from '../support/harness';
import { takeDocArg, withReadmeBlock } from './readme-block';
import { fmtS, median, type CaseResult, type Machine } from './report';

/** The markers around the generated part of docs/performance.md. */
export const PERF_START = '<!-- performance figures: made by test/bench/performance.ts from test/bench/results/*.json; do not edit by hand -->';
export const PERF_END = '<!-- end of the generated performance figures -->';

/** The page the figures go to. */
export const PERFORMANCE_DOC = path.join(REPO, 'docs', 'performance.md');

/** Where the result files behind the page's figures are kept. */
export const RESULTS_DIR = path.join(REPO, 'test', 'bench', 'results');

interface Common {
  date: string;
  command: string;
  machine: Machine;
  code: { commit: string; changed: string[] };
  loadavg?: { start: number[]; end: number[] };
}

/** What `npm run bench` writes. */
export interface BenchResult extends Common {
  kind?: 'bench';
  options: { runs: number; target: string };
  target: { mode: string; filesystem: string };
  tree: { files: number; bytes: number; dirs: number; symlinks: number; hardlinks: number; fifos: number };
  cases: CaseResult[];
  warnings: string[];
}

/** What `npm run scale` writes. */
export interface ScaleResult extends Common {
  kind: 'scale';
  files: number;
  'nothing changed'?: { entries: number; cmmigrate_seconds: number[]; rsync_seconds: number[]; ratio_of_medians: number; agent_cpu_us_per_entry: { old: number; new: number } };
  [phase: string]: unknown;
}

export type Result = BenchResult | ScaleResult;

const isScale = (r: Result): r is ScaleResult => r.kind === 'scale';
const short = (r: Result): string => r.code.commit.slice(0, 7) + (r.code.changed.length ? ' (with uncommitted changes)' : '');
const x = (r: number): string => `${r.toFixed(2)}×`;
const entriesOf = (b: BenchResult): number => b.tree.files + b.tree.dirs + b.tree.symlinks + b.tree.fifos;
const num = (n: number): string => n.toLocaleString('en-US');

/** A measured figure against its target: the row of the targets table. */
interface Row {
  what: string;
  target: string;
  measured?: string;
  met?: boolean;
  from?: Result;
}

function caseOf(b: BenchResult, name: string): CaseResult | undefined {
  return b.cases.find((c) => c.name === name);
}

/** The newest bench result that has `name` with a ratio to `peer`, on a tree that `fits`. */
function newest(results: BenchResult[], name: string, fits: (b: BenchResult) => boolean): { b: BenchResult; c: CaseResult } | undefined {
  for (const b of [...results].reverse()) {
    const c = caseOf(b, name);
    if (c && fits(b)) return { b, c };
  }
  return undefined;
}

function ratioRow(results: BenchResult[], what: string, name: string, peer: string, limit: number, fits: (b: BenchResult) => boolean): Row {
  const hit = newest(results, name, (b) => fits(b) && caseOf(b, name)!.ratios[peer] !== undefined);
  const target = `≤ ${limit}× ${peerName(peer)}`;
  if (!hit) return { what, target };
  const r = hit.c.ratios[peer];
  return { what, target, measured: `${x(r)} (${fmtS(hit.c.median)} s against ${fmtS(caseOf(hit.b, peer)!.median)} s)`, met: r <= limit, from: hit.b };
}

function peerName(peer: string): string {
  return (
    {
      'final-rsync-ssh': "rsync's final pass",
      'unchanged-rsync-ssh': 'rsync',
      'initial-tar-ssh': 'tar \\| ssh \\| tar',
      'delayed-tar-ssh': 'tar \\| ssh \\| tar',
      'startup-node': '`node -e 0`',
    }[peer] ?? peer
  );
}

/** The targets (issue 25's for the outage), each with the newest measurement that fits it. */
export function targetRows(results: Result[]): Row[] {
  const bench = results.filter((r): r is BenchResult => !isScale(r)).sort((a, b) => a.date.localeCompare(b.date));
  const scale = results.filter(isScale).sort((a, b) => a.date.localeCompare(b.date));
  const big = (b: BenchResult): boolean => entriesOf(b) >= 100_000;
  const small = (b: BenchResult): boolean => !big(b);
  const onTmpfs = (b: BenchResult): boolean => b.target.filesystem === 'tmpfs';
  const onDisk = (b: BenchResult): boolean => b.target.filesystem !== 'tmpfs';
  const rows: Row[] = [
    ratioRow(bench, 'final pass + quick verify, ~150k entries', 'final-quick-verify', 'final-rsync-ssh', 0.25, big),
    ratioRow(bench, 'final pass alone, ~150k entries', 'final-cmmigrate', 'final-rsync-ssh', 0.15, big),
    ratioRow(bench, 'final pass alone, bench tree', 'final-cmmigrate', 'final-rsync-ssh', 1.0, small),
    ratioRow(bench, 'final pass + quick verify, bench tree', 'final-quick-verify', 'final-rsync-ssh', 0.5, small),
    ratioRow(bench, 'final pass with nothing changed, ~150k entries', 'unchanged-cmmigrate', 'unchanged-rsync-ssh', 0.1, big),
  ];
  const s = [...scale].reverse().find((r) => r['nothing changed'] && r.files >= 1_000_000);
  const u = s?.['nothing changed'];
  rows.push({
    what: 'nothing changed, 1,000,000 files',
    target: '≤ 0.1× rsync',
    measured: u && `${x(u.ratio_of_medians)} (${fmtS(median(u.cmmigrate_seconds))} s against ${fmtS(median(u.rsync_seconds))} s, ${num(u.entries)} entries)`,
    met: u && u.ratio_of_medians <= 0.1,
    from: s,
  });
  // Per tree size: on the bench tree a pass's fixed costs (connections, TLS, each root's set-up) are spread over few entries.
  // Only passes that walked: one that used the change journals decides on a few entries of the tree (issue 25).
  const walked = (b: BenchResult): boolean => (caseOf(b, 'unchanged-cmmigrate')!.agentCpuMicrosPerEntry ?? []).every((e) => e.entries >= b.tree.files / 2);
  for (const [size, fits] of [['~150k entries', big], ['bench tree', small]] as const) {
    const cpu = newest(bench, 'unchanged-cmmigrate', (b) => fits(b) && walked(b) && !!caseOf(b, 'unchanged-cmmigrate')!.agentCpuMicrosPerEntry?.length);
    for (const [side, limit] of [['new', 15], ['old', 10]] as const) {
      const v = cpu && median(cpu.c.agentCpuMicrosPerEntry!.map((e) => e[side]));
      rows.push({ what: `CPU per unchanged entry, ${side === 'new' ? 'receiver' : 'sender'}, ${size}`, target: `≤ ${limit} µs`, measured: v === undefined ? undefined : `${v.toFixed(1)} µs`, met: v === undefined ? undefined : v <= limit, from: cpu?.b });
    }
  }
  rows.push(ratioRow(bench, '`cmmigrate --version`', 'startup-cmmigrate', 'startup-node', 1.5, () => true));
  const gib = newest(bench, 'initial-cmmigrate', (b) => !!caseOf(b, 'initial-cmmigrate')!.agentCpuSecondsPerGiB?.length && onDisk(b)) ?? newest(bench, 'initial-cmmigrate', (b) => !!caseOf(b, 'initial-cmmigrate')!.agentCpuSecondsPerGiB?.length);
  for (const side of ['old', 'new'] as const) {
    const v = gib && median(gib.c.agentCpuSecondsPerGiB!.map((e) => e[side]));
    rows.push({ what: `initial copy, ${side} agent's CPU (${gib ? gib.b.target.filesystem : 'disk'})`, target: '≤ 4 CPU-s per GiB', measured: v === undefined ? undefined : `${v.toFixed(2)} CPU-s per GiB`, met: v === undefined ? undefined : v <= 4, from: gib?.b });
  }
  rows.push(ratioRow(bench, 'initial copy, target on disk', 'initial-cmmigrate', 'initial-tar-ssh', 1.5, onDisk));
  rows.push(ratioRow(bench, 'initial copy, target on tmpfs', 'initial-cmmigrate', 'initial-tar-ssh', 2, onTmpfs));
  rows.push(ratioRow(bench, 'initial copy, 50 ms round trip', 'delayed-cmmigrate', 'delayed-tar-ssh', 0.3, () => true));
  const rss = [...scale].reverse().find((r) => r.files >= 1_000_000);
  const phases = rss ? Object.keys(rss).filter((k) => k.endsWith(' peak RSS MiB')) : [];
  const peaks = phases.flatMap((k) => Object.values(rss![k] as Record<string, number>));
  const peak = peaks.length ? Math.max(...peaks) : undefined;
  const during = phases.map((k) => k.replace(' peak RSS MiB', '')).join(', ');
  rows.push({ what: 'agent peak RSS, 1,000,000 files', target: '≤ 200 MB', measured: peak === undefined ? undefined : `${peak} MiB (${Math.round((peak * 2 ** 20) / 1e6)} MB), during ${during}`, met: peak === undefined ? undefined : peak * 2 ** 20 <= 200e6, from: rss });
  return rows;
}

/** Percent of the CPUs that other processes took during a case's runs, at most. */
function busiest(b: BenchResult, c: CaseResult): number {
  const shares = c.foreignCpuSeconds.map((f, i) => f / (c.seconds[i] * b.machine.nproc));
  return Math.round(100 * Math.max(0, ...shares));
}

function benchTable(b: BenchResult): string[] {
  const out = ['| case | median s (runs) | ratio | agents\' CPU old / new | peak RSS old / new | other work |', '|---|---|---|---|---|---|'];
  for (const c of b.cases) {
    const ratios = Object.entries(c.ratios).map(([peer, r]) => `${x(r)} ${peerName(peer)}`).join(', ');
    const per = c.agentCpuMicrosPerEntry?.length
      ? `${median(c.agentCpuMicrosPerEntry.map((e) => e.old)).toFixed(1)} / ${median(c.agentCpuMicrosPerEntry.map((e) => e.new)).toFixed(1)} µs per entry`
      : c.agentCpuSecondsPerGiB?.length
        ? `${median(c.agentCpuSecondsPerGiB.map((e) => e.old)).toFixed(2)} / ${median(c.agentCpuSecondsPerGiB.map((e) => e.new)).toFixed(2)} s per GiB`
        : '';
    const flush = c.flushSeconds?.length ? `, then \`sync -f\` ${fmtS(median(c.flushSeconds))}` : '';
    out.push(`| ${c.what.replace(/\|/g, '\\|')} | ${fmtS(c.median)} (${c.seconds.map(fmtS).join(', ')})${flush} | ${ratios} | ${per} | ${c.peakRssMiB ? `${c.peakRssMiB.old} / ${c.peakRssMiB.new} MiB` : ''} | ${busiest(b, c)} % |`);
  }
  return out;
}

function scaleText(s: ScaleResult): string[] {
  const out: string[] = [];
  const phases = ['initial', 'final (nothing changed)', 'verify'].filter((p) => s[p]);
  out.push(`\`${s.command}\` at ${short(s)} (${s.date.slice(0, 10)}), ${num(s.files)} files asked for:`);
  out.push('');
  out.push('| phase | seconds | peak RSS old / new |');
  out.push('|---|---|---|');
  for (const p of phases) {
    const r = s[p] as { seconds: number };
    const m = s[`${p} peak RSS MiB`] as { old: number; new: number } | undefined;
    out.push(`| ${p} | ${fmtS(Number(r.seconds))} | ${m ? `${m.old} / ${m.new} MiB` : ''} |`);
  }
  const u = s['nothing changed'];
  if (u) {
    out.push('');
    out.push(`Nothing changed, ${num(u.entries)} entries, ${u.cmmigrate_seconds.length} rounds alternating: cmmigrate's final pass ${u.cmmigrate_seconds.map(fmtS).join(', ')} s, \`rsync -aH --delete\` over ssh ${u.rsync_seconds.map(fmtS).join(', ')} s: ${x(u.ratio_of_medians)} rsync (medians); the agents' CPU ${u.agent_cpu_us_per_entry.old} / ${u.agent_cpu_us_per_entry.new} µs per entry (old / new, agents kept running).`);
  }
  return out;
}

/** The generated part of the Performance section, markers included. */
export function performanceSection(results: Result[]): string {
  const sorted = [...results].sort((a, b) => a.date.localeCompare(b.date));
  const out: string[] = [PERF_START, ''];
  const m = sorted[0]?.machine;
  if (m) out.push(`Measured on ${m.nproc} CPUs (${m.cpuModel}), ${(m.memTotalMiB / 1024).toFixed(1)} GiB of memory, ${m.kernel}, Node ${m.node}, ${m.tar}, ${m.rsync.replace(/\s+/g, ' ')}, ${m.ssh.split(',')[0]}.`, '');
  out.push("The targets (issue 25's for the final pass and the quick verify), each from the newest run below that measured it:", '');
  out.push('| what | measured | target | | run |', '|---|---|---|---|---|');
  for (const r of targetRows(sorted)) {
    const run = r.from ? `${r.from.date.slice(0, 16).replace('T', ' ')}, ${short(r.from)}` : '';
    out.push(`| ${r.what} | ${r.measured ?? 'not measured'} | ${r.target} | ${r.met === undefined ? '' : r.met ? 'met' : '**missed**'} | ${run} |`);
  }
  for (const r of sorted) {
    out.push('');
    out.push(`#### ${r.date.slice(0, 16).replace('T', ' ')} UTC, commit ${short(r)}`);
    out.push('');
    const load = r.loadavg ? ` Load average ${r.loadavg.start[0]} at the start, ${r.loadavg.end[0]} at the end.` : '';
    if (isScale(r)) {
      out.push(...scaleText(r));
      if (load) out.push('', load.trim());
      continue;
    }
    out.push(`\`${r.command}\`: target on ${r.target.filesystem}, ${num(r.tree.files)} files (${num(r.tree.hardlinks)} of them hard links), ${num(entriesOf(r))} entries, ${(r.tree.bytes / 1e9).toFixed(2)} GB; ${r.options.runs} run(s) of each case, the median shown.${load}${r.warnings.length ? ` Other work took more than 5 % of the CPUs in ${r.warnings.length} of the runs (the last column, at most).` : ''}`);
    out.push('');
    out.push(...benchTable(r));
  }
  out.push('', PERF_END);
  return out.join('\n');
}

/** `readme` (docs/performance.md's text) with the text between the markers replaced by `section`. */
export function withPerformance(readme: string, section: string): string {
  return withReadmeBlock(readme, PERF_START, PERF_END, section, 'performance');
}

/** The bench's and scale's files; the bridge bench's (`bridge-*.json`) are bridge-figures.ts's. */
const isResultFile = (f: string): boolean => f.endsWith('.json') && !f.startsWith('bridge-');

/** The result files kept in `dir`, in date order. */
export function readResults(dir = RESULTS_DIR): Result[] {
  return fs
    .readdirSync(dir)
    .filter(isResultFile)
    .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as Result)
    .sort((a, b) => a.date.localeCompare(b.date));
}

function main(): void {
  const args = process.argv.slice(2);
  const readme = takeDocArg(args);
  if (!args.length) {
    process.stderr.write('usage: performance.js [--doc docs/performance.md] RESULT.json ...\n');
    process.exit(2);
  }
  const bridge = args.filter((f) => !isResultFile(path.basename(f)));
  if (bridge.length) {
    process.stderr.write(`not a bench or scale result (bridge-*.json goes to bridge-figures.js): ${bridge.join(', ')}\n`);
    process.exit(2);
  }
  const results = args.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')) as Result);
  const text = performanceSection(results);
  process.stdout.write(text + '\n');
  if (readme) {
    fs.mkdirSync(RESULTS_DIR, { recursive: true });
    // Read before anything goes: a given file may be one of those kept there already.
    const kept = args.map((f) => [path.basename(f), fs.readFileSync(f)] as const);
    for (const f of fs.readdirSync(RESULTS_DIR)) if (isResultFile(f)) fs.rmSync(path.join(RESULTS_DIR, f));
    for (const [name, data] of kept) fs.writeFileSync(path.join(RESULTS_DIR, name), data);
    fs.writeFileSync(readme, withPerformance(fs.readFileSync(readme, 'utf8'), text));
  }
}

if (typeof require !== 'undefined' && require.main === module) main();
