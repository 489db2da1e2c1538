/** What both reporters share: the events of steps, commands and errors, and their listeners. */
import type { CmError } from '../../proto';
import type { CommandReport, ReportEvent, Reporter, ReportStreams, StepReport } from './reporter';

export abstract class BaseReporter implements Reporter {
  abstract readonly json: boolean;
  private listeners = new Set<(obj: ReportEvent) => void>();

  constructor(protected readonly streams: ReportStreams) {}

  abstract info(line: string): void;
  abstract heading(line: string): void;
  abstract warn(line: string): void;
  abstract item(line: string): void;
  abstract progress(line: string): void;
  abstract endProgress(): void;
  /** How the event is written, if at all. */
  protected abstract write(obj: ReportEvent): void;
  /** The text of a step's state change, if any. */
  protected abstract stepText(s: StepReport): void;
  /** The text of a command's echo and of its output lines. */
  protected abstract commandText(c: CommandReport): void;
  protected abstract outputText(o: { side: string; line: string }): void;
  /** A failure for people, on stderr in both modes (red on a TTY). */
  protected errorText(err: CmError, command: string): void {
    const red = this.streams.stderr.isTTY ? (s: string) => `\x1b[31m${s}\x1b[0m` : (s: string) => s;
    this.streams.stderr.write(`${red('error:')} cmmigrate ${command}: ${err.message} [${err.code}]\n`);
    if (err.hint) this.streams.stderr.write(`  next: ${err.hint}\n`);
  }

  error(err: CmError, command: string): number {
    this.endProgress();
    this.event({ event: 'error', command, code: err.code, message: err.message, hint: err.hint ?? null });
    this.errorText(err, command);
    return err.exitCode;
  }

  event(obj: ReportEvent): void {
    this.write(obj);
    for (const l of this.listeners) l(obj);
  }

  step(s: StepReport): void {
    this.stepText(s);
    const { step, title, state } = s;
    if (state === 'started') this.event({ event: 'step', step, title, state });
    else if (state === 'done') this.event({ event: 'step', step, title, state, seconds: s.seconds, bytes: s.bytes ?? null });
    else this.event({ event: 'step', step, title, state, code: s.code, message: s.message });
  }

  command(c: CommandReport): void {
    this.commandText(c);
    this.event({ event: 'command', host: c.host, side: c.side, command: c.command, ...(c.op ? { op: c.op } : {}) });
  }

  output(o: { side: 'old' | 'new'; host: string; stream: 'stdout' | 'stderr'; line: string }): void {
    this.outputText(o);
    this.event({ event: 'output', host: o.host, side: o.side, stream: o.stream, line: o.line });
  }

  listen(listener: (obj: ReportEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
