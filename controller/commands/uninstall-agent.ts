/** `cmmigrate uninstall-agent old|new`: parses its options and uninstalls (controller/ops/uninstall-agent.ts). */
import { Argument, Command } from 'commander';
import type { CommandContext } from '../command-context';
import type { Side } from '../ops/agents';
import { loadOps } from './load-ops';

/** The agent's systemd unit, read only when the help is shown. */
function unitName(): string {
  return loadOps().UNIT_NAME;
}

/** The `uninstall-agent` command. */
export function uninstallAgentCommand(ctx: CommandContext): Command {
  return new Command('uninstall-agent')
    .description('stop and remove the agent from the old or new host over ssh')
    .addArgument(new Argument('<side>', 'which host of the plan').choices(['old', 'new']))
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .option('--keep-nodejs', 'keep nodejs even if install-agent installed it')
    .option('--json', 'print one JSON result object on stdout')
    .addHelpText(
      'after',
      () => `
Stops and disables ${unitName()}, removes it and /opt/cmmigrate (the agent, its TLS keys
and its record of what it wrote), and purges the packages that install-agent installed
(Debian's nodejs), unless something installed since depends on them.

Example:
  cmmigrate uninstall-agent old --plan plan.toml`,
    )
    .action(async (side: Side, o: { plan: string; keepNodejs?: boolean; json?: boolean }) => {
      const { runUninstallAgent, loadPlan } = loadOps();
      await runUninstallAgent(await loadPlan(o.plan), { side, keepNodejs: o.keepNodejs, signal: ctx.signal }, ctx.reporter(!!o.json));
    });
}
