/**
 * `cmmigrate sync`: tell the new agent to pull a phase from the old agent. The data goes
 * agent to agent; the controller only sees progress and the summary.
 */
import { Command, Option } from 'commander';
import { CmError, type Item__Output, type OwnerRule, type PullEvent__Output, type Summary__Output } from '../../proto';
import { connectAgent, streamOf } from '../agent-client';
import { createOutput, formatBytes, formatDuration, type Output } from '../output';
import { loadPlan, type Plan } from '../plan';

export type SyncPhase = 'initial' | 'final';

export interface SyncOptions {
  plan: string;
  phase: SyncPhase;
  json?: boolean;
  dryRun?: boolean;
  /** At most this many deletes; negative: no limit. */
  maxDelete?: number;
  /** Part of `cmmigrate run`: no "next:" line, the run says what comes next. */
  embedded?: boolean;
}

export interface SyncSummary {
  phase: SyncPhase;
  files: number;
  bytes: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  fifos: number;
  sockets_skipped: number;
  seconds: number;
  wire_bytes: number;
  absent_roots: string[];
  owners_defaulted: string[];
  renamed: number;
  deleted: number;
  unchanged: number;
  kept_extraneous: number;
  vanished: number;
  deletes_skipped: boolean;
  kept_paths: string[];
  vanished_paths: string[];
  dry_run: boolean;
  /** --dry-run: what the pass would do, entry by entry. */
  items?: { op: string; path: string; from?: string; what?: string }[];
}

export function ownerRules(plan: Plan): OwnerRule[] {
  return Object.entries(plan.owners).map(([root, o]) => ({ root, user: o!.user, group: o!.group }));
}

function toSummary(phase: SyncPhase, s: Summary__Output, dryRun: boolean): SyncSummary {
  return {
    phase,
    files: Number(s.files),
    bytes: Number(s.bytes),
    dirs: Number(s.dirs),
    symlinks: Number(s.symlinks),
    hardlinks: Number(s.hardlinks),
    fifos: Number(s.fifos),
    sockets_skipped: Number(s.sockets_skipped),
    seconds: Math.round(s.seconds * 1000) / 1000,
    wire_bytes: Number(s.wire_bytes),
    absent_roots: s.absent_roots,
    owners_defaulted: s.owners_defaulted,
    renamed: Number(s.renamed),
    deleted: Number(s.deleted),
    unchanged: Number(s.unchanged),
    kept_extraneous: Number(s.kept_extraneous),
    vanished: Number(s.vanished),
    deletes_skipped: s.deletes_skipped,
    kept_paths: s.kept_paths,
    vanished_paths: s.vanished_paths,
    dry_run: dryRun,
  };
}

/** Run one pass; resolves to its summary. */
export async function runSync(opts: SyncOptions, out: Output): Promise<SyncSummary> {
  const plan = await loadPlan(opts.plan);
  const newAgent = await connectAgent(plan, 'new');
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
    });
    let summary: SyncSummary | undefined;
    const items: NonNullable<SyncSummary['items']> = [];
    const totals = new Map<string, { files: number; bytes: number; totalFiles: number; totalBytes: number }>();
    for await (const ev of streamOf<PullEvent__Output>(newAgent, call)) {
      if (ev.progress) {
        const p = ev.progress;
        totals.set(p.root, { files: Number(p.files), bytes: Number(p.bytes), totalFiles: Number(p.total_files), totalBytes: Number(p.total_bytes) });
        out.progress(progressLine(p.root, totals.get(p.root)!, Number(p.sent_bytes), started));
      } else if (ev.summary) {
        summary = toSummary(opts.phase, ev.summary, !!opts.dryRun);
      } else if (ev.item) {
        out.endProgress();
        out.item(itemLine(ev.item));
        if (out.json) items.push({ op: ev.item.op, path: ev.item.path, ...(ev.item.from ? { from: ev.item.from } : {}), ...(ev.item.what ? { what: ev.item.what } : {}) });
      }
    }
    out.endProgress();
    if (summary && opts.dryRun) summary.items = items;
    if (!summary) throw new CmError('connect.incomplete', `the new agent at ${plan.new.agent} ended the pass without a summary`, { hint: 'run the same command again' });
    const verb = opts.dryRun ? 'dry run, nothing changed; would send' : 'done:';
    out.info(
      `${verb} ${summary.files} files, ${formatBytes(summary.bytes)} in ${formatDuration(summary.seconds)}` +
        ` (${summary.renamed} renamed, ${summary.deleted} deleted, ${summary.unchanged} unchanged; ${summary.dirs} new dirs, ${summary.symlinks} symlinks, ${summary.hardlinks} hard links, ${summary.fifos} FIFOs; ${summary.sockets_skipped} socket(s) skipped)`,
    );
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
    if (!opts.embedded) out.info(opts.phase === 'initial' ? `next: cmmigrate sync --plan ${opts.plan} --phase final (once mail is stopped on the old host)` : `next: cmmigrate verify --plan ${opts.plan}`);
    return summary;
  } finally {
    out.endProgress();
    newAgent.client.close();
  }
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

export function syncCommand(): Command {
  return new Command('sync')
    .description('copy the relay\'s state from the old host to the new one, agent to agent')
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .addOption(new Option('--phase <phase>', 'initial: the mailboxes, while the old relay still runs; final: every root, with mail stopped').choices(['initial', 'final']).makeOptionMandatory())
    .option('--json', 'print one JSON summary object on stdout instead of text')
    .option('--dry-run', 'list what the pass would do (new, changed, renamed, deleted, kept) and change nothing')
    .option('--max-delete <n>', 'fail rather than delete more than N entries on the new host', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new CmError('usage.bad_option', `--max-delete ${v}: expected a whole number`);
      return n;
    })
    .addHelpText(
      'after',
      `
The final phase needs the relay's users (vmail, opendkim, postfix, ...) on the new host:
step 2 of the migration (cmdeploy install,configure) creates them.

Example:
  cmmigrate sync --plan plan.toml --phase initial
  cmmigrate sync --plan plan.toml --phase final --json`,
    )
    .action(async (o: { plan: string; phase: SyncPhase; json?: boolean; dryRun?: boolean; maxDelete?: number }) => {
      const out = createOutput(!!o.json);
      const summary = await runSync({ plan: o.plan, phase: o.phase, json: o.json, dryRun: o.dryRun, maxDelete: o.maxDelete }, out);
      out.event({ ...summary });
    });
}
