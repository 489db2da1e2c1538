/**
 * The actions that the steps of `cmmigrate run` and `cmmigrate rollback` share: the relay
 * checkout the plan must name, a cmdeploy run echoed and streamed to the reporter (JSON
 * `command` and `output` events included) and stopped by Ctrl-C, and stopping units on a
 * host with a check that they stopped.
 */
import { CmError } from '../../proto';
import { runningUnits, type HostOps } from '../host-ops';
import type { Plan } from '../plan';
import type { Reporter } from '../report';
import { cmdeployCommand, runCmdeploy, type CmdeployAction } from '../relay/cmdeploy';

/** What the shared actions work with; a step's RunContext is one. */
export interface ActionContext {
  plan: Plan;
  out: Reporter;
  /** The operator's chatmail/relay checkout. */
  relayDir: string;
  hosts: { old: HostOps; new: HostOps };
  /** The command that continues after a fix, for hints. */
  rerun: string;
  /** Aborted by Ctrl-C. */
  signal?: AbortSignal;
  /** Told of every cmdeploy call when it ends (the run keeps them for the report). */
  onCmdeploy?: (c: { command: string; exit_status: number | null; seconds: number; side: 'old' | 'new'; action: CmdeployAction; started_at: string }) => void;
}

export function hostLabel(plan: Plan, side: 'old' | 'new'): string {
  return `the ${side} host ${plan[side].host}`;
}

/** The checkout cmdeploy runs from; a CmError naming the command and the fix when the plan has none. */
export function requireRelayDir(plan: Plan, planArg: string, command: 'run' | 'rollback'): string {
  if (!plan.relayDir) {
    throw new CmError('plan.no_relay_dir', `the plan ${plan.file} names no relay checkout: cmmigrate ${command} runs cmdeploy from your chatmail/relay checkout`, {
      hint: `add relay_dir = "/path/to/relay" to ${plan.file} (or run cmmigrate init --plan ${planArg} --relay-dir DIR with the other options), then run cmmigrate ${command} --plan ${planArg}`,
    });
  }
  return plan.relayDir;
}

/** Runs cmdeploy for one host, echoing the command and streaming its output. */
export async function cmdeploy(ctx: ActionContext, side: 'old' | 'new', action: CmdeployAction): Promise<void> {
  const host = ctx.plan[side].host;
  const { display } = cmdeployCommand(ctx.relayDir, host, action);
  const started = new Date();
  const done = (exit: number | null): void =>
    ctx.onCmdeploy?.({ command: display, exit_status: exit, seconds: (Date.now() - started.getTime()) / 1000, side, action, started_at: started.toISOString() });
  try {
    await runCmdeploy({
      relayDir: ctx.relayDir,
      sshHost: host,
      side,
      action,
      rerun: ctx.rerun,
      signal: ctx.signal,
      echo: () => ctx.out.command({ side, host, command: display }),
      onLine: (line, stream) => ctx.out.output({ side, host, stream, line }),
    });
  } catch (err) {
    const exit = (err as CmError).details?.exit_code;
    done(typeof exit === 'number' ? exit : null);
    throw err;
  }
  done(0);
}

/** Stops the units on one host and checks that they stopped. */
export async function stopUnits(ctx: ActionContext, side: 'old' | 'new', units: readonly string[], why: string): Promise<void> {
  ctx.out.info(`  stopping ${units.join(', ')} on ${hostLabel(ctx.plan, side)} (${why})`);
  ctx.out.event({ event: 'host_op', side, op: 'service.stop', units });
  const after = await ctx.hosts[side].stopServices([...units]);
  const left = runningUnits(after, units);
  if (left.length > 0) {
    throw new CmError('step.service_still_active', `${left.join(', ')} still run on ${hostLabel(ctx.plan, side)} after systemctl stop`, {
      hint: `stop them by hand (systemctl stop ${units.join(' ')}) on ${ctx.plan[side].host}, then run ${ctx.rerun}`,
    });
  }
}
