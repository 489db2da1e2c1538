/**
 * The bridge in a process of its own, as the agent will run it: the parent starts
 * `node dist-test/test/support/bridge-process.js start <request-json> [stateDir]` (or `resume
 * <stateDir>`), reads `ready` on stdout, and may send lines on stdin: `status` (answers
 * one JSON line), `stop`, `stop-keep` (stop, keep the state file; the process then exits).
 * Used by the kill and restart test (npm run build first); the bridge bench runs a real
 * agent instead (bridge-agent.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { resumeBridge, startBridge, type Bridge, type BridgeRequest } from '../../agent/bridge/bridge';
import { REPO } from './harness';

/** A running bridge process, and a way to talk to it. */
export interface BridgeProcess {
  child: ChildProcess;
  /** Sends one command line and waits for its one-line answer. */
  ask(command: 'status'): Promise<string>;
  /** Ends the process: SIGKILL (`kill`), or a stop command and its exit. */
  end(how: 'stop' | 'stop-keep' | 'kill'): Promise<void>;
}

const SCRIPT = path.join(REPO, 'dist-test', 'test', 'support', 'bridge-process.js');

/** Starts `bridge-process.js` (from dist/) and waits for `ready`; rejects with its stderr if it fails. */
export function startBridgeProcess(args: string[], node = process.execPath, script = SCRIPT): Promise<BridgeProcess> {
  const child = spawn(node, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const lines = readline.createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.once('exit', (code, signal) => reject(new Error(`bridge process ended (${code ?? signal}) before ready: ${stderr}`)));
    lines.once('line', (first) => {
      if (first !== 'ready') return reject(new Error(`bridge process said ${first}: ${stderr}`));
      lines.on('line', (line) => waiting.shift()?.(line));
      resolve({
        child,
        ask: (command) =>
          new Promise((answer) => {
            waiting.push(answer);
            child.stdin!.write(command + '\n');
          }),
        end: async (how) => {
          if (child.exitCode === null && child.signalCode === null) {
            if (how === 'kill') child.kill('SIGKILL');
            else child.stdin!.write(how + '\n');
          }
          await exited;
        },
      });
    });
  });
}

async function main(argv: string[]): Promise<void> {
  const [verb, arg, stateDir] = argv;
  let bridge: Bridge | null;
  if (verb === 'start') bridge = await startBridge(JSON.parse(arg) as BridgeRequest, { stateDir });
  else if (verb === 'resume') bridge = await resumeBridge(arg);
  else throw new Error(`usage: bridge-process.js start <request-json> [stateDir] | resume <stateDir>`);
  if (!bridge) throw new Error(`no bridge state in ${arg}`);
  const b = bridge;
  process.stdout.write('ready\n');
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line === 'status') process.stdout.write(JSON.stringify(b.status()) + '\n');
    else if (line === 'stop' || line === 'stop-keep') void b.stop({ keepState: line === 'stop-keep' }).then(() => process.exit(0));
  });
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: Error) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  });
}
