/**
 * The bridge's targets (issue 14), measured on loopback through a real old agent
 * (`cmmigrate-agent serve` from dist/, mTLS), its bridge started with the controller's
 * BridgeStart call as `run --bridge` starts it:
 *
 * - latency: median round trip of a 100-byte request and its echo, through the bridge and
 *   direct to the same server; the difference is what the bridge adds (target < 1 ms);
 * - throughput: one connection moving `--gib` GiB through the bridge, upload (client to
 *   new host) and download (new host to client), and direct over loopback in the same run,
 *   rounds alternating which goes first (target >= 200 MB/s bridged; the ratio to direct
 *   says how much of the machine's loopback the bridge keeps);
 * - the agent process's CPU seconds per GiB moved, from /proc/<agent pid>/stat (utime +
 *   stime), while only bridged transfers run.
 *
 * The agent runs in a process of its own, the servers in another, the client here. The
 * load average is printed before and after: on a shared machine the figures move with it.
 * The results are written as JSON to `--out` (default bench-results/bridge-<date>.json);
 * bridge-figures.ts makes the figures of docs/performance.md from such a file. Run after a build:
 *   npm run build:tools && node dist-test/test/bench/bridge-bench.js [--rounds N] [--trips N] [--gib N]
 *     [--bridge-node PATH (the agent's runtime, e.g. Node 18.19)] [--out FILE]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { parseArgs } from 'node:util';
import { bridgeStatusOn, startBridgeOn, stopBridgeOn } from '../../controller/bridge-client';
import { processTicks, startBridgeAgent } from '../support/bridge-agent';
import { REPO } from '../support/harness';
import { bridgeLines, type BridgeResult } from './bridge-figures';
import { gitState } from './report';

const BRIDGE = '127.0.8.1';
const TARGET = '127.0.8.2';
const AGENT = '127.0.8.3';
const CLIENT = '127.0.8.5';
const GiB = 1024 ** 3;
const MB = 1e6;
const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

/**
 * The servers' role (`--role servers`): on one port, a connection whose first byte is `E`
 * is echoed, `S` is a sink that answers `ok <bytes>` after the client's FIN, and
 * `D<decimal bytes>\n` gets that many bytes and a FIN. Prints the port.
 */
function servers(host: string): void {
  const chunk = Buffer.alloc(1024 * 1024, 0x5a);
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    s.on('error', () => undefined);
    s.once('readable', () => {
      const first = s.read(1) as Buffer | null;
      if (!first) return void s.destroy();
      const kind = String.fromCharCode(first[0]);
      if (kind === 'E') s.pipe(s);
      else if (kind === 'S') {
        let n = 0;
        s.on('data', (d: Buffer) => (n += d.length));
        s.on('end', () => s.end(`ok ${n}\n`));
      } else if (kind === 'D') {
        let line = '';
        const onData = (d: Buffer): void => {
          line += d.toString('latin1');
          if (!line.includes('\n')) return;
          s.off('data', onData);
          let left = Number(line.slice(0, line.indexOf('\n')));
          const pump = (): void => {
            while (left > 0) {
              const part = left >= chunk.length ? chunk : chunk.subarray(0, left);
              left -= part.length;
              if (!s.write(part)) return void s.once('drain', pump);
            }
            s.end();
          };
          pump();
        };
        s.on('data', onData);
      } else s.destroy();
    });
  });
  server.listen(0, host, () => process.stdout.write(`${(server.address() as net.AddressInfo).port}\n`));
}

