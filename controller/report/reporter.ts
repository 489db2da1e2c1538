/**
 * The one way operations and steps tell people and programs what happens: they report to a
 * Reporter, and only its two implementations write: text.ts (lines for people on stderr, a
 * listing on stdout, colour and a live progress line only on a TTY) and json.ts (one JSON
 * object per line on stdout; only warnings and errors on stderr). Every event also reaches
 * the listeners (the run's log file), whichever implementation prints. createReporter in
 * index.ts picks the implementation.
 */
import type { CmError } from '../../proto';

/** One JSON event: `{event: name, ...fields}` (or a command's result object). */
export type ReportEvent = Record<string, unknown>;

/** A step of `cmmigrate run` changing state. */
export interface StepReport {
  step: string;
  /** `Preflight` or `Step 3/6`, for people. */
  label: string;
  title: string;
  state: 'started' | 'done' | 'failed';
  seconds?: number;
  /** The journal's bytes of the step (the event's `bytes`). */
  bytes?: number;
  /** What this run of the step moved (steps 1 and 4), for people. */
  moved?: { bytes?: number; files?: number };
  code?: string;
  message?: string;
}

/** An external command, echoed as `[$ command]` before it runs. */
export interface CommandReport {
  side: 'old' | 'new';
  host: string;
  command: string;
  /** Where it runs, for people: `in /home/you/relay`, `on the new host ..., through its agent`. */
  where?: string;
  /** The host operation, when an agent runs it. */
  op?: string;
}

export interface Reporter {
  readonly json: boolean;
  /** A line for people (stderr); not in JSON. */
  info(line: string): void;
  /** A title for people, bold on a TTY; not in JSON. */
  heading(line: string): void;
  /** A warning for people, on stderr in both modes. */
  warn(line: string): void;
  /** A line of a listing (dry run, status, agents): stdout for people; not in JSON. */
  item(line: string): void;
  /** One event: a JSON line in JSON mode; the listeners get it in both. */
  event(obj: ReportEvent): void;
  /** A live progress line: rewritten in place on a TTY, every few seconds otherwise; not in JSON. */
  progress(line: string): void;
  /** Ends the live progress line. */
  endProgress(): void;
  /** A step's title, its end, its failure. */
  step(s: StepReport): void;
  /** The `[$ command]` echo of an external command, before it runs. */
  command(c: CommandReport): void;
  /** One line of an external command's output, as it comes. */
  output(o: { side: 'old' | 'new'; host: string; stream: 'stdout' | 'stderr'; line: string }): void;
  /** The failure of `command` for people (and as an `error` event); returns its exit code. */
  error(err: CmError, command: string): number;
  /** Also hands every event to `listener` (the run's log); returns the way to stop it. */
  listen(listener: (obj: ReportEvent) => void): () => void;
}

/** The streams a reporter writes to; process.stderr and process.stdout by default. */
export interface ReportStreams {
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdout: NodeJS.WritableStream;
}
