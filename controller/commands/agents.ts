/** `cmmigrate agents`: parses its options and asks both agents (controller/ops/agents.ts). */
import { Command } from 'commander';
import type { CommandContext } from '../command-context';
import { loadOps } from './load-ops';

/** The `agents` command. */
export function agentsCommand(ctx: CommandContext): Command {
  return new Command('agents')
    .description('show both agents: reachable or not, version, host facts')
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .option('--json', 'print one JSON object per agent on stdout')
    .addHelpText('after', '\nExit status: 0 when both agents answer over mutual TLS, 1 when one does not.\n\nExample:\n  cmmigrate agents --plan plan.toml')
    .action(async (o: { plan: string; json?: boolean }) => {
      const { runAgents, loadPlan } = loadOps();
      await runAgents(await loadPlan(o.plan), { planArg: o.plan }, ctx.reporter(!!o.json));
    });
}
