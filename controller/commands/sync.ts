/**
 * `cmmigrate sync`: tell the new agent to pull a phase from the old agent. The data goes
 * agent to agent; the controller only sees progress and the summary.
 */
import { Command, Option } from 'commander';
import { CmError, type OwnerRule, type PullEvent__Output, type Summary__Output } from '../../proto';
import { connectAgent, streamOf } from '../agent-client';
import { createOutput, formatBytes, formatDuration, type Output } from '../output';
import { loadPlan, type Plan } from '../plan';

export type SyncPhase = 'initial' | 'final';

export interface SyncOptions {
  plan: string;
  phase: SyncPhase;
  json?: boolean;
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
}

export function ownerRules(plan: Plan): OwnerRule[] {
  return Object.entries(plan.owners).map(([root, o]) => ({ root, user: o!.user, group: o!.group }));
}

function toSummary(phase: SyncPhase, s: Summary__Output): SyncSummary {
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
    });
    let summary: SyncSummary | undefined;
    const totals = new Map<string, { files: number; bytes: number; totalFiles: number; totalBytes: number }>();
    for await (const ev of streamOf<PullEvent__Output>(newAgent, call)) {
      if (ev.progress) {
        const p = ev.progress;
        totals.set(p.root, { files: Number(p.files), bytes: Number(p.bytes), totalFiles: Number(p.total_files), totalBytes: Number(p.total_bytes) });
        out.progress(progressLine(totals, started));
      } else if (ev.summary) {
        summary = toSummary(opts.phase, ev.summary);
      }
    }
    out.endProgress();
    if (!summary) throw new CmError('connect.incomplete', `the new agent at ${plan.new.agent} ended the pass without a summary`, { hint: 'run the same command again' });
    out.info(
      `done: ${summary.files} files, ${formatBytes(summary.bytes)} in ${formatDuration(summary.seconds)}` +
        ` (${summary.dirs} dirs, ${summary.symlinks} symlinks, ${summary.hardlinks} hard links, ${summary.fifos} FIFOs; ${summary.sockets_skipped} socket(s) skipped)`,
    );
    if (summary.owners_defaulted.length) {
      out.warn(`the new host has no ${summary.owners_defaulted.join(', ')} yet: those entries are owned by root until the final pass`);
    }
    if (summary.absent_roots.length) out.info(`not on the old host, so not carried: ${summary.absent_roots.join(', ')}`);
    out.info(opts.phase === 'initial' ? `next: cmmigrate sync --plan ${opts.plan} --phase final (once mail is stopped on the old host)` : `next: cmmigrate verify --plan ${opts.plan}`);
    return summary;
  } finally {
    out.endProgress();
    newAgent.client.close();
  }
}

function progressLine(totals: Map<string, { files: number; bytes: number; totalFiles: number; totalBytes: number }>, started: number): string {
  let files = 0;
  let bytes = 0;
  let tf = 0;
  let tb = 0;
  for (const t of totals.values()) {
    files += t.files;
    bytes += t.bytes;
    tf += t.totalFiles;
    tb += t.totalBytes;
  }
  const secs = (Date.now() - started) / 1000;
  const rate = secs > 0 ? bytes / secs : 0;
  const eta = rate > 0 && tb > bytes ? (tb - bytes) / rate : 0;
  return `${files}/${tf} files, ${formatBytes(bytes)}/${formatBytes(tb)}, ${formatBytes(rate)}/s, ETA ${formatDuration(eta)}`;
}

export function syncCommand(): Command {
  return new Command('sync')
    .description('copy the relay\'s state from the old host to the new one, agent to agent')
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .addOption(new Option('--phase <phase>', 'initial: the mailboxes, while the old relay still runs; final: every root, with mail stopped').choices(['initial', 'final']).makeOptionMandatory())
    .option('--json', 'print one JSON summary object on stdout instead of text')
    .addHelpText(
      'after',
      `
The final phase needs the relay's users (vmail, opendkim, postfix, ...) on the new host:
step 2 of the migration (cmdeploy install,configure) creates them.

Example:
  cmmigrate sync --plan plan.toml --phase initial
  cmmigrate sync --plan plan.toml --phase final --json`,
    )
    .action(async (o: { plan: string; phase: SyncPhase; json?: boolean }) => {
      const out = createOutput(!!o.json);
      const summary = await runSync({ plan: o.plan, phase: o.phase, json: o.json }, out);
      out.event({ ...summary });
    });
}
