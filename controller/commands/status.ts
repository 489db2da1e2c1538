/** `cmmigrate status`: parses its options and shows the journal (controller/ops/status.ts). */
import { Command } from 'commander';
import type { CommandContext } from '../command-context';
import { loadOps } from './load-ops';

/** The `status` command. */
export function statusCommand(ctx: CommandContext): Command {
  return new Command('status')
    .description("show the run's journal: which steps are done, when, how long they took, what they moved")
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .option('--json', 'print the journal as one JSON object')
    .addHelpText('after', '\nExample:\n  cmmigrate status --plan plan.toml')
    .action(async (o: { plan: string; json?: boolean }) => {
      const out = ctx.reporter(!!o.json);
      const { runStatus, loadPlan } = loadOps();
      const r = await runStatus(await loadPlan(o.plan), { planArg: o.plan }, out);
      out.event({ ...r });
    });
}
