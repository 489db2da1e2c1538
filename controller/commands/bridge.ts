/** `cmmigrate bridge status|stop`: parses its options and calls the bridge op (controller/ops/bridge.ts). */
import { Command } from 'commander';
import type { CommandContext } from '../command-context';
import { loadOps } from './load-ops';

/** The `bridge` command with its `status` and `stop` subcommands. */
export function bridgeCommand(ctx: CommandContext): Command {
  const status = new Command('status')
    .description('per port: connections open now, total, refused, bytes each way, last connection, per-minute arrivals over the last hour')
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .option('--json', 'print one JSON result object on stdout')
    .addHelpText('after', '\nExample:\n  cmmigrate bridge status --plan plan.toml')
    .action(async (o: { plan: string; json?: boolean }) => {
      const { runBridgeStatus, loadPlan } = loadOps();
      await runBridgeStatus(await loadPlan(o.plan), { planArg: o.plan, signal: ctx.signal }, ctx.reporter(!!o.json));
    });
  const stop = new Command('stop')
    .description('close the bridge on the old host: its listeners and every bridged connection')
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .option('--json', 'print one JSON result object on stdout')
    .addHelpText('after', '\nExample:\n  cmmigrate bridge stop --plan plan.toml')
    .action(async (o: { plan: string; json?: boolean }) => {
      const { runBridgeStop, loadPlan } = loadOps();
      await runBridgeStop(await loadPlan(o.plan), { signal: ctx.signal }, ctx.reporter(!!o.json));
    });
  return new Command('bridge')
    .description("the old host's bridge of `run --bridge`: it passes the relay's ports to the new host while DNS changes")
    .addHelpText(
      'after',
      `
With \`cmmigrate run --bridge\`, the old agent listens on the old host's addresses on the
relay's TCP ports (25, 465, 587, 143, 993, 443, 80) and passes each connection, byte for
byte, to the same port of the new host. \`run\` leaves it up; stop it once the
authoritative servers have answered the new address for longer than the old TTL and no
connection arrived for a while (\`bridge status\` says when).`,
    )
    .addCommand(status)
    .addCommand(stop);
}
