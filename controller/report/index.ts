/**
 * The controller's reporters (see reporter.ts): createReporter picks text or JSON lines.
 */
import { JsonReporter } from './json';
import type { Reporter, ReportStreams } from './reporter';
import { TextReporter } from './text';

export type { CommandReport, ReportEvent, Reporter, ReportStreams, StepReport } from './reporter';
export { formatBytes, formatDuration } from './format';

/** The text reporter, or the JSON-lines reporter with `json`. */
export function createReporter(json: boolean, streams: ReportStreams = { stderr: process.stderr, stdout: process.stdout }): Reporter {
  return json ? new JsonReporter(streams) : new TextReporter(streams);
}
