/** `cmmigrate install-agent old|new`: parses its options and installs (controller/ops/install-agent.ts). */
import { Argument, Command } from 'commander';
import type { CommandContext } from '../command-context';
import type { Side } from '../ops/agents';
import { loadOps } from './load-ops';

/** The agent's systemd unit, read only when the help is shown. */
function unitName(): string {
  return loadOps().UNIT_NAME;
}

/** The `install-agent` command. */
export function installAgentCommand(ctx: CommandContext): Command {
  return new Command('install-agent')
    .description('install the agent on the old or new host over ssh and start it as a systemd service')
    .addArgument(new Argument('<side>', 'which host of the plan').choices(['old', 'new']))
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .option('--json', 'print one JSON result object on stdout')
    .addHelpText(
      'after',
      () => `
Over the system ssh (BatchMode: no prompts; ~/.ssh/config and ssh-agent apply; extra
options in CMMIGRATE_SSH_OPTS), as the plan's <side>.ssh (default root@HOST):
checks for Debian 12 or 13 with systemd, installs Debian's nodejs if no Node.js 18.19+
is there, uploads the agent and its TLS material to /opt/cmmigrate, starts
${unitName()} on the plan's agent address, and waits until it answers.
Running it again changes only what differs (an upgrade replaces the agent).

Example:
  cmmigrate install-agent new --plan plan.toml`,
    )
    .action(async (side: Side, o: { plan: string; json?: boolean }) => {
      const { runInstallAgent, loadPlan } = loadOps();
      await runInstallAgent(await loadPlan(o.plan), { planArg: o.plan, side, signal: ctx.signal }, ctx.reporter(!!o.json));
    });
}
