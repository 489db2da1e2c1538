/**
 * One pass: the new agent pulls a phase from the old agent. The data goes agent to agent;
 * the controller only sees progress and the summary. `cmmigrate sync` and steps 1 and 4
 * of `cmmigrate run` call it.
 */
import { CmError, RERUN, type Item__Output, type PullEvent__Output } from '../../proto';
import { passSummaryOf, type PassSummary } from '../../proto/summary';
import { streamOf, type AgentHandle } from '../agent-client';
import { ownerRules, type Plan } from '../plan';
import { formatBytes, formatDuration, type Reporter } from '../report';

export type SyncPhase = 'initial' | 'final';

export interface SyncOptions {
  phase: SyncPhase;
  /** The plan file as the operator gave it, for the "next:" line. */
  planArg: string;
  dryRun?: boolean;
  /** At most this many deletes; negative: no limit. */
  maxDelete?: number;
  /** Walk every root in full on both hosts, whatever the change journals say. */
  noJournal?: boolean;
  /** Part of `cmmigrate run`: no "next:" line, the run says what comes next. */
  embedded?: boolean;
  /** Ctrl-C: cancels the pass (step.interrupted). */
  signal?: AbortSignal;
}

/** A pass's summary as `cmmigrate sync --json` prints it. */
export type SyncSummary = { phase: SyncPhase } & PassSummary & {
  dry_run: boolean;
  /** --dry-run: what the pass would do, entry by entry. */
  items?: { op: string; path: string; from?: string; what?: string }[];
};

/** Runs one pass through the connected new agent; resolves to its summary. */
export async function runSync(plan: Plan, newAgent: AgentHandle, opts: SyncOptions, out: Reporter): Promise<SyncSummary> {
  out.info(`sync ${opts.phase}: ${plan.new.agent} (new) pulls from ${plan.old.agent} (old)`);
  const started = Date.now();
  try {
    const call = newAgent.client.Pull({
      source: plan.old.agent,
      phase: opts.phase === 'initial' ? 'INITIAL' : 'FINAL',
      scope: { mailboxes_dir: plan.mailboxesDir, roots: [] },
      owners: ownerRules(plan),
      dry_run: !!opts.dryRun,
      max_delete: String(opts.maxDelete ?? -1),
      no_journal: !!opts.noJournal,
    });
    let summary: SyncSummary | undefined;
    const items: NonNullable<SyncSummary['items']> = [];
    const totals = new Map<string, { files: number; bytes: number; totalFiles: number; totalBytes: number }>();
    for await (const ev of streamOf<PullEvent__Output>(newAgent, call, opts.signal)) {
      if (ev.progress) {
        const p = ev.progress;
        totals.set(p.root, { files: Number(p.files), bytes: Number(p.bytes), totalFiles: Number(p.total_files), totalBytes: Number(p.total_bytes) });
        out.progress(progressLine(p.root, totals.get(p.root)!, Number(p.sent_bytes), started));
      } else if (ev.summary) {
        summary = { phase: opts.phase, ...passSummaryOf(ev.summary), dry_run: !!opts.dryRun };
      } else if (ev.item) {
        out.endProgress();
        out.item(itemLine(ev.item));
        if (out.json) items.push({ op: ev.item.op, path: ev.item.path, ...(ev.item.from ? { from: ev.item.from } : {}), ...(ev.item.what ? { what: ev.item.what } : {}) });
      }
    }
    out.endProgress();
    if (summary && opts.dryRun) summary.items = items;
    if (!summary) throw new CmError('connect.incomplete', `the new agent at ${plan.new.agent} ended the pass without a summary`, { hint: `run ${RERUN}` });
    const verb = opts.dryRun ? 'dry run, nothing changed; would send' : 'done:';
    out.info(
      `${verb} ${summary.files} files, ${formatBytes(summary.bytes)} in ${formatDuration(summary.seconds)}` +
        ` (${summary.renamed} renamed, ${summary.deleted} deleted, ${summary.unchanged} unchanged; ${summary.dirs} new dirs, ${summary.symlinks} symlinks, ${summary.hardlinks} hard links, ${summary.fifos} FIFOs; ${summary.sockets_skipped} socket(s) skipped)`,
    );
    for (const w of summary.walks) out.info(walkLine(w));
    if (summary.kept_extraneous) {
      out.warn(`kept ${summary.kept_extraneous} entries that are only on the new host and were not put there by cmmigrate: ${summary.kept_paths.slice(0, 5).join(', ')}${summary.kept_extraneous > 5 ? ', ...' : ''}`);
    }
    if (summary.vanished) {
      out.warn(`${summary.vanished} source entries vanished or changed while read; the final pass carries them: ${summary.vanished_paths.slice(0, 5).join(', ')}${summary.vanished > 5 ? ', ...' : ''}`);
    }
    if (summary.deletes_skipped) out.warn('deletes were held back because the old host reported read errors; run the pass again');
    if (summary.owners_defaulted.length) {
      out.warn(`the new host has no ${summary.owners_defaulted.join(', ')} yet: those entries are owned by root until the final pass`);
    }
    if (summary.absent_roots.length) out.info(`not on the old host, so not carried: ${summary.absent_roots.join(', ')}`);
    if (!opts.embedded) out.info(opts.phase === 'initial' ? `next: cmmigrate sync --plan ${opts.planArg} --phase final (once mail is stopped on the old host)` : `next: cmmigrate verify --plan ${opts.planArg}`);
    return summary;
  } finally {
    out.endProgress();
  }
}

/** How a pass looked at a root: only what the journals named, or all of it and why. */
export function walkLine(w: PassSummary['walks'][number]): string {
  if (w.scoped) return `${w.root}: looked only at what changed (${w.paths} path${w.paths === 1 ? '' : 's'} named by the change journals)`;
  return `${w.root}: full walk${w.reason ? ` (${w.reason})` : ''}`;
}

function progressLine(root: string, t: { files: number; bytes: number; totalFiles: number; totalBytes: number }, sent: number, started: number): string {
  const secs = (Date.now() - started) / 1000;
  const rate = secs > 0 ? t.bytes / secs : 0;
  const eta = rate > 0 && t.totalBytes > t.bytes ? (t.totalBytes - t.bytes) / rate : 0;
  return `${root}: ${t.files}/${t.totalFiles} files, ${formatBytes(t.bytes)}/${formatBytes(t.totalBytes)} checked, ${formatBytes(sent)} sent, ${formatBytes(sent / Math.max(secs, 0.001))}/s, ETA ${formatDuration(eta)}`;
}

/** One itemized line, as `rsync -n -i` prints them. */
function itemLine(i: Item__Output): string {
  switch (i.op) {
    case 'new':
      return `>f+++++++ ${i.path}${i.what ? ` (${i.what})` : ''}`;
    case 'changed':
      return `>f.${i.what.padEnd(6)} ${i.path}`;
    case 'renamed':
      return `renamed   ${i.from} -> ${i.path}`;
    case 'deleted':
      return `*deleting ${i.path}`;
    case 'kept':
      return `kept      ${i.path} (only on the new host, not put there by cmmigrate)`;
    default:
      return `${i.op} ${i.path}`;
  }
}
