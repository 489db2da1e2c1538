/**
 * The controller's start-up against Node's own (issue 13: `cmmigrate --version` within
 * 1.5× `node -e 0`): both commands run alternately, so that other work on the machine
 * weighs on both alike; wall time per run, and CPU seconds from the kernel's count of
 * waited-for children (/proc/self/stat cutime + cstime). Also a command of its own:
 * `node dist-test/test/bench/startup.js [--runs N]` after `npm run build:tools`.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { median } from './report';

const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

/** CPU seconds of this process's children that have ended and been waited for. */
function childrenCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / TICKS;
}

/** One command's start-up: wall seconds of each run, and CPU seconds per run (mean). */
export interface StartupTimes {
  command: string;
  seconds: number[];
  median: number;
  cpuSecondsPerRun: number;
}

function once(argv: string[]): { seconds: number; cpu: number } {
  const cpu0 = childrenCpuSeconds();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited with ${r.status}: ${r.stderr}`);
  return { seconds, cpu: childrenCpuSeconds() - cpu0 };
}

/** Runs each command `runs` times, alternating (and one untimed run each first, for the page cache). */
export function measureStartup(commands: string[][], runs = 20): StartupTimes[] {
  for (const c of commands) once(c);
  const acc = commands.map(() => ({ seconds: [] as number[], cpu: 0 }));
  for (let i = 0; i < runs; i++) {
    // Alternate the order too, so that neither always runs right after the other.
    const order = i % 2 ? [...commands.keys()].reverse() : [...commands.keys()];
    for (const k of order) {
      const r = once(commands[k]);
      acc[k].seconds.push(r.seconds);
      acc[k].cpu += r.cpu;
    }
  }
  return commands.map((c, k) => ({ command: c.map((w) => path.basename(w)).join(' '), seconds: acc[k].seconds, median: median(acc[k].seconds), cpuSecondsPerRun: acc[k].cpu / runs }));
}

/** `cmmigrate --version` (the bundle that `bin` names) and `node -e 0`. */
export function controllerStartup(repo: string, runs = 20): { cmmigrate: StartupTimes; node: StartupTimes } {
  const [cmmigrate, node] = measureStartup([[process.execPath, path.join(repo, 'dist', 'cmmigrate.js'), '--version'], [process.execPath, '-e', '0']], runs);
  return { cmmigrate, node };
}

if (require.main === module) {
  const i = process.argv.indexOf('--runs');
  const runs = i > 0 ? Number(process.argv[i + 1]) : 20;
  const { cmmigrate, node } = controllerStartup(path.join(__dirname, '..', '..', '..'), runs);
  const ms = (s: number): string => (s * 1000).toFixed(1);
  for (const t of [cmmigrate, node]) console.log(`${t.command}: median ${ms(t.median)} ms wall, ${ms(t.cpuSecondsPerRun)} ms CPU per run (${runs} runs)`);
  console.log(`ratio: ${(cmmigrate.median / node.median).toFixed(2)}× wall, ${(cmmigrate.cpuSecondsPerRun / node.cpuSecondsPerRun).toFixed(2)}× CPU`);
}