function connect(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localAddress: CLIENT, noDelay: true, allowHalfOpen: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Round-trip times (ms) of `n` 100-byte requests, each echoed before the next is sent. */
async function roundTrips(host: string, port: number, n: number): Promise<number[]> {
  const s = await connect(host, port);
  s.write('E');
  const req = Buffer.alloc(100, 0x41);
  const times: number[] = [];
  let got = 0;
  let t0 = 0;
  let next: (() => void) | undefined;
  s.on('data', (d: Buffer) => {
    got += d.length;
    if (got >= req.length) {
      got -= req.length;
      times.push(performance.now() - t0);
      next?.();
    }
  });
  for (let k = 0; k < n; k++) {
    const answered = new Promise<void>((r) => (next = r));
    t0 = performance.now();
    s.write(req);
    await answered;
  }
  s.destroy();
  return times;
}

/** Seconds to upload `bytes` to the sink and hear its count back. */
async function upload(host: string, port: number, bytes: number): Promise<number> {
  const s = await connect(host, port);
  const chunk = Buffer.alloc(1024 * 1024, 0x61);
  const t0 = performance.now();
  const answer = new Promise<string>((resolve) => {
    let text = '';
    s.on('data', (d: Buffer) => (text += d));
    s.on('end', () => resolve(text));
  });
  s.write('S');
  for (let left = bytes; left > 0; left -= chunk.length) {
    if (!s.write(left >= chunk.length ? chunk : chunk.subarray(0, left))) await once(s, 'drain');
  }
  s.end();
  const text = await answer;
  const secs = (performance.now() - t0) / 1000;
  if (text.trim() !== `ok ${bytes}`) throw new Error(`sink answered ${JSON.stringify(text)}`);
  s.destroy();
  return secs;
}

/** Seconds to download `bytes` from the server until its FIN. */
async function download(host: string, port: number, bytes: number): Promise<number> {
  const s = await connect(host, port);
  let n = 0;
  const t0 = performance.now();
  s.on('data', (d: Buffer) => (n += d.length));
  s.write(`D${bytes}\n`);
  await once(s, 'end');
  const secs = (performance.now() - t0) / 1000;
  if (n !== bytes) throw new Error(`downloaded ${n} of ${bytes} bytes`);
  s.destroy();
  return secs;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const quantile = (xs: number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function startServers(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [__filename, '--role', 'servers'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(readline.createInterface({ input: child.stdout! }), 'line')) as [string];
  return { child, port: Number(line) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      role: { type: 'string' },
      rounds: { type: 'string', default: '5' },
      trips: { type: 'string', default: '2000' },
      gib: { type: 'string', default: '1' },
      out: { type: 'string' },
      json: { type: 'string' }, // the old name of --out
      'bridge-node': { type: 'string' },
    },
  });
  if (values.role === 'servers') return servers(TARGET);
  const rounds = Number(values.rounds);
  const trips = Number(values.trips);
  const bytes = Math.round(Number(values.gib) * GiB);

  const started = new Date();
  const code = gitState();
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').trim();
  const srv = await startServers();
  const bridgeNode = values['bridge-node'] ?? process.execPath;
  const old = await startBridgeAgent({ agentHost: AGENT, oldHost: BRIDGE, newHost: TARGET, node: bridgeNode });
  const agentPid = old.agent.child.pid!;
  try {
    await startBridgeOn(old.handle, { listen: [BRIDGE], target: TARGET, ports: [srv.port] });
    const lat = { direct: [] as number[], bridged: [] as number[] };
    const thr = { uploadDirect: [] as number[], uploadBridged: [] as number[], downloadDirect: [] as number[], downloadBridged: [] as number[] };
    let agentTicks = 0;
    let bridgedBytes = 0;
    await roundTrips(BRIDGE, srv.port, 200); // warm-up, not counted
    for (let r = 0; r < rounds; r++) {
      // Alternate which goes first, so drift on a shared machine hits both alike.
      const order: ('direct' | 'bridged')[] = r % 2 ? ['bridged', 'direct'] : ['direct', 'bridged'];
      for (const how of order) lat[how].push(...(await roundTrips(how === 'direct' ? TARGET : BRIDGE, srv.port, trips)));
      for (const how of order) {
        const host = how === 'direct' ? TARGET : BRIDGE;
        const before = how === 'bridged' ? processTicks(agentPid) : 0;
        const up = await upload(host, srv.port, bytes);
        const down = await download(host, srv.port, bytes);
        if (how === 'bridged') {
          agentTicks += processTicks(agentPid) - before;
          bridgedBytes += 2 * bytes;
          thr.uploadBridged.push(bytes / up / MB);
          thr.downloadBridged.push(bytes / down / MB);
        } else {
          thr.uploadDirect.push(bytes / up / MB);
          thr.downloadDirect.push(bytes / down / MB);
        }
      }
    }
    const port = (await bridgeStatusOn(old.handle)).ports[0];
    const through = (k: keyof typeof thr) => ({ median: median(thr[k]), best: Math.max(...thr[k]), all: thr[k] });
    const t = {
      uploadDirect: through('uploadDirect'),
      uploadBridged: through('uploadBridged'),
      downloadDirect: through('downloadDirect'),
      downloadBridged: through('downloadBridged'),
    };
    const result: BridgeResult = {
      kind: 'bridge',
      date: started.toISOString(),
      command: `node dist-test/test/bench/bridge-bench.js --rounds ${rounds} --trips ${trips} --gib ${values.gib}${values['bridge-node'] ? ` --bridge-node ${bridgeNode}` : ''}`,
      code,
      machine: { cpus: (await import('node:os')).cpus().length, loadavgBefore: loadBefore, loadavgAfter: readFileSync('/proc/loadavg', 'utf8').trim(), node: process.version },
      agentNode: spawnSync(bridgeNode, ['--version'], { encoding: 'utf8' }).stdout.trim(),
      agentPid,
      rounds,
      tripsPerRound: trips,
      bytesPerTransfer: bytes,
      latencyMs: {
        directMedian: median(lat.direct),
        bridgedMedian: median(lat.bridged),
        addedMedian: median(lat.bridged) - median(lat.direct),
        directP99: quantile(lat.direct, 0.99),
        bridgedP99: quantile(lat.bridged, 0.99),
      },
      throughputMBps: t,
      /** Bridged median over direct median, per direction. */
      bridgedToDirect: { upload: t.uploadBridged.median / t.uploadDirect.median, download: t.downloadBridged.median / t.downloadDirect.median },
      agentCpuSecondsPerGiB: agentTicks / TICKS / (bridgedBytes / GiB),
      bridgeCounted: { total: port.total, bytesToTarget: port.bytes_to_target, bytesFromTarget: port.bytes_from_target },
    };
    for (const line of bridgeLines(result)) console.log(line);
    const out = path.resolve(values.out ?? values.json ?? path.join(REPO, 'bench-results', `bridge-${started.toISOString().replace(/[:.]/g, '-').slice(0, 19)}.json`));
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
    console.log(`written to ${out}`);
  } finally {
    await stopBridgeOn(old.handle).catch(() => undefined);
    await old.close();
    srv.child.kill();
  }
}

main().catch((err: Error) => {
  console.error(err);
  process.exit(1);
});
