/**
 * What `cmmigrate report --plan F [--json]` does, without the CLI: read the plan's journal,
 * write `<state_dir>/report.html`, and say where it is (or print the model as JSON). The
 * command itself only parses options and calls `runReport`.
 */
import { pathToFileURL } from 'node:url';
import { writeFileAtomicSync } from '../atomic-file';
import type { Reporter } from '../report';
import { loadPlan } from '../plan';
import { duration } from './format';
import { renderReportHtml } from './html';
import { loadMoveReport, type MoveReport, type ReportExtras } from './model';
import { reportPath } from './paths';

export interface ReportResult {
  /** The report.html written. */
  path: string;
  report: MoveReport;
}

/** One line an operator reads in a terminal: how long mail was off, whether the hosts match. */
export function reportSummary(r: MoveReport): string {
  const off = r.outage.seconds !== null ? `mail was off ${duration(r.outage.seconds)}` : r.outage.started_at ? 'mail is still off' : 'mail has not been switched off';
  const v = r.verify?.full ?? r.verify?.quick ?? null;
  const verify = !v ? 'verify not recorded' : v.state !== 'done' ? `${r.verify?.full ? 'full' : 'quick'} verify ${v.state}` : v.differences === 0 ? 'the hosts match' : `${v.differences} path(s) differ`;
  const w = r.warnings === null ? '' : `, ${r.warnings.length} warning(s)`;
  return `${off}; ${verify}${w}`;
}

/**
 * Writes the report of the plan's move and prints its path and a summary line (people), or
 * the model as one JSON object with `path` added (`--json`). `extras` are facts not (yet) in
 * the journal. Throws `report.no_journal` before the first run.
 */
export async function runReport(opts: { plan: string }, out: Reporter, extras: ReportExtras = {}): Promise<ReportResult> {
  const plan = await loadPlan(opts.plan);
  const report = await loadMoveReport(plan.stateDir, extras);
  const file = reportPath(plan.stateDir);
  writeFileAtomicSync(file, renderReportHtml(report), 0o600);
  out.item(`report: ${file}`);
  out.item(`  ${reportSummary(report)}`);
  out.item(`  open ${pathToFileURL(file).href} in a browser (it needs no network)`);
  out.event({ path: file, ...report });
  return { path: file, report };
}
