/**
 * The verifies of a run in its journal: step 4's quick verify, inside the outage, and the
 * full re-read of both hosts that runs once mail is back on. A full verify interrupted or
 * not yet run stays pending; `cmmigrate verify --plan F` runs it later and records it too.
 */
import { CmError, ExitCode } from '../../proto';
import { runVerify, type VerifyResult } from '../ops/verify';
import { formatDuration } from '../report';
import type { RunContext } from './context';
import { Journal, type VerifyRecord } from './journal';

/** The journal's record of a verify that ran to its end. */
function recordOf(v: VerifyResult): VerifyRecord {
  return {
    state: v.ok ? 'done' : 'failed',
    at: new Date().toISOString(),
    seconds: v.seconds,
    entries: v.roots.reduce((n, r) => n + r.entries.old, 0),
    ...(v.quick ? { from_records: v.fromRecords, read: v.read } : {}),
    differences: v.differences,
    differing: v.first.map((d) => ({ path: d.path, what: d.what })),
  };
}

/** Puts a verify's result into the journal. */
export function recordVerify(journal: Journal, which: 'quick' | 'full', v: VerifyResult): void {
  journal.update((d) => {
    d.verify[which] = recordOf(v);
  });
}

/**
 * `cmmigrate verify` (full) on a plan whose run is past step 6: the run's pending full
 * verify is now done (or failed). Nothing for a move not that far.
 */
export async function recordFullVerifyOfMove(stateDir: string, v: VerifyResult): Promise<void> {
  if (v.quick) return;
  const journal = await Journal.read(stateDir);
  if (!journal || !journal.isDone('6')) return;
  recordVerify(journal, 'full', v);
}

/**
 * After step 6: the full verify of both hosts, every file read again, with mail back on.
 * Ctrl-C leaves the move done and the verify pending; a difference is an error naming the paths.
 */
export async function fullVerifyAfterMove(ctx: RunContext): Promise<void> {
  const { journal, out } = ctx;
  const later = `cmmigrate verify --plan ${ctx.opts.plan}`;
  if (ctx.opts.noFullVerify) {
    journal.update((d) => {
      d.verify.full ??= { state: 'pending', differing: [] };
    });
    out.info(`\nThe full verify of both hosts is pending (--no-full-verify): run ${later}`);
    return;
  }
  out.heading(`\nFull verify of both hosts, every file read again (mail is back on; Ctrl-C leaves the move done and this verify for later: ${later})`);
  journal.update((d) => {
    d.verify.full = { state: 'running', at: new Date().toISOString(), differing: [] };
  });
  let v: VerifyResult;
  try {
    v = await runVerify(ctx.plan, ctx.agents, { signal: ctx.signal }, out);
  } catch (err) {
    journal.update((d) => {
      d.verify.full = { state: 'pending', differing: [] };
    });
    if (err instanceof CmError) {
      throw new CmError(err.code, `the move is done, but the full verify did not finish: ${err.message}`, { hint: `run ${later} when you can`, cause: err });
    }
    throw err;
  }
  recordVerify(journal, 'full', v);
  ctx.emit('verify', { after: '6', ok: v.ok, differences: v.differences, first: v.first });
  if (!v.ok) {
    throw new CmError('step.full_verify_failed', `the move is done, but the full verify found ${v.differences} differing path(s) between the hosts: ${v.first.slice(0, 5).map((d) => `${d.path} (${d.what})`).join('; ')}`, {
      hint: `mail runs on the new host; compare the listed paths on both hosts (a service writing them, or a change behind cmmigrate's back), repair them, then run ${later}`,
      exitCode: ExitCode.failed,
    });
  }
  out.info(`  the full verify found both hosts identical (${formatDuration(v.seconds)})`);
}
