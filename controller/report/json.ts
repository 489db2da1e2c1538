/**
 * The reporter for programs (`--json`): one JSON object per line on stdout, nothing else
 * there; warnings and errors for people still go to stderr, without colour.
 */
import { BaseReporter } from './base';
import type { ReportEvent } from './reporter';

export class JsonReporter extends BaseReporter {
  readonly json = true;

  info(): void {}
  heading(): void {}
  item(): void {}
  progress(): void {}
  endProgress(): void {}
  protected stepText(): void {}
  protected commandText(): void {}
  protected outputText(): void {}

  warn(line: string): void {
    // For people: stderr, whose use does not disturb the parseable stdout.
    this.streams.stderr.write('warning: ' + line + '\n');
  }

  protected write(obj: ReportEvent): void {
    this.streams.stdout.write(JSON.stringify(obj) + '\n');
  }
}
