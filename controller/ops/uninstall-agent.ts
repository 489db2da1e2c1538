/**
 * Uninstall, for `cmmigrate uninstall-agent old|new`: stops and disables the agent's unit, removes it,
 * /opt/cmmigrate (agent, keys, state) and, only if install-agent installed it, nodejs.
 * Safe to run again: what is gone already is skipped.
 */
import { stopBridgeOn } from '../bridge-client';
import type { Plan } from '../plan';
import type { Reporter } from '../report';
import { parseLines, valueOf } from '../remote-facts';
import { remoteLayout, remotePrefix, UNIT_NAME } from '../remote-layout';
import { uninstallScript } from '../remote-scripts';
import { runRemote, type SshTarget } from '../ssh';
import type { Side } from './agents';
import { withOldAgent } from './bridge';
import { remoteFailure } from './remote-failure';

export interface UninstallAgentOptions {
  side: Side;
  /** Keep the packages install-agent installed (nodejs). */
  keepNodejs?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Ctrl-C: stops ssh (step.interrupted). */
  signal?: AbortSignal;
}

export interface UninstallAgentResult {
  side: Side;
  removedUnit: boolean;
  removedDir: boolean;
  removedPackages: string[];
  keptPackages: string[];
}

/**
 * The old agent's bridge ends before the agent goes (issue 14): its listeners close and the
 * state that would resume it is removed. An agent that does not answer runs no bridge that
 * a client could still use, so that is only reported.
 */
async function stopBridgeFirst(plan: Plan, signal: AbortSignal | undefined, out: Reporter): Promise<void> {
  try {
    const v = await withOldAgent(plan, (a) => stopBridgeOn(a, signal));
    if (v.ports.length) out.info(`  stopped the bridge on the old host (${v.ports.reduce((n, p) => n + p.total, 0)} connection(s) bridged in all)`);
  } catch (err) {
    if (signal?.aborted) throw err;
    out.info(`  the old agent did not answer to stop its bridge (${(err as Error).message}); removing it ends any bridge`);
  }
}

/** Removes the agent from one host over ssh; what was gone already is skipped. */
export async function runUninstallAgent(plan: Plan, opts: UninstallAgentOptions, out: Reporter): Promise<UninstallAgentResult> {
  const env = opts.env ?? process.env;
  const target: SshTarget = { side: opts.side, destination: plan[opts.side].ssh };
  const layout = remoteLayout(remotePrefix(env));
  const title = `uninstall-agent ${opts.side}`;
  if (opts.side === 'old') await stopBridgeFirst(plan, opts.signal, out);
  out.info(`${title}: stopping and removing ${UNIT_NAME} and ${layout.dir} on ${target.destination}`);
  const r = await runRemote(target, uninstallScript(layout, { keepPackages: !!opts.keepNodejs }), {
    label: 'stop and remove script',
    env,
    timeoutMs: 10 * 60_000,
    signal: opts.signal,
    onCommand: (l) => out.info(`  [$ ${l}]`),
  });
  if (r.code !== 0) throw remoteFailure(target, 'removing the agent', r);
  const lines = parseLines(r.stdout);
  const list = (k: string): string[] => (valueOf(lines, k) ?? '').split(/\s+/).filter(Boolean);
  const result: UninstallAgentResult = {
    side: opts.side,
    removedUnit: valueOf(lines, 'had_unit') === 'yes',
    removedDir: valueOf(lines, 'removed_dir') !== undefined,
    removedPackages: list('removed_packages'),
    keptPackages: list('kept_packages'),
  };
  if (result.removedUnit) out.info(`  stopped, disabled and removed ${UNIT_NAME}`);
  if (result.removedDir) out.info(`  removed ${layout.dir} (the agent, its keys and its state)`);
  if (result.removedPackages.length) out.info(`  removed ${result.removedPackages.join(', ')} (installed by install-agent)`);
  const because = list('kept_because');
  if (result.keptPackages.length) {
    out.info(
      because.length
        ? `  kept ${result.keptPackages.join(', ')}: removing them would also remove ${because.join(', ')}, installed since`
        : `  kept ${result.keptPackages.join(', ')} (--keep-nodejs)`,
    );
  }
  if (!result.removedUnit && !result.removedDir) out.info(`${title}: nothing of cmmigrate was installed there`);
  else out.info(`${title}: done`);
  out.event({ event: 'uninstalled', side: opts.side, removed_unit: result.removedUnit, removed_dir: result.removedDir, removed_packages: result.removedPackages, kept_packages: result.keptPackages });
  return result;
}
