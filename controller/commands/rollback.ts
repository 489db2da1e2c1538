/**
 * `cmmigrate rollback`: before step 6, puts mail back on the old host (a full cmdeploy run
 * without --disable-mail) and makes sure mail stays off on the new host. After step 6 the
 * relay runs on the new host, and going back is a move of its own: refused.
 */
import { Command } from 'commander';
import { CmError, ExitCode } from '../../proto';
import { connectAgent } from '../agent-client';
import { runCmdeploy } from '../cmdeploy';
import { hostOps, inactiveUnits, MAIL_UNITS, runningUnits } from '../host-ops';
import { createOutput, type Output } from '../output';
import { loadPlan } from '../plan';
import { shQuote } from '../ssh';
import { askTerminal } from '../run/context';
import { Journal } from '../run/journal';

export interface RollbackOptions {
  plan: string;
  yes?: boolean;
  json?: boolean;
  confirm?: (question: string) => Promise<boolean>;
}

export async function runRollback(opts: RollbackOptions, out: Output): Promise<void> {
  const plan = await loadPlan(opts.plan);
  const planArg = shQuote(opts.plan);
  const journal = await Journal.read(plan.stateDir);
  if (!journal) {
    throw new CmError('step.nothing_to_roll_back', `no run has started for ${plan.mailDomain}: there is nothing to roll back`, {
      hint: `see the plan's steps with cmmigrate run --plan ${planArg} --dry-run`,
      exitCode: ExitCode.precondition,
    });
  }
  const six = journal.step('6');
  if (six.state !== 'pending') {
    throw new CmError(
      'step.rollback_refused',
      `step 6 has ${six.state === 'done' ? 'run' : 'started'}: the new host ${plan.new.host} serves mail for ${plan.mailDomain} (or may), and users' new mail is there, so re-enabling the old host would split the relay in two`,
      { hint: `finish the move with cmmigrate run --plan ${planArg}; to go back, move the relay again with a new plan from ${plan.new.host} to ${plan.old.host}`, exitCode: ExitCode.precondition },
    );
  }
  if (!plan.relayDir) {
    throw new CmError('plan.no_relay_dir', `the plan ${plan.file} names no relay checkout, which rollback runs cmdeploy from`, { hint: `add relay_dir = "/path/to/relay" to ${plan.file}, then run cmmigrate rollback --plan ${planArg}` });
  }
  const ok =
    opts.yes ||
    (await (opts.confirm ?? ((q) => askTerminal(q, 'rollback', `cmmigrate rollback --plan ${planArg}`)))(
      `Re-enable mail on the old host ${plan.old.host} (a full cmdeploy run) and keep it off on the new host ${plan.new.host}?`,
    ));
  if (!ok) throw new CmError('step.not_confirmed', 'you did not confirm the rollback; nothing was changed', { hint: `run cmmigrate rollback --plan ${planArg} --yes`, exitCode: ExitCode.precondition });

  const [oldA, newA] = [await connectAgent(plan, 'old'), await connectAgent(plan, 'new')];
  try {
    const oldOps = hostOps(oldA);
    const newOps = hostOps(newA);
    // First the new host: it must not take mail while the old one does.
    out.info(`stopping ${MAIL_UNITS.join(', ')} on the new host ${plan.new.host}`);
    const newStates = await newOps.stopServices([...MAIL_UNITS]);
    const left = runningUnits(newStates, MAIL_UNITS);
    if (left.length) {
      throw new CmError('step.service_still_active', `${left.join(', ')} still run on the new host ${plan.new.host}`, { hint: `stop them by hand there, then run cmmigrate rollback --plan ${planArg}` });
    }
    await runCmdeploy({
      relayDir: plan.relayDir,
      sshHost: plan.old.host,
      side: 'old',
      action: 'enable-mail',
      rerun: `cmmigrate rollback --plan ${planArg}`,
      echo: (line) => out.info(line),
      onLine: (line) => out.info(`  old| ${line}`),
    });
    const states = await oldOps.serviceStates(['postfix', 'dovecot']);
    const down = inactiveUnits(states, ['postfix', 'dovecot']);
    if (down.length) {
      throw new CmError('step.service_not_active', `${down.join(', ')} did not start on the old host ${plan.old.host} after cmdeploy`, {
        hint: `check them there (systemctl status postfix dovecot), then run cmmigrate rollback --plan ${planArg}`,
      });
    }
  } finally {
    oldA.client.close();
    newA.client.close();
  }
  // Steps 3 to 5 must run again: the old relay takes mail, the final sync is stale.
  for (const id of ['3', '4', '5'] as const) journal.reset(id);
  journal.update((d) => {
    d.outage = {};
    d.rolled_back_at = new Date().toISOString();
  });
  out.info(`mail runs on the old host ${plan.old.host} again; the new host keeps its copy and stays inactive.`);
  out.info(`next: when ready, cmmigrate run --plan ${planArg} (continues at step 3)`);
  out.event({ event: 'rolled_back', old_host: plan.old.host });
}

export function rollbackCommand(): Command {
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
    .action(async (o: RollbackOptions) => {
      await runRollback(o, createOutput(!!o.json));
    });
}
