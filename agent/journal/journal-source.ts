/**
 * The change journal's event source: runs the fanotify helper (fanotify-helper.py) under
 * python3 and turns its lines into calls. What it guarantees: every event the helper
 * writes reaches onEvent in the helper's order, whatever the chunking of its output; and
 * whatever keeps events from arriving (the helper's death, a non-zero exit, a kernel queue
 * overflow, a missing python3, a helper that cannot start) reaches a handler with a reason
 * and the time, never silence. It never restarts the helper: ChangeJournal starts a new
 * source, in a new epoch.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Writable } from 'node:stream';

/** What the helper reports, in its order. */
export interface SourceHandlers {
  /** Every mark is set: events from here on are complete. */
  onReady(): void;
  /** A change: the process that made it, the fanotify mask, the root's slot, the path from the root ('' = the root). */
  onEvent(pid: number, mask: number, slot: number, rel: string): void;
  /** The kernel's queue overflowed at `at`: events of every root were lost. */
  onOverflow(at: Date): void;
  /** Events of one root may be lost (or cannot be had at all: its filesystem is not watched). */
  onSlotLoss(slot: number, reason: string): void;
  /** Events of every root may be lost (an unexpected error in the helper). */
  onLoss(reason: string): void;
  /** The helper is gone and nothing more will come; called once. */
  onEnd(reason: string): void;
}

/** fanotify event bits, as the helper reports them. */
export const FAN = {
  MODIFY: 0x2,
  ATTRIB: 0x4,
  CLOSE_WRITE: 0x8,
  MOVED_FROM: 0x40,
  MOVED_TO: 0x80,
  CREATE: 0x100,
  DELETE: 0x200,
  ONDIR: 0x40000000,
} as const;

/** The directory-entry events: an entry appeared, went or was renamed. */
export const FAN_DIRENT = FAN.CREATE | FAN.DELETE | FAN.MOVED_FROM | FAN.MOVED_TO;

/** Options of JournalSource.start. */
export interface SourceOptions {
  /** The python executable: a name looked up in PATH or a path. */
  python: string;
  /** One path per slot, the cookie directory last. */
  slots: readonly string[];
  /** More filesystems to watch for a slot: those mounted under its root. */
  marks: readonly { slot: number; path: string }[];
  handlers: SourceHandlers;
  /** Told each line the helper writes on stderr. */
  onStderr?: (line: string) => void;
}

declare const CMM_JOURNAL_HELPER_SOURCE: string | undefined;

/**
 * The helper's Python source: inlined into the agent bundle by agent/build/bundle-agent.js
 * (esbuild `define`); in the tsc output and under vitest, read from the .py file beside
 * the sources (tsc does not copy it into dist/, so it is looked up in the repository too).
 */
export function helperSource(): string | null {
  if (typeof CMM_JOURNAL_HELPER_SOURCE === 'string') return CMM_JOURNAL_HELPER_SOURCE;
  const candidates = [path.join(__dirname, 'fanotify-helper.py'), path.join(__dirname, '..', '..', '..', 'agent', 'journal', 'fanotify-helper.py')];
  for (const p of candidates) {
    try {
      return fs.readFileSync(p, 'utf8');
    } catch {
      // next
    }
  }
  return null;
}

/**
 * Runs the source that arrives on fd 3, so that `ps` shows a short command line rather
 * than the whole helper, and nothing is written to disk. `-I -S`: no PYTHON* variables,
 * no user or site packages (the helper needs only the standard library), a faster start.
 */
const BOOTSTRAP = "import os\nf=os.fdopen(3,'rb')\nsrc=f.read()\nf.close()\nexec(compile(src,'fanotify-helper.py','exec'))";

/** The helper's exit codes (fanotify-helper.py), for the reason of a loss. */
const EXIT_WHY: Record<number, string> = {
  2: 'bad arguments',
  3: 'fanotify unsupported',
  4: 'the cookie directory cannot be watched',
  5: 'reading events failed',
};

/** "12:03:07 UTC": when, in a reason. */
export function clock(at: Date = new Date()): string {
  return `${at.toISOString().slice(11, 19)} UTC`;
}

/**
 * A field of a helper line (bytes a..b of buf) as the string Node's fs gives for those
 * bytes: %25, %09 and %0A undone, then decoded as UTF-8 as fs.readdir decodes a name (an
 * invalid sequence becomes U+FFFD, as it does there). Always a string of its own, never a
 * slice of the chunk: paths are kept as Map keys, and a slice would pin the whole chunk.
 */
export function decodeField(buf: Buffer, a: number, b: number): string {
  let plain = true;
  for (let i = a; i < b; i++) {
    const c = buf[i];
    if (c === 0x25 || c > 0x7f) {
      plain = false;
      break;
    }
  }
  if (plain) return buf.toString('latin1', a, b);
  const out = Buffer.allocUnsafe(b - a);
  let n = 0;
  for (let i = a; i < b; i++) {
    const c = buf[i];
    if (c === 0x25 && i + 2 < b) {
      const h = buf.toString('latin1', i + 1, i + 3);
      if (h === '25' || h === '09' || h === '0A') {
        out[n++] = parseInt(h, 16);
        i += 2;
        continue;
      }
    }
    out[n++] = c;
  }
  return out.toString('utf8', 0, n);
}

/** Where numberAt stopped: the index of the tab after the number, or -1 if there was none. */
let numberEnd = -1;

/** A decimal or hexadecimal number in buf from `i` up to a tab (its index in numberEnd), or NaN. No allocation: this runs per event. */
function numberAt(buf: Buffer, i: number, end: number, base: number): number {
  let v = 0;
  numberEnd = -1;
  const start = i;
  for (; i < end; i++) {
    const c = buf[i];
    if (c === 0x09) {
      if (i === start) return NaN;
      numberEnd = i;
      return v;
    }
    const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : 99;
    if (d >= base) return NaN;
    v = v * base + d;
  }
  return NaN;
}

