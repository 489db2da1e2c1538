/** `cmmigrate rollback`: parses its options and rolls back (controller/run/rollback.ts). */
import { Command } from 'commander';
import type { CommandContext } from '../command-context';
import { loadOps } from './load-ops';

/** The `rollback` command. */
export function rollbackCommand(ctx: CommandContext): Command {
  return new Command('rollback')
    .description('before step 6: re-enable mail on the old host and keep the new host inactive')
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .option('--yes', 'do not ask for confirmation')
    .option('--json', 'print JSON events on stdout')
    .addHelpText(
      'after',
      '\nRefused once step 6 has started: the relay then runs on the new host.\n' +
        'A later `cmmigrate run` continues at step 3 (disable mail, final sync, DNS, activate).\n\nExample:\n  cmmigrate rollback --plan plan.toml',
    )
    .action(async (o: { plan: string; yes?: boolean; json?: boolean }) => {
      const { runRollback, loadPlan } = loadOps();
      await runRollback(await loadPlan(o.plan), { planArg: o.plan, yes: o.yes, signal: ctx.signal }, ctx.reporter(!!o.json));
    });
}
