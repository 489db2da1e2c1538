/**
 * The run's journal for `cmmigrate status` as a table: each step, its state, when it ended,
 * how long it took and what it moved; the outage window; what to run next.
 */
import type { Plan } from '../plan';
import { formatBytes, formatDuration, type Reporter } from '../report';
import { shQuote } from '../ssh';
import { Journal, journalPath, STEP_IDS, stepLabel, type JournalData } from '../run/journal';
import { stepById } from '../run/steps';

export interface StatusResult {
  journal: JournalData | null;
  next: string;
}

/** Lists the journal's steps and what to run next; the journal is only read. */
export async function runStatus(plan: Plan, opts: { planArg: string }, out: Reporter): Promise<StatusResult> {
  const rerun = `cmmigrate run --plan ${shQuote(opts.planArg)}`;
  const journal = await Journal.read(plan.stateDir);
  if (!journal) {
    out.item(`no run yet for ${plan.mailDomain} (no journal at ${journalPath(plan.stateDir)})`);
    const next = `${rerun} --dry-run`;
    out.item(`next: ${next}`);
    return { journal: null, next };
  }
  const d = journal.data;
  out.item(`move of ${d.mail_domain} from ${d.old_host} to ${d.new_host} (journal ${journal.file})`);
  for (const id of STEP_IDS) {
    const s = d.steps[id]!;
    const when = s.ended_at ? ` ${s.ended_at.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}` : s.started_at ? ` started ${s.started_at}` : '';
    const took = s.seconds !== undefined ? `, ${formatDuration(s.seconds)}` : '';
    const moved = s.bytes !== undefined ? `, ${formatBytes(s.bytes)} in ${s.files ?? 0} files` : '';
    out.item(`  ${stepLabel(id).padEnd(10)} ${s.state.padEnd(8)}${when}${took}${moved}  ${stepById(id).title}`);
    if (s.state === 'failed' && s.error) out.item(`             ${s.error.code}: ${s.error.message}`);
  }
  if (d.outage.started_at) {
    const end = d.outage.ended_at ? Date.parse(d.outage.ended_at) : Date.now();
    const secs = (end - Date.parse(d.outage.started_at)) / 1000;
    out.item(`  mail ${d.outage.ended_at ? 'was' : 'is'} off for ${formatDuration(secs)}${d.outage.ended_at ? '' : ' so far'} (since ${d.outage.started_at})${d.bridge_up_at ? ', until the bridge on the old host was up (the DNS wait came after)' : d.outage.dns_seconds !== undefined ? `, ${formatDuration(d.outage.dns_seconds)} of it waiting for DNS` : ''}`);
  }
  for (const [i, p] of d.passes.entries()) {
    out.item(`  pass ${String(i + 1).padEnd(3)} ${p.phase.padEnd(8)} step ${p.step}  ${p.started_at}, ${formatDuration(p.seconds)}, ${formatBytes(p.bytes)} in ${p.files} files`);
  }
  for (const which of ['quick', 'full'] as const) {
    const v = d.verify[which];
    if (!v) continue;
    const counts = v.from_records !== undefined ? `, ${v.from_records} digests from records, ${v.read ?? 0} read` : '';
    const took = v.seconds !== undefined ? `, ${formatDuration(v.seconds)}` : '';
    const verdict = v.state === 'done' ? 'hosts identical' : v.state === 'failed' ? `${v.differences} differing path(s)` : v.state;
    out.item(`  verify ${which.padEnd(5)} ${verdict}${took}${counts}${v.state === 'pending' ? ` (run cmmigrate verify --plan ${shQuote(opts.planArg)})` : ''}`);
    for (const x of v.differing.slice(0, 5)) out.item(`             ${x.path}: ${x.what}`);
  }
  if (d.rolled_back_at) out.item(`  rolled back at ${d.rolled_back_at}: mail runs on the old host again`);
  const pending = STEP_IDS.find((id) => d.steps[id]!.state !== 'done');
  const next = pending === undefined ? `cmmigrate uninstall-agent old --plan ${shQuote(opts.planArg)} (the move is done)` : rerun;
  out.item(`next: ${next}`);
  return { journal: d, next };
}
