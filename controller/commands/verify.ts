/** `cmmigrate verify`: parses its options and compares both trees (controller/ops/verify.ts). */
import { Command } from 'commander';
import { CmError, ExitCode } from '../../proto/errors';
import { withAgents, type CommandContext } from '../command-context';
import { loadOps } from './load-ops';

/** The `verify` command. */
export function verifyCommand(ctx: CommandContext): Command {
  return new Command('verify')
    .description('check that the new host holds exactly what the old host has, entry by entry')
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .option('--json', 'print one JSON result object on stdout')
    .option('--quick', "take each file's SHA-256 from what the passes recorded while its device, inode, size, mtime and ctime are unchanged; read only the rest (what step 4 of run does); without it, every file is read again")
    .option('--max-diffs <n>', 'how many differing paths to list', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new CmError('usage.bad_option', `--max-diffs ${v}: expected a whole number`);
      return n;
    }, 20)
    .addHelpText('after', '\n--quick trusts a record only for a file last changed before the record was written (a change within the same clock tick is read again, as git does); verify without --quick reads everything.\n\nExit status: 0 when both hosts match, 1 when something differs (the paths are listed).\n\nExample:\n  cmmigrate verify --plan plan.toml')
    .action(async (o: { plan: string; json?: boolean; quick?: boolean; maxDiffs: number }) => {
      const out = ctx.reporter(!!o.json);
      const { reportVerify, runVerify, loadPlan, recordFullVerifyOfMove } = loadOps();
      const plan = await loadPlan(o.plan);
      const r = await withAgents(plan, (agents) => runVerify(plan, agents, { maxDiffs: o.maxDiffs, quick: o.quick, signal: ctx.signal }, out));
      // The full verify a run left pending after step 6 is now done (or found differences).
      await recordFullVerifyOfMove(plan.stateDir, r);
      if (!reportVerify(r, o.plan, out)) ctx.setExitCode(ExitCode.failed);
    });
}
