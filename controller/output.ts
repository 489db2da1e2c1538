/**
 * Human output and machine output of the controller, kept apart: people get lines on
 * stderr (a live progress line only on a TTY), `--json` gets JSON objects on stdout.
 */
import { CmError } from '../proto';

export interface Output {
  json: boolean;
  /** A line for people (stderr); silent in --json mode. */
  info(line: string): void;
  /** A warning for people, on stderr in every mode. */
  warn(line: string): void;
  /** A line of a listing (dry run): stdout for people, a JSON object in --json mode. */
  item(line: string): void;
  /** One JSON object on stdout (only in --json mode). */
  event(obj: Record<string, unknown>): void;
  /** A live progress line: rewritten in place on a TTY, every few seconds otherwise. */
  progress(line: string): void;
  /** End the live progress line. */
  endProgress(): void;
}

export function createOutput(json: boolean, stderr: NodeJS.WriteStream = process.stderr, stdout: NodeJS.WriteStream = process.stdout): Output {
  const tty = !!stderr.isTTY && !json;
  let live = false;
  let lastPlain = Date.now();
  const clear = (): void => {
    if (live) {
      stderr.write('\r\x1b[2K');
      live = false;
    }
  };
  return {
    json,
    info(line) {
      if (json) return;
      clear();
      stderr.write(line + '\n');
    },
    warn(line) {
      // Warnings are for people: stderr, also in --json mode, whose stdout stays parseable.
      clear();
      stderr.write((tty ? '\x1b[33mwarning:\x1b[0m ' : 'warning: ') + line + '\n');
    },
    item(line) {
      if (json) return;
      clear();
      stdout.write(line + '\n');
    },
    event(obj) {
      if (json) stdout.write(JSON.stringify(obj) + '\n');
    },
    progress(line) {
      if (json) return;
      if (tty) {
        stderr.write('\r\x1b[2K' + line);
        live = true;
      } else if (Date.now() - lastPlain >= 5000) {
        lastPlain = Date.now();
        stderr.write(line + '\n');
      }
    },
    endProgress() {
      clear();
    },
  };
}

/** The one place that turns an error into text. Returns the exit code. */
export function reportError(err: CmError, out: Output, command: string): number {
  if (out.json) {
    process.stdout.write(JSON.stringify({ event: 'error', command, code: err.code, message: err.message, hint: err.hint ?? null }) + '\n');
  }
  out.endProgress();
  const red = process.stderr.isTTY ? (s: string) => `\x1b[31m${s}\x1b[0m` : (s: string) => s;
  process.stderr.write(`${red('error:')} cmmigrate ${command}: ${err.message} [${err.code}]\n`);
  if (err.hint) process.stderr.write(`  next: ${err.hint}\n`);
  return err.exitCode;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${Math.round(seconds)}s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
