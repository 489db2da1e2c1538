/**
 * The reporter for people: lines on stderr, listings on stdout, colour and a live progress
 * line only when stderr is a TTY (otherwise a progress line every few seconds).
 */
import { BaseReporter } from './base';
import { formatBytes, formatDuration } from './format';
import type { CommandReport, ReportEvent, StepReport } from './reporter';

export class TextReporter extends BaseReporter {
  readonly json = false;
  private live = false;
  private lastPlain = Date.now();

  private get tty(): boolean {
    return !!this.streams.stderr.isTTY;
  }

  private clear(): void {
    if (this.live) {
      this.streams.stderr.write('\r\x1b[2K');
      this.live = false;
    }
  }

  info(line: string): void {
    this.clear();
    this.streams.stderr.write(line + '\n');
  }

  heading(line: string): void {
    this.info(this.tty ? `\x1b[1m${line}\x1b[0m` : line);
  }

  warn(line: string): void {
    this.clear();
    this.streams.stderr.write((this.tty ? '\x1b[33mwarning:\x1b[0m ' : 'warning: ') + line + '\n');
  }

  item(line: string): void {
    this.clear();
    this.streams.stdout.write(line + '\n');
  }

  progress(line: string): void {
    if (this.tty) {
      this.streams.stderr.write('\r\x1b[2K' + line);
      this.live = true;
    } else if (Date.now() - this.lastPlain >= 5000) {
      this.lastPlain = Date.now();
      this.streams.stderr.write(line + '\n');
    }
  }

  endProgress(): void {
    this.clear();
  }

  protected write(_obj: ReportEvent): void {
    // Events are for programs: the text says the same in words.
  }

  protected stepText(s: StepReport): void {
    if (s.state === 'started') this.heading(`\n==> ${s.label}: ${s.title}`);
    else if (s.state === 'done') {
      const m = s.moved;
      this.info(`    done in ${formatDuration(s.seconds ?? 0)}${m?.bytes !== undefined ? `, ${formatBytes(m.bytes)} in ${m.files ?? 0} files moved` : ''}`);
    }
  }

  protected commandText(c: CommandReport): void {
    this.info(`[$ ${c.command}]${c.where ? `   (${c.where})` : ''}`);
  }

  protected outputText(o: { side: string; line: string }): void {
    this.info(`  ${o.side}| ${o.line}`);
  }
}
