/**
 * The bridge's speed figures in docs/performance.md, made from the JSON that a real run of
 * test/bench/bridge-bench.ts wrote, so that no figure there is typed by hand:
 *   node dist-test/test/bench/bridge-figures.js --doc docs/performance.md bench-results/bridge-....json
 * copies the result file into test/bench/results/ (replacing the bridge result there) and
 * writes the text between the page's two bridge markers. The bench prints the same lines
 * (bridgeLines) on its console. test/readme-figures.test.ts makes the text again from the
 * kept file and fails when the page differs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RESULTS_DIR } from './performance';
import { takeDocArg, withReadmeBlock } from './readme-block';

/** The markers around the generated part of the bridge's "Speed." paragraph in docs/performance.md. */
export const BRIDGE_START = '<!-- bridge figures: made by test/bench/bridge-figures.ts from test/bench/results/bridge-*.json; do not edit by hand -->';
export const BRIDGE_END = '<!-- end of the generated bridge figures -->';

/** Result files of the bridge bench are named so, in test/bench/results/ as in bench-results/. */
export const isBridgeFile = (name: string): boolean => name.startsWith('bridge-') && name.endsWith('.json');

interface Throughput {
  median: number;
  best: number;
  all: number[];
}

/** What test/bench/bridge-bench.ts writes. */
export interface BridgeResult {
  kind: 'bridge';
  date: string;
  command: string;
  code: { commit: string; changed: string[] };
  /** `/proc/loadavg` as read before and after the run. */
  machine: { cpus: number; loadavgBefore: string; loadavgAfter: string; node: string };
  agentNode: string;
  agentPid: number;
  rounds: number;
  tripsPerRound: number;
  bytesPerTransfer: number;
  latencyMs: { directMedian: number; bridgedMedian: number; addedMedian: number; directP99: number; bridgedP99: number };
  throughputMBps: { uploadDirect: Throughput; uploadBridged: Throughput; downloadDirect: Throughput; downloadBridged: Throughput };
  bridgedToDirect: { upload: number; download: number };
  agentCpuSecondsPerGiB: number;
  bridgeCounted: { total: number; bytesToTarget: number; bytesFromTarget: number };
}

const GiB = 1024 ** 3;
const MB = 1e6;
const first3 = (loadavg: string): string => loadavg.split(' ').slice(0, 3).join(' ');
const gib = (r: BridgeResult): string => String(Number((r.bytesPerTransfer / GiB).toFixed(3)));

/** The lines the bench prints: the same in its console and in docs/performance.md. */
export function bridgeLines(r: BridgeResult): string[] {
  const l = r.latencyMs;
  const t = r.throughputMBps;
  const mbps = (x: Throughput): string => `${x.median.toFixed(0)} (best ${x.best.toFixed(0)})`;
  return [
    `round trip, median: direct ${l.directMedian.toFixed(3)} ms, bridged ${l.bridgedMedian.toFixed(3)} ms, added ${(l.addedMedian * 1000).toFixed(0)} us (target < 1000 us)`,
    `round trip, p99:    direct ${l.directP99.toFixed(3)} ms, bridged ${l.bridgedP99.toFixed(3)} ms`,
    `one connection, MB/s median of ${r.rounds} x ${gib(r)} GiB (target >= 200 bridged):`,
    `  upload   (client -> new host): direct ${mbps(t.uploadDirect)}, bridged ${mbps(t.uploadBridged)}, bridged/direct ${r.bridgedToDirect.upload.toFixed(2)}`,
    `  download (new host -> client): direct ${mbps(t.downloadDirect)}, bridged ${mbps(t.downloadBridged)}, bridged/direct ${r.bridgedToDirect.download.toFixed(2)}`,
    // What one core of the agent could move if nothing else ran: the figure the shared machine's load does not move much.
    `agent process CPU: ${r.agentCpuSecondsPerGiB.toFixed(2)} s per GiB bridged (user + system, /proc/${r.agentPid}/stat), so one core moves up to ${(GiB / r.agentCpuSecondsPerGiB / MB).toFixed(0)} MB/s`,
    `machine: ${r.machine.cpus} CPUs, load before ${first3(r.machine.loadavgBefore)}, after ${first3(r.machine.loadavgAfter)}; client node ${r.machine.node}, agent node ${r.agentNode}`,
  ];
}

/** The generated part of the bridge's "Speed." paragraph, markers included. */
export function bridgeSection(r: BridgeResult): string {
  const load = (s: string): number => Number(s.split(' ')[0]);
  // The load before the run is other work's (the bench adds its own during the run).
  const busy = load(r.machine.loadavgBefore) >= 1 ? ': other work was running' : '';
  const short = r.code.commit.slice(0, 7) + (r.code.changed.length ? ' (with uncommitted changes)' : '');
  return [
    BRIDGE_START,
    `\`${r.command}\` on ${r.date.slice(0, 16).replace('T', ' ')} UTC at commit ${short}, on ${r.machine.cpus} CPUs (load average ${load(r.machine.loadavgBefore).toFixed(1)} before, ${load(r.machine.loadavgAfter).toFixed(1)} after${busy}), printed:`,
    '',
    '```text',
    ...bridgeLines(r),
    '```',
    BRIDGE_END,
  ].join('\n');
}

/** `readme` with the text between the bridge markers replaced by `section`. */
export function withBridge(readme: string, section: string): string {
  return withReadmeBlock(readme, BRIDGE_START, BRIDGE_END, section, 'bridge');
}

/** The one bridge result kept in `dir`. */
export function readBridgeResult(dir = RESULTS_DIR): BridgeResult {
  const files = fs.readdirSync(dir).filter(isBridgeFile);
  if (files.length !== 1) throw new Error(`expected one bridge result in ${dir}, found ${files.length}`);
  return JSON.parse(fs.readFileSync(path.join(dir, files[0]), 'utf8')) as BridgeResult;
}

function main(): void {
  const args = process.argv.slice(2);
  const readme = takeDocArg(args);
  if (args.length !== 1 || !isBridgeFile(path.basename(args[0]))) {
    process.stderr.write('usage: bridge-figures.js [--doc docs/performance.md] bridge-RESULT.json\n');
    process.exit(2);
  }
  const text = bridgeSection(JSON.parse(fs.readFileSync(args[0], 'utf8')) as BridgeResult);
  process.stdout.write(text + '\n');
  if (readme) {
    fs.mkdirSync(RESULTS_DIR, { recursive: true });
    // Read before anything goes: the given file may be the one kept there already.
    const kept = fs.readFileSync(args[0]);
    for (const f of fs.readdirSync(RESULTS_DIR)) if (isBridgeFile(f)) fs.rmSync(path.join(RESULTS_DIR, f));
    fs.writeFileSync(path.join(RESULTS_DIR, path.basename(args[0])), kept);
    fs.writeFileSync(readme, withBridge(fs.readFileSync(readme, 'utf8'), text));
  }
}

if (typeof require !== 'undefined' && require.main === module) main();
