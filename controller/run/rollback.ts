/**
 * `cmmigrate rollback`: before step 6, puts mail back on the old host (a full cmdeploy run
 * without --disable-mail) and makes sure mail stays off on the new host. After step 6 the
 * relay runs on the new host, and going back is a move of its own: refused. It shares the
 * steps' actions (actions.ts): the relay checkout check, stopping units with a check, and
 * the cmdeploy call with its JSON events, which Ctrl-C stops.
 */
import { CmError, ExitCode } from '../../proto';
import { connectAgent } from '../agent-client';
import { hostOps, inactiveUnits, MAIL_UNITS } from '../host-ops';
import type { Plan } from '../plan';
import type { Reporter } from '../report';
import { shQuote } from '../ssh';
import { cmdeploy, requireRelayDir, stopUnits, type ActionContext } from './actions';
import { askTerminal } from './context';
import { Journal } from './journal';

export interface RollbackOptions {
  /** The plan file as the operator gave it, for the commands we print. */
  planArg: string;
  yes?: boolean;
  confirm?: (question: string) => Promise<boolean>;
  /** Ctrl-C: stops cmdeploy and the agents' calls (step.interrupted). */
  signal?: AbortSignal;
}

/** Refuses a rollback with nothing to roll back or after step 6 has started; the journal otherwise. */
async function rollbackJournal(plan: Plan, planArg: string): Promise<Journal> {
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
  return journal;
}

/** Re-enables mail on the old host and keeps the new one inactive; steps 3 to 5 are then pending again. */
export async function runRollback(plan: Plan, opts: RollbackOptions, out: Reporter): Promise<void> {
  const planArg = shQuote(opts.planArg);
  const rerun = `cmmigrate rollback --plan ${planArg}`;
  const journal = await rollbackJournal(plan, planArg);
  const relayDir = requireRelayDir(plan, planArg, 'rollback');
  const ok =
    opts.yes ||
    (await (opts.confirm ?? ((q) => askTerminal(q, 'rollback', rerun, opts.signal)))(
      `Re-enable mail on the old host ${plan.old.host} (a full cmdeploy run) and keep it off on the new host ${plan.new.host}?`,
    ));
  if (!ok) throw new CmError('step.not_confirmed', 'you did not confirm the rollback; nothing was changed', { hint: `run ${rerun} --yes`, exitCode: ExitCode.precondition });

  const [oldA, newA] = [await connectAgent(plan, 'old'), await connectAgent(plan, 'new')];
  try {
    const ctx: ActionContext = { plan, out, relayDir, rerun, signal: opts.signal, hosts: { old: hostOps(oldA, opts.signal), new: hostOps(newA, opts.signal) } };
    // First the new host: it must not take mail while the old one does.
    await stopUnits(ctx, 'new', MAIL_UNITS, 'it must not take mail while the old host does');
    await cmdeploy(ctx, 'old', 'enable-mail');
    const states = await ctx.hosts.old.serviceStates(['postfix', 'dovecot']);
    const down = inactiveUnits(states, ['postfix', 'dovecot']);
    if (down.length) {
      throw new CmError('step.service_not_active', `${down.join(', ')} did not start on the old host ${plan.old.host} after cmdeploy`, {
        hint: `check them there (systemctl status postfix dovecot), then run ${rerun}`,
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
