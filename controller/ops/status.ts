/**
 * The run's journal for `cmmigrate status` as a table: each step, its state, when it ended,
 * how long it took and what it moved; the outage window; the old host's bridge when one
 * is up; what to run next.
 */
import { CmError } from '../../proto';
import { bridgeStatusOn, type BridgeView } from '../bridge-client';
import type { Plan } from '../plan';
import { formatBytes, formatDuration, type Reporter } from '../report';
import { shQuote } from '../ssh';
import { Journal, journalPath, STEP_IDS, stepLabel, type JournalData } from '../run/journal';
import { stepById } from '../run/steps';
import { bridgeJson, printBridge, withOldAgent } from './bridge';

export interface StatusResult {
  journal: JournalData | null;
  next: string;
  /** The old agent's bridge, when one is up (`bridgeJson`). */
  bridge?: Record<string, unknown>;
  /** The run started a bridge and did not stop it, and the old agent did not answer. */
  bridge_error?: { code: string; message: string };
}

/** How long status waits for the old agent: status reads the journal and must stay quick without the agent. */
const BRIDGE_ASK_MS = 3_000;

/** The old agent's bridge, or why it could not be asked; never throws. */
async function askBridge(plan: Plan): Promise<{ view?: BridgeView; error?: CmError }> {
  try {
    return { view: await withOldAgent(plan, (a) => bridgeStatusOn(a, undefined, BRIDGE_ASK_MS)) };
  } catch (err) {
    return { error: err instanceof CmError ? err : new CmError('connect.failed', `the old agent at ${plan.old.agent}: ${(err as Error).message}`, { cause: err }) };
  }
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
  // Only `run --bridge` starts a bridge, and its journal says so: without that, status does
  // not dial the old agent. With it, the agent knows whether the bridge is still up; without
  // an answer, only a bridge the run started and did not stop is worth a line.
  const bridge = d.bridge ? await askBridge(plan) : {};
  const result: StatusResult = { journal: d, next: '' };
  if (bridge.view?.running) {
    printBridge(bridge.view, out);
    out.item(`  when stopping it is safe: cmmigrate bridge status --plan ${shQuote(opts.planArg)}`);
    result.bridge = bridgeJson(bridge.view);
  } else if (bridge.error && d.bridge && !d.bridge.stopped_at) {
    out.item(`bridge: the old agent at ${plan.old.agent} did not answer, so whether the bridge still runs is unknown (${bridge.error.code}: ${bridge.error.message}); ask again with cmmigrate bridge status --plan ${shQuote(opts.planArg)}`);
    result.bridge_error = { code: bridge.error.code, message: bridge.error.message };
  }
  const pending = STEP_IDS.find((id) => d.steps[id]!.state !== 'done');
  result.next = pending === undefined ? `cmmigrate uninstall-agent old --plan ${shQuote(opts.planArg)} (the move is done)` : rerun;
  out.item(`next: ${result.next}`);
  return result;
}
