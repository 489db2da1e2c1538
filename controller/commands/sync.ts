/** `cmmigrate sync`: parses its options and runs one pass (controller/ops/sync.ts). */
import { Command, Option } from 'commander';
import { CmError } from '../../proto/errors';
import type { CommandContext } from '../command-context';
import type { SyncPhase } from '../ops/sync';
import { loadOps } from './load-ops';

/** The `sync` command. */
export function syncCommand(ctx: CommandContext): Command {
  return new Command('sync')
    .description('copy the relay\'s state from the old host to the new one, agent to agent')
    .requiredOption('--plan <file>', 'the plan file written by `cmmigrate init`')
    .addOption(new Option('--phase <phase>', 'initial: the mailboxes, while the old relay still runs; final: every root, with mail stopped').choices(['initial', 'final']).makeOptionMandatory())
    .option('--json', 'print one JSON summary object on stdout instead of text')
    .option('--dry-run', 'list what the pass would do (new, changed, renamed, deleted, kept) and change nothing')
    .option('--no-journal', 'walk every root in full on both hosts instead of only what the change journals say changed')
    .option('--max-delete <n>', 'fail rather than delete more than N entries on the new host', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new CmError('usage.bad_option', `--max-delete ${v}: expected a whole number`);
      return n;
    })
    .addHelpText(
      'after',
      `
Each agent keeps a change journal of the relay's state from the moment it serves: a pass
after an earlier one looks only at what changed on either host since, and each root's line
says whether it did, or walked in full and why (for example after the journal's queue
overflowed or an agent restarted). --no-journal walks in full.

The final phase needs the relay's users (vmail, opendkim, postfix, ...) on the new host:
step 2 of the migration (cmdeploy install,configure) creates them.

Example:
  cmmigrate sync --plan plan.toml --phase initial
  cmmigrate sync --plan plan.toml --phase final --json`,
    )
    .action(async (o: { plan: string; phase: SyncPhase; json?: boolean; dryRun?: boolean; maxDelete?: number; journal: boolean }) => {
      const out = ctx.reporter(!!o.json);
      const { connectAgent, runSync, loadPlan } = loadOps();
      const plan = await loadPlan(o.plan);
      const newAgent = await connectAgent(plan, 'new');
      try {
        const summary = await runSync(plan, newAgent, { phase: o.phase, planArg: o.plan, dryRun: o.dryRun, maxDelete: o.maxDelete, noJournal: !o.journal, signal: ctx.signal }, out);
        out.event({ ...summary });
      } finally {
        newAgent.client.close();
      }
    });
}
