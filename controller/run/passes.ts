/**
 * The passes of a run beyond the published procedure's two copies: catch-up passes while
 * mail still runs, so that the final pass inside the outage carries only the last minutes'
 * changes, and the record of every pass in the journal (what `status` and the report show).
 */
import { formatBytes, formatDuration } from '../report';
import { runSync, type SyncSummary } from '../ops/sync';
import type { RunContext } from './context';
import type { PassRecord, StepId } from './journal';

/** Catch-up passes at most, whatever they move: a relay that changes this fast gains nothing from more. */
export const CATCH_UP_MAX = 5;
/** A pass that moved less than this share of the tree leaves little for the final pass. */
export const CATCH_UP_SHARE = 0.01;
/** Default of --catch-up-until: a pass quicker than this is about what the final pass will take. */
export const CATCH_UP_SECONDS = 10;

/** Entries a pass changed (written, renamed, deleted), and the entries of the tree it saw. */
function changeOf(s: SyncSummary): { moved: number; tree: number } {
  const moved = s.files + s.hardlinks + s.renamed + s.deleted + s.symlinks + s.fifos;
  return { moved, tree: moved + s.unchanged + s.dirs };
}

/** Whether a pass still moved enough that another live pass is worth its time. */
export function worthAnotherPass(s: SyncSummary, untilSeconds: number): boolean {
  const { moved, tree } = changeOf(s);
  return s.seconds >= untilSeconds && moved > 0 && moved >= CATCH_UP_SHARE * tree;
}

/** Appends a pass to the journal. */
export function recordPass(ctx: RunContext, step: StepId, phase: PassRecord['phase'], started: Date, s: SyncSummary): void {
  ctx.journal.update((d) => {
    d.passes.push({ step, phase, started_at: started.toISOString(), seconds: s.seconds, bytes: s.bytes, files: s.files });
  });
}

/** One pass of `phase` for a step: runs it, reports it, records it. */
export async function pass(ctx: RunContext, step: StepId, phase: 'initial' | 'final', label: PassRecord['phase'] = phase): Promise<SyncSummary> {
  const started = new Date();
  const s = await runSync(ctx.plan, ctx.agents.new, { phase, planArg: ctx.opts.plan, embedded: true, signal: ctx.signal }, ctx.out);
  recordPass(ctx, step, label, started, s);
  ctx.emit('sync', { step, pass: label, ...s });
  return s;
}

/**
 * After the initial copy, live passes again while each still moves much: one that took at
 * least `untilSeconds` and changed at least 1 % of the tree is followed by another, up to
 * CATCH_UP_MAX. Returns what they moved together.
 */
export async function catchUp(ctx: RunContext, first: SyncSummary, untilSeconds: number): Promise<{ bytes: number; files: number; passes: number }> {
  let last = first;
  const total = { bytes: 0, files: 0, passes: 0 };
  while (total.passes < CATCH_UP_MAX && worthAnotherPass(last, untilSeconds)) {
    const { moved, tree } = changeOf(last);
    ctx.out.info(`  catch-up pass ${total.passes + 1}: the last pass took ${formatDuration(last.seconds)} and changed ${moved} of ${tree} entries; copying what changed since, mail still on`);
    last = await pass(ctx, '1', 'initial', 'catch-up');
    total.passes++;
    total.bytes += last.bytes;
    total.files += last.files;
    ctx.out.info(`  catch-up pass ${total.passes}: ${last.files} files, ${formatBytes(last.bytes)}, ${last.renamed} renamed, ${last.deleted} deleted in ${formatDuration(last.seconds)}`);
  }
  if (total.passes === 0) ctx.out.info(`  no catch-up pass needed: the last pass took ${formatDuration(last.seconds)} and changed ${changeOf(last).moved} entries`);
  return total;
}
