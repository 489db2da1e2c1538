/**
 * What the change journal costs (issue 25, target: at most 5 µs of CPU per event for the
 * helper and the agent together): a maildir-like load in another process (each message
 * written into tmp/, renamed into new/, then into cur/ with a flag, some re-flagged), on a
 * tmpfs of its own, while a journal watches it. Prints the events the journal took in,
 * the helper's CPU (/proc/<pid>/stat) and the agent side's (process.cpuUsage) per event,
 * and the memory of both: the helper's RSS, the heap the held paths take.
 *
 * `node dist-test/test/bench/journal-cost.js [--messages N] [--users N] [--rate MSG/S] [--python P]`
 * after `npm run build:tools`, as root. Default 60,000 messages as fast as one process
 * makes them: about 200,000 events (the kernel merges a message's create, write and
 * close into one event, and more when the helper is behind).
 */
import { spawn, execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import pino from 'pino';
import { ChangeJournal } from '../../agent/journal/journal';
import { cpuSeconds } from './proc';

const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** User and system CPU seconds of a process so far. */
async function cpuSplit(pid: number): Promise<{ user: number; system: number }> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(f[11]) / TICKS, system: Number(f[12]) / TICKS };
}

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

/** The load: one process, synchronous calls, like a delivery agent and an IMAP server's flag changes. */
const LOAD = `
const fs = require('fs');
const [dir, n, users, rate] = [process.argv[1], +process.argv[2], +process.argv[3], +process.argv[4]];
const body = 'Subject: x\\n\\n' + 'b'.repeat(200) + '\\n';
const pause = new Int32Array(new SharedArrayBuffer(4));
const t0 = Date.now();
for (let i = 0; i < n; i++) {
  if (rate && i % 10 === 0) {
    const ahead = t0 + (i * 1000) / rate - Date.now();
    if (ahead > 0) Atomics.wait(pause, 0, 0, ahead);
  }
  const u = dir + '/u' + (i % users);
  const name = (1700000000 + i) + '.M' + i + 'P' + process.pid + '.host,S=' + body.length;
  fs.writeFileSync(u + '/tmp/' + name, body);
  fs.renameSync(u + '/tmp/' + name, u + '/new/' + name);
  fs.renameSync(u + '/new/' + name, u + '/cur/' + name + ':2,');
  if (i % 4 === 0) fs.renameSync(u + '/cur/' + name + ':2,', u + '/cur/' + name + ':2,S');
}
`;

function runLoad(dir: string, messages: number, users: number, rate: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', LOAD, dir, String(messages), String(users), String(rate)], { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`load exited with ${code}`))));
  });
}

async function statusKiB(pid: number, field: string): Promise<number> {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(await fs.readFile(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

async function main(): Promise<void> {
  const messages = Number(arg('messages', '60000'));
  const users = Number(arg('users', '50'));
  const python = arg('python', 'python3');
  const rate = Number(arg('rate', '0'));
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'cmm-journal-cost-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1g', 'tmpfs', base]);
  const mail = path.join(base, 'mail');
  for (let u = 0; u < users; u++) for (const d of ['cur', 'new', 'tmp']) await fs.mkdir(path.join(mail, `u${u}`, d), { recursive: true });
  const j = await ChangeJournal.start({ roots: [{ name: 'mailboxes', abs: mail }], cookieDir: path.join(base, 'state'), log: pino({ level: 'warn' }), python });
  try {
    const pid = j.status().pid;
    if (pid === undefined) throw new Error(`the journal did not start: ${j.status().ended}`);
    const from = await j.sync();
    gc();
    const heap0 = process.memoryUsage().heapUsed;
    const helper0 = await cpuSeconds(pid);
    const split0 = await cpuSplit(pid);
    const node0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await runLoad(mail, messages, users, rate);
    const pos = await j.sync();
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const nodeUs = process.cpuUsage(node0);
    const helperS = (await cpuSeconds(pid)) - helper0;
    const split1 = await cpuSplit(pid);
    const events = pos.seq - from.seq;
    const r = j.changesSince('mailboxes', from);
    gc();
    const heap = process.memoryUsage().heapUsed - heap0;
    const entries = j.status().entries;
    const nodeS = (nodeUs.user + nodeUs.system) / 1e6;
    const out = {
      messages,
      messagesPerSecond: rate || 'unlimited',
      fsOperations: messages * 3 + Math.ceil(messages / 4),
      eventsTakenIn: events,
      wallSeconds: +wall.toFixed(2),
      helperCpuUsPerEvent: +((helperS * 1e6) / events).toFixed(2),
      helperUserUsPerEvent: +(((split1.user - split0.user) * 1e6) / events).toFixed(2),
      helperSystemUsPerEvent: +(((split1.system - split0.system) * 1e6) / events).toFixed(2),
      agentUserUsPerEvent: +(nodeUs.user / events).toFixed(2),
      agentSystemUsPerEvent: +(nodeUs.system / events).toFixed(2),
      agentCpuUsPerEvent: +((nodeS * 1e6) / events).toFixed(2),
      totalCpuUsPerEvent: +(((helperS + nodeS) * 1e6) / events).toFixed(2),
      helperRssMiB: +((await statusKiB(pid, 'VmRSS')) / 1024).toFixed(1),
      helperPeakRssMiB: +((await statusKiB(pid, 'VmHWM')) / 1024).toFixed(1),
      agentRssMiB: +(process.memoryUsage().rss / 2 ** 20).toFixed(1),
      pathsHeld: entries,
      heapMiBForPaths: +(heap / 2 ** 20).toFixed(1),
      heapBytesPerPath: entries ? Math.round(heap / entries) : 0,
      result: 'full' in r ? `full: ${r.full}` : `${r.changes.length} changes`,
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } finally {
    await j.close();
    execFileSync('umount', ['-l', base]);
    await fs.rm(base, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
