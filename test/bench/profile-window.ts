/**
 * Where an agent's CPU went during one bench command: reads a V8 CPU profile (an agent
 * started with `--cpu-prof`, through CMMIGRATE_BENCH_AGENT_NODE) and the commands' spans
 * the bench wrote to CMMIGRATE_BENCH_WINDOWS, and prints, for the samples inside one span,
 * the functions by self time and by total time (the function and everything it called).
 *
 *   node dist-test/test/bench/profile-window.js PROFILE.cpuprofile WINDOWS.jsonl [INDEX] [TOP]
 *
 * INDEX picks the span (default: the last); TOP the number of lines (default 30).
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

function main(): void {
  const [profFile, windowsFile, index, top] = process.argv.slice(2);
  if (!profFile || !windowsFile) {
    console.error('usage: profile-window.js PROFILE.cpuprofile WINDOWS.jsonl [INDEX] [TOP]');
    process.exit(2);
  }
  const prof = JSON.parse(readFileSync(profFile, 'utf8')) as Profile;
  const windows = readFileSync(windowsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { args: string[]; startUs: number; endUs: number });
  const w = windows[index === undefined ? windows.length - 1 : Number(index)];
  if (!w) throw new Error(`no span ${index} in ${windowsFile} (${windows.length} spans)`);
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n: Node): string => {
    const f = n.callFrame;
    const file = f.url.replace(/^.*\//, '');
    return `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let t = prof.startTime;
  let inside = 0;
  let all = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i];
    const dt = prof.timeDeltas[i + 1] ?? 0;
    if (t < w.startUs || t > w.endUs) continue;
    all += dt;
    const leaf = byId.get(prof.samples[i])!;
    if (leaf.callFrame.functionName === '(idle)') continue;
    inside += dt;
    self.set(name(leaf), (self.get(name(leaf)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const k = name(byId.get(id)!);
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + dt);
    }
  }
  const n = Number(top ?? 30);
  const show = (title: string, m: Map<string, number>): void => {
    console.log(`\n${title}`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${(v / 1000).toFixed(0).padStart(8)} ms ${((v / inside) * 100).toFixed(1).padStart(5)}%  ${k}`);
  };
  console.log(`span: ${w.args.join(' ')} (${((w.endUs - w.startUs) / 1e6).toFixed(2)} s); busy ${(inside / 1e6).toFixed(2)} s of ${(all / 1e6).toFixed(2)} s sampled`);
  show('self', self);
  show('total', total);
}

main();
