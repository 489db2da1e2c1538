/**
 * The one way cmmigrate runs a child process (the controller's cmdeploy and ssh, the
 * agent's host operations): no shell, a timeout, an abort signal, a bounded tail of each
 * output kept, and the same ending everywhere. The child leads its own process group, so a
 * timeout or an abort stops it and everything it started (SIGTERM to the group, SIGKILL
 * after a grace period); a grandchild that outlives the child and holds the pipes open does
 * not keep the caller waiting: the result comes at the child's exit plus a bounded wait for
 * the pipes. Exit codes and signals are returned, never thrown; only a child that cannot be
 * started rejects (with Node's own error, `code` ENOENT and so on). Built-ins only: this
 * file is part of the agent's bundle.
 */
import { spawn } from 'node:child_process';

export interface ChildRunOptions {
  cwd?: string;
  /** The child's environment; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Written to the child's stdin, which is then closed; without it stdin is /dev/null. */
  input?: Buffer | string;
  /** Stop the child (and its group) if it has not exited after this long; default: no timeout. */
  timeoutMs?: number;
  /** Aborting it stops the child (and its group). */
  signal?: AbortSignal;
  /** After SIGTERM, how long before SIGKILL; default 10 s. */
  killGraceMs?: number;
  /** After the child exited, how long to wait for its pipes to close; default 1 s. */
  pipeGraceMs?: number;
  /** How many bytes of each output (and of both together) are kept, the last ones; default 1 MiB. */
  maxOutputBytes?: number;
  /** Each piece of output as it comes. */
  onOutput?: (chunk: Buffer, stream: 'stdout' | 'stderr') => void;
}

export interface ChildResult {
  /** The exit code, or null when a signal ended the child. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The tail of stdout, of stderr, and of both as they came (at most maxOutputBytes each). */
  stdout: string;
  stderr: string;
  output: string;
  /** Some output was dropped from the front of a tail. */
  truncated: boolean;
  /** Stopped because timeoutMs passed. */
  timedOut: boolean;
  /** Stopped because the signal was aborted (before or while it ran). */
  aborted: boolean;
  seconds: number;
}

/** Keeps the last `max` bytes written to it. */
export class OutputTail {
  private chunks: Buffer[] = [];
  private size = 0;
  /** Bytes were dropped from the front. */
  dropped = false;
  constructor(private readonly max: number) {}

  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
    while (this.chunks.length > 1 && this.size - this.chunks[0].length >= this.max) {
      this.size -= this.chunks.shift()!.length;
      this.dropped = true;
    }
  }

  text(): string {
    const all = Buffer.concat(this.chunks);
    if (all.length > this.max) this.dropped = true;
    // A cut in the middle of a UTF-8 sequence decodes as U+FFFD; harmless in a tail.
    return all.subarray(Math.max(0, all.length - this.max)).toString('utf8');
  }
}

/** Signals the child's process group (the child alone where there is no group). */
function killGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

/** Runs `file` with `args` to its end (see the module comment). */
export function runChild(file: string, args: readonly string[], opts: ChildRunOptions = {}): Promise<ChildResult> {
  const started = Date.now();
  const max = opts.maxOutputBytes ?? 1024 * 1024;
  const tails = { stdout: new OutputTail(max), stderr: new OutputTail(max), output: new OutputTail(max) };
  return new Promise((resolve, reject) => {
    const child = spawn(file, [...args], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      shell: false,
      // Its own process group: a stop reaches what it started, and the terminal's Ctrl-C
      // reaches only us, who stop it on purpose (through opts.signal).
      detached: true,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let timedOut = false;
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;
    let pipeTimer: NodeJS.Timeout | undefined;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let settled = false;
    const stop = (): void => {
      killGroup(child.pid, 'SIGTERM');
      killTimer ??= setTimeout(() => killGroup(child.pid, 'SIGKILL'), opts.killGraceMs ?? 10_000);
    };
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => ((timedOut = true), stop()), opts.timeoutMs);
    const onAbort = (): void => {
      aborted = true;
      stop();
    };
    const cleanup = (): void => {
      settled = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      clearTimeout(pipeTimer);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    const finish = (): void => {
      if (settled || !exit) return;
      cleanup();
      // A grandchild may still hold the pipes: stop reading them, and stop it too if we were stopping.
      child.stdout?.destroy();
      child.stderr?.destroy();
      if (timedOut || aborted) killGroup(child.pid, 'SIGKILL');
      const [stdout, stderr, output] = [tails.stdout.text(), tails.stderr.text(), tails.output.text()];
      const truncated = tails.stdout.dropped || tails.stderr.dropped;
      resolve({ ...exit, stdout, stderr, output, truncated, timedOut, aborted, seconds: (Date.now() - started) / 1000 });
    };
    for (const stream of ['stdout', 'stderr'] as const) {
      child[stream]!.on('data', (b: Buffer) => {
        tails[stream].push(b);
        tails.output.push(b);
        opts.onOutput?.(b, stream);
      });
    }
    child.on('error', (err) => {
      if (settled) return;
      cleanup();
      reject(err);
    });
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      // The child itself is done: its timeout no longer applies while the pipes drain.
      clearTimeout(timer);
      pipeTimer = setTimeout(finish, opts.pipeGraceMs ?? 1_000);
    });
    child.on('close', finish);
    if (child.stdin) {
      // The child may exit before reading all of its input (a failed check): not our error.
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.input);
    }
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
