/** `cmmigrate report`: parses its options and writes the move report (controller/move-report/). */
import { Command } from 'commander';
import type { CommandContext } from '../command-context';
import { loadOps } from './load-ops';

/** The `report` command. */
export function reportCommand(ctx: CommandContext): Command {
  return new Command('report')
    .description("write the move's report: one self-contained HTML file (timeline, outage, passes, verify, warnings, cmdeploy calls)")
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .option('--json', 'print the report data as one JSON object')
    .addHelpText('after', '\nExample:\n  cmmigrate report --plan plan.toml')
    .action(async (o: { plan: string; json?: boolean }) => {
      const { runReport } = loadOps();
      await runReport({ plan: o.plan }, ctx.reporter(!!o.json));
    });
}
