/**
 * `cmmigrate verify`: both agents digest every root (paths, types, sizes, modes, owner
 * names, mtimes, contents, link targets, hard-link groups); the controller merges the two
 * listings and names the paths that differ.
 */
import { Command } from 'commander';
import { CmError, ExitCode, rootsForPhase, type VerifyBatch__Output } from '../../proto';
import { connectAgent, streamOf } from '../agent-client';
import { createOutput, type Output } from '../output';
import { loadPlan } from '../plan';
import { compareListings, type Comparison } from '../tree-compare';
import { ownerRules } from './sync';

export interface VerifyOptions {
  plan: string;
  json?: boolean;
  maxDiffs?: number;
}

export interface VerifyResult extends Comparison {
  ok: boolean;
  seconds: number;
}

export async function runVerify(opts: VerifyOptions, out: Output): Promise<VerifyResult> {
  const plan = await loadPlan(opts.plan);
  const [oldA, newA] = await Promise.all([connectAgent(plan, 'old'), connectAgent(plan, 'new')]);
  const started = Date.now();
  out.info(`verify: digesting every root on ${plan.old.agent} (old) and ${plan.new.agent} (new)`);
  try {
    const req = { scope: { mailboxes_dir: plan.mailboxesDir, roots: rootsForPhase('final') }, owners: ownerRules(plan) };
    const calls = [oldA.client.Verify(req), newA.client.Verify(req)];
    // Errors surface through iteration; a call not being read must not crash the process.
    for (const c of calls) c.on('error', () => undefined);
    const cmp = await compareListings(streamOf<VerifyBatch__Output>(oldA, calls[0]), streamOf<VerifyBatch__Output>(newA, calls[1]), opts.maxDiffs ?? 20).finally(() => calls.forEach((c) => c.cancel()));
    const result: VerifyResult = { ...cmp, ok: cmp.differences === 0 && cmp.roots.every((r) => r.match), seconds: (Date.now() - started) / 1000 };
    for (const r of cmp.roots) {
      const state = !r.present.old && !r.present.new ? 'absent on both' : r.match ? `match (${r.entries.old} entries, sha256 ${r.sha256.old.slice(0, 16)})` : `DIFFER (old ${r.entries.old} entries, new ${r.entries.new})`;
      out.info(`  ${r.root.padEnd(10)} ${state}`);
    }
    if (!result.ok) {
      out.info(`${cmp.differences} differing path${cmp.differences === 1 ? '' : 's'}${cmp.differences > cmp.first.length ? `, the first ${cmp.first.length}` : ''}:`);
      for (const d of cmp.first) out.info(`  ${d.path}: ${d.what}`);
    }
    return result;
  } finally {
    oldA.client.close();
    newA.client.close();
  }
}

export function verifyCommand(): Command {
  return new Command('verify')
    .description('check that the new host holds exactly what the old host has, entry by entry')
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .option('--json', 'print one JSON result object on stdout')
    .option('--max-diffs <n>', 'how many differing paths to list', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new CmError('usage.bad_option', `--max-diffs ${v}: expected a whole number`);
      return n;
    }, 20)
    .addHelpText('after', '\nExit status: 0 when both hosts match, 1 when something differs (the paths are listed).\n\nExample:\n  cmmigrate verify --plan plan.toml')
    .action(async (o: { plan: string; json?: boolean; maxDiffs: number }) => {
      const out = createOutput(!!o.json);
      const r = await runVerify({ plan: o.plan, json: o.json, maxDiffs: o.maxDiffs }, out);
      out.event({ ok: r.ok, differences: r.differences, first: r.first, roots: r.roots, seconds: r.seconds });
      if (r.ok) out.info(`verify: the new host matches the old host`);
      else {
        out.info(`verify failed: the hosts differ; run \`cmmigrate sync --plan ${o.plan} --phase final\`, then verify again`);
        process.exitCode = ExitCode.failed;
      }
    });
}