/** One run of the helper. */
export class JournalSource {
  private partial: Buffer | null = null;
  private stderrTail = '';
  private endReason: string | null = null;
  private closing = false;
  private readyResolve: (() => void) | null = null;

  private constructor(
    private readonly child: ChildProcess,
    private readonly opts: SourceOptions,
  ) {}

  /** The helper's pid, while it runs. */
  get pid(): number | undefined {
    return this.endReason === null ? this.child.pid : undefined;
  }

  /** Why the helper is gone, or null while it runs. */
  get ended(): string | null {
    return this.endReason;
  }

  /**
   * Start the helper; resolves once every mark is set (the helper said R) or once it is
   * gone (then `ended` says why, and onEnd was called). Never rejects.
   */
  static async start(opts: SourceOptions): Promise<JournalSource> {
    const source = helperSource();
    const args = ['-I', '-S', '-c', BOOTSTRAP, 'cmmigrate-journal'];
    for (const s of opts.slots) args.push('--root', s);
    for (const m of opts.marks) args.push('--mark', String(m.slot), m.path);
    const child = spawn(opts.python, args, { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
    const src = new JournalSource(child, opts);
    const ready = new Promise<void>((resolve) => {
      src.readyResolve = resolve;
    });
    src.wire(source);
    await ready;
    return src;
  }

  private wire(source: string | null): void {
    const { child } = this;
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') this.end(`journal: ${this.opts.python} not found`);
      else this.end(`journal: cannot run ${this.opts.python}: ${err.message}`);
    });
    child.on('close', (code, signal) => this.exited(code, signal));
    const ignore = (): void => {};
    for (const s of child.stdio) s?.on('error', ignore);
    const code = child.stdio[3] as Writable | null;
    if (source === null) {
      this.end('journal: the helper fanotify-helper.py is not beside the agent');
      child.kill('SIGKILL');
      return;
    }
    code?.end(source);
    child.stdout!.on('data', (chunk: Buffer) => this.data(chunk));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => this.stderr(text));
  }

  private data(chunk: Buffer): void {
    if (this.endReason !== null) return;
    const buf = this.partial ? Buffer.concat([this.partial, chunk]) : chunk;
    let start = 0;
    for (let nl = buf.indexOf(0x0a); nl !== -1; nl = buf.indexOf(0x0a, start)) {
      this.line(buf, start, nl);
      start = nl + 1;
    }
    this.partial = start < buf.length ? Buffer.from(buf.subarray(start)) : null;
  }

  private line(buf: Buffer, a: number, b: number): void {
    const h = this.opts.handlers;
    if (buf[a] === 0x45 /* E */ && buf[a + 1] === 0x09) {
      const pid = numberAt(buf, a + 2, b, 10);
      const mask = numberEnd < 0 ? NaN : numberAt(buf, numberEnd + 1, b, 16);
      const slot = numberEnd < 0 ? NaN : numberAt(buf, numberEnd + 1, b, 10);
      if (numberEnd < 0) return this.garbled(buf.toString('latin1', a, b));
      h.onEvent(pid, mask, slot, decodeField(buf, numberEnd + 1, b));
      return;
    }
    const f: string[] = [];
    for (let i = a; i <= b; ) {
      let t = buf.indexOf(0x09, i);
      if (t === -1 || t > b) t = b;
      f.push(decodeField(buf, i, t));
      i = t + 1;
    }
    switch (f[0]) {
      case 'R':
        h.onReady();
        this.readyResolve?.();
        this.readyResolve = null;
        return;
      case 'O':
        h.onOverflow(new Date(Number(f[1]) * 1000 || Date.now()));
        return;
      case 'L':
        h.onSlotLoss(Number(f[1]), f.slice(2).join('\t'));
        return;
      case 'X':
        h.onLoss(`journal: ${f.slice(1).join('\t')} at ${clock()}`);
        return;
      default:
        this.garbled(buf.toString('latin1', a, b));
    }
  }

  private garbled(line: string): void {
    this.opts.handlers.onLoss(`journal: unreadable helper line ${JSON.stringify(line.slice(0, 80))} at ${clock()}`);
  }

  private lastStderr = '';

  private stderr(text: string): void {
    const lines = (this.stderrTail + text).split('\n');
    this.stderrTail = lines.pop()!.slice(-4096);
    for (const l of lines) {
      if (!l) continue;
      this.lastStderr = l.replace(/^cmmigrate-journal: /, '');
      this.opts.onStderr?.(l);
    }
  }

  private exited(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.stderrTail) this.stderr('\n');
    if (this.closing) return this.end('journal: closed');
    const msg = this.lastStderr ? `: ${this.lastStderr}` : code !== null && EXIT_WHY[code] ? `: ${EXIT_WHY[code]}` : '';
    if (signal) this.end(`journal: helper killed by ${signal} at ${clock()}`);
    else this.end(`journal: helper exited (code ${code}${msg}) at ${clock()}`);
  }

  private end(reason: string): void {
    if (this.endReason !== null) return;
    this.endReason = reason;
    this.partial = null;
    this.readyResolve?.();
    this.readyResolve = null;
    this.opts.handlers.onEnd(reason);
  }

  /** Stop the helper: close its stdin (it exits), then SIGKILL if it lingers. */
  async close(): Promise<void> {
    if (this.child.pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null) {
      this.end('journal: closed');
      return;
    }
    this.closing = true;
    const gone = new Promise<void>((resolve) => this.child.once('close', () => resolve()));
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 2000);
    await gone;
    clearTimeout(timer);
    this.end('journal: closed');
  }
}
