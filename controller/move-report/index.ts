/**
 * The report of a move (`cmmigrate report`, and what `run` leaves at its end): one
 * self-contained HTML file in the plan's state dir, and the same data as JSON. Pure
 * functions over the journal plus optional extras; the only side effect is the atomic
 * write of `<state_dir>/report.html`.
 */
import * as path from 'node:path';
import { writeFileAtomicSync } from '../atomic-file';
import { renderReportHtml } from './html';
import { buildMoveReport, type JournalCore, type MoveReport, type ReportExtras } from './model';
import { reportPath } from './paths';

export { renderReportHtml } from './html';
export { buildMoveReport, loadMoveReport, STEP_SHORT_TITLES, type JournalCore, type MoveReport, type ReportExtras, type ReportStep, type ReportVerify } from './model';
export { renderTimelineSvg } from './svg-timeline';
export { REPORT_FILE, reportPath } from './paths';
export { reportSummary, runReport, type ReportResult } from './run-report';

/** The report's `--json` form: the model, with `null` for every part not recorded. */
export function reportJson(r: MoveReport): string {
  return JSON.stringify(r, null, 2) + '\n';
}

/**
 * Builds the report from the journal's data and extras and writes `<stateDir>/report.html`
 * atomically (temp file, fsync, rename; mode 0600, as it lists hosts and mailbox paths).
 * Returns the path written. Throws `report.journal_invalid` for data that is not a journal.
 */
export function writeReport(stateDir: string, journalData: JournalCore, extras: ReportExtras = {}, now?: Date): string {
  const file = reportPath(stateDir);
  const model = buildMoveReport(journalData, extras, { source: path.join(stateDir, 'journal.json'), now });
  writeFileAtomicSync(file, renderReportHtml(model), 0o600);
  return file;
}
